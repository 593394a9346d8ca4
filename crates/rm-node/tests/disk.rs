//! Disk space of a node: the staging sweep, one import at a time per input, pieces
//! listed and removed with their space given back, and the unsealed cache's cap from
//! `config.toml`.

use std::path::Path;
use std::sync::Arc;

use rm_blockio::Blockstore;
use rm_blockio::unixfs::Preset;
use rm_node::{Home, Node, pieces::disk_usage};

fn random_file(path: &Path, len: usize, seed: u64) {
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    std::fs::write(path, out).unwrap();
}

async fn open(home: &Home) -> Node {
    Node::open_home(home, &[]).await.unwrap()
}

#[tokio::test]
async fn leftovers_in_staging_are_swept_when_the_node_opens() {
    let dir = tempfile::tempdir().unwrap();
    // A clean home: nothing to sweep.
    let clean = Home::new(dir.path().join("clean"));
    clean.init().unwrap();
    let node = open(&clean).await;
    assert_eq!(node.swept, 0);
    node.network.shutdown().await;
    // (Its database may stay locked while tasks of the dropped node wind down, so the
    // leftovers go into a second home rather than this one reopened.)
    let home = Home::new(dir.path().join("home"));
    home.init().unwrap();
    // What a crash mid-import leaves: a staged CAR, a scratch file, a directory.
    let staging = home.staging();
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("import-123.car"), vec![1u8; 10_000]).unwrap();
    std::fs::write(staging.join(".tmpXYZ"), b"scratch").unwrap();
    std::fs::create_dir_all(staging.join("dir/inner")).unwrap();
    std::fs::write(staging.join("dir/inner/x"), b"x").unwrap();
    let node = open(&home).await;
    assert_eq!(node.swept, 3);
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    node.network.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_imports_of_the_same_input_write_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home"));
    home.init().unwrap();
    let node = Arc::new(open(&home).await);
    let input = dir.path().join("input.bin");
    random_file(&input, 24 << 20, 1);
    // A CAR of it, to import as a CAR too.
    let car = dir.path().join("input.car");
    {
        let scratch = rm_blockio::MemoryBlockstore::new();
        let root = rm_blockio::unixfs::import_path(&scratch, Preset::UNIXFS_V1_2025, &input)
            .unwrap()
            .root;
        rm_blockio::car::export(
            &scratch,
            root,
            &rm_blockio::Selector::explore_all_recursively(),
            std::fs::File::create(&car).unwrap(),
        )
        .unwrap();
    }
    let sector_dir = home.sectors().join("unsealed");
    for run in 0..2 {
        let (a, b) = (Arc::clone(&node), Arc::clone(&node));
        let (input_a, input_b) = (input.clone(), input.clone());
        let (car_a, car_b) = (car.clone(), car.clone());
        let (x, y) = tokio::join!(
            tokio::task::spawn_blocking(move || {
                let imported = if run == 0 {
                    a.import_piece(&input_a, Preset::UNIXFS_V1_2025)
                } else {
                    a.import_car(&car_a)
                };
                imported.map_err(|e| e.to_string())
            }),
            tokio::task::spawn_blocking(move || {
                let imported = if run == 0 {
                    b.import_piece(&input_b, Preset::UNIXFS_V1_2025)
                } else {
                    b.import_car(&car_b)
                };
                imported.map_err(|e| e.to_string())
            }),
        );
        let (x, y) = (x.unwrap().unwrap(), y.unwrap().unwrap());
        assert_eq!(x.piece_cid, y.piece_cid);
        assert_eq!(x.placement, y.placement);
        // The second waited for the first, then found the piece stored.
        let written = [x.written, y.written];
        if run == 0 {
            assert_eq!(written.iter().filter(|w| **w).count(), 1, "{written:?}");
        } else {
            // The CAR holds the same piece as the file's import: nothing new.
            assert_eq!(written, [false, false]);
        }
        let info = node.pieces.get_piece_info(&x.piece_cid).unwrap();
        assert_eq!(info.deals.len(), 1);
    }
    // One copy on disk: 24 MiB of data padded, in a 32 MiB piece.
    let used = disk_usage(&sector_dir).unwrap();
    assert!(used < 26 << 20, "{used}");
    assert_eq!(node.pieces().await.unwrap().len(), 1);
    node.network.shutdown().await;
}

#[tokio::test]
async fn a_removed_piece_gives_its_disk_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home"));
    home.init().unwrap();
    let node = open(&home).await;
    let (keep_file, gone_file) = (dir.path().join("keep"), dir.path().join("gone"));
    random_file(&keep_file, 4 << 20, 2);
    random_file(&gone_file, 32 << 20, 3);
    let keep = node
        .import_piece(&keep_file, Preset::UNIXFS_V1_2025)
        .unwrap();
    let gone = node
        .import_piece(&gone_file, Preset::UNIXFS_V1_2025)
        .unwrap();
    // An older rm loaded pieces into blocks.dat; do that too, to see it reclaimed.
    let blocks: Arc<dyn Blockstore> = node.blocks.clone();
    node.unsealer
        .load(&gone.payload_cid, None, blocks)
        .await
        .unwrap();
    assert!(node.unsealer.is_loaded(&gone.piece_cid).unwrap());

    let listed = node.pieces().await.unwrap();
    assert_eq!(listed.len(), 2);
    let shown = node.piece(&gone.piece_cid).await.unwrap();
    assert_eq!(shown.payloads, vec![gone.payload_cid]);
    assert_eq!(shown.data_size, Some(gone.car_size));
    assert_eq!(shown.piece_size, Some(gone.piece_size.get()));
    assert!(node.announcer.is_provided(&gone.payload_cid).unwrap());

    let blocks_file = home.blocks();
    let blocks_before = disk_usage(&blocks_file).unwrap();
    let removal = node.remove_piece(&gone.piece_cid).await.unwrap();
    let blocks_after = disk_usage(&blocks_file).unwrap();
    // The sector bytes (32 MiB of data, padded) and the loaded copy are freed.
    assert!(removal.removed.sector_bytes >= 32 << 20, "{removal:?}");
    assert!(
        blocks_before - blocks_after >= 31 << 20,
        "{blocks_before} -> {blocks_after}"
    );
    assert!(
        removal.disk_before - removal.disk_after >= 60 << 20,
        "{removal:?}"
    );
    assert_eq!(removal.unprovided, vec![gone.payload_cid]);
    assert!(!node.announcer.is_provided(&gone.payload_cid).unwrap());
    assert!(!node.blocks.has(&gone.payload_cid).unwrap());
    assert!(!node.unsealer.is_loaded(&gone.piece_cid).unwrap());
    let listed = node.pieces().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].piece_cid, keep.piece_cid);
    // Removing it again: not found.
    assert!(node.remove_piece(&gone.piece_cid).await.is_err());
    node.network.shutdown().await;
}

#[tokio::test]
async fn the_unsealed_cache_follows_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("home"));
    home.init().unwrap();
    let mut text = std::fs::read_to_string(home.config_file()).unwrap();
    text = text
        .replace("direct_reads = true", "direct_reads = false")
        .replace(
            "unsealed_cache_size = \"32GiB\"",
            "unsealed_cache_size = \"3MiB\"",
        );
    std::fs::write(home.config_file(), text).unwrap();
    let node = open(&home).await;
    let cache = node.unsealer.cache().unwrap().clone();
    assert_eq!(cache.max_bytes(), 3 << 20);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    random_file(&a, 2 << 20, 4);
    random_file(&b, 2 << 20, 5);
    let a = node.import_piece(&a, Preset::UNIXFS_V1_2025).unwrap();
    let b = node.import_piece(&b, Preset::UNIXFS_V1_2025).unwrap();
    let open_a = node.unsealer.open(&a.payload_cid, None).await.unwrap();
    assert_eq!(open_a.kind(), rm_unseal::SourceKind::Cache);
    open_a.ready_all().await.unwrap();
    // a is read: b does not fit beside it.
    let e = node.unsealer.open(&b.payload_cid, None).await.unwrap_err();
    assert!(matches!(e, rm_unseal::Error::CacheFull { .. }), "{e}");
    drop(open_a);
    // a is idle now: it is evicted for b.
    let open_b = node.unsealer.open(&b.payload_cid, None).await.unwrap();
    open_b.ready_all().await.unwrap();
    let held: Vec<_> = cache.list().into_iter().map(|p| p.piece_cid).collect();
    assert_eq!(held, vec![b.piece_cid]);
    assert!(cache.total_bytes() <= 3 << 20);
    drop(open_b);
    node.network.shutdown().await;
}
