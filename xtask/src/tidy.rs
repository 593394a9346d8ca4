//! Tidy: layout rules checked on every `cargo test` (see the test at the bottom) and by
//! `cargo xtask ci`.
//!
//! 1. Every crate's `lib.rs` (or xtask's `main.rs`) starts with `//!` crate docs.
//! 2. No `todo!`, `unimplemented!` or `dbg!` outside tests.
//! 3. Layering (SPEC §2): an `rm-*` crate depends only on `rm-*` crates of a lower layer.
//!    [`LAYERS`] is the one table of layers.
//! 4. `anyhow` only in `rm-cli` and `xtask`; every crate opts into the workspace lints.
//! 5. One version each of cid, multihash, libp2p and rocksdb in `Cargo.lock`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The layer of every rm crate (SPEC §2). A crate may depend only on crates of a lower
/// layer; adding a crate means adding it here.
pub(crate) const LAYERS: &[(&str, u8)] = &[
    ("rm-types", 0),
    ("rm-fsm", 0),
    ("rm-network", 1),
    ("rm-blockio", 1),
    ("rm-paych", 1),
    ("rm-unseal", 2),
    ("rm-discovery", 2),
    ("rm-client", 3),
    ("rm-provider", 3),
    ("rm-cli", 4),
    ("rm-e2e", 5),
];

/// Crates allowed to use `anyhow`.
const ANYHOW_ALLOWED: &[&str] = &["rm-cli", "xtask"];

/// Crates that must appear once in the lock file.
const SINGLE_VERSION: &[&str] = &["cid", "multihash", "libp2p", "rocksdb"];

fn layer_of(name: &str) -> Option<u8> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

struct Package {
    name: String,
    dir: PathBuf,
    deps: Vec<(String, String)>, // (name, kind)
    has_lib: bool,
}

fn workspace_packages(root: &Path) -> Result<Vec<Package>> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let mut packages = Vec::new();
    for p in meta["packages"].as_array().context("no packages")? {
        let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap_or_default());
        let deps = p["dependencies"]
            .as_array()
            .map(|ds| {
                ds.iter()
                    .map(|d| {
                        (
                            d["name"].as_str().unwrap_or_default().to_owned(),
                            d["kind"].as_str().unwrap_or("normal").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let has_lib = p["targets"].as_array().is_some_and(|ts| {
            ts.iter().any(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "lib"))
            })
        });
        packages.push(Package {
            name: p["name"].as_str().unwrap_or_default().to_owned(),
            dir: manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
            deps,
            has_lib,
        });
    }
    Ok(packages)
}

fn check_crate_docs(p: &Package, errors: &mut Vec<String>) {
    let entry = if p.has_lib {
        p.dir.join("src/lib.rs")
    } else {
        p.dir.join("src/main.rs")
    };
    match std::fs::read_to_string(&entry) {
        Ok(text) => {
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default();
            if !first.starts_with("//!") {
                errors.push(format!(
                    "{}: must start with `//!` crate docs",
                    entry.display()
                ));
            }
        }
        Err(e) => errors.push(format!("{}: {e}", entry.display())),
    }
}

fn check_manifest(p: &Package, errors: &mut Vec<String>) {
    let manifest = p.dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_default();
    if !text.contains("[lints]\nworkspace = true") {
        errors.push(format!(
            "{}: add `[lints]\\nworkspace = true`",
            manifest.display()
        ));
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Stub markers, built at run time so this file does not match itself.
fn forbidden_macros() -> [String; 3] {
    [
        ["to", "do!("].concat(),
        ["unimple", "mented!("].concat(),
        ["db", "g!("].concat(),
    ]
}

fn check_no_stubs(p: &Package, errors: &mut Vec<String>) {
    let mut files = Vec::new();
    rust_files(&p.dir.join("src"), &mut files);
    let forbidden = forbidden_macros();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            // Test modules sit at the end of a file in this workspace.
            if trimmed.starts_with("#[cfg(test)]") {
                break;
            }
            if trimmed.starts_with("//") {
                continue;
            }
            for f in &forbidden {
                if line.contains(f.as_str()) {
                    errors.push(format!("{}:{}: `{f}` outside tests", file.display(), i + 1));
                }
            }
        }
    }
}

fn check_layers(p: &Package, errors: &mut Vec<String>) {
    let own = layer_of(&p.name);
    if p.name.starts_with("rm-") && own.is_none() {
        errors.push(format!(
            "{}: not in the layer table (xtask/src/tidy.rs LAYERS)",
            p.name
        ));
        return;
    }
    for (dep, kind) in &p.deps {
        if !dep.starts_with("rm-") {
            continue;
        }
        let Some(dep_layer) = layer_of(dep) else {
            errors.push(format!(
                "{}: depends on {dep}, which is not in the layer table",
                p.name
            ));
            continue;
        };
        if let Some(own) = own
            && dep_layer >= own
        {
            errors.push(format!(
                "{} (layer {own}) depends on {dep} (layer {dep_layer}, {kind}): dependencies must point to a lower layer",
                p.name
            ));
        }
    }
    if !ANYHOW_ALLOWED.contains(&p.name.as_str())
        && p.deps.iter().any(|(d, k)| d == "anyhow" && k != "dev")
    {
        errors.push(format!(
            "{}: uses anyhow; library crates have their own thiserror enums",
            p.name
        ));
    }
}

fn check_lock_duplicates(root: &Path, errors: &mut Vec<String>) -> Result<()> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut versions: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut name: Option<String> = None;
    for line in lock.lines() {
        if line == "[[package]]" {
            name = None;
        } else if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let Some(v) = line.strip_prefix("version = ")
            && let Some(n) = &name
            && let Some(watched) = SINGLE_VERSION.iter().find(|w| **w == n.as_str())
        {
            versions
                .entry(watched)
                .or_default()
                .push(v.trim_matches('"').to_owned());
        }
    }
    for (krate, vs) in versions {
        if vs.len() > 1 {
            errors.push(format!(
                "Cargo.lock has {} versions of {krate}: {}",
                vs.len(),
                vs.join(", ")
            ));
        }
    }
    Ok(())
}

/// Runs every check; fails listing every problem found.
pub(crate) fn run(root: &Path) -> Result<()> {
    let packages = workspace_packages(root)?;
    let mut errors = Vec::new();
    for p in &packages {
        check_crate_docs(p, &mut errors);
        check_manifest(p, &mut errors);
        check_no_stubs(p, &mut errors);
        check_layers(p, &mut errors);
    }
    check_lock_duplicates(root, &mut errors)?;
    if errors.is_empty() {
        println!("tidy: {} crates checked, all rules hold", packages.len());
        Ok(())
    } else {
        bail!(
            "tidy found {} problem(s):\n  {}",
            errors.len(),
            errors.join("\n  ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy() {
        run(&crate::project_root()).unwrap();
    }

    #[test]
    fn layer_rule_catches_upward_and_sideways_dependencies() {
        let pkg = |name: &str, dep: &str| Package {
            name: name.into(),
            dir: PathBuf::new(),
            deps: vec![(dep.into(), "normal".into())],
            has_lib: true,
        };
        let mut errors = Vec::new();
        check_layers(&pkg("rm-types", "rm-fsm"), &mut errors);
        check_layers(&pkg("rm-network", "rm-client"), &mut errors);
        check_layers(&pkg("rm-client", "rm-network"), &mut errors);
        check_layers(&pkg("rm-unknown", "rm-types"), &mut errors);
        check_layers(&pkg("rm-blockio", "anyhow"), &mut errors);
        assert_eq!(errors.len(), 4, "{errors:#?}");
    }
}
