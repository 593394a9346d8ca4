//! `cargo xtask fsm-docs`: regenerate `docs/state-machines/*.md` from the transition tables.
//!
//! The tables are data in `rm-client` and `rm-provider`; each crate has a test,
//! `fsm_docs_are_current`, that renders its table and compares it with the file under
//! `docs/state-machines/` (so `cargo test`, and with it `cargo xtask ci`, fails on stale
//! docs). With `RM_UPDATE_FSM_DOCS=1` the same test writes the file instead. Running the
//! test keeps xtask itself free of the market crates (and of RocksDB).

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::project_root;

/// Runs the two doc tests in update mode.
pub(crate) fn run() -> Result<()> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(project_root())
        .env("RM_UPDATE_FSM_DOCS", "1")
        .args(["test", "--workspace", "--lib", "--", "fsm_docs_are_current"])
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    println!("wrote docs/state-machines/client.md and docs/state-machines/provider.md");
    Ok(())
}
