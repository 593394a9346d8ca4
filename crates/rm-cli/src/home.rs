//! The node home: where it is, whether it is initialised, opening its node.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::node::{Node, Options};

/// The home a command works in: `--home`, else `$RM_HOME`, else `~/.rm`.
pub fn resolve(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("RM_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".rm")),
        None => bail!("no node home: pass --home or set RM_HOME (HOME is not set either)"),
    }
}

/// The settings of an initialised home.
pub fn load(home: &Path) -> Result<Config> {
    if !home.join("config.toml").exists() {
        bail!(
            "{} is not an rm home: run `rm init` first (or pass --home / set RM_HOME)",
            home.display()
        );
    }
    Config::load(home)
}

/// Opens the node of `home`, listening on `listen` (nothing: a node that only dials out).
pub async fn open(home: &Path, config: &Config, listen: &[String]) -> Result<Node> {
    let options = Options {
        network: config.network_config(listen)?,
        sectors: rm_unseal::sector::Config::default()
            .with_miner_id(config.storage.miner_id)
            .with_sector_size(config.sector_size()?),
        sync_writes: config.storage.durability == "machine",
        ..Options::default()
    };
    match Node::open_options(home, options).await {
        Ok(node) => Ok(node),
        Err(e) => {
            let chain = format!("{e:#}");
            let err = anyhow::Error::new(e);
            if chain.contains("LOCK") || chain.contains("lock file") {
                Err(err.context(format!(
                    "the node home {} is in use by another rm process (is `rm serve` running \
                     there? stop it first)",
                    home.display()
                )))
            } else {
                Err(err.context(format!("opening the node in {}", home.display())))
            }
        }
    }
}

/// Dials the DHT bootstrap peers of `config` and starts a bootstrap; peers that cannot be
/// parsed are an error, peers that cannot be reached are logged.
pub async fn join_dht(node: &Node, config: &Config) -> Result<usize> {
    let mut joined = 0;
    for text in &config.network.bootstrap {
        let (peer, addr) =
            crate::cmd::parse_target(text).with_context(|| format!("bootstrap peer {text:?}"))?;
        let Some(addr) = addr else {
            bail!("bootstrap peer {text:?} needs an address: /ip4/…/tcp/…/p2p/<peer>");
        };
        match node.network.add_dht_peer(peer, addr).await {
            Ok(()) => joined += 1,
            Err(e) => tracing::warn!(peer = %peer, error = %e, "bootstrap peer not added"),
        }
    }
    if joined > 0
        && let Err(e) = node.network.bootstrap().await
    {
        tracing::warn!(error = %e, "DHT bootstrap failed");
    }
    Ok(joined)
}
