//! `cargo xtask`: project automation for rm, in plain Rust (no shell scripts).
//!
//! ```text
//! cargo xtask ci          # everything CI runs, in order, stopping at the first failure
//! cargo xtask preflight   # check (and as root, install) the system pieces the build needs
//! cargo xtask tidy        # layout rules: crate docs, no stubs, layering, lock-file duplicates
//! ```
//!
//! `.ci/run` and `.github/workflows/ci.yml` call `cargo xtask ci`.

mod ci;
mod preflight;
mod tidy;

use std::process::ExitCode;

fn usage() -> &'static str {
    "usage: cargo xtask <ci | preflight | tidy>"
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("preflight") => preflight::run(),
        Some("tidy") => tidy::run(&project_root()),
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

/// The workspace root (the parent of `xtask/`).
pub(crate) fn project_root() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.parent().unwrap_or(dir).to_path_buf()
}
