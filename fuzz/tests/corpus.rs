//! The committed corpus replayed on stable Rust as ordinary tests: every file of
//! `fuzz/corpus/<target>/` (inputs built from the repository's vectors, and every input
//! that once crashed a target) goes through that target's body, which must not panic.
//! `cargo xtask ci` runs this on every machine, with or without nightly
//! (`cargo test --manifest-path fuzz/Cargo.toml`).

use std::path::Path;

/// Runs `body` over every file of `fuzz/corpus/<target>/`; returns how many it ran.
fn replay(target: &str, body: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the corpus {} is committed: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for file in &files {
        let data = std::fs::read(file).unwrap();
        // A panic names the file, so it can be replayed under `cargo fuzz run`.
        eprintln!("{target}: {}", file.display());
        body(&data);
    }
    println!("{target}: replayed {} corpus files", files.len());
    files.len()
}

#[test]
fn deal_stream() {
    replay("deal_stream", rm_fuzz::deal_stream::run);
}

#[test]
fn query() {
    replay("query", rm_fuzz::query::run);
}

#[test]
fn selector_traversal() {
    replay("selector_traversal", rm_fuzz::selector_traversal::run);
}

#[test]
fn dag_pb() {
    replay("dag_pb", rm_fuzz::dag_pb::run);
}

#[test]
fn dag_cbor() {
    replay("dag_cbor", rm_fuzz::dag_cbor::run);
}

#[test]
fn car_reader() {
    replay("car_reader", rm_fuzz::car_reader::run);
}

#[test]
fn unixfs_export() {
    replay("unixfs_export", rm_fuzz::unixfs_export::run);
}

#[test]
fn voucher() {
    replay("voucher", rm_fuzz::voucher::run);
}
