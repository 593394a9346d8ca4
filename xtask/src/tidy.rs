//! Tidy: layout rules checked on every `cargo test` (see the test at the bottom) and by
//! `cargo xtask ci`.
//!
//! 1. Every crate's `lib.rs` (or xtask's `main.rs`) starts with `//!` crate docs.
//! 2. No `todo!`, `unimplemented!` or `dbg!` outside tests.
//! 3. Layering: an `rm-*` crate depends only on `rm-*` crates of a lower layer (a
//!    dev-dependency may also name a crate of its own layer).
//!    [`LAYERS`] is the one table of layers (`docs/architecture.md` draws it).
//! 4. `anyhow` only in `rm-cli` and `xtask`; every crate opts into the workspace lints.
//! 5. One version each of cid, multihash, libp2p and rocksdb in `Cargo.lock`.
//! 6. Only `rm-store` depends on `rocksdb` (or `librocksdb-sys`).
//! 7. No build output is tracked by git (no path through a `target/` directory).
//! 8. Every repository path named in a tracked doc or source file exists, and nothing
//!    refers to files outside the repository (the design documents it was created from):
//!    what a test or a doc needs is in the repository.
//! 9. Source files stay under [`MAX_LINES`] lines, except the few in [`LONG_FILES`]
//!    that are still to be split.
//! 10. The protocol cores in [`SANS_IO`] do no I/O: no async, no clock reads, no
//!     sockets, files, tokio, networking or storage crates (time is passed in).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The layer of every rm crate. A crate may depend only on crates of a lower layer;
/// adding a crate means adding it here.
pub(crate) const LAYERS: &[(&str, u8)] = &[
    ("rm-types", 0),
    ("rm-store", 0),
    ("rm-fsm", 1),
    ("rm-network", 1),
    ("rm-blockio", 1),
    ("rm-paych", 1),
    ("rm-unseal", 2),
    ("rm-discovery", 2),
    ("rm-client", 3),
    ("rm-provider", 3),
    ("rm-http", 3),
    ("rm-node", 4),
    ("rm-cli", 5),
    ("rm-e2e", 6),
];

/// The one crate that may depend on RocksDB.
const STORAGE_CRATE: &str = "rm-store";

/// The soft limit on a tracked `.rs` file's length.
pub(crate) const MAX_LINES: usize = 1000;

/// Files over [`MAX_LINES`] that are known and still to be split. A file leaves this list
/// when it is split; a file that grows past the limit is not added here lightly.
const LONG_FILES: &[&str] = &[
    // The payment-channel ledger: every actor rule in one place.
    "crates/rm-paych/src/ledger.rs",
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
        // A dev-dependency may point sideways (tests that drive two crates of one layer
        // against each other), never up.
        let sideways_dev = dep_layer == own.unwrap_or(u8::MAX) && kind == "dev";
        if let Some(own) = own
            && dep_layer >= own
            && !sideways_dev
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

fn check_storage(p: &Package, errors: &mut Vec<String>) {
    if p.name == STORAGE_CRATE {
        return;
    }
    for (dep, kind) in &p.deps {
        if dep == "rocksdb" || dep == "librocksdb-sys" {
            errors.push(format!(
                "{}: depends on {dep} ({kind}); only {STORAGE_CRATE} may: keep records \
                 through rm_store::Db",
                p.name
            ));
        }
    }
}

/// Every file git tracks, as paths relative to `root`.
fn tracked_files(root: &Path) -> Result<Vec<String>> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .context("running git ls-files")?;
    if !out.status.success() {
        bail!(
            "git ls-files failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect())
}

fn check_no_build_output(files: &[String], errors: &mut Vec<String>) {
    let tracked: Vec<&String> = files
        .iter()
        .filter(|f| f.split('/').any(|part| part == "target"))
        .collect();
    if let Some(first) = tracked.first() {
        errors.push(format!(
            "{} file(s) of build output are tracked, e.g. {first}: `git rm -r --cached` them \
             (.gitignore ignores every target/)",
            tracked.len()
        ));
    }
}

/// Directories at the top of the repository whose paths docs and code name.
const PATH_ROOTS: &[&str] = &["crates/", "docs/", "xtask/", "interop/", "fuzz/", ".ci/"];

/// Text that points outside the repository, built at run time so this file does not
/// match itself.
fn outside_references() -> [String; 4] {
    [
        ["../", "shared"].concat(),
        ["SPEC", " §"].concat(),
        ["SPEC", ".md"].concat(),
        ["the ", "seed"].concat(),
    ]
}

/// The repository paths a line names: `crates/…`, `docs/…` and the like, up to the first
/// character that cannot be part of a path.
fn named_paths(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for root in PATH_ROOTS {
        let mut rest = line;
        while let Some(at) = rest.find(root) {
            let before = rest[..at].chars().next_back();
            let candidate = &rest[at..];
            rest = &rest[at + root.len()..];
            // `foo/crates/x` or a URL is not a repository path.
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)) {
                continue;
            }
            let end = candidate
                .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c)))
                .unwrap_or(candidate.len());
            let path = candidate[..end].trim_end_matches(['.', '/']);
            // A pattern (`crates/*/…`, `crates/<crate>/…`) or a bare root is not a path.
            if candidate[end..].starts_with(['*', '<', '{'])
                || path.len() <= root.len()
                || path.contains("//")
            {
                continue;
            }
            out.push(path);
        }
    }
    out
}

fn check_references(root: &Path, files: &[String], errors: &mut Vec<String>) {
    let outside = outside_references();
    for file in files {
        let text_file = [".rs", ".md", ".toml", ".sh", ".yml", ".json", ".js", ".mjs"]
            .iter()
            .any(|ext| file.ends_with(ext))
            || file.ends_with("/run");
        // This file names the patterns it looks for.
        let this = file.ends_with("xtask/src/tidy.rs");
        if !text_file || this || file.ends_with("Cargo.lock") || file.contains("/testdata/") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            for o in &outside {
                if line.contains(o.as_str()) {
                    errors.push(format!(
                        "{file}:{}: refers to `{o}`, which is not in the repository: copy \
                         what is needed in, and cite public sources by name",
                        i + 1
                    ));
                }
            }
            for path in named_paths(line) {
                if !root.join(path).exists() {
                    errors.push(format!(
                        "{file}:{}: names {path}, which does not exist",
                        i + 1
                    ));
                }
            }
        }
    }
}

fn check_lengths(root: &Path, files: &[String], errors: &mut Vec<String>) {
    for file in files.iter().filter(|f| f.ends_with(".rs")) {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        let lines = text.lines().count();
        let allowed = LONG_FILES.contains(&file.as_str());
        if lines > MAX_LINES && !allowed {
            errors.push(format!(
                "{file}: {lines} lines, over the soft limit of {MAX_LINES}: split it by concern"
            ));
        }
        if allowed && lines <= MAX_LINES {
            errors.push(format!(
                "{file}: {lines} lines, under the limit now: remove it from LONG_FILES"
            ));
        }
    }
}

/// The sans-IO protocol cores (files, or directories ending in `/`): deterministic state
/// machines driven by thin async adapters, so they are tested without sockets or clocks.
const SANS_IO: &[&str] = &[
    "crates/rm-fsm/src/machine.rs",
    "crates/rm-fsm/src/table.rs",
    "crates/rm-client/src/fsm.rs",
    "crates/rm-client/src/logic.rs",
    "crates/rm-client/src/deal.rs",
    "crates/rm-client/src/deal/",
    "crates/rm-provider/src/fsm.rs",
    "crates/rm-provider/src/deal.rs",
];

/// What a sans-IO core must not contain (outside comments).
fn io_markers() -> [&'static str; 11] {
    [
        "tokio",
        "async ",
        ".await",
        "Instant::now",
        "SystemTime::now",
        "std::net",
        "std::fs",
        "rm_network",
        "rm_store",
        "rocksdb",
        "libp2p",
    ]
}

/// The I/O markers on the code lines of `text`, as `(line number, marker)`.
fn io_in(text: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for m in io_markers() {
            // `.await` is a marker, `.awaiting_provider()` is not.
            let whole = |at: usize| {
                !m.ends_with(|c: char| c.is_alphanumeric())
                    || !code[at + m.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            };
            if code.match_indices(m).any(|(at, _)| whole(at)) {
                found.push((i + 1, m));
            }
        }
    }
    found
}

fn check_sans_io(root: &Path, files: &[String], errors: &mut Vec<String>) {
    for core in SANS_IO {
        let matching: Vec<&String> = files
            .iter()
            .filter(|f| {
                if core.ends_with('/') {
                    f.starts_with(core)
                } else {
                    f.as_str() == *core
                }
            })
            .collect();
        if matching.is_empty() && !root.join(core).exists() {
            errors.push(format!("{core}: listed in SANS_IO but missing"));
        }
        for file in matching {
            let Ok(text) = std::fs::read_to_string(root.join(file)) else {
                continue;
            };
            for (line, marker) in io_in(&text) {
                errors.push(format!(
                    "{file}:{line}: `{marker}` in a sans-IO core: move it to the driver"
                ));
            }
        }
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
        check_storage(p, &mut errors);
    }
    check_lock_duplicates(root, &mut errors)?;
    let files = tracked_files(root)?;
    check_no_build_output(&files, &mut errors);
    check_references(root, &files, &mut errors);
    check_lengths(root, &files, &mut errors);
    check_sans_io(root, &files, &mut errors);
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
    fn sans_io_rule_finds_io_in_code_but_not_in_comments() {
        let text = "//! Driven by tokio.\nuse std::time::Instant;\nfn f() { let t = Instant::now(); }\n    // .await here is prose\nasync fn g() {}\nif self.awaiting_provider() {}\n";
        assert_eq!(io_in(text), vec![(3, "Instant::now"), (5, "async ")]);
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

    #[test]
    fn only_the_storage_crate_may_use_rocksdb() {
        let pkg = |name: &str| Package {
            name: name.into(),
            dir: PathBuf::new(),
            deps: vec![("rocksdb".into(), "normal".into())],
            has_lib: true,
        };
        let mut errors = Vec::new();
        check_storage(&pkg("rm-store"), &mut errors);
        assert!(errors.is_empty());
        check_storage(&pkg("rm-blockio"), &mut errors);
        assert_eq!(errors.len(), 1, "{errors:#?}");
    }

    #[test]
    fn build_output_is_found_anywhere_in_the_tree() {
        let mut errors = Vec::new();
        check_no_build_output(&["crates/x/src/lib.rs".into()], &mut errors);
        assert!(errors.is_empty());
        check_no_build_output(
            &["crates/x/target/criterion/a/new/estimates.json".into()],
            &mut errors,
        );
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn paths_are_found_in_prose_and_code() {
        assert_eq!(
            named_paths("see docs/protocol.md, and `crates/rm-types/src/lib.rs`."),
            vec!["crates/rm-types/src/lib.rs", "docs/protocol.md"]
        );
        assert_eq!(
            named_paths("crates/*/Cargo.toml, crates/<crate>/testdata, https://x.org/docs/a"),
            Vec::<&str>::new()
        );
        assert_eq!(
            named_paths("(docs/state-machines/)"),
            vec!["docs/state-machines"]
        );
    }
}
