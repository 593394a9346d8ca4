//! The cost of checking every block read for sending against its CID (issue 17, item 5):
//! [`BlockReader`] throughput over a [`FileBlockstore`] with the check on (the default) and
//! off, in one group, so the ratio is visible in one report. The DAG is a 32 MiB file under
//! kubo's CIDv1 raw-leaves preset (256 KiB raw sha2-256 leaves); the data file is in the
//! page cache after the first pass, so the figures are reading plus hashing, not the disk.
//!
//! Also (`traversal_budget`): the steps the traversal engine spends on the doubling selector
//! of `tests/traversal_budget.rs` over chains of 10..=20 one-link blocks, without a budget
//! and with the default one, printed once (counts, not times).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rm_blockio::blockstore::{Blockstore, FileBlockstore, MemoryBlockstore};
use rm_blockio::codec::{self, DAG_CBOR, Node, SHA2_256};
use rm_blockio::reader::BlockReader;
use rm_blockio::selector::{RecursionLimit, Selector};
use rm_blockio::traversal::{Limits, Traversal};
use rm_blockio::unixfs::{Importer, Preset};
use rm_store::Keyspace;
use std::hint::black_box;

const MIB: usize = 32;

fn bench_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileBlockstore::open(
        dir.path().join("blocks.dat"),
        Keyspace::memory(FileBlockstore::DEFAULT_KEYSPACE),
    )
    .unwrap();
    let data: Vec<u8> = (0..MIB << 20).map(|i| (i * 31 + i / 4093) as u8).collect();
    let root = Importer::import_bytes(&store, Preset::KUBO_V1_RAW_LEAVES, &data)
        .unwrap()
        .root;
    let selector = Selector::explore_all_recursively();
    let read = |check: bool| {
        let mut bytes = 0u64;
        for block in BlockReader::new(&store, root, &selector)
            .unwrap()
            .verify_hashes(check)
        {
            bytes += black_box(block.unwrap()).data.len() as u64;
        }
        bytes
    };
    let total = read(true);

    let mut group = c.benchmark_group("read_32mib_file_blockstore");
    group.throughput(Throughput::Bytes(total));
    group.sample_size(20);
    group.bench_function(BenchmarkId::new("checked", MIB), |b| {
        b.iter(|| assert_eq!(read(true), total))
    });
    group.bench_function(BenchmarkId::new("unchecked", MIB), |b| {
        b.iter(|| assert_eq!(read(false), total))
    });
    group.finish();
}

/// Prints the steps of the doubling selector per chain depth, without a budget and with
/// the default one.
fn traversal_budget(_: &mut Criterion) {
    let edge = || Selector::ExploreAll {
        next: Box::new(Selector::ExploreRecursiveEdge),
    };
    let selector = Selector::ExploreRecursive {
        limit: RecursionLimit::None,
        sequence: Box::new(Selector::ExploreUnion(vec![edge(), edge()])),
    };
    let unmetered = Limits {
        base_steps: u64::MAX,
        max_selector_nodes: usize::MAX,
        ..Limits::default()
    };
    println!("traversal_budget: doubling selector over a chain of one-link blocks");
    println!(
        "{:>6} {:>14} {:>12} | {:>12} {:>12} {:>8}",
        "depth", "steps (none)", "peak nodes", "steps (def)", "peak nodes", "outcome"
    );
    for depth in 10..=20 {
        let store = MemoryBlockstore::new();
        let mut next = None;
        for _ in 0..depth {
            let node = Node::List(next.into_iter().map(Node::link).collect());
            let bytes = node.to_dag_cbor().unwrap();
            let cid = codec::cid_of(cid::Version::V1, DAG_CBOR, SHA2_256, &bytes).unwrap();
            store.put(&cid, &bytes).unwrap();
            next = Some(cid);
        }
        let root = next.unwrap();
        let run = |limits: Limits| {
            let mut t = Traversal::with_limits(root, &selector, limits).unwrap();
            let mut steps = 0;
            let mut outcome = "done";
            while let Some(cid) = t.next_link().copied() {
                steps = t.work().steps;
                match t.advance(&store.get(&cid).unwrap().unwrap()) {
                    Ok(()) => steps = t.work().steps,
                    // The walk that crossed the allowance: its steps up to the refused one.
                    Err(rm_blockio::traversal::Error::OverBudget { spent, .. }) => {
                        steps = spent;
                        outcome = "budget";
                        break;
                    }
                    Err(_) => {
                        outcome = "node cap";
                        break;
                    }
                }
            }
            (steps, t.work().peak_selector_nodes, outcome)
        };
        let (s0, p0, _) = run(unmetered);
        let (s1, p1, o1) = run(Limits::default());
        println!("{depth:>6} {s0:>14} {p0:>12} | {s1:>12} {p1:>12} {o1:>8}");
    }
}

criterion_group!(benches, bench_read, traversal_budget);
criterion_main!(benches);
