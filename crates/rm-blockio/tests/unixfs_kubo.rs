//! kubo equality: every root CID that kubo's own tests assert (ipfs/kubo's sharness and CLI
//! tests), kept with the importer settings that reproduce it in
//! `testdata/unixfs_kubo_cids.json` (source in `testdata/SOURCES.md`), including the
//! ChaCha20-generated contents (up to 1 GiB, streamed through the importer into a discarding
//! blockstore; contents sharing a seed string are generated once and fed to every importer
//! that needs a prefix of them). A missing file fails the tests. Each `vectors_*` test prints
//! `vectors rm-blockio/unixfs_kubo_cids.json (<part>): <N> checked`.

use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};
use rm_blockio::blockstore::{self, Blockstore, MemoryBlockstore};
use rm_blockio::unixfs::{Importer, Preset, export_file, import_path};
use serde_json::Value;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/unixfs_kubo_cids.json"
);

/// Prints the count line CI looks for, and fails a test that checked nothing.
fn report(part: &str, checked: usize) {
    println!("vectors rm-blockio/unixfs_kubo_cids.json ({part}): {checked} checked");
    assert!(
        checked > 0,
        "unixfs_kubo_cids.json ({part}): no vectors checked"
    );
}

/// Accepts and forgets every block (for the multi-hundred-MiB vectors).
struct Discard;

impl Blockstore for Discard {
    fn get(&self, _: &Cid) -> Result<Option<Vec<u8>>, blockstore::Error> {
        Ok(None)
    }
    fn has(&self, _: &Cid) -> Result<bool, blockstore::Error> {
        Ok(false)
    }
    fn size(&self, _: &Cid) -> Result<Option<u64>, blockstore::Error> {
        Ok(None)
    }
    fn put(&self, _: &Cid, _: &[u8]) -> Result<(), blockstore::Error> {
        Ok(())
    }
    fn delete(&self, _: &Cid) -> Result<(), blockstore::Error> {
        Ok(())
    }
}

/// RFC 8439 ChaCha20 keystream with key = SHA-256(seed), zero nonce, counter from 0.
struct ChaCha20 {
    key: [u32; 8],
    counter: u32,
}

impl ChaCha20 {
    fn new(seed: &str) -> Self {
        let digest = Code::Sha2_256.digest(seed.as_bytes());
        let mut key = [0u32; 8];
        for (k, b) in key.iter_mut().zip(digest.digest().chunks_exact(4)) {
            *k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Self { key, counter: 0 }
    }

    /// Fills `out` (a multiple of 64 bytes) with the next keystream blocks.
    fn fill(&mut self, out: &mut [u8]) {
        macro_rules! qr {
            ($a:ident, $b:ident, $c:ident, $d:ident) => {
                $a = $a.wrapping_add($b);
                $d = ($d ^ $a).rotate_left(16);
                $c = $c.wrapping_add($d);
                $b = ($b ^ $c).rotate_left(12);
                $a = $a.wrapping_add($b);
                $d = ($d ^ $a).rotate_left(8);
                $c = $c.wrapping_add($d);
                $b = ($b ^ $c).rotate_left(7);
            };
        }
        let k = self.key;
        for block in out.chunks_exact_mut(64) {
            let init = [
                0x6170_7865,
                0x3320_646e,
                0x7962_2d32,
                0x6b20_6574,
                k[0],
                k[1],
                k[2],
                k[3],
                k[4],
                k[5],
                k[6],
                k[7],
                self.counter,
                0,
                0,
                0,
            ];
            let [
                mut x0,
                mut x1,
                mut x2,
                mut x3,
                mut x4,
                mut x5,
                mut x6,
                mut x7,
                mut x8,
                mut x9,
                mut x10,
                mut x11,
                mut x12,
                mut x13,
                mut x14,
                mut x15,
            ] = init;
            for _ in 0..10 {
                qr!(x0, x4, x8, x12);
                qr!(x1, x5, x9, x13);
                qr!(x2, x6, x10, x14);
                qr!(x3, x7, x11, x15);
                qr!(x0, x5, x10, x15);
                qr!(x1, x6, x11, x12);
                qr!(x2, x7, x8, x13);
                qr!(x3, x4, x9, x14);
            }
            let s = [
                x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15,
            ];
            for ((o, w), i) in block.chunks_exact_mut(4).zip(s).zip(init) {
                o.copy_from_slice(&w.wrapping_add(i).to_le_bytes());
            }
            self.counter = self.counter.wrapping_add(1);
        }
    }
}

#[test]
fn chacha20_matches_rfc8439() {
    // RFC 8439 appendix A.1, test vector #1: zero key, zero nonce, block counter 0.
    let mut c = ChaCha20 {
        key: [0; 8],
        counter: 0,
    };
    let mut out = [0u8; 64];
    c.fill(&mut out);
    assert_eq!(
        hex::encode(out),
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    );
}

fn preset_for(setting: &str) -> Preset {
    match setting {
        "kubo-default-cidv0" => Preset::KUBO_V0,
        "kubo-cidv1-rawleaves" => Preset::KUBO_V1_RAW_LEAVES,
        "unixfs-v1-2025" => Preset::UNIXFS_V1_2025,
        s if s.starts_with("CIDv1, rawLeaves=false") => {
            Preset::KUBO_V1_RAW_LEAVES.with_raw_leaves(false)
        }
        s if s.starts_with("kubo-default-cidv0 but maxChildrenPerNode=1024") => {
            Preset::KUBO_V0.with_max_links(1024)
        }
        other => panic!("unknown setting {other:?}: extend preset_for"),
    }
}

fn matches_kubo(root: &Cid, asserted: &str) -> bool {
    // kubo prints CIDv0 roots as CIDv1 base32 under --cid-base=base32.
    root.to_string() == asserted || root.into_v1().is_ok_and(|c| c.to_string() == asserted)
}

struct Vector {
    pattern: String,
    size: Option<u64>,
    preset: Preset,
    asserted: String,
}

/// The vectors; a missing, unreadable or invalid file fails the test.
fn vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("vector file {VECTORS} cannot be read: {e}"));
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("vector file {VECTORS} is not JSON: {e}"));
    v["kubo_asserted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Vector {
            pattern: e["pattern"].as_str().unwrap().to_owned(),
            size: e["size"].as_u64(),
            preset: preset_for(e["setting"].as_str().unwrap()),
            asserted: e["kubo_asserted_cid"].as_str().unwrap().to_owned(),
        })
        .collect()
}

#[test]
fn vectors_literal_contents_match_kubo() {
    let vectors = vectors();
    let mut checked = 0usize;
    for v in vectors.iter().filter(|v| v.pattern.starts_with("literal:")) {
        let text = &v.pattern["literal:".len()..];
        let store = MemoryBlockstore::new();
        let imported = Importer::import_bytes(&store, v.preset, text.as_bytes()).unwrap();
        assert!(
            matches_kubo(&imported.root, &v.asserted),
            "{:?}: got {} want {}",
            v.pattern,
            imported.root,
            v.asserted
        );
        let mut out = Vec::new();
        export_file(&store, &imported.root, &mut out).unwrap();
        assert_eq!(out, text.as_bytes());
        checked += 1;
    }
    report("literal", checked);
    assert!(checked >= 10);
}

#[test]
fn vectors_chacha20_contents_match_kubo() {
    let vectors = vectors();
    let mut groups: Vec<(String, Vec<&Vector>)> = Vec::new();
    for v in vectors
        .iter()
        .filter(|v| v.pattern.starts_with("chacha20:"))
    {
        let seed = v.pattern["chacha20:".len()..].to_owned();
        match groups.iter_mut().find(|(s, _)| *s == seed) {
            Some((_, members)) => members.push(v),
            None => groups.push((seed, vec![v])),
        }
    }
    assert!(!groups.is_empty());
    let results = run_groups(&groups);
    let mut checked = 0usize;
    for (pattern, root, asserted) in &results {
        assert!(
            matches_kubo(root, asserted),
            "{pattern}: got {root} want {asserted}"
        );
        checked += 1;
    }
    report("chacha20", checked);
    assert!(checked >= 9);
}

fn run_groups(groups: &[(String, Vec<&Vector>)]) -> Vec<(String, Cid, String)> {
    let mut out = Vec::new();
    for (seed, members) in groups {
        let max = members.iter().map(|v| v.size.unwrap()).max().unwrap();
        let mut importers: Vec<(Importer<Discard>, u64)> = members
            .iter()
            .map(|v| (Importer::new(Discard, v.preset).unwrap(), v.size.unwrap()))
            .collect();
        // The keystream is seekable, so rounds of 1 MiB buffers are generated in parallel
        // (ChaCha20 in a debug build is the slow part) and then fed in order.
        let key = ChaCha20::new(seed).key;
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 4);
        let mut bufs = vec![vec![0u8; 1 << 20]; threads];
        let mut offset = 0u64;
        while offset < max {
            std::thread::scope(|s| {
                for (i, buf) in bufs.iter_mut().enumerate() {
                    let start = offset + (i as u64) * (1 << 20);
                    if start < max {
                        let counter = u32::try_from(start / 64).unwrap();
                        s.spawn(move || ChaCha20 { key, counter }.fill(buf));
                    }
                }
            });
            for buf in &bufs {
                for (importer, size) in &mut importers {
                    let want = (*size - offset.min(*size)).min(buf.len() as u64) as usize;
                    importer.push(&buf[..want]).unwrap();
                }
                offset += buf.len() as u64;
            }
        }
        for ((importer, size), v) in importers.into_iter().zip(members) {
            assert_eq!(importer.bytes_pushed(), size);
            let root = importer.finish().unwrap().root;
            out.push((
                format!("{} ({} bytes)", v.pattern, size),
                root,
                v.asserted.clone(),
            ));
        }
    }
    out
}

#[test]
fn empty_directories_match_kubo() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryBlockstore::new();
    let v0 = import_path(&store, Preset::KUBO_V0, dir.path())
        .unwrap()
        .root;
    assert_eq!(
        v0.to_string(),
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    );
    let v1 = import_path(&store, Preset::KUBO_V1_RAW_LEAVES, dir.path())
        .unwrap()
        .root;
    assert_eq!(
        v1.to_string(),
        "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
    );
}
