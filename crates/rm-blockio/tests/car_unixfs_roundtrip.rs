//! Round trips file -> DAG -> CAR -> DAG -> file (and directory trees), and hostile CAR and
//! block inputs that must never panic.

use proptest::prelude::*;
use rm_blockio::blockstore::{Blockstore, DbBlockstore, MemoryBlockstore};
use rm_blockio::car;
use rm_blockio::codec::{self, Node};
use rm_blockio::selector::Selector;
use rm_blockio::unixfs::{
    self, Importer, Preset, UnixFsData, export_file, export_path, import_path,
};
use std::path::Path;

fn content(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

fn round_trip(preset: Preset, len: usize, target: &dyn Blockstore) {
    let source = MemoryBlockstore::new();
    let data = content(len);
    let imported = Importer::import_bytes(&source, preset, &data).unwrap();
    assert_eq!(imported.size, len as u64);
    let mut car_bytes = Vec::new();
    let written = car::export(
        &source,
        imported.root,
        &Selector::explore_all_recursively(),
        &mut car_bytes,
    )
    .unwrap();
    assert_eq!(written, car_bytes.len() as u64);
    let roots = car::import(&car_bytes[..], target).unwrap();
    assert_eq!(roots, vec![imported.root]);
    let mut out = Vec::new();
    assert_eq!(
        export_file(target, &imported.root, &mut out).unwrap(),
        len as u64
    );
    assert!(out == data, "{preset:?} len {len}: content differs");
}

#[test]
fn file_dag_car_dag_file_round_trips() {
    let small = Preset::GO_FIL_MARKETS.with_max_links(5);
    for preset in [
        Preset::GO_FIL_MARKETS,
        Preset::KUBO_V0.with_chunk_size(1000),
        Preset::KUBO_V1_RAW_LEAVES,
        small,
    ] {
        let c = preset.chunk_size;
        for len in [0, 1, c - 1, c, c + 1, 7 * c + 3, 40 * c] {
            round_trip(preset, len, &MemoryBlockstore::new());
        }
    }
    // The real kubo presets, a few chunks each, and one into a database keyspace.
    round_trip(Preset::KUBO_V0, 3 * 262_144 + 5, &MemoryBlockstore::new());
    round_trip(
        Preset::UNIXFS_V1_2025,
        (1 << 20) + 1,
        &MemoryBlockstore::new(),
    );
    let db = DbBlockstore::new(rm_store::Keyspace::memory(DbBlockstore::DEFAULT_KEYSPACE));
    round_trip(Preset::GO_FIL_MARKETS, 1025 * 1024 + 9, &db);
}

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::write(root.join("a.txt"), b"hello\n").unwrap();
    std::fs::write(root.join("zero"), b"").unwrap();
    std::fs::write(root.join(".hidden"), b"dot").unwrap();
    std::fs::write(root.join("sub/big.bin"), content(5000)).unwrap();
    std::fs::write(root.join("sub/deeper/c"), content(1024)).unwrap();
}

fn assert_same_tree(a: &Path, b: &Path) {
    let mut ea: Vec<_> = std::fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut eb: Vec<_> = std::fs::read_dir(b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    ea.sort();
    eb.sort();
    assert_eq!(ea, eb, "{} vs {}", a.display(), b.display());
    for name in ea {
        let (pa, pb) = (a.join(&name), b.join(&name));
        if pa.is_dir() {
            assert!(pb.is_dir());
            assert_same_tree(&pa, &pb);
        } else {
            assert_eq!(
                std::fs::read(&pa).unwrap(),
                std::fs::read(&pb).unwrap(),
                "{}",
                pa.display()
            );
        }
    }
}

#[test]
fn directory_round_trip_through_car() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src);
    for preset in [
        Preset::GO_FIL_MARKETS,
        Preset::KUBO_V0,
        Preset::KUBO_V1_RAW_LEAVES,
    ] {
        let source = MemoryBlockstore::new();
        let imported = import_path(&source, preset, &src).unwrap();
        assert_eq!(imported.size, 6 + 3 + 5000 + 1024);
        let mut car_bytes = Vec::new();
        car::export(
            &source,
            imported.root,
            &Selector::explore_all_recursively(),
            &mut car_bytes,
        )
        .unwrap();
        let target = MemoryBlockstore::new();
        car::import(&car_bytes[..], &target).unwrap();
        let dest = tmp.path().join(format!(
            "out-{:?}-{}",
            preset.cid_version, preset.chunk_size
        ));
        assert_eq!(
            export_path(&target, &imported.root, &dest).unwrap(),
            imported.size
        );
        assert_same_tree(&src, &dest);
        // Re-importing the export gives the same root.
        assert_eq!(
            import_path(&MemoryBlockstore::new(), preset, &dest)
                .unwrap()
                .root,
            imported.root
        );
    }
    // A single file through export_path.
    let store = MemoryBlockstore::new();
    let root = import_path(&store, Preset::KUBO_V0, &src.join("a.txt"))
        .unwrap()
        .root;
    let out = tmp.path().join("a-copy.txt");
    export_path(&store, &root, &out).unwrap();
    assert_eq!(std::fs::read(out).unwrap(), b"hello\n");
}

#[test]
fn exports_refuse_traversal_names_and_missing_blocks() {
    let store = MemoryBlockstore::new();
    let file = Importer::import_bytes(&store, Preset::KUBO_V0, b"x")
        .unwrap()
        .root;
    for name in ["..", "a/b", ""] {
        let dir = UnixFsData {
            kind: unixfs::DataType::Directory,
            data: None,
            filesize: None,
            blocksizes: vec![],
        };
        let node = ipld_dagpb::PbNode {
            links: vec![ipld_dagpb::PbLink {
                cid: file,
                name: Some(name.into()),
                size: Some(1),
            }],
            data: Some(dir.encode().into()),
        };
        let bytes = codec::encode_dag_pb(node);
        let cid = codec::cid_of(cid::Version::V0, codec::DAG_PB, codec::SHA2_256, &bytes).unwrap();
        store.put(&cid, &bytes).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let err = export_path(&store, &cid, &tmp.path().join("out")).unwrap_err();
        assert!(
            matches!(err, unixfs::Error::UnsafeName(_)),
            "{name:?}: {err}"
        );
    }
    let lost = codec::cid_of(cid::Version::V1, codec::RAW, codec::SHA2_256, b"lost").unwrap();
    assert!(matches!(
        export_file(&store, &lost, &mut Vec::new()),
        Err(unixfs::Error::NotFound(_))
    ));
    // A block whose stored bytes do not match its CID is refused.
    store.put(&lost, b"found").unwrap();
    assert!(matches!(
        export_file(&store, &lost, &mut Vec::new()),
        Err(unixfs::Error::Codec(_))
    ));
}

fn sample_car() -> Vec<u8> {
    let store = MemoryBlockstore::new();
    let root = Importer::import_bytes(
        &store,
        Preset::GO_FIL_MARKETS.with_max_links(3),
        &content(4000),
    )
    .unwrap()
    .root;
    let mut out = Vec::new();
    car::export(&store, root, &Selector::explore_all_recursively(), &mut out).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_the_car_reader(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        with_header in any::<bool>(),
    ) {
        // Random bytes alone rarely get past the header, so half the cases put them after
        // a valid one to exercise section parsing.
        let mut input = Vec::new();
        if with_header {
            let root = codec::cid_of(cid::Version::V1, codec::RAW, codec::SHA2_256, b"r").unwrap();
            input = car::Writer::new(Vec::new(), &[root]).unwrap().finish().unwrap();
        }
        input.extend_from_slice(&data);
        if let Ok(reader) = car::Reader::new(&input[..]) {
            for (cid, bytes) in reader.flatten() {
                prop_assert!(codec::verify(&cid, &bytes).is_ok());
            }
        }
    }

    #[test]
    fn mutated_cars_never_panic_and_never_yield_bad_blocks(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut car_bytes = sample_car();
        for (at, byte, kind) in edits {
            if car_bytes.is_empty() {
                break;
            }
            let i = at.index(car_bytes.len());
            match kind {
                0 => car_bytes[i] = byte,
                1 => car_bytes.truncate(i),
                _ => car_bytes.insert(i, byte),
            }
        }
        if let Ok(reader) = car::Reader::new(&car_bytes[..]) {
            for (cid, bytes) in reader.flatten() {
                prop_assert!(codec::verify(&cid, &bytes).is_ok());
            }
        }
        let _ = car::import(&car_bytes[..], &MemoryBlockstore::new());
    }

    #[test]
    fn random_blocks_never_panic_the_decoders(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = Node::from_dag_cbor(&data);
        let _ = Node::from_dag_pb(&data);
        let _ = codec::decode_ipld(codec::DAG_PB, &data);
        let _ = codec::decode_ipld(codec::DAG_CBOR, &data);
        let _ = UnixFsData::decode(&data);
    }

    #[test]
    fn exports_of_random_dag_pb_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let store = MemoryBlockstore::new();
        let cid = codec::cid_of(cid::Version::V0, codec::DAG_PB, codec::SHA2_256, &data).unwrap();
        store.put(&cid, &data).unwrap();
        let _ = export_file(&store, &cid, &mut Vec::new());
        let tmp = tempfile::tempdir().unwrap();
        let _ = export_path(&store, &cid, &tmp.path().join("x"));
    }
}
