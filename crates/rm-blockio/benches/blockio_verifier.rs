//! Verifier throughput on 1 MiB raw sha2-256 blocks, next to hashing the same bytes alone
//! (same group, so the ratio is visible in one report).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use multihash_codetable::{Code, MultihashDigest};
use rm_blockio::blockstore::MemoryBlockstore;
use rm_blockio::reader::BlockReader;
use rm_blockio::selector::Selector;
use rm_blockio::unixfs::{Importer, Preset};
use rm_blockio::verifier::SelectorVerifier;
use std::hint::black_box;

const BLOCKS: usize = 16;

fn bench_verify(c: &mut Criterion) {
    // A 16 MiB file under unixfs-v1-2025: 16 raw sha2-256 leaves of 1 MiB under one root.
    let store = MemoryBlockstore::new();
    let data: Vec<u8> = (0..BLOCKS << 20).map(|i| (i % 251) as u8).collect();
    let root = Importer::import_bytes(&store, Preset::UNIXFS_V1_2025, &data)
        .unwrap()
        .root;
    let selector = Selector::explore_all_recursively();
    let blocks: Vec<_> = BlockReader::new(&store, root, &selector)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let leaf_bytes: u64 = blocks[1..].iter().map(|b| b.data.len() as u64).sum();

    let mut group = c.benchmark_group("verify_1mib_raw_sha256");
    group.throughput(Throughput::Bytes(leaf_bytes));
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("sha256_only", BLOCKS), |b| {
        b.iter(|| {
            for block in &blocks[1..] {
                black_box(Code::Sha2_256.digest(&block.data));
            }
        })
    });
    group.bench_function(BenchmarkId::new("selector_verifier", BLOCKS), |b| {
        b.iter_batched(
            || {
                // Setup (not timed): a verifier that has already accepted the root.
                let mut v = SelectorVerifier::new(root, &selector).unwrap();
                v.verify(&blocks[0]).unwrap();
                v
            },
            |mut v| {
                for block in &blocks[1..] {
                    black_box(v.verify(block).unwrap());
                }
                assert!(v.is_done());
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
