//! Pieces against published values, and the import → unseal → load round trip.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rm_blockio::unixfs::{self, Preset};
use rm_blockio::{Blockstore, MemoryBlockstore};
use rm_types::Cid;
use rm_unseal::commp::{self, Hasher};
use rm_unseal::{
    Error, FileSectorStore, PaddedPieceSize, PieceStore, Unsealer, import, sector, unseal,
};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

/// The published zero-piece commitments for 128 B << i.
fn zero_table() -> Vec<[u8; 32]> {
    std::fs::read_to_string(testdata("zero_commitments.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| hex::decode(l.trim()).unwrap().try_into().unwrap())
        .collect()
}

#[test]
fn zero_piece_commitments_match_the_published_table() {
    let table = zero_table();
    assert_eq!(table.len(), 35);
    for (i, expected) in table.iter().enumerate() {
        let size = PaddedPieceSize::new(128u64 << i).unwrap();
        assert_eq!(
            &commp::zero_commitment(size),
            expected,
            "zero piece of {size} bytes"
        );
    }
    // Hashing actual zeros agrees, up to 1 MiB pieces.
    for (i, expected) in table.iter().enumerate().take(14) {
        let size = PaddedPieceSize::new(128u64 << i).unwrap();
        let mut h = Hasher::new();
        h.update(&vec![0u8; size.unpadded().get() as usize]);
        let c = h.finish().unwrap();
        assert_eq!(
            (&c.comm, c.size),
            (expected, size),
            "hashed zeros, {size} bytes"
        );
    }
}

#[test]
fn a_published_commp_of_real_data() {
    // go-commp-utils commp_test.go TestZeroPadding: the text in a 127-byte piece.
    let content = b"i am the biggest cat, what do you think about that";
    let mut data = vec![0u8; 127];
    data[..content.len()].copy_from_slice(content);
    let c = commp::commp(&data).unwrap();
    assert_eq!(
        c.cid().to_string(),
        "baga6ea4seaqozp3abki6vgdf7ztbipcycmxfyt2o64cpuyvdkczsjxsg7bqmioi"
    );
    assert_eq!(c.size.get(), 128);
    // The same commitment zero-padded to 4 × the size equals hashing 4 × the bytes.
    let mut h = Hasher::new();
    h.update(&data);
    let padded = h
        .finish_with_size(PaddedPieceSize::new(512).unwrap())
        .unwrap();
    let mut wide = vec![0u8; 127 * 4];
    wide[..content.len()].copy_from_slice(content);
    assert_eq!(padded, commp::commp(&wide).unwrap());
    // A piece CID parses back to its commitment.
    let parsed: Cid = "baga6ea4seaqozp3abki6vgdf7ztbipcycmxfyt2o64cpuyvdkczsjxsg7bqmioi"
        .parse()
        .unwrap();
    assert_eq!(commp::commitment(&parsed).unwrap(), c.comm);
}

/// The node's database in `dir`: RocksDB when the crate is built with its `rocksdb`
/// feature (as in the workspace), memory otherwise.
#[cfg(feature = "rocksdb")]
fn database(dir: &Path) -> rm_store::Db {
    rm_store::Db::open(dir.join("db"), &rm_unseal::KEYSPACES, &Default::default()).unwrap()
}

/// Without the `rocksdb` feature: memory.
#[cfg(not(feature = "rocksdb"))]
fn database(_: &Path) -> rm_store::Db {
    rm_store::Db::memory()
}

struct Home {
    dir: tempfile::TempDir,
    db: rm_store::Db,
    pieces: Arc<PieceStore>,
    sectors: Arc<FileSectorStore>,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path());
        let pieces = Arc::new(PieceStore::open(&db).unwrap());
        let sectors = Arc::new(
            FileSectorStore::open(
                dir.path().join("sectors"),
                db.keyspace(FileSectorStore::DEFAULT_KEYSPACE).unwrap(),
                sector::Config::default(),
            )
            .unwrap(),
        );
        Home {
            dir,
            db,
            pieces,
            sectors,
        }
    }

    fn import(&self, path: &Path) -> rm_unseal::Imported {
        import::import_path(
            &self.pieces,
            &self.sectors,
            path,
            Preset::GO_FIL_MARKETS,
            &self.dir.path().join("staging"),
        )
        .unwrap()
    }

    fn unsealer(&self) -> Unsealer {
        let sectors: Arc<dyn rm_unseal::SectorAccess> = self.sectors.clone();
        Unsealer::new(
            Arc::clone(&self.pieces),
            sectors,
            self.db.keyspace(unseal::LOADED_KEYSPACE).unwrap(),
        )
    }
}

/// lorem.txt as a go-fil-markets DAG in a CAR: this piece CID. Cross-checked with an
/// independent Python implementation of Fr32 + CommP over the same CAR bytes.
const LOREM_PIECE_CID: &str = "baga6ea4seaqfuolhqhanwfpvi74zcd2jxvrktjrrpczhiz2tenm6fzvibvzmoky";

#[tokio::test]
async fn lorem_becomes_a_stable_piece_and_unseals_back() {
    let lorem = testdata("lorem.txt");
    let home = Home::new();
    let first = home.import(&lorem);
    assert!(first.written);
    assert_eq!(first.piece_cid.to_string(), LOREM_PIECE_CID);
    assert_eq!(first.car_size, 20_819);
    assert_eq!(first.piece_size.get(), 32 << 10);
    assert_eq!(first.placement.offset, 0);
    // The staging area is left empty.
    assert_eq!(
        std::fs::read_dir(home.dir.path().join("staging"))
            .unwrap()
            .count(),
        0
    );

    // Importing again changes nothing; a fresh home gives the same piece.
    let again = home.import(&lorem);
    assert!(!again.written);
    assert_eq!(
        (again.piece_cid, again.placement),
        (first.piece_cid, first.placement)
    );
    assert_eq!(Home::new().import(&lorem).piece_cid, first.piece_cid);

    // The piece store knows the piece and every block.
    let info = home.pieces.get_piece_info(&first.piece_cid).unwrap();
    assert_eq!(info.deals.len(), 1);
    assert_eq!(info.deals[0].length, 32 << 10);
    let root_info = home.pieces.get_cid_info(&first.payload_cid).unwrap();
    assert_eq!(
        root_info.piece_block_locations[0].piece_cid,
        first.piece_cid
    );

    // Block locations point at the block bytes inside the unpadded piece.
    let unsealer = home.unsealer();
    let mut piece = Vec::new();
    {
        use tokio::io::AsyncReadExt;
        let mut r = unsealer.unseal_piece(&info).await.unwrap();
        r.read_to_end(&mut piece).await.unwrap();
    }
    assert_eq!(piece.len() as u64, first.piece_size.unpadded().get());
    let loc = root_info.piece_block_locations[0].location;
    let root_bytes = &piece[loc.rel_offset as usize..(loc.rel_offset + loc.block_size) as usize];
    rm_blockio::codec::verify(&first.payload_cid, root_bytes).unwrap();

    // Load into a blockstore and export the file again.
    let blocks = Arc::new(MemoryBlockstore::new());
    let loaded = unsealer
        .load(&first.payload_cid, Some(&first.piece_cid), blocks.clone())
        .await
        .unwrap();
    assert!(loaded.unsealed);
    assert_eq!(loaded.blocks, first.blocks);
    let mut out = Vec::new();
    unixfs::export_file(blocks.as_ref(), &first.payload_cid, &mut out).unwrap();
    assert_eq!(out, std::fs::read(&lorem).unwrap());
    // A second load into the same store needs no unseal.
    let again = unsealer
        .load(&first.payload_cid, None, blocks.clone())
        .await
        .unwrap();
    assert!(!again.unsealed);
}

#[tokio::test]
async fn loader_failures_are_typed_with_go_messages() {
    let home = Home::new();
    let imported = home.import(&testdata("lorem.txt"));
    let unsealer = home.unsealer();
    let blocks: Arc<dyn Blockstore> = Arc::new(MemoryBlockstore::new());

    // An unknown payload.
    let unknown = commp::commp(b"nothing").unwrap().cid();
    let e = unsealer
        .load(&unknown, None, Arc::clone(&blocks))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(
        e.to_string()
            .starts_with("error looking up information on CID"),
        "{e}"
    );

    // The payload, restricted to a piece that does not hold it.
    let e = unsealer
        .load(&imported.payload_cid, Some(&unknown), Arc::clone(&blocks))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");

    // The sector file is gone.
    let path = home.sectors.path(imported.placement.sector);
    let saved = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let e = unsealer
        .load(&imported.payload_cid, None, Arc::clone(&blocks))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnsealPiece(_)), "{e}");
    assert!(e.to_string().starts_with("Unable to unseal piece"), "{e}");
    assert!(!blocks.has(&imported.payload_cid).unwrap());

    // The sector holds other bytes: blocks fail verification, nothing is loaded.
    let mut corrupt = saved.clone();
    for b in corrupt.iter_mut().skip(2000).take(100) {
        *b = !*b & 0x3f;
    }
    std::fs::write(&path, &corrupt).unwrap();
    let e = unsealer
        .load(&imported.payload_cid, None, Arc::clone(&blocks))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ReadCar(_)), "{e}");
    assert!(
        e.to_string().starts_with("attempting to read Car file"),
        "{e}"
    );

    // A zero byte where a section starts ends the CAR early: the piece's recorded data
    // size catches it, and without a recorded size the data after the end does.
    let info = home.pieces.get_piece_info(&imported.piece_cid).unwrap();
    let mut piece = Vec::new();
    {
        use tokio::io::AsyncReadExt;
        std::fs::write(&path, &saved).unwrap();
        let mut r = unsealer.unseal_piece(&info).await.unwrap();
        r.read_to_end(&mut piece).await.unwrap();
    }
    let mut reader = rm_blockio::car::Reader::new(&piece[..imported.car_size as usize]).unwrap();
    reader.next_section().unwrap().unwrap();
    let boundary = reader.position() as usize; // where the second section's length is
    piece[boundary] = 0;
    let mut cut = rm_unseal::fr32::pad(&piece);
    cut.resize(saved.len(), 0);
    std::fs::write(&path, &cut).unwrap();
    let e = unsealer
        .load(&imported.payload_cid, None, Arc::clone(&blocks))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("ends at byte"), "{e}");
    let bare = Home::new();
    let copy = bare.import(&testdata("lorem.txt"));
    // The same damage in a piece whose data size nobody recorded (as from another node).
    let sizes = bare
        .db
        .keyspace(rm_unseal::piecestore::SIZES_KEYSPACE)
        .unwrap();
    sizes.delete(&copy.piece_cid.to_bytes()).unwrap();
    std::fs::write(bare.sectors.path(copy.placement.sector), &cut).unwrap();
    let bare_blocks: Arc<dyn Blockstore> = Arc::new(MemoryBlockstore::new());
    let e = bare
        .unsealer()
        .load(&copy.payload_cid, None, bare_blocks)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("data follows"), "{e}");

    // Restored, it loads.
    std::fs::write(&path, &saved).unwrap();
    unsealer
        .load(&imported.payload_cid, None, Arc::clone(&blocks))
        .await
        .unwrap();
    assert!(blocks.has(&imported.payload_cid).unwrap());
}

#[tokio::test]
async fn a_car_file_imports_and_many_pieces_share_sectors() {
    let home = Home::new();
    let staging = home.dir.path().join("staging");
    let mut pieces = Vec::new();
    for i in 0..5u8 {
        let file = home.dir.path().join(format!("f{i}"));
        std::fs::write(&file, vec![i; 3000 + usize::from(i) * 5000]).unwrap();
        pieces.push(
            import::import_path(
                &home.pieces,
                &home.sectors,
                &file,
                Preset::KUBO_V1_RAW_LEAVES,
                &staging,
            )
            .unwrap(),
        );
    }
    for w in pieces.windows(2) {
        assert_eq!(w[0].placement.sector, w[1].placement.sector);
        assert!(w[1].placement.offset >= w[0].placement.offset + w[0].piece_size.get());
        assert_eq!(w[1].placement.offset % w[1].piece_size.get(), 0);
    }
    let mut listed = home.pieces.list_pieces().unwrap();
    listed.sort();
    let mut expected: Vec<Cid> = pieces.iter().map(|p| p.piece_cid).collect();
    expected.sort();
    assert_eq!(listed, expected);
    let unsealer = home.unsealer();
    for p in &pieces {
        let blocks = Arc::new(MemoryBlockstore::new());
        unsealer
            .load(&p.payload_cid, None, blocks.clone())
            .await
            .unwrap();
        assert_eq!(blocks.len() as u64, p.blocks);
    }
    // A CAR that does not hold its root is refused.
    let car = home.dir.path().join("bad.car");
    let other = rm_blockio::codec::cid_of(cid::Version::V1, 0x55, 0x12, b"x").unwrap();
    let block = b"y".to_vec();
    let bcid = rm_blockio::codec::cid_of(cid::Version::V1, 0x55, 0x12, &block).unwrap();
    let mut w =
        rm_blockio::car::Writer::new(std::fs::File::create(&car).unwrap(), &[other]).unwrap();
    w.write(&bcid, &block).unwrap();
    w.finish().unwrap();
    assert!(matches!(
        import::import_car(&home.pieces, &home.sectors, &car),
        Err(Error::Import(_))
    ));
}

// An import reports every stage in order, each ending at its total, and the same piece
// as an import without reports. A new piece is verified and written in one pass
// (`Write`); a piece held already is only verified (`Verify`) and not indexed again. A
// file with raw leaves goes from its DAG to the sector with no CAR on disk (no `Car`
// stage); a directory's CAR is written to `staging/` first.
#[test]
fn an_import_reports_its_progress_stage_by_stage() {
    use import::Stage;
    let home = Home::new();
    let file = home.dir.path().join("data.bin");
    let data: Vec<u8> = (0..3_500_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let import_reporting = |seen: &mut Vec<import::Progress>| {
        import::import_path_with_progress(
            &home.pieces,
            &home.sectors,
            &file,
            Preset::GO_FIL_MARKETS,
            &home.dir.path().join("staging"),
            &mut |p| seen.push(p),
        )
        .unwrap()
    };
    let check = |seen: &[import::Progress], stages: &[Stage]| {
        let mut order: Vec<Stage> = seen.iter().map(|p| p.stage).collect();
        order.dedup();
        assert_eq!(order, stages);
        // Every stage starts at zero and reports at least every PROGRESS_STEP bytes.
        for &stage in stages {
            let reports: Vec<_> = seen.iter().filter(|p| p.stage == stage).collect();
            assert_eq!(reports[0].bytes, 0, "{stage:?}");
            for pair in reports.windows(2) {
                assert!(pair[1].bytes >= pair[0].bytes);
                assert!(pair[1].bytes - pair[0].bytes <= import::PROGRESS_STEP + (4 << 20));
            }
        }
    };
    let last = |seen: &[import::Progress], stage: Stage| {
        *seen.iter().rev().find(|p| p.stage == stage).unwrap()
    };

    let mut seen = Vec::new();
    let imported = import_reporting(&mut seen);
    assert!(imported.written);
    check(&seen, &[Stage::UnixFs, Stage::Write, Stage::Index]);
    // The DAG holds at least the file's bytes; its total is the file's size.
    let unixfs = last(&seen, Stage::UnixFs);
    assert_eq!(unixfs.total_bytes, Some(data.len() as u64));
    assert!(unixfs.bytes >= data.len() as u64);
    let write = last(&seen, Stage::Write);
    assert_eq!(
        (write.bytes, write.total_bytes),
        (imported.car_size, Some(imported.car_size))
    );
    // The location list is read to its end: one entry per block.
    let index = last(&seen, Stage::Index);
    assert!(index.bytes > 0);
    assert_eq!(Some(index.bytes), index.total_bytes);

    // Imported again with reports: verified only, nothing written or indexed.
    let mut seen = Vec::new();
    let again = import_reporting(&mut seen);
    assert_eq!(again.piece_cid, imported.piece_cid);
    assert!(!again.written);
    check(&seen, &[Stage::UnixFs, Stage::Verify]);
    let verify = last(&seen, Stage::Verify);
    assert_eq!(
        (verify.bytes, verify.total_bytes),
        (imported.car_size, Some(imported.car_size))
    );
    // Reports change nothing: the same data imports to the same piece without them.
    let third = home.import(&file);
    assert_eq!(third.piece_cid, imported.piece_cid);
    assert!(!third.written);

    // A directory: its CAR is written to staging, then read once.
    let dir = home.dir.path().join("dir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.bin"), &data[..1_000_000]).unwrap();
    std::fs::write(dir.join("b.bin"), &data[1_000_000..]).unwrap();
    let mut seen = Vec::new();
    let imported = import::import_path_with_progress(
        &home.pieces,
        &home.sectors,
        &dir,
        Preset::GO_FIL_MARKETS,
        &home.dir.path().join("staging"),
        &mut |p| seen.push(p),
    )
    .unwrap();
    assert!(imported.written);
    check(
        &seen,
        &[Stage::UnixFs, Stage::Car, Stage::Write, Stage::Index],
    );
    assert_eq!(last(&seen, Stage::Car).bytes, imported.car_size);
}

// A file with raw leaves goes to its piece without a CAR on disk; the piece is exactly the
// one its CAR makes through `import_car`: same piece CID, CAR size and blocks, with a
// chunk that repeats (written once in the CAR) and a short last chunk.
#[test]
fn a_file_imported_without_a_car_on_disk_is_the_piece_of_its_car() {
    let home = Home::new();
    let file = home.dir.path().join("data.bin");
    let mut data: Vec<u8> = (0..5_300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    // The second MiB repeats the first: one leaf, twice in the DAG.
    data.copy_within(..1 << 20, 1 << 20);
    std::fs::write(&file, &data).unwrap();
    for preset in [Preset::UNIXFS_V1_2025, Preset::GO_FIL_MARKETS] {
        let streamed = import::import_path(
            &home.pieces,
            &home.sectors,
            &file,
            preset,
            &home.dir.path().join("staging"),
        )
        .unwrap();
        // The CAR the general path would stage, imported on its own in another home.
        let store = MemoryBlockstore::new();
        let root = unixfs::import_path(&store, preset, &file).unwrap().root;
        let car = home.dir.path().join("data.car");
        rm_blockio::car::export(
            &store,
            root,
            &rm_blockio::Selector::explore_all_recursively(),
            std::fs::File::create(&car).unwrap(),
        )
        .unwrap();
        let other = Home::new();
        let from_car = import::import_car(&other.pieces, &other.sectors, &car).unwrap();
        assert_eq!(streamed.payload_cid, root);
        assert_eq!(
            (
                streamed.piece_cid,
                streamed.car_size,
                streamed.blocks,
                streamed.piece_size
            ),
            (
                from_car.piece_cid,
                from_car.car_size,
                from_car.blocks,
                from_car.piece_size
            ),
            "{preset:?}"
        );
        assert_eq!(streamed.car_size, std::fs::metadata(&car).unwrap().len());
        assert!(streamed.written);
    }
    // Nothing was left in staging.
    assert_eq!(
        std::fs::read_dir(home.dir.path().join("staging"))
            .unwrap()
            .count(),
        0
    );
}

// A file that changes between the two reads (the DAG's, then the CAR's) fails the import:
// the leaf read again does not match its CID. Nothing is recorded.
#[test]
fn a_file_that_changes_during_its_import_is_refused() {
    let home = Home::new();
    let file = home.dir.path().join("data.bin");
    std::fs::write(&file, vec![7u8; 3 << 20]).unwrap();
    let mut changed = false;
    let result = import::import_path_with_progress(
        &home.pieces,
        &home.sectors,
        &file,
        Preset::UNIXFS_V1_2025,
        &home.dir.path().join("staging"),
        &mut |p| {
            // Once the DAG has all of the file (its blocks are put when it is read to the
            // end), before the CAR is made.
            if p.stage == import::Stage::UnixFs && p.bytes >= 3 << 20 && !changed {
                changed = true;
                std::fs::write(&file, vec![8u8; 3 << 20]).unwrap();
            }
        },
    );
    assert!(changed);
    let err = result.unwrap_err().to_string();
    assert!(err.contains("does not match its CID"), "{err}");
    assert!(home.pieces.list_pieces().unwrap().is_empty());
}
