//! `cargo xtask`: project automation for rm, in plain Rust (no shell scripts).
//!
//! ```text
//! cargo xtask ci          # everything CI runs, in order, stopping at the first failure
//! cargo xtask preflight   # check (and as root, install) the system pieces the build needs
//! cargo xtask tidy        # layout rules: crate docs, no stubs, layering, lock-file duplicates
//! cargo xtask fsm-docs    # regenerate docs/state-machines/*.md from the transition tables
//! cargo xtask demo [ARGS]  # preflight, then `rm demo [ARGS]` in a release build
//! ```
//!
//! `cargo xtask ci` also runs `rm demo --size 8MiB` with the binary the tests built, and
//! fails when the generated state-machine docs are stale (their check is a
//! test in rm-client and rm-provider).
//!
//! `.ci/run` and `.github/workflows/ci.yml` call `cargo xtask ci`.

mod ci;
mod fsm_docs;
mod preflight;
mod tidy;

use std::process::ExitCode;

fn usage() -> &'static str {
    "usage: cargo xtask <ci | preflight | tidy | fsm-docs | demo [rm demo arguments]>"
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("preflight") => preflight::run(),
        Some("tidy") => tidy::run(&project_root()),
        Some("fsm-docs") => fsm_docs::run(),
        Some("demo") => demo(&args[1..]),
        _ => {
            eprintln!("{}", usage());
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The README's first command: the system pieces the build needs, then the demo in a
/// release build (the first one compiles RocksDB: 12–17 minutes on 2 cores).
fn demo(args: &[String]) -> anyhow::Result<()> {
    preflight::run()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["run", "--release", "--locked", "--bin", "rm", "--", "demo"])
        .args(args)
        .current_dir(project_root())
        .status()?;
    if !status.success() {
        anyhow::bail!("rm demo failed ({status})");
    }
    Ok(())
}

/// The workspace root (the parent of `xtask/`).
pub(crate) fn project_root() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.parent().unwrap_or(dir).to_path_buf()
}
