//! Serving blocks where they lie: straight from sector files, through the unsealed cache
//! (one unseal per piece, read while it fills, capped, least recently used first, never
//! what is being read), and removing pieces.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rm_blockio::unixfs::Preset;
use rm_blockio::{BlockReader, Blockstore, MemoryBlockstore, Selector};
use rm_types::Cid;
use rm_unseal::sector::{BoxFuture, PieceReader, SectorNumber};
use rm_unseal::{
    Error, FileSectorStore, PaddedPieceSize, PieceStore, SectorAccess, SourceKind, UnsealedCache,
    Unsealer, import, sector, unseal,
};

/// Sector access that can only stream a piece from its start (as a sealed sector), with
/// an optional delay per MiB, counting unseals.
struct StreamOnly {
    files: Arc<FileSectorStore>,
    unseals: AtomicUsize,
    delay_per_mib: Duration,
}

impl SectorAccess for StreamOnly {
    fn unseal(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<PieceReader, Error>> {
        self.unseals.fetch_add(1, Ordering::SeqCst);
        let delay = self.delay_per_mib;
        Box::pin(async move {
            let inner = self.files.unseal(sector, offset, length).await?;
            if delay.is_zero() {
                return Ok(inner);
            }
            let slow: PieceReader = Box::pin(Slow {
                inner,
                delay,
                sleep: None,
                since: 0,
            });
            Ok(slow)
        })
    }

    fn is_unsealed(
        &self,
        _: SectorNumber,
        _: u64,
        _: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(async { Ok(false) })
    }
}

/// Sleeps `delay` after every MiB read.
struct Slow {
    inner: PieceReader,
    delay: Duration,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    since: usize,
}

impl tokio::io::AsyncRead for Slow {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(s) = self.sleep.as_mut() {
            std::task::ready!(s.as_mut().poll(cx));
            self.sleep = None;
        }
        let before = buf.filled().len();
        std::task::ready!(self.inner.as_mut().poll_read(cx, buf))?;
        self.since += buf.filled().len() - before;
        if self.since >= 1 << 20 {
            self.since = 0;
            let delay = self.delay;
            self.sleep = Some(Box::pin(tokio::time::sleep(delay)));
        }
        std::task::Poll::Ready(Ok(()))
    }
}

use std::future::Future;

struct Home {
    dir: tempfile::TempDir,
    db: rm_store::Db,
    pieces: Arc<PieceStore>,
    sectors: Arc<FileSectorStore>,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let db = rm_store::Db::memory();
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

    /// Imports `len` pseudo-random bytes (1 MiB raw leaves) as a piece.
    fn import(&self, len: usize, seed: u64) -> rm_unseal::Imported {
        let file = self.dir.path().join(format!("input-{seed}"));
        std::fs::write(&file, data(len, seed)).unwrap();
        let imported = import::import_path(
            &self.pieces,
            &self.sectors,
            &file,
            Preset::UNIXFS_V1_2025,
            &self.dir.path().join("staging"),
        )
        .unwrap();
        std::fs::remove_file(&file).unwrap();
        imported
    }

    fn direct(&self) -> Unsealer {
        let sectors: Arc<dyn SectorAccess> = self.sectors.clone();
        Unsealer::new(
            Arc::clone(&self.pieces),
            sectors,
            self.db.keyspace(unseal::LOADED_KEYSPACE).unwrap(),
        )
    }

    fn cached(&self, max: u64, delay_per_mib: Duration) -> (Unsealer, Arc<StreamOnly>) {
        let access = Arc::new(StreamOnly {
            files: Arc::clone(&self.sectors),
            unseals: AtomicUsize::new(0),
            delay_per_mib,
        });
        let sectors: Arc<dyn SectorAccess> = access.clone();
        let cache = UnsealedCache::open(self.dir.path().join("cache"), max).unwrap();
        let unsealer = Unsealer::with_cache(
            Arc::clone(&self.pieces),
            sectors,
            self.db.keyspace(unseal::LOADED_KEYSPACE).unwrap(),
            Some(cache),
        );
        (unsealer, access)
    }
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every block of the DAG under `root`, in traversal order, read from `store` on a
/// blocking thread.
async fn read_all(store: Arc<dyn Blockstore>, root: Cid) -> Vec<rm_types::Block> {
    tokio::task::spawn_blocking(move || {
        BlockReader::new(store, root, &Selector::explore_all_recursively())
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    })
    .await
    .unwrap()
}

/// The file bytes of a flat UnixFS file: its leaves in order.
fn leaf_bytes(blocks: &[rm_types::Block]) -> Vec<u8> {
    blocks
        .iter()
        .filter(|b| b.cid().unwrap().codec() == rm_blockio::codec::RAW)
        .flat_map(|b| b.data.iter().copied())
        .collect()
}

#[tokio::test]
async fn blocks_are_served_from_the_sector_file_and_verified() {
    let home = Home::new();
    let imported = home.import(3 << 20, 1);
    let unsealer = home.direct();
    let blocks = unsealer.open(&imported.payload_cid, None).await.unwrap();
    assert_eq!(blocks.kind(), SourceKind::Sector);
    assert_eq!(blocks.piece_cid(), &imported.piece_cid);
    assert_eq!(unsealer.in_use(&imported.piece_cid), 1);
    assert!(blocks.has(&imported.payload_cid).unwrap());
    let store: Arc<dyn Blockstore> = Arc::new(blocks);
    let all = read_all(Arc::clone(&store), imported.payload_cid).await;
    assert_eq!(all.len() as u64, imported.blocks);
    assert_eq!(leaf_bytes(&all), data(3 << 20, 1));
    // Read-only.
    assert!(store.put(&imported.payload_cid, b"x").is_err());
    drop(store);
    assert_eq!(unsealer.in_use(&imported.piece_cid), 0);

    // A block outside the piece comes from the fallback store.
    let extra = MemoryBlockstore::new();
    let other = rm_blockio::codec::cid_of(cid::Version::V1, 0x55, 0x12, b"elsewhere").unwrap();
    extra.put(&other, b"elsewhere").unwrap();
    let with = unsealer
        .open(&imported.payload_cid, Some(&imported.piece_cid))
        .await
        .unwrap()
        .with_fallback(Arc::new(extra));
    assert_eq!(with.get(&other).unwrap().unwrap(), b"elsewhere");
    let bare = unsealer.open(&imported.payload_cid, None).await.unwrap();
    assert_eq!(bare.get(&other).unwrap(), None);

    // Damaged bytes in the sector: the block does not match its CID and is not served.
    let root = bare.location(&imported.payload_cid).unwrap().unwrap();
    let leaf_cid = all[1].cid().unwrap();
    let leaf = bare.location(&leaf_cid).unwrap().unwrap();
    assert!(leaf.rel_offset > root.rel_offset);
    let path = home.sectors.path(imported.placement.sector);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = (imported.placement.offset + (leaf.rel_offset + 1000) / 127 * 128) as usize;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let e = bare.get(&leaf_cid).unwrap_err();
    assert!(e.to_string().contains("does not match its CID"), "{e}");
    // The root, elsewhere in the piece, still reads.
    assert!(bare.get(&imported.payload_cid).unwrap().is_some());
}

#[tokio::test]
async fn a_piece_that_streams_only_is_unsealed_once_into_the_cache_and_read_as_it_fills() {
    let home = Home::new();
    let imported = home.import(8 << 20, 2);
    // 40 ms per MiB: the 8 MiB piece takes ~320 ms to unseal.
    let (unsealer, access) = home.cached(1 << 30, Duration::from_millis(40));
    let started = std::time::Instant::now();
    let first = unsealer.open(&imported.payload_cid, None).await.unwrap();
    assert_eq!(first.kind(), SourceKind::Cache);
    // The root is readable long before the unseal ends.
    first.ready_for(&imported.payload_cid).await.unwrap();
    let root_ready = started.elapsed();
    let second = unsealer.open(&imported.payload_cid, None).await.unwrap();
    let (a, b) = tokio::join!(
        read_all(Arc::new(first), imported.payload_cid),
        read_all(Arc::new(second), imported.payload_cid),
    );
    let whole = started.elapsed();
    assert_eq!(leaf_bytes(&a), data(8 << 20, 2));
    assert_eq!(leaf_bytes(&b), data(8 << 20, 2));
    assert!(whole >= Duration::from_millis(250), "{whole:?}");
    assert!(root_ready * 3 < whole, "root {root_ready:?}, all {whole:?}");
    // Both deals shared one unseal; a later one finds the complete copy.
    assert_eq!(access.unseals.load(Ordering::SeqCst), 1);
    let third = unsealer.open(&imported.payload_cid, None).await.unwrap();
    // The readers may finish before the unseal marks the copy complete (it syncs and
    // renames after the last byte is readable): wait for that, as a deal would not.
    third.ready_all().await.unwrap();
    assert_eq!(
        read_all(Arc::new(third), imported.payload_cid).await.len() as u64,
        imported.blocks
    );
    assert_eq!(access.unseals.load(Ordering::SeqCst), 1);
    let cache = unsealer.cache().unwrap();
    let listed = cache.list();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].complete);
    assert_eq!(listed[0].bytes, imported.car_size);
    assert_eq!(
        std::fs::metadata(cache.dir().join(imported.piece_cid.to_string()))
            .unwrap()
            .len(),
        imported.car_size
    );

    // Damage the cached copy: the bad block is refused and the copy dropped, so the next
    // deal unseals again and is served.
    let path = cache.dir().join(imported.piece_cid.to_string());
    let fourth = unsealer.open(&imported.payload_cid, None).await.unwrap();
    let leaf_cid = a[2].cid().unwrap();
    let at = fourth.location(&leaf_cid).unwrap().unwrap().rel_offset;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at as usize + 10] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let e = fourth.get(&leaf_cid).unwrap_err();
    assert!(e.to_string().contains("does not match its CID"), "{e}");
    assert!(!path.exists());
    drop(fourth);
    let fifth = unsealer.open(&imported.payload_cid, None).await.unwrap();
    assert_eq!(
        leaf_bytes(&read_all(Arc::new(fifth), imported.payload_cid).await),
        data(8 << 20, 2)
    );
    assert_eq!(access.unseals.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_cache_evicts_the_least_recently_used_and_never_what_is_read() {
    let home = Home::new();
    let pieces: Vec<_> = (0..3).map(|i| home.import(1 << 20, 10 + i)).collect();
    let size = pieces[0].car_size;
    assert!(pieces.iter().all(|p| p.car_size == size));
    // Room for two pieces.
    let (unsealer, access) = home.cached(2 * size + size / 2, Duration::ZERO);
    let cache = unsealer.cache().unwrap().clone();
    assert!(cache.list().is_empty());
    let read = |i: usize| {
        let unsealer = &unsealer;
        let p = &pieces[i];
        async move {
            let blocks = unsealer.open(&p.payload_cid, None).await.unwrap();
            blocks.ready_all().await.unwrap();
            blocks
        }
    };
    let listed = |c: &UnsealedCache| -> Vec<Cid> {
        let mut v: Vec<Cid> = c.list().into_iter().map(|p| p.piece_cid).collect();
        v.sort();
        v
    };
    let sorted = |mut v: Vec<Cid>| {
        v.sort();
        v
    };
    drop(read(0).await);
    drop(read(1).await);
    // Piece 0 is used again: piece 1 is now the least recently used.
    drop(read(0).await);
    drop(read(2).await);
    assert_eq!(
        listed(&cache),
        sorted(vec![pieces[0].piece_cid, pieces[2].piece_cid])
    );
    assert!(cache.total_bytes() <= cache.max_bytes());
    assert_eq!(access.unseals.load(Ordering::SeqCst), 3);

    // Pieces 0 and 2 held by deals in flight: piece 1 does not fit and is refused, and
    // neither held piece is evicted.
    let hold0 = read(0).await;
    let hold2 = read(2).await;
    let e = unsealer
        .open(&pieces[1].payload_cid, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("unsealed cache is full"), "{e}");
    assert_eq!(
        listed(&cache),
        sorted(vec![pieces[0].piece_cid, pieces[2].piece_cid])
    );
    // Removing a piece being read is refused too.
    assert!(matches!(
        cache.remove(&pieces[0].piece_cid),
        Err(Error::PieceInUse(_))
    ));
    // One released: it makes room.
    drop(hold2);
    let one = unsealer.open(&pieces[1].payload_cid, None).await.unwrap();
    one.ready_all().await.unwrap();
    assert_eq!(
        listed(&cache),
        sorted(vec![pieces[0].piece_cid, pieces[1].piece_cid])
    );
    drop((hold0, one));

    // Reopened with a smaller cap: the least recently used go at once, and an unseal cut
    // short by a crash (a .part file) is removed.
    std::fs::write(cache.dir().join("leftover.part"), b"half").unwrap();

    drop(unsealer);
    let reopened = UnsealedCache::open(cache.dir(), size + size / 2).unwrap();
    assert_eq!(listed(&reopened), vec![pieces[1].piece_cid]);
    assert!(!cache.dir().join("leftover.part").exists());
}

#[tokio::test]
async fn a_piece_larger_than_the_cache_is_refused_cleanly() {
    let home = Home::new();
    let imported = home.import(1 << 20, 20);
    let (unsealer, access) = home.cached(imported.car_size - 1, Duration::ZERO);
    let e = unsealer
        .open(&imported.payload_cid, None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::CacheFull { .. }), "{e}");
    assert_eq!(access.unseals.load(Ordering::SeqCst), 0);
    assert_eq!(unsealer.in_use(&imported.piece_cid), 0);
}

fn disk(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[tokio::test]
async fn removing_a_piece_frees_its_sector_bytes_and_records() {
    let home = Home::new();
    let keep = home.import(2 << 20, 30);
    let gone = home.import(4 << 20, 31);
    assert_eq!(keep.placement.sector, gone.placement.sector);
    let sector_file = home.sectors.path(gone.placement.sector);
    let before = disk(&sector_file);
    let unsealer = home.direct();

    // Not while a deal reads it.
    let reading = unsealer.open(&gone.payload_cid, None).await.unwrap();
    assert!(matches!(
        unsealer
            .remove_piece(&gone.piece_cid, Some(&home.sectors), None)
            .await,
        Err(Error::PieceInUse(_))
    ));
    drop(reading);

    let removed = unsealer
        .remove_piece(&gone.piece_cid, Some(&home.sectors), None)
        .await
        .unwrap();
    assert_eq!(removed.roots, vec![gone.payload_cid]);
    assert_eq!(removed.blocks, gone.blocks);
    assert_eq!(removed.orphaned, gone.blocks);
    let after = disk(&sector_file);
    assert_eq!(before - after, removed.sector_bytes);
    // The piece's padded data (4 MiB of data: ~4.03 MiB padded) is freed.
    assert!(removed.sector_bytes >= 4 << 20, "{}", removed.sector_bytes);
    assert!(matches!(
        home.pieces.get_piece_info(&gone.piece_cid),
        Err(Error::PieceNotFound(_))
    ));
    assert!(home.pieces.get_cid_info(&gone.payload_cid).is_err());
    assert!(unsealer.open(&gone.payload_cid, None).await.is_err());
    assert!(
        home.pieces
            .blocks_in_piece(&gone.piece_cid)
            .unwrap()
            .is_empty()
    );
    // The other piece in the same sector file is untouched.
    let kept = unsealer.open(&keep.payload_cid, None).await.unwrap();
    assert_eq!(
        leaf_bytes(&read_all(Arc::new(kept), keep.payload_cid).await),
        data(2 << 20, 30)
    );
    // Imported again, it is written anew (at a fresh offset) and served.
    let again = home.import(4 << 20, 31);
    assert!(again.written);
    assert_eq!(again.piece_cid, gone.piece_cid);
    assert_ne!(again.placement, gone.placement);
    let back = unsealer.open(&again.payload_cid, None).await.unwrap();
    assert_eq!(
        leaf_bytes(&read_all(Arc::new(back), again.payload_cid).await),
        data(4 << 20, 31)
    );
}

#[tokio::test]
async fn removing_a_piece_whose_bytes_are_gone_still_clears_its_records() {
    let home = Home::new();
    let imported = home.import(1 << 20, 40);
    std::fs::remove_file(home.sectors.path(imported.placement.sector)).unwrap();
    let unsealer = home.direct();
    let removed = unsealer
        .remove_piece(&imported.piece_cid, Some(&home.sectors), None)
        .await
        .unwrap();
    assert!(removed.roots.is_empty());
    assert_eq!(removed.blocks, imported.blocks);
    assert_eq!(removed.sector_bytes, 0);
    assert!(home.pieces.get_cid_info(&imported.payload_cid).is_err());
}

#[test]
fn a_failed_import_frees_what_it_wrote() {
    let home = Home::new();
    let first = home.import(1 << 20, 50);
    let sector_file = home.sectors.path(first.placement.sector);
    let before = disk(&sector_file);
    // A CAR whose last block is damaged: refused after most of it was written.
    let car = home.dir.path().join("bad.car");
    let blocks: Vec<(Cid, Vec<u8>)> = (0..3u64)
        .map(|i| {
            let d = data(1 << 20, 60 + i);
            (
                rm_blockio::codec::cid_of(cid::Version::V1, 0x55, 0x12, &d).unwrap(),
                d,
            )
        })
        .collect();
    let mut w =
        rm_blockio::car::Writer::new(std::fs::File::create(&car).unwrap(), &[blocks[0].0]).unwrap();
    for (c, d) in &blocks {
        w.write(c, d).unwrap();
    }
    w.finish().unwrap();
    let mut bytes = std::fs::read(&car).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(&car, &bytes).unwrap();
    let e = import::import_car(&home.pieces, &home.sectors, &car).unwrap_err();
    assert!(matches!(e, Error::Car(_)), "{e}");
    // Nothing of it stays on disk or in the piece store.
    assert!(
        disk(&sector_file) <= before + 8192,
        "{} vs {before}",
        disk(&sector_file)
    );
    assert_eq!(home.pieces.list_pieces().unwrap(), vec![first.piece_cid]);
}
