//! `cargo xtask fuzz [--secs N] [TARGET]`: runs the cargo-fuzz targets of `fuzz/` (their own
//! workspace and lock file, nightly, sanitizers, a git-ignored `target` inside `fuzz/`), each for `N`
//! seconds (default 60) from the committed seed corpus `fuzz/corpus/<target>/`, and prints
//! the executions per target. The committed corpus is only read: what the fuzzer finds
//! goes to a scratch corpus in that target directory, and a crashing input to
//! `fuzz/artifacts/<target>/`, with the command that replays it.
//!
//! Installs what is missing: a nightly toolchain (`rustup toolchain install nightly`) and
//! cargo-fuzz (`cargo install cargo-fuzz --locked`), or says in one line how when it cannot.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::project_root;

/// Every fuzz target (a `[[bin]]` of `fuzz/Cargo.toml`), in the order they run.
pub(crate) const TARGETS: &[&str] = &[
    "deal_stream",
    "query",
    "selector_traversal",
    "dag_pb",
    "dag_cbor",
    "car_reader",
    "unixfs_export",
    "voucher",
];

/// Seconds per target when `--secs` is not given.
const DEFAULT_SECS: u64 = 60;

/// What one target's run did.
pub(crate) struct Outcome {
    pub(crate) target: &'static str,
    pub(crate) executions: u64,
    pub(crate) corpus: u64,
    pub(crate) took: Duration,
}

/// `cargo xtask fuzz [--secs N] [TARGET]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut secs = DEFAULT_SECS;
    let mut only = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--secs" => {
                secs = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|&s| s > 0)
                    .context("--secs takes a number of seconds")?;
            }
            name => {
                let Some(t) = TARGETS.iter().find(|t| **t == name) else {
                    bail!(
                        "unknown fuzz target {name:?}; the targets: {}",
                        TARGETS.join(", ")
                    );
                };
                only = Some(*t);
            }
        }
    }
    let targets: Vec<&'static str> = match only {
        Some(t) => vec![t],
        None => TARGETS.to_vec(),
    };
    let outcomes = fuzz(&targets, secs)?;
    report(&outcomes);
    Ok(())
}

/// Prints one line per target.
pub(crate) fn report(outcomes: &[Outcome]) {
    println!("\nxtask fuzz: no crash");
    println!(
        "  {:<20} {:>14} {:>8} {:>8}",
        "target", "executions", "corpus", "secs"
    );
    for o in outcomes {
        println!(
            "  {:<20} {:>14} {:>8} {:>8.0}",
            o.target,
            o.executions,
            o.corpus,
            o.took.as_secs_f64()
        );
    }
}

/// Builds the targets, then runs each for `secs` seconds; fails at the first crash.
pub(crate) fn fuzz(targets: &[&'static str], secs: u64) -> Result<Vec<Outcome>> {
    tools()?;
    let root = project_root();
    let target_dir = root.join("fuzz").join("target");
    println!("\n==> fuzz: cargo +nightly fuzz build");
    let status = fuzz_cargo(&root, &target_dir)
        .args(["build"])
        .status()
        .context("could not start cargo fuzz")?;
    if !status.success() {
        bail!("building the fuzz targets failed ({status}); run `cargo +nightly fuzz build`");
    }
    targets
        .iter()
        .map(|t| run_target(&root, &target_dir, t, secs))
        .collect()
}

/// `rustup run nightly cargo fuzz …` in the repository root, building into `target_dir`.
fn fuzz_cargo(root: &Path, target_dir: &Path) -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "fuzz"])
        .current_dir(root)
        .env("CARGO_TARGET_DIR", target_dir)
        // The outer cargo's toolchain must not leak into the nightly one.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .env_remove("RUSTC");
    cmd
}

fn run_target(root: &Path, target_dir: &Path, target: &'static str, secs: u64) -> Result<Outcome> {
    let seeds = root.join("fuzz").join("corpus").join(target);
    if !seeds.is_dir() {
        bail!("no seed corpus at {}", seeds.display());
    }
    let scratch = target_dir.join("corpus").join(target);
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let artifacts = root.join("fuzz").join("artifacts").join(target);
    std::fs::create_dir_all(&artifacts)?;
    let prefix = format!("-artifact_prefix={}/", artifacts.display());
    let max_time = format!("-max_total_time={secs}");
    println!("\n==> fuzz {target}: {secs} s from {}", rel(root, &seeds));
    let start = Instant::now();
    let mut child = fuzz_cargo(root, target_dir)
        .args(["run", target])
        .arg(&scratch)
        .arg(&seeds)
        .args([
            "--",
            &max_time,
            "-timeout=10",
            "-rss_limit_mb=2048",
            "-max_len=65536",
            "-print_final_stats=1",
            &prefix,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not start cargo fuzz run")?;
    let mut log = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            // Progress, new-function and dictionary lines are many; keep them for a
            // failure, show the rest.
            if !line.starts_with(['#', ' ', '\t', '"']) {
                println!("  {line}");
            }
            log.push(line);
        }
    }
    let status = child.wait()?;
    let took = start.elapsed();
    if !status.success() {
        let tail = log.len().saturating_sub(40);
        for line in &log[tail..] {
            eprintln!("  | {line}");
        }
        bail!(
            "fuzz target {target} failed ({status}): the crashing input is in {}; replay it with \
             `cargo +nightly fuzz run {target} <file>`",
            rel(root, &artifacts)
        );
    }
    let stat = |name: &str| {
        log.iter()
            .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let executions = stat("number_of_executed_units")
        .with_context(|| format!("fuzz target {target}: libFuzzer printed no execution count"))?;
    let corpus = std::fs::read_dir(&scratch)
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Ok(Outcome {
        target,
        executions,
        corpus,
        took,
    })
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Whether `rustup run nightly` works (CI fuzzes only then).
pub(crate) fn has_nightly() -> bool {
    Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A nightly toolchain and cargo-fuzz, installed when missing.
fn tools() -> Result<()> {
    let ok = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(Command::new("rustup").arg("--version")) {
        bail!(
            "cargo xtask fuzz needs rustup for a nightly toolchain: install it (https://rustup.rs), \
             then `rustup toolchain install nightly` and `cargo install cargo-fuzz --locked`"
        );
    }
    if !has_nightly() {
        println!("==> fuzz: rustup toolchain install nightly --profile minimal");
        let installed = ok(Command::new("rustup")
            .args(["toolchain", "install", "nightly", "--profile", "minimal"])
            .stdout(Stdio::inherit()));
        if !installed || !has_nightly() {
            bail!(
                "no nightly toolchain, and installing one failed: run `rustup toolchain install nightly`"
            );
        }
    }
    let has_fuzz = || {
        ok(Command::new("rustup")
            .args(["run", "nightly", "cargo", "fuzz", "--version"])
            .env_remove("RUSTUP_TOOLCHAIN"))
    };
    if !has_fuzz() {
        println!("==> fuzz: cargo install cargo-fuzz --locked");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["install", "cargo-fuzz", "--locked"])
            .status();
        if !status.is_ok_and(|s| s.success()) || !has_fuzz() {
            bail!(
                "cargo-fuzz is missing and installing it failed: run `cargo install cargo-fuzz --locked`"
            );
        }
    }
    Ok(())
}
