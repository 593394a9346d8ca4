//! `cargo xtask ci`: the steps CI runs, in order.
//!
//! Every cargo step uses the same feature set (`--workspace`, all targets) so RocksDB's
//! C++ is compiled once per clean build, not once per step.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{preflight, project_root, tidy};

struct Step {
    name: &'static str,
    program: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

const CARGO_STEPS: &[Step] = &[
    Step {
        name: "format",
        program: "cargo",
        args: &["fmt", "--all", "--check"],
        env: &[],
    },
    Step {
        name: "clippy",
        program: "cargo",
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
    },
    Step {
        name: "test",
        program: "cargo",
        args: &["test", "--workspace", "--locked"],
        env: &[],
    },
    Step {
        name: "doc",
        program: "cargo",
        args: &["doc", "--workspace", "--no-deps", "--locked"],
        env: &[("RUSTDOCFLAGS", "-Dwarnings")],
    },
    // rm-types' optional `fvm` feature, built in its own target dir so the main one keeps
    // a single feature set (rm-types does not link RocksDB, so this build is small).
    Step {
        name: "rm-types with --features fvm",
        program: "cargo",
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
    },
];

fn run_step(step: &Step) -> Result<Duration> {
    println!(
        "\n==> {}: {} {}",
        step.name,
        step.program,
        step.args.join(" ")
    );
    let start = Instant::now();
    let status = Command::new(step.program)
        .args(step.args)
        .envs(step.env.iter().copied())
        .current_dir(project_root())
        .status()
        .with_context(|| format!("could not start {}", step.program))?;
    if !status.success() {
        bail!(
            "step '{}' failed ({status}); run `{} {}` to reproduce",
            step.name,
            step.program,
            step.args.join(" ")
        );
    }
    Ok(start.elapsed())
}

/// The README's first command, small: the `rm` binary `cargo test` just built runs the
/// demo (a provider and a client on 127.0.0.1, a paid retrieval, output compared).
fn demo() -> Result<Duration> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"));
    let rm = target.join("debug").join("rm");
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

pub(crate) fn run() -> Result<()> {
    let total = Instant::now();
    let mut times = Vec::new();

    println!("==> preflight");
    let t = Instant::now();
    preflight::run()?;
    times.push(("preflight", t.elapsed()));

    for step in CARGO_STEPS {
        let elapsed = run_step(step)?;
        times.push((step.name, elapsed));
        if step.name == "test" {
            times.push(("rm demo --size 8MiB", demo()?));
        }
    }

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
