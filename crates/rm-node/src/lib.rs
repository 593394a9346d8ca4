//! # rm-node: a whole rm node in one home directory
//!
//! Layer 4 of the `rm` workspace, the composition root: it wires every crate below into
//! one running node — the database (`rm-store` on RocksDB), the libp2p host
//! (`rm-network`), the wallet and payment-channel ledger (`rm-paych`), the blockstore
//! (`rm-blockio`), pieces and sectors (`rm-unseal`), the peer registry and DHT announcer
//! (`rm-discovery`), and on top the client (`rm-client`) and the provider
//! (`rm-provider`). The `rm` binary (`rm-cli`) is argument parsing and output around it;
//! the end-to-end tests (`rm-e2e`) start several; another program can embed one.
//!
//! | item | what |
//! |---|---|
//! | [`Home`] | the directory layout, `rm init` ([`Home::init`]) and `config.toml` ([`Home::config`]) |
//! | [`Config`] | the settings file, strictly parsed, with every default documented ([`config::DEFAULT_TOML`]) |
//! | [`Node`] | the open node: every store, the host, the wallet; [`Node::client`] and [`Node::provider`] start the two sides |
//! | [`control`] | the control interface of a running node (a Unix socket in the home) and [`Session`], a command's way to its node |
//! | [`metrics`] | [`Metrics`], Prometheus metrics of the node, served on `/metrics` by [`MetricsServer`] |
//! | [`pieces`] | the pieces it holds: [`Node::pieces`], [`Node::piece`], [`Node::remove_piece`] (`rm pieces`) |
//! | [`process`] | what a long-running node process sets for itself first ([`process::one_malloc_arena_per_core`]), and its memory as the kernel counts it |
//!
//! ## Example
//!
//! A provider node and a client node on 127.0.0.1, one paid retrieval:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use rm_node::{Home, Node};
//!
//! let home = Home::new("/tmp/rm-home");
//! home.init()?; // config.toml with the defaults, if there is none yet
//! let node = Node::open_home(&home, &["/ip4/127.0.0.1/tcp/0".to_owned()]).await?;
//! let imported = node.import_piece(std::path::Path::new("README.md"),
//!     rm_blockio::unixfs::Preset::UNIXFS_V1_2025)?;
//! println!("payload {} in piece {}", imported.payload_cid, imported.piece_cid);
//! let provider = node.provider(home.config()?.provider_config()?).await?;
//! provider.start(); // serves queries and deals until stopped
//! # Ok(()) }
//! ```
//!
//! ## Errors
//!
//! [`Error`] wraps the error of whichever crate failed, plus the node's own:
//! [`Error::NotInitialised`], [`Error::InUse`] (another process has the home open) and
//! [`Error::Config`] ([`ConfigError`]: the file that could not be read or parsed, or the
//! key whose value is wrong).

pub mod config;
pub mod control;
mod home;
mod http;
pub mod metrics;
pub mod node;
pub mod pieces;
pub mod process;

use std::path::PathBuf;

pub use config::Config;
pub use control::{ControlError, ControlServer, Session};
pub use home::Home;
pub use metrics::{Metrics, MetricsServer};
pub use node::{Node, Options, keyspaces};
pub use pieces::{PieceRemoval, PieceSummary};

/// Errors opening or using a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The home has no `config.toml` (see [`Home::init`]).
    #[error("{} is not an rm home (no config.toml)", .0.display())]
    NotInitialised(PathBuf),
    /// Another process has this home's database open.
    #[error("the node home {} is in use by another process", .0.display())]
    InUse(PathBuf),
    /// `config.toml` or a setting is wrong.
    #[error(transparent)]
    Config(Box<ConfigError>),
    /// File system.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Database.
    #[error("database: {0}")]
    Db(#[from] rm_store::Error),
    /// Network.
    #[error("network: {0}")]
    Network(#[from] rm_network::Error),
    /// Wallet.
    #[error("wallet: {0}")]
    Wallet(#[from] rm_paych::WalletError),
    /// Ledger.
    #[error("ledger: {0}")]
    Ledger(#[from] rm_paych::LedgerError),
    /// Blockstore.
    #[error("blockstore: {0}")]
    Blocks(#[from] rm_blockio::blockstore::Error),
    /// UnixFS import.
    #[error("import: {0}")]
    Import(#[from] rm_blockio::unixfs::Error),
    /// Deal machines read straight from the database.
    #[error("deals: {0}")]
    Deals(#[from] rm_fsm::Error),
    /// Client.
    #[error("client: {0}")]
    Client(#[from] rm_client::Error),
    /// Provider.
    #[error("provider: {0}")]
    Provider(#[from] rm_provider::Error),
    /// Discovery (registry, announcer).
    #[error("discovery: {0}")]
    Discovery(#[from] rm_discovery::Error),
    /// Pieces and sectors.
    #[error("pieces: {0}")]
    Pieces(#[from] rm_unseal::Error),
    /// HTTP retrieval (the gateway's setup).
    #[error("http: {0}")]
    Http(#[from] rm_http::Error),
    /// The control interface.
    #[error(transparent)]
    Control(Box<ControlError>),
    /// A request that cannot be done as asked: a CID or address that does not parse, a
    /// provider the DHT does not know.
    #[error("{0}")]
    Request(String),
}

/// What is wrong with a node's settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or has an unknown key or a value of the wrong type.
    #[error("parsing {}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's complaint (with line and column).
        reason: String,
    },
    /// A value is not one of its choices or not in its format.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key (`storage.durability`, `network.bootstrap`, …).
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(Box::new(e))
    }
}
