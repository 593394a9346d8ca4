//! The node home a command works in, and opening its node with messages for a shell.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rm_node::{Config, Home, Node};

/// The home a command works in: `--home`, else `$RM_HOME`, else `~/.rm`.
pub fn resolve(flag: Option<&Path>) -> Result<Home> {
    if let Some(p) = flag {
        return Ok(Home::new(p));
    }
    if let Some(p) = std::env::var_os("RM_HOME").filter(|p| !p.is_empty()) {
        return Ok(Home::new(PathBuf::from(p)));
    }
    match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        Some(h) => Ok(Home::new(PathBuf::from(h).join(".rm"))),
        None => bail!("no node home: pass --home or set RM_HOME (HOME is not set either)"),
    }
}

/// The settings of an initialised home.
pub fn load(home: &Home) -> Result<Config> {
    if !home.is_initialised() {
        bail!(
            "{} is not an rm home: run `rm init` first (or pass --home / set RM_HOME)",
            home.root().display()
        );
    }
    home.config()
        .with_context(|| format!("reading the settings of {}", home.root().display()))
}

/// Opens the node of `home`, listening on `listen` (nothing: a node that only dials out).
pub async fn open(home: &Home, listen: &[String]) -> Result<Node> {
    match Node::open_home(home, listen).await {
        Ok(node) => Ok(node),
        Err(e @ rm_node::Error::InUse(_)) => Err(anyhow::Error::new(e).context(format!(
            "the node home {} is in use by another rm process (is `rm serve` running there? \
             this command needs the home to itself: stop the server first)",
            home.root().display()
        ))),
        Err(e) => {
            Err(anyhow::Error::new(e)
                .context(format!("opening the node in {}", home.root().display())))
        }
    }
}

/// The way to `home`'s node: through `rm serve`'s control socket when it runs, else the
/// node opened here (with `config`).
pub async fn session(home: &Home, config: Config) -> Result<rm_node::Session> {
    match rm_node::Session::open(home, config).await {
        Ok(session) => Ok(session),
        Err(e @ rm_node::Error::InUse(_)) => Err(anyhow::Error::new(e).context(format!(
            "the node home {} is in use by another rm command (wait for it to end)",
            home.root().display()
        ))),
        Err(e) => Err(crate::output::node_error(e)
            .context(format!("opening the node in {}", home.root().display()))),
    }
}
