//! System pieces the build needs beyond Rust and gcc.
//!
//! The one known piece: rocksdb's bindgen loads libclang at build time and needs clang's
//! builtin headers (`stdbool.h`). On Debian 12 the smallest fix is two packages. As root
//! with apt-get available, the preflight installs them and says so; otherwise it prints
//! the one command that fixes it and fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const APT_PACKAGES: &[&str] = &["libclang1-14", "libclang-common-14-dev"];

fn fix_command() -> String {
    format!(
        "apt-get install -y --no-install-recommends {}",
        APT_PACKAGES.join(" ")
    )
}

/// Folders where libclang and clang's headers live on Debian-like systems.
fn llvm_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Some(dir) = std::env::var_os("LIBCLANG_PATH") {
        roots.push(PathBuf::from(dir));
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("llvm-") {
                roots.push(e.path().join("lib"));
            }
        }
    }
    roots.push(PathBuf::from("/usr/lib/x86_64-linux-gnu"));
    roots.push(PathBuf::from("/usr/lib64"));
    roots.push(PathBuf::from("/usr/lib"));
    roots
}

fn has_libclang() -> bool {
    llvm_roots().iter().any(|root| {
        std::fs::read_dir(root).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("libclang")
                    && !name.starts_with("libclang-cpp")
                    && name.contains(".so")
            })
        })
    })
}

/// clang's builtin headers: `<llvm>/lib/clang/<version>/include/stdbool.h`.
fn has_clang_headers() -> bool {
    let mut candidates: Vec<PathBuf> = llvm_roots().iter().map(|r| r.join("clang")).collect();
    candidates.push(PathBuf::from("/usr/lib/clang"));
    candidates.iter().any(|dir| {
        std::fs::read_dir(dir).is_ok_and(|versions| {
            versions
                .flatten()
                .any(|v| v.path().join("include/stdbool.h").is_file())
        })
    })
}

fn missing() -> Vec<&'static str> {
    let mut out = Vec::new();
    if !has_libclang() {
        out.push("libclang (rocksdb's bindgen loads it at build time)");
    }
    if !has_clang_headers() {
        out.push("clang's builtin headers (bindgen fails with \"'stdbool.h' file not found\")");
    }
    out
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn apt_get_available() -> bool {
    Path::new("/usr/bin/apt-get").is_file()
}

fn run_quiet(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .with_context(|| format!("could not start {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub(crate) fn run() -> Result<()> {
    let gaps = missing();
    if gaps.is_empty() {
        println!("preflight: libclang and clang headers present");
        return Ok(());
    }
    for g in &gaps {
        println!("preflight: missing {g}");
    }
    if !(is_root() && apt_get_available()) {
        bail!(
            "the build needs libclang; fix it with:\n    sudo {}",
            fix_command()
        );
    }
    println!(
        "preflight: installing {} with apt-get (running as root)",
        APT_PACKAGES.join(" ")
    );
    run_quiet("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend_from_slice(APT_PACKAGES);
    run_quiet("apt-get", &args)?;
    let still = missing();
    if !still.is_empty() {
        bail!(
            "still missing after install: {}; try: {}",
            still.join(", "),
            fix_command()
        );
    }
    println!("preflight: installed {}", APT_PACKAGES.join(" "));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fix_command_names_both_packages() {
        let cmd = super::fix_command();
        assert!(cmd.contains("libclang1-14") && cmd.contains("libclang-common-14-dev"));
    }
}
