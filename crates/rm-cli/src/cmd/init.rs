//! `rm init`: create a node home.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::output::Output;
use crate::{Global, exit, home};

/// `rm init` takes no arguments beyond `--home`.
#[derive(Debug, Args)]
pub struct InitArgs {}

/// Creates the home (config.toml with the documented defaults, libp2p key, wallet key,
/// database); on a home that exists, prints its identity and changes nothing.
pub async fn run(global: &Global, out: &Output, _args: InitArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let created = home
        .init()
        .with_context(|| format!("creating {}", home.root().display()))?;
    home::load(&home)?;
    let node = home::open(&home, &[]).await?;
    let peer = node.peer_id();
    let wallet = node.address.to_string();
    node.network.shutdown().await;
    let verb = if created { "created" } else { "exists:" };
    out.result(
        &json!({
            "home": home.root().display().to_string(),
            "created": created,
            "peer_id": peer.to_string(),
            "wallet": wallet,
        }),
        &format!(
            "{verb} {}\n  peer id  {peer}\n  wallet   {wallet}\n  config   {}\n",
            home.root().display(),
            home.config_file().display()
        ),
    );
    Ok(exit::code(exit::OK))
}
