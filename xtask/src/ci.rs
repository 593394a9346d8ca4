//! `cargo xtask ci`: the steps CI runs, in order.
//!
//! Every cargo step of the main build uses the same profile (`dev`) and feature set
//! (`--workspace`, all targets), the one `cargo xtask demo` builds too, so RocksDB's C++ and
//! every other dependency are compiled once, whichever of the two commands runs first.
//! The steps that need another feature set (crates without RocksDB, rm-types with `fvm`)
//! build in target directories of their own and never invalidate the main one.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{preflight, project_root, target_dir, tidy};

struct Step {
    name: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

/// Test functions that check public vectors are named `vectors_…` and print one line per
/// vector file; the main test step skips them and the vectors step runs them alone.
const VECTOR_PREFIX: &str = "vectors_";

/// Crates whose pure parts must build and pass their tests without RocksDB (their
/// `rocksdb` feature off), in a target directory of their own.
const PURE_CRATES: &[&str] = &[
    "rm-types",
    "rm-store",
    "rm-fsm",
    "rm-blockio",
    "rm-paych",
    "rm-unseal",
];

const FORMAT: Step = Step {
    name: "format",
    args: &["fmt", "--all", "--check"],
    env: &[],
};

const CLIPPY: Step = Step {
    name: "clippy",
    args: &[
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ],
    env: &[],
};

const TEST: Step = Step {
    name: "test",
    args: &[
        "test",
        "--workspace",
        "--locked",
        "--",
        "--skip",
        VECTOR_PREFIX,
    ],
    env: &[],
};

const DOC: Step = Step {
    name: "doc",
    args: &["doc", "--workspace", "--no-deps", "--locked"],
    env: &[("RUSTDOCFLAGS", "-Dwarnings")],
};

/// rm-types' optional `fvm` feature, in its own target dir so the main one keeps a single
/// feature set (rm-types does not link RocksDB, so this build is small).
const FVM: Step = Step {
    name: "rm-types with --features fvm",
    args: &[
        "test",
        "--package",
        "rm-types",
        "--features",
        "fvm",
        "--locked",
        "--lib",
        "--target-dir",
        "target/fvm",
    ],
    env: &[],
};

/// Every publishable crate packs (metadata, readme, license, paths); `--no-verify` because
/// the main build already compiled them.
const PACKAGE: Step = Step {
    name: "package",
    args: &[
        "package",
        "--workspace",
        "--no-verify",
        "--locked",
        "--allow-dirty",
    ],
    env: &[],
};

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn command_line(args: &[&str]) -> String {
    format!("cargo {}", args.join(" "))
}

fn run_step(step: &Step) -> Result<Duration> {
    run_cargo(step.name, step.args, step.env)
}

fn run_cargo(name: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Duration> {
    println!("\n==> {name}: {}", command_line(args));
    let start = Instant::now();
    let status = Command::new(cargo())
        .args(args)
        .envs(env.iter().copied())
        .current_dir(project_root())
        .status()
        .context("could not start cargo")?;
    if !status.success() {
        bail!(
            "step '{name}' failed ({status}); run `{}` to reproduce",
            command_line(args)
        );
    }
    Ok(start.elapsed())
}

/// The README's first command, small: the `rm` binary the test step built runs the demo
/// (a provider and a client on 127.0.0.1, a paid retrieval, output compared).
fn demo() -> Result<Duration> {
    let rm = target_dir().join("debug").join("rm");
    println!("\n==> demo: {} demo --size 8MiB", rm.display());
    let start = Instant::now();
    let mut child = Command::new(&rm)
        .args(["demo", "--size", "8MiB", "--timeout-secs", "240"])
        .current_dir(project_root())
        .spawn()
        .with_context(|| format!("could not start {}", rm.display()))?;
    // The demo gives up by itself after 240 s; this is the backstop.
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("step 'demo' did not finish in 300 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        bail!("step 'demo' failed ({status}); run `cargo xtask demo` to reproduce");
    }
    Ok(start.elapsed())
}

/// The oldest Node.js the interop suite runs on (js-libp2p 3 wants 22; `interop/lib/polyfill.js`
/// supplies what 20 lacks).
const NODE_MAJOR: u32 = 20;

/// The interop suite's own deadline, and the backstop after which xtask kills it.
const INTEROP_DEADLINE: Duration = Duration::from_secs(540);
const INTEROP_BACKSTOP: Duration = Duration::from_secs(600);

/// The one line printed when Node.js or npm is missing or too old.
const NODE_HINT: &str = "the interop suite needs Node.js >= 20 and npm: install them \
     (Debian/Ubuntu: `apt-get install nodejs npm`; or https://nodejs.org) and run again";

/// Runs `program args` in `dir` to its end, failing after `limit`.
fn run_bounded(
    name: &str,
    program: &str,
    args: &[&str],
    dir: &Path,
    limit: Duration,
) -> Result<()> {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("could not start {program}: {NODE_HINT}"))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("step '{name}' did not finish in {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        bail!("step '{name}' failed ({status}); run `cargo xtask interop` to reproduce");
    }
    Ok(())
}

/// The major version `program --version` prints (`v20.20.2` or `11.19.1`), or why not.
fn major_version(program: &str) -> Result<u32> {
    let out = Command::new(program)
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("{program} not found: {NODE_HINT}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .with_context(|| format!("{program} --version printed {text:?}: {NODE_HINT}"))
}

/// The interop suite (`interop/`, see its README): js-libp2p 3 against the `rm` binary
/// the test step built — queries on both versions, a free and a paid deal with vouchers
/// signed in JS, a deal stream open for over a minute with a client that does not run
/// ping, 200 concurrent queries, and `rm retrieve` from a JS provider. Installs the
/// pinned packages with `npm ci`; fails (never skips) when Node.js, npm or the binary is
/// missing, or when any case fails.
pub(crate) fn interop() -> Result<Duration> {
    let root = project_root();
    let dir = root.join("interop");
    let rm = target_dir().join("debug").join("rm");
    println!(
        "\n==> interop: npm ci, then node interop/run.js --rm {}",
        rm.display()
    );
    let start = Instant::now();
    let node = major_version("node")?;
    if node < NODE_MAJOR {
        bail!("Node.js {node} is too old: {NODE_HINT}");
    }
    major_version("npm")?;
    if !rm.exists() {
        bail!(
            "{} is missing: build it first (`cargo build --workspace --all-targets`)",
            rm.display()
        );
    }
    run_bounded(
        "interop: npm ci",
        "npm",
        &["ci", "--prefer-offline", "--no-audit", "--no-fund"],
        &dir,
        Duration::from_secs(300),
    )?;
    let rm = rm.to_string_lossy().into_owned();
    let root = root.to_string_lossy().into_owned();
    let deadline = INTEROP_DEADLINE.as_secs().to_string();
    run_bounded(
        "interop",
        "node",
        &[
            "run.js",
            "--rm",
            &rm,
            "--root",
            &root,
            "--deadline",
            &deadline,
        ],
        &dir,
        INTEROP_BACKSTOP,
    )?;
    Ok(start.elapsed())
}

/// Runs the public-vector tests alone and prints how many vectors each checked; fails
/// when one prints nothing (its data missing, or a test renamed away from the prefix).
fn vectors() -> Result<Duration> {
    let args = [
        "test",
        "--workspace",
        "--locked",
        "--tests",
        "--",
        VECTOR_PREFIX,
        "--show-output",
    ];
    println!("\n==> vectors: {}", command_line(&args));
    let start = Instant::now();
    let out = Command::new(cargo())
        .args(args)
        .current_dir(project_root())
        .stderr(Stdio::inherit())
        .output()
        .context("could not start cargo")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        print!("{stdout}");
        bail!(
            "step 'vectors' failed; run `{}` to reproduce",
            command_line(&args)
        );
    }
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("vectors "))
        .collect();
    let ran = stdout
        .lines()
        .filter(|l| l.starts_with("test ") && l.contains(VECTOR_PREFIX) && l.ends_with(" ok"))
        .count();
    for line in &lines {
        println!("  {line}");
    }
    let missing: Vec<&&str> = crate::EXPECTED_VECTORS
        .iter()
        .filter(|name| !lines.iter().any(|l| l.contains(**name)))
        .collect();
    if !missing.is_empty() {
        bail!("step 'vectors': no count printed for {missing:?}");
    }
    if ran == 0 || lines.len() < ran {
        bail!(
            "step 'vectors': {ran} vector tests passed but only {} printed a count",
            lines.len()
        );
    }
    println!("  {} vector tests, {} vector files", ran, lines.len());
    Ok(start.elapsed())
}

/// The crates of [`PURE_CRATES`] alone with default features off: no `librocksdb-sys` in
/// their dependency trees, and they build and pass their tests that way.
fn pure_crates() -> Result<Duration> {
    println!("\n==> pure crates: cargo tree -e normal --no-default-features -p <crate>");
    let start = Instant::now();
    for krate in PURE_CRATES {
        let out = Command::new(cargo())
            .args([
                "tree",
                "-e",
                "normal",
                "--no-default-features",
                "--locked",
                "-p",
                krate,
            ])
            .current_dir(project_root())
            .stderr(Stdio::inherit())
            .output()
            .context("could not start cargo tree")?;
        if !out.status.success() {
            bail!("cargo tree -p {krate} failed");
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        let count = tree.lines().count();
        if tree.contains("librocksdb-sys") || tree.contains("rocksdb v") {
            bail!("{krate} without default features still depends on RocksDB:\n{tree}");
        }
        println!("  {krate}: {count} lines of dependency tree, no librocksdb-sys");
    }
    let mut args = vec!["test", "--no-default-features", "--locked"];
    for krate in PURE_CRATES {
        args.extend(["-p", krate]);
    }
    args.extend(["--target-dir", "target/pure"]);
    run_cargo("pure crates: build and test without RocksDB", &args, &[])?;
    Ok(start.elapsed())
}

/// Seconds each fuzz target runs in CI: all of them together stay within five minutes.
const CI_FUZZ_SECS: u64 = 20;

/// The committed fuzz corpus replayed on stable as ordinary tests (`fuzz/tests/corpus.rs`,
/// always), then every fuzz target for [`CI_FUZZ_SECS`] from it when a nightly toolchain
/// is present (`cargo xtask fuzz` installs cargo-fuzz if it is missing).
fn fuzz() -> Result<Duration> {
    let start = Instant::now();
    // Shares the pure crates' target dir: the same crates, default features off.
    run_cargo(
        "fuzz corpus replay (stable)",
        &[
            "test",
            "--manifest-path",
            "fuzz/Cargo.toml",
            "--locked",
            "--target-dir",
            "target/pure",
        ],
        &[],
    )?;
    if crate::fuzz::has_nightly() {
        let outcomes = crate::fuzz::fuzz(crate::fuzz::TARGETS, CI_FUZZ_SECS)?;
        crate::fuzz::report(&outcomes);
    } else {
        println!(
            "  fuzz: no nightly toolchain (`rustup toolchain install nightly`): replayed the corpus only, ran no fuzzer"
        );
    }
    Ok(start.elapsed())
}

/// The soak under faults (`rm-e2e-soak`, built by the test step): one provider, many
/// clients, kills, cuts and attacks; it fails unless every deal completes, paid exactly,
/// and the provider comes back to where it started.
pub(crate) fn soak(args: &[&str]) -> Result<Duration> {
    let bin = target_dir().join("debug").join("rm-e2e-soak");
    println!("\n==> soak: {} {}", bin.display(), args.join(" "));
    let start = Instant::now();
    let status = Command::new(&bin)
        .args(args)
        .current_dir(project_root())
        .status()
        .with_context(|| format!("could not start {}", bin.display()))?;
    if !status.success() {
        bail!("step 'soak' failed ({status})");
    }
    Ok(start.elapsed())
}

pub(crate) fn run() -> Result<()> {
    let total = Instant::now();
    let mut times = Vec::new();

    println!("==> preflight");
    let t = Instant::now();
    preflight::run()?;
    times.push(("preflight", t.elapsed()));

    for step in [&FORMAT, &CLIPPY, &TEST] {
        times.push((step.name, run_step(step)?));
    }
    times.push(("vectors", vectors()?));
    times.push(("rm demo --size 8MiB", demo()?));
    times.push(("soak (1 minute)", soak(&["--minutes", "1"])?));
    times.push(("interop (js-libp2p)", interop()?));
    for step in [&DOC, &FVM] {
        times.push((step.name, run_step(step)?));
    }
    times.push(("pure crates", pure_crates()?));
    times.push(("fuzz (corpus, 20 s a target)", fuzz()?));
    times.push((PACKAGE.name, run_step(&PACKAGE)?));

    println!("\n==> tidy");
    let t = Instant::now();
    tidy::run(&project_root())?;
    times.push(("tidy", t.elapsed()));

    println!("\nxtask ci: all steps passed");
    for (name, d) in &times {
        println!("  {name:<32} {:>8.1} s", d.as_secs_f64());
    }
    println!("  {:<32} {:>8.1} s", "total", total.elapsed().as_secs_f64());
    Ok(())
}
