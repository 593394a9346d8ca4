//! [`Home`]: where a node keeps everything, one directory.
//!
//! ```text
//! <home>/config.toml   settings (crate::config), written by Home::init
//! <home>/libp2p.key    the node's libp2p identity (protobuf ed25519 key, 0600)
//! <home>/wallet/       secp256k1 wallet keys (0600)
//! <home>/db/           RocksDB: deals, ledger, block index, pieces, registry (node::keyspaces)
//! <home>/blocks.dat    block data, appended; indexed in the database
//! <home>/sectors/      unsealed sector files (sectors/unsealed/s-t0<miner>-<n>)
//! <home>/unsealed-cache/ pieces unsealed for deals when sectors cannot be read at random
//! <home>/staging/      CARs being imported (removed when done; swept when a node opens)
//! <home>/control.sock  the control socket while `rm serve` runs (0600; crate::control)
//! ```
//!
//! One process at a time opens a home: the database's lock refuses a second one
//! ([`Error::InUse`](crate::Error::InUse)).

use std::path::{Path, PathBuf};

use crate::Error;
use crate::config::{Config, DEFAULT_TOML};

/// A node's home directory and the paths in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home at `root` (nothing is read or created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The libp2p identity key.
    pub fn libp2p_key(&self) -> PathBuf {
        self.root.join("libp2p.key")
    }

    /// The wallet's keystore directory.
    pub fn wallet(&self) -> PathBuf {
        self.root.join("wallet")
    }

    /// The RocksDB directory.
    pub fn db(&self) -> PathBuf {
        self.root.join("db")
    }

    /// The block data file.
    pub fn blocks(&self) -> PathBuf {
        self.root.join("blocks.dat")
    }

    /// The sector files' directory.
    pub fn sectors(&self) -> PathBuf {
        self.root.join("sectors")
    }

    /// Where imports stage their CARs.
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// The control socket of a serving node ([`crate::control`]).
    pub fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }

    /// The unsealed cache's directory.
    pub fn unsealed_cache(&self) -> PathBuf {
        self.root.join("unsealed-cache")
    }

    /// Whether the home was initialised (it has a `config.toml`).
    pub fn is_initialised(&self) -> bool {
        self.config_file().exists()
    }

    /// Creates the directory and writes `config.toml` with the documented defaults,
    /// unless it exists; returns whether it was created. Keys and the database are made
    /// when the node is first opened.
    pub fn init(&self) -> Result<bool, Error> {
        if self.is_initialised() {
            return Ok(false);
        }
        std::fs::create_dir_all(&self.root)?;
        std::fs::write(self.config_file(), DEFAULT_TOML)?;
        Ok(true)
    }

    /// The home's settings; [`Error::NotInitialised`] without a `config.toml`.
    pub fn config(&self) -> Result<Config, Error> {
        if !self.is_initialised() {
            return Err(Error::NotInitialised(self.root.clone()));
        }
        Ok(Config::load(&self.config_file())?)
    }
}
