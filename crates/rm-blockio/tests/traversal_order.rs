//! Traversal order (the test tree of go-fil-markets' blockio tests), the provider's reader
//! and the client's verifier, resume, and hostile blocks; and go-fil-markets' lorem fixtures
//! (`testdata/lorem.txt`, `testdata/lorem_under_1_block.txt`, from go-fil-markets'
//! retrieval tests; source in `testdata/SOURCES.md`) imported with its test preset, in full
//! and under a partial selector. A missing fixture fails the test. Each `vectors_*` test
//! prints `vectors rm-blockio/<file> (<part>): <N> checked`.

use cid::Cid;
use proptest::prelude::*;
use rm_blockio::blockstore::{Blockstore, MemoryBlockstore};
use rm_blockio::codec::{self, DAG_CBOR, DAG_PB, Node, RAW, SHA2_256};
use rm_blockio::reader::{self, BlockReader};
use rm_blockio::selector::Selector;
use rm_blockio::unixfs::{Importer, Preset};
use rm_blockio::verifier::{self, SelectorVerifier, Verified};
use rm_types::Block;

const LOREM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/lorem.txt");
const LOREM_SMALL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/lorem_under_1_block.txt"
);

/// A fixture file; missing or unreadable, the test fails.
fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("fixture {path} cannot be read: {e}"))
}

/// Prints the count line CI looks for, and fails a test that checked nothing.
fn report(label: &str, checked: usize) {
    println!("vectors rm-blockio/{label}: {checked} checked");
    assert!(checked > 0, "{label}: no vectors checked");
}

fn put_cbor(store: &MemoryBlockstore, node: &Node) -> Cid {
    let bytes = node.to_dag_cbor().unwrap();
    let cid = codec::cid_of(cid::Version::V1, DAG_CBOR, SHA2_256, &bytes).unwrap();
    store.put(&cid, &bytes).unwrap();
    cid
}

/// The go-fil-markets blockio test tree, in dag-cbor, maps in insertion order.
struct Tree {
    store: MemoryBlockstore,
    root: Cid,
    alpha: Cid,
    beta: Cid,
    middle_map: Cid,
    middle_list: Cid,
}

fn test_tree(canonical: bool) -> Tree {
    let store = MemoryBlockstore::new();
    let alpha = put_cbor(&store, &Node::String("alpha".into()));
    let beta = put_cbor(&store, &Node::String("beta".into()));
    let map = |entries: Vec<(&str, Node)>| {
        let mut n = Node::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        );
        if canonical {
            n.canonicalize();
        }
        n
    };
    let middle_map = put_cbor(
        &store,
        &map(vec![
            ("foo", Node::Bool(true)),
            ("bar", Node::Bool(false)),
            (
                "nested",
                map(vec![
                    ("alink", Node::link(alpha)),
                    ("nonlink", Node::String("zoo".into())),
                ]),
            ),
        ]),
    );
    let middle_list = put_cbor(
        &store,
        &Node::List(vec![
            Node::link(alpha),
            Node::link(alpha),
            Node::link(beta),
            Node::link(alpha),
        ]),
    );
    let root = put_cbor(
        &store,
        &map(vec![
            ("plain", Node::String("olde string".into())),
            ("linkedString", Node::link(alpha)),
            ("linkedMap", Node::link(middle_map)),
            ("linkedList", Node::link(middle_list)),
        ]),
    );
    Tree {
        store,
        root,
        alpha,
        beta,
        middle_map,
        middle_list,
    }
}

fn block(store: &MemoryBlockstore, cid: &Cid) -> Block {
    Block::new(cid, store.get(cid).unwrap().unwrap())
}

fn read_all(store: &MemoryBlockstore, root: Cid, selector: &Selector) -> Vec<Block> {
    BlockReader::new(store, root, selector)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn explore_all_order_of_the_blockio_test_tree() {
    let t = test_tree(false);
    let all = Selector::explore_all_recursively();
    let expected = [
        t.root,
        t.alpha,
        t.middle_map,
        t.alpha,
        t.middle_list,
        t.alpha,
        t.alpha,
        t.beta,
        t.alpha,
    ];

    let blocks = read_all(&t.store, t.root, &all);
    let order: Vec<Cid> = blocks.iter().map(|b| b.cid().unwrap()).collect();
    assert_eq!(order, expected, "provider order");

    let mut v = SelectorVerifier::new(t.root, &all).unwrap();
    for (i, cid) in expected.iter().enumerate() {
        let done = v.verify(&block(&t.store, cid)).unwrap().done;
        assert_eq!(done, i == expected.len() - 1, "done only on the 9th block");
    }
    assert!(matches!(
        v.verify(&block(&t.store, &t.alpha)),
        Err(verifier::Error::ExtraBlock(_))
    ));
}

#[test]
fn canonical_maps_are_visited_in_encoded_order() {
    // Canonical DAG-CBOR sorts plain(5) < linkedMap(9) < linkedList(10) < linkedString(12).
    let t = test_tree(true);
    let order: Vec<Cid> = read_all(&t.store, t.root, &Selector::explore_all_recursively())
        .iter()
        .map(|b| b.cid().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            t.root,
            t.middle_map,
            t.alpha,
            t.middle_list,
            t.alpha,
            t.alpha,
            t.beta,
            t.alpha,
            t.alpha
        ]
    );
}

#[test]
fn verifier_rejects_wrong_blocks_without_changing_state() {
    let t = test_tree(false);
    let all = Selector::explore_all_recursively();
    let expected = [
        t.root,
        t.alpha,
        t.middle_map,
        t.alpha,
        t.middle_list,
        t.alpha,
        t.alpha,
        t.beta,
        t.alpha,
    ];
    let mut v = SelectorVerifier::new(t.root, &all).unwrap();

    // Wrong first block (Alpha first).
    let err = v.verify(&block(&t.store, &t.alpha)).unwrap_err();
    assert!(
        matches!(err, verifier::Error::UnexpectedBlock { expected, got } if *expected == t.root && *got == t.alpha)
    );
    assert_eq!(v.next_expected(), Some(&t.root));
    for cid in &expected[..3] {
        v.verify(&block(&t.store, cid)).unwrap();
    }
    // Wrong block in the middle (MiddleList where Alpha is expected).
    assert!(v.verify(&block(&t.store, &t.middle_list)).is_err());
    assert_eq!(v.next_expected(), Some(&t.alpha));
    for cid in &expected[3..8] {
        v.verify(&block(&t.store, cid)).unwrap();
    }
    // Wrong last block (Beta instead of the final Alpha).
    assert!(v.verify(&block(&t.store, &t.beta)).is_err());
    // A tampered payload under the right prefix hashes to something else.
    let mut tampered = block(&t.store, &t.alpha);
    tampered.data = [&tampered.data[..], &[0]].concat().into();
    assert!(matches!(
        v.verify(&tampered),
        Err(verifier::Error::UnexpectedBlock { .. })
    ));
    // A malformed prefix.
    let bad_prefix = Block {
        prefix: vec![0x01],
        data: tampered.data.clone(),
    };
    assert!(matches!(
        v.verify(&bad_prefix),
        Err(verifier::Error::InvalidBlock(_))
    ));
    assert_eq!(v.blocks_verified(), 8);
    assert_eq!(
        v.verify(&block(&t.store, &t.alpha)).unwrap(),
        Verified {
            cid: t.alpha,
            done: true
        }
    );
}

#[test]
fn oversized_blocks_are_rejected() {
    let store = MemoryBlockstore::new();
    let data = vec![7u8; 3000];
    let cid = codec::cid_of(cid::Version::V1, RAW, SHA2_256, &data).unwrap();
    store.put(&cid, &data).unwrap();
    let all = Selector::explore_all_recursively();
    let mut v = SelectorVerifier::new(cid, &all)
        .unwrap()
        .max_block_size(2999);
    assert!(matches!(
        v.verify(&block(&store, &cid)),
        Err(verifier::Error::TooLarge {
            size: 3000,
            max: 2999
        })
    ));
    assert_eq!(v.next_expected(), Some(&cid));
    let mut r = BlockReader::new(&store, cid, &all)
        .unwrap()
        .max_block_size(100);
    assert!(matches!(
        r.next_block(),
        Err(reader::Error::TooLarge { .. })
    ));
    // Default limit: 2 MiB.
    let big = vec![1u8; (2 << 20) + 1];
    let big_cid = codec::cid_of(cid::Version::V1, RAW, SHA2_256, &big).unwrap();
    let mut v = SelectorVerifier::new(big_cid, &all).unwrap();
    assert!(matches!(
        v.verify(&Block::new(&big_cid, big)),
        Err(verifier::Error::TooLarge { .. })
    ));
}

#[test]
fn vectors_lorem_under_the_go_fil_markets_preset() {
    let lorem = fixture(LOREM);
    let mut checked = 0usize;
    assert_eq!(lorem.len(), 19_000);
    let store = MemoryBlockstore::new();
    let imported = Importer::import_bytes(&store, Preset::GO_FIL_MARKETS, &lorem).unwrap();
    assert_eq!(imported.root.codec(), DAG_PB);
    assert_eq!(imported.root.hash().code(), codec::BLAKE2B_256);
    let blocks = read_all(&store, imported.root, &Selector::explore_all_recursively());
    assert_eq!(blocks.len(), 20);
    assert_eq!(blocks[0].data.len(), 958, "root block");
    let total: usize = blocks.iter().map(|b| b.data.len()).sum();
    assert_eq!(total, 19_958);
    assert_eq!(imported.dag_size, 19_958);
    let leaves: Vec<usize> = blocks[1..].iter().map(|b| b.data.len()).collect();
    assert_eq!(leaves[..18], [1024; 18]);
    assert_eq!(leaves[18], 568);
    assert!(blocks[1..].iter().all(|b| b.cid().unwrap().codec() == RAW));
    // Payment points with go-fil-markets' test payment interval of 10,000 bytes: the 10th
    // block crosses it.
    let mut sent = 0;
    let crossing = blocks.iter().position(|b| {
        sent += b.data.len();
        sent >= 10_000
    });
    assert_eq!((crossing, sent), (Some(9), 10_174));
    checked += 1;
    report("lorem.txt (full import)", checked);
}

#[test]
fn vectors_lorem_partial_selector_selects_root_and_first_leaf() {
    let lorem = fixture(LOREM);
    let mut checked = 0usize;
    let store = MemoryBlockstore::new();
    let root = Importer::import_bytes(&store, Preset::GO_FIL_MARKETS, &lorem)
        .unwrap()
        .root;
    // ExploreFields{"Links": ExploreIndex(0, ExploreFields{"Hash": Matcher})}
    let partial = Selector::ExploreFields {
        fields: vec![(
            "Links".into(),
            Selector::ExploreIndex {
                index: 0,
                next: Box::new(Selector::ExploreFields {
                    fields: vec![("Hash".into(), Selector::Matcher)],
                }),
            },
        )],
    };
    let partial = Selector::from_dag_cbor(&partial.to_dag_cbor()).unwrap();
    let blocks = read_all(&store, root, &partial);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks.iter().map(|b| b.data.len()).sum::<usize>(), 1_982);
    assert_eq!(
        &blocks[1].data[..],
        &lorem[..1024],
        "1,024 file bytes retrievable"
    );
    let mut v = SelectorVerifier::new(root, &partial).unwrap();
    assert!(!v.verify(&blocks[0]).unwrap().done);
    assert!(v.verify(&blocks[1]).unwrap().done);
    assert_eq!(v.bytes_verified(), 1_982);
    checked += 1;
    report("lorem.txt (partial selector)", checked);
}

#[test]
fn vectors_lorem_under_one_block_is_a_single_raw_block() {
    let small = fixture(LOREM_SMALL);
    let mut checked = 0usize;
    assert_eq!(small.len(), 410);
    let store = MemoryBlockstore::new();
    let root = Importer::import_bytes(&store, Preset::GO_FIL_MARKETS, &small)
        .unwrap()
        .root;
    assert_eq!(root.codec(), RAW);
    let blocks = read_all(&store, root, &Selector::explore_all_recursively());
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].data, small);
    checked += 1;
    report("lorem_under_1_block.txt", checked);
}

#[test]
fn resume_after_n_blocks_on_both_sides() {
    // A two-level DAG with a repeated subtree (zeros: identical leaves).
    let provider = MemoryBlockstore::new();
    let data = vec![0u8; 10 * 1024 + 17];
    let preset = Preset::GO_FIL_MARKETS.with_max_links(4);
    let root = Importer::import_bytes(&provider, preset, &data)
        .unwrap()
        .root;
    let all = Selector::explore_all_recursively();
    let blocks = read_all(&provider, root, &all);
    assert_eq!(blocks.len(), 1 + 3 + 11);
    for n in 0..=blocks.len() as u64 {
        let resumed: Vec<Block> = BlockReader::resume(&provider, root, &all, n)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(resumed, blocks[n as usize..], "provider resumed at {n}");

        let client = MemoryBlockstore::new();
        for b in &blocks[..n as usize] {
            client.put(&b.cid().unwrap(), &b.data).unwrap();
        }
        let mut v = SelectorVerifier::resume(root, &all, n, &client).unwrap();
        assert_eq!(v.blocks_verified(), n);
        for b in &resumed {
            v.verify(b).unwrap();
        }
        assert!(v.is_done());
    }
    assert!(BlockReader::resume(&provider, root, &all, blocks.len() as u64 + 1).is_err());
    // A client that lacks a block it claims to have cannot resume.
    let empty = MemoryBlockstore::new();
    assert!(SelectorVerifier::resume(root, &all, 2, &empty).is_err());
}

#[test]
fn missing_blocks_stop_the_reader() {
    let t = test_tree(false);
    t.store.delete(&t.beta).unwrap();
    let results: Vec<_> = BlockReader::new(&t.store, t.root, &Selector::explore_all_recursively())
        .unwrap()
        .collect();
    assert_eq!(results.len(), 8);
    assert!(matches!(results.last(), Some(Err(reader::Error::NotFound(c))) if *c == t.beta));
}

#[tokio::test]
async fn reader_as_a_bounded_async_stream() {
    use futures::StreamExt;
    let store = std::sync::Arc::new(MemoryBlockstore::new());
    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let root = Importer::import_bytes(&store, Preset::GO_FIL_MARKETS, &data)
        .unwrap()
        .root;
    let all = Selector::explore_all_recursively();
    let expected = BlockReader::new(&store, root, &all)
        .unwrap()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    let stream = BlockReader::new(store, root, &all).unwrap().into_stream(4);
    let got: Vec<Block> = stream.map(Result::unwrap).collect().await;
    assert_eq!(got, expected);
}

fn unixfs_blocks(len: usize, max_links: usize) -> (Cid, Vec<Block>) {
    let store = MemoryBlockstore::new();
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
    let preset = Preset::GO_FIL_MARKETS
        .with_chunk_size(64)
        .with_max_links(max_links);
    let root = Importer::import_bytes(&store, preset, &data).unwrap().root;
    let blocks = read_all(&store, root, &Selector::explore_all_recursively());
    (root, blocks)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the DAG shape, the verifier accepts exactly the reader's order, and any
    /// swap of two different blocks is refused at the first of them.
    #[test]
    fn verifier_accepts_exactly_the_reader_order(len in 0usize..3000, max_links in 2usize..6, i in 0usize..100, j in 0usize..100) {
        let (root, blocks) = unixfs_blocks(len, max_links);
        let all = Selector::explore_all_recursively();
        let mut v = SelectorVerifier::new(root, &all).unwrap();
        for b in &blocks {
            v.verify(b).unwrap();
        }
        prop_assert!(v.is_done());

        let (i, j) = (i % blocks.len(), j % blocks.len());
        if blocks[i] != blocks[j] {
            let (a, b) = (i.min(j), i.max(j));
            let mut swapped = blocks.clone();
            swapped.swap(a, b);
            let mut v = SelectorVerifier::new(root, &all).unwrap();
            for blk in &swapped[..a] {
                v.verify(blk).unwrap();
            }
            prop_assert!(v.verify(&swapped[a]).is_err());
            prop_assert_eq!(v.blocks_verified(), a as u64);
        }
    }

    /// Random bytes under a correct CID (so the hash matches) never panic the verifier,
    /// and a refusal leaves it unchanged.
    #[test]
    fn hostile_blocks_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), codec_pick in 0u8..3) {
        let codec = [DAG_PB, DAG_CBOR, RAW][codec_pick as usize];
        let cid = codec::cid_of(cid::Version::V1, codec, SHA2_256, &data).unwrap();
        let mut v = SelectorVerifier::new(cid, &Selector::explore_all_recursively()).unwrap();
        let block = Block::new(&cid, data);
        match v.verify(&block) {
            Ok(_) => prop_assert_eq!(v.blocks_verified(), 1),
            Err(_) => {
                prop_assert_eq!(v.next_expected(), Some(&cid));
                prop_assert_eq!(v.blocks_verified(), 0);
            }
        }
        // Random prefixes too.
        let odd = Block { prefix: block.data.iter().take(6).copied().collect(), data: block.data.clone() };
        let _ = v.verify(&odd);
    }

    /// Hostile selector documents never panic the parser.
    #[test]
    fn hostile_selectors_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Selector::from_dag_cbor(&data);
    }
}
