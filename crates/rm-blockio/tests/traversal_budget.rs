//! Work is bounded by the blocks a traversal yields (issue 17, item 1).
//!
//! A six-node selector, `ExploreRecursive(ExploreUnion[ExploreAll(@), ExploreAll(@)])`,
//! doubles the selector value the engine builds at every data-model level (go-ipld-prime's
//! explore of a union of two recursion edges), so over a chain of one-link blocks the work
//! of a traversal doubles with every block while the blocks it yields grow by one. These
//! tests count the engine's steps (never time): without a budget the count doubles per
//! level; with the default budget the traversal ends with a typed error, its steps within
//! the documented allowance and its live selector nodes within their cap, on the provider's
//! reader and the client's verifier alike, while honest traversals stay far below.

use cid::Cid;
use rm_blockio::blockstore::{Blockstore, MemoryBlockstore};
use rm_blockio::codec::{self, DAG_CBOR, Node, SHA2_256};
use rm_blockio::reader::{self, BlockReader};
use rm_blockio::selector::{RecursionLimit, Selector};
use rm_blockio::traversal::{self, Limits, Traversal};
use rm_blockio::unixfs::{Importer, Preset};
use rm_blockio::verifier::{self, SelectorVerifier};

/// The hostile selector: small, valid, far under the parser's caps.
fn doubling_selector() -> Selector {
    let edge = || Selector::ExploreAll {
        next: Box::new(Selector::ExploreRecursiveEdge),
    };
    Selector::ExploreRecursive {
        limit: RecursionLimit::None,
        sequence: Box::new(Selector::ExploreUnion(vec![edge(), edge()])),
    }
}

fn put(store: &MemoryBlockstore, node: &Node) -> Cid {
    let bytes = node.to_dag_cbor().unwrap();
    let cid = codec::cid_of(cid::Version::V1, DAG_CBOR, SHA2_256, &bytes).unwrap();
    store.put(&cid, &bytes).unwrap();
    cid
}

/// A chain of `depth` blocks, each a DAG-CBOR list holding the link to the next.
fn chain(store: &MemoryBlockstore, depth: usize) -> Cid {
    let mut next = put(store, &Node::List(vec![]));
    for _ in 1..depth {
        next = put(store, &Node::List(vec![Node::link(next)]));
    }
    next
}

/// The errors of a traversal over its budget (work or live selector nodes).
fn over_budget(e: &traversal::Error) -> bool {
    matches!(
        e,
        traversal::Error::OverBudget { .. } | traversal::Error::SelectorTooLarge(_)
    )
}

fn unmetered() -> Limits {
    Limits {
        base_steps: u64::MAX,
        max_selector_nodes: usize::MAX,
        ..Limits::default()
    }
}

/// Drives a traversal to its end or its first error: (blocks advanced, work, error).
fn run(
    store: &MemoryBlockstore,
    root: Cid,
    sel: &Selector,
    limits: Limits,
) -> (u64, traversal::Work, Option<traversal::Error>) {
    let mut t = Traversal::with_limits(root, sel, limits).unwrap();
    while let Some(cid) = t.next_link().copied() {
        let data = store.get(&cid).unwrap().unwrap();
        if let Err(e) = t.advance(&data) {
            return (t.blocks_visited(), t.work(), Some(e));
        }
    }
    (t.blocks_visited(), t.work(), None)
}

#[test]
fn the_selector_is_small() {
    let bytes = doubling_selector().to_dag_cbor();
    // Six selector nodes in 40 bytes (docs/protocol.md), far under the 1,024-node and
    // 16 KiB caps.
    assert_eq!(bytes.len(), 40);
    assert_eq!(
        Selector::from_dag_cbor(&bytes).unwrap(),
        doubling_selector()
    );
}

#[test]
fn without_a_budget_the_work_doubles_with_each_level() {
    let mut last: Option<traversal::Work> = None;
    for depth in 8..=16 {
        let store = MemoryBlockstore::new();
        let root = chain(&store, depth);
        let (blocks, work, err) = run(&store, root, &doubling_selector(), unmetered());
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            blocks, depth as u64,
            "one block per level: the work is not paid for"
        );
        println!(
            "depth {depth}: {} steps, {} selector nodes at peak",
            work.steps, work.peak_selector_nodes
        );
        if let Some(prev) = last {
            assert!(
                work.steps * 10 >= prev.steps * 19,
                "steps {} -> {}",
                prev.steps,
                work.steps
            );
            assert!(work.peak_selector_nodes * 10 >= prev.peak_selector_nodes * 19);
        }
        last = Some(work);
    }
    // Depth 16: some 2^16-fold more selector nodes than the six parsed.
    assert!(last.unwrap().peak_selector_nodes > 1 << 16);
}

#[test]
fn the_budget_ends_the_traversal_with_a_typed_error() {
    let limits = Limits::default();
    let store = MemoryBlockstore::new();
    // 2^64 steps without a budget.
    let root = chain(&store, 64);
    let (blocks, work, err) = run(&store, root, &doubling_selector(), limits);
    assert!(err.as_ref().is_some_and(over_budget), "{err:?}");
    assert!(blocks < 32, "stopped after {blocks} blocks");
    // Bounded memory: never more live selector nodes than the cap; what the failed walk
    // built is freed (what is left is held by the links already collected).
    assert!(work.peak_selector_nodes <= limits.max_selector_nodes);
    assert!(
        work.selector_nodes <= limits.max_selector_nodes / 2,
        "{}",
        work.selector_nodes
    );
    // The work on record (the walks that succeeded) is within their allowance.
    assert!(
        work.steps <= limits.allowance(blocks, 64 * blocks),
        "{work:?}"
    );

    // Without the node cap, the step budget ends it: at the first step past the allowance
    // of the blocks yielded plus the one being walked (blocks here are under 64 bytes).
    let steps_only = Limits {
        max_selector_nodes: usize::MAX,
        ..limits
    };
    let (blocks, work, err) = run(&store, root, &doubling_selector(), steps_only);
    let Some(traversal::Error::OverBudget { spent, allowance }) = err else {
        panic!("{err:?}");
    };
    assert_eq!(spent, allowance + 1);
    assert!(allowance <= steps_only.allowance(blocks + 1, 64 * (blocks + 1)));
    assert!(blocks < 32, "stopped after {blocks} blocks");
    // Memory follows the steps: a selector node is built in a step.
    assert!(work.peak_selector_nodes as u64 <= spent, "{work:?}");
}

#[test]
fn one_block_of_nested_lists_is_refused_too() {
    // The doubling needs data-model levels, not blocks: 40 nested lists in one 42-byte
    // block would cost 2^40 steps.
    let store = MemoryBlockstore::new();
    let leaf = put(&store, &Node::Null);
    let mut node = Node::List(vec![Node::link(leaf)]);
    for _ in 0..40 {
        node = Node::List(vec![node]);
    }
    let root = put(&store, &node);
    let (blocks, _, err) = run(&store, root, &doubling_selector(), Limits::default());
    assert_eq!(blocks, 0);
    assert!(err.as_ref().is_some_and(over_budget), "{err:?}");
}

#[test]
fn provider_reader_and_client_verifier_fail_at_the_same_block() {
    let store = MemoryBlockstore::new();
    let root = chain(&store, 64);
    let sel = doubling_selector();
    let mut sent = Vec::new();
    let mut reader = BlockReader::new(&store, root, &sel).unwrap();
    let err = loop {
        match reader.next().expect("ends with an error") {
            Ok(block) => sent.push(block),
            Err(e) => break e,
        }
    };
    assert!(reader.next().is_none(), "nothing after the error");
    assert!(
        matches!(&err, reader::Error::Traversal(e) if over_budget(e)),
        "{err:?}"
    );
    // The client accepts exactly what the provider sent, and fails on the next block
    // (taken from the store: the provider never sends it).
    let mut v = SelectorVerifier::new(root, &sel).unwrap();
    for block in &sent {
        v.verify(block).unwrap();
    }
    let next = *v.next_expected().unwrap();
    let data = store.get(&next).unwrap().unwrap();
    let block = rm_types::Block::new(&next, data);
    let err = v.verify(&block).unwrap_err();
    assert!(
        matches!(&err, verifier::Error::Traversal(e) if over_budget(e)),
        "{err:?}"
    );
    assert_eq!(
        v.blocks_verified(),
        sent.len() as u64,
        "a refused block changes nothing"
    );
}

#[test]
fn honest_traversals_stay_far_below_the_budget() {
    let store = MemoryBlockstore::new();
    // 64 MiB-equivalent shape at small chunks: 4 MiB in 1 KiB chunks, 174 links per node.
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 + i / 1000) as u8).collect();
    let preset = Preset::KUBO_V0.with_chunk_size(1024);
    let root = Importer::import_bytes(&store, preset, &data).unwrap().root;
    let limits = Limits::default();
    for (name, sel) in [
        ("explore-all", Selector::explore_all_recursively()),
        (
            "depth-limited",
            Selector::ExploreRecursive {
                limit: RecursionLimit::Depth(100),
                sequence: Box::new(Selector::ExploreAll {
                    next: Box::new(Selector::ExploreRecursiveEdge),
                }),
            },
        ),
    ] {
        let (blocks, work, err) = run(&store, root, &sel, limits);
        assert!(err.is_none(), "{name}: {err:?}");
        let per_block = work.steps / blocks;
        println!(
            "{name}: {blocks} blocks, {} steps ({per_block} a block), allowance {}, peak {} selector nodes",
            work.steps, work.allowance, work.peak_selector_nodes
        );
        // Within the per-block allowance alone, with room to spare.
        assert!(
            per_block * 8 < limits.steps_per_block,
            "{name}: {per_block}"
        );
        assert!(work.peak_selector_nodes < 4096, "{name}");
    }
}
