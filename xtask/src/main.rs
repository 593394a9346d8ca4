//! `cargo xtask`: project automation for rm, in plain Rust (no shell scripts).
//!
//! ```text
//! cargo xtask ci          # everything CI runs, in order, stopping at the first failure
//! cargo xtask preflight   # check (and as root, install) the system pieces the build needs
//! cargo xtask tidy        # layout rules: crate docs, no stubs, layering, lock-file duplicates
//! cargo xtask fsm-docs    # regenerate docs/state-machines/*.md from the transition tables
//! cargo xtask demo [ARGS]  # preflight, the workspace build CI uses, then `rm demo [ARGS]`
//! cargo xtask interop     # the workspace build, then the js-libp2p interop suite (interop/)
//! cargo xtask fuzz [--secs N] [TARGET]  # the cargo-fuzz targets of fuzz/, N s each (default 60)
//! cargo xtask soak [--minutes N]  # the workspace build, then the soak under faults (default 1 min)
//! ```
//!
//! `cargo xtask ci` also runs `rm demo --size 8MiB` and the interop suite against a
//! js-libp2p implementation (`interop/`, Node.js >= 20 and npm required) with the binary
//! the tests built, checks
//! the public vectors (each vector test prints how many it checked), builds the crates that
//! must work without RocksDB on their own, packs every publishable crate, and fails when
//! the generated state-machine docs are stale (their check is a test in rm-client and
//! rm-provider), and runs every fuzz target for 20 s from its seed corpus.
//!
//! The demo and CI build the same thing (profile `dev`, `--workspace --all-targets`, whose
//! dependencies are optimised), so whichever runs second reuses the first one's build.
//!
//! `.ci/run` and `.github/workflows/ci.yml` call `cargo xtask ci`.

mod ci;
mod fsm_docs;
mod fuzz;
mod preflight;
mod tidy;

use std::process::ExitCode;

fn usage() -> &'static str {
    "usage: cargo xtask <ci | preflight | tidy | fsm-docs | interop | demo [rm demo arguments] | fuzz [--secs N] [TARGET] | soak [--minutes N] [--deals D]>"
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("preflight") => preflight::run(),
        Some("tidy") => tidy::run(&project_root()),
        Some("fsm-docs") => fsm_docs::run(),
        Some("demo") => demo(&args[1..]),
        Some("interop") => interop(),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("soak") => soak(&args[1..]),
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

/// The public vector files whose counts `cargo xtask ci` must see (one line each from the
/// `vectors_…` tests: `vectors <crate>/<file>…: N checked`).
pub(crate) const EXPECTED_VECTORS: &[&str] = &[
    "rm-types/filecoin_addresses.json",
    "rm-types/filecoin_bigint.json",
    "rm-types/paych_signed_voucher.json",
    "rm-types/retrievalmarket_types.json",
    "rm-blockio/ipld_codec_fixtures.json",
    "rm-blockio/unixfs_kubo_cids.json",
    "rm-paych/paych_signed_voucher.json",
    "rm-blockio/lorem.txt",
    "rm-blockio/lorem_under_1_block.txt",
];

/// The README's first command: the system pieces the build needs, the same build CI does
/// (the first one compiles RocksDB: 12–17 minutes on 2 cores), then the demo.
fn demo(args: &[String]) -> anyhow::Result<()> {
    preflight::run()?;
    build_workspace()?;
    let rm = target_dir().join("debug").join("rm");
    let status = std::process::Command::new(&rm)
        .arg("demo")
        .args(args)
        .current_dir(project_root())
        .status()?;
    if !status.success() {
        anyhow::bail!("rm demo failed ({status})");
    }
    Ok(())
}

/// The workspace build CI uses (a no-op after `cargo xtask ci` or `demo`), then the
/// interop suite.
fn interop() -> anyhow::Result<()> {
    build_workspace()?;
    let took = ci::interop()?;
    println!("\nxtask interop: passed in {:.1} s", took.as_secs_f64());
    Ok(())
}

/// The workspace build CI uses, then the soak under faults (`rm-e2e-soak`, whose docs
/// say what it checks); arguments are passed on (`--minutes N`, `--deals D`, ...).
fn soak(args: &[String]) -> anyhow::Result<()> {
    build_workspace()?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let took = ci::soak(&args)?;
    println!("\nxtask soak: passed in {:.1} s", took.as_secs_f64());
    Ok(())
}

/// The one workspace build the demo, CI and the soak share (profile `dev`, all targets).
fn build_workspace() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--workspace", "--all-targets", "--locked"])
        .current_dir(project_root())
        .status()?;
    if !status.success() {
        anyhow::bail!("building the workspace failed ({status})");
    }
    Ok(())
}

/// Where cargo puts build output: `$CARGO_TARGET_DIR`, else `target/` in the workspace.
pub(crate) fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

/// The workspace root (the parent of `xtask/`).
pub(crate) fn project_root() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.parent().unwrap_or(dir).to_path_buf()
}
