//! `/piece/` and `/ipfs/` served from a sector through the unsealer, over real sockets:
//! the bytes are checked by recomputing the piece commitment, Range edge cases, HEAD, and
//! one unseal however many requests come at once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{get, request};
use http::{Method, StatusCode};
use rm_blockio::{Blockstore, MemoryBlockstore};
use rm_http::{Config, Gateway, Server};
use rm_unseal::sector::{BoxFuture, PieceReader, SectorNumber};
use rm_unseal::{FileSectorStore, PaddedPieceSize, PieceStore, SectorAccess, Unsealer};

/// Sector access that counts unseals.
struct Counting {
    inner: Arc<FileSectorStore>,
    unseals: Arc<AtomicU64>,
}

impl SectorAccess for Counting {
    fn unseal(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<PieceReader, rm_unseal::Error>> {
        self.unseals.fetch_add(1, Ordering::SeqCst);
        self.inner.unseal(sector, offset, length)
    }

    fn is_unsealed(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<bool, rm_unseal::Error>> {
        self.inner.is_unsealed(sector, offset, length)
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    server: Server,
    unseals: Arc<AtomicU64>,
    imported: rm_unseal::Imported,
    blocks: Arc<MemoryBlockstore>,
    data: Vec<u8>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = rm_store::Db::memory();
    let pieces = Arc::new(PieceStore::open(&db).unwrap());
    let sectors = Arc::new(
        FileSectorStore::open(
            dir.path().join("sectors"),
            db.keyspace(FileSectorStore::DEFAULT_KEYSPACE).unwrap(),
            rm_unseal::sector::Config::default(),
        )
        .unwrap(),
    );
    let mut x = 77u64;
    let data: Vec<u8> = (0..600_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let path = dir.path().join("data.bin");
    std::fs::write(&path, &data).unwrap();
    let imported = rm_unseal::import::import_path(
        &pieces,
        &sectors,
        &path,
        rm_blockio::unixfs::Preset::KUBO_V1_RAW_LEAVES,
        &dir.path().join("staging"),
    )
    .unwrap();
    let unseals = Arc::new(AtomicU64::new(0));
    let access: Arc<dyn SectorAccess> = Arc::new(Counting {
        inner: sectors,
        unseals: Arc::clone(&unseals),
    });
    let unsealer = Arc::new(Unsealer::new(
        pieces,
        access,
        db.keyspace(rm_unseal::unseal::LOADED_KEYSPACE).unwrap(),
    ));
    let blocks = Arc::new(MemoryBlockstore::new());
    let config = Config {
        piece_cache_dir: Some(dir.path().join("piece-cache")),
        ..Config::default()
    };
    let server = Gateway::with_unsealer(blocks.clone(), unsealer, config)
        .unwrap()
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Setup {
        _dir: dir,
        server,
        unseals,
        imported,
        blocks,
        data,
    }
}

#[tokio::test]
async fn pieces_with_ranges_unsealed_once() {
    let s = setup().await;
    let addr = s.server.local_addr();
    let piece = s.imported.piece_cid;
    let len = s.imported.piece_size.unpadded().get();
    let path = format!("/piece/{piece}");

    // HEAD answers from the piece store: no unseal.
    let head = request(addr, Method::HEAD, &path, &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), len.to_string());
    assert_eq!(head.header("accept-ranges"), "bytes");
    assert!(head.body.is_empty());
    assert_eq!(s.unseals.load(Ordering::SeqCst), 0);

    // Eight requests at once (whole, and ranges): one unseal.
    let ranges = [
        None,
        Some("bytes=0-99"),
        Some("bytes=-100"),
        Some("bytes=100-"),
        Some("bytes=1000-1000"),
        Some("bytes=0-1,5-6"),
        Some("bytes=400000-999999999"),
        None,
    ];
    let all = futures::future::join_all(ranges.iter().map(|r| {
        let path = path.clone();
        async move {
            let headers: Vec<(&str, &str)> = r.map(|r| vec![("range", r)]).unwrap_or_default();
            (r, get(addr, &path, &headers).await)
        }
    }))
    .await;
    assert_eq!(
        s.unseals.load(Ordering::SeqCst),
        1,
        "one unseal for all of them"
    );
    let whole = all[0].1.body.clone();
    assert_eq!(whole.len() as u64, len);
    // The bytes are the piece: their commitment is the piece CID.
    let mut hasher = rm_unseal::Hasher::new();
    hasher.update(&whole);
    let commitment = hasher.finish_with_size(s.imported.piece_size).unwrap();
    assert_eq!(commitment.cid(), piece);
    // ... a CAR of the payload followed by zero fill.
    let car_len = s.imported.car_size as usize;
    let summary = rm_blockio::car::inspect(&whole[..car_len]).unwrap();
    assert_eq!(summary.roots, vec![s.imported.payload_cid]);
    assert!(whole[car_len..].iter().all(|b| *b == 0));
    for (r, got) in &all {
        let (status, expect): (StatusCode, &[u8]) = match r {
            None | Some("bytes=0-1,5-6") => (StatusCode::OK, &whole[..]),
            Some("bytes=0-99") => (StatusCode::PARTIAL_CONTENT, &whole[..100]),
            Some("bytes=-100") => (StatusCode::PARTIAL_CONTENT, &whole[whole.len() - 100..]),
            Some("bytes=100-") => (StatusCode::PARTIAL_CONTENT, &whole[100..]),
            Some("bytes=1000-1000") => (StatusCode::PARTIAL_CONTENT, &whole[1000..1001]),
            Some(_) => (StatusCode::PARTIAL_CONTENT, &whole[400_000..]),
        };
        assert_eq!(got.status, status, "{r:?}");
        assert_eq!(&got.body[..], expect, "{r:?}");
        if status == StatusCode::PARTIAL_CONTENT {
            assert!(got.header("content-range").starts_with("bytes "), "{r:?}");
            assert!(
                got.header("content-range").ends_with(&format!("/{len}")),
                "{r:?}"
            );
        }
        assert_eq!(
            got.header("content-length"),
            expect.len().to_string(),
            "{r:?}"
        );
    }
    // Unsatisfiable, If-Range, conditional, not found, not a piece CID.
    let past = get(addr, &path, &[("range", &format!("bytes={len}-"))]).await;
    assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(past.header("content-range"), format!("bytes */{len}"));
    let etag = all[0].1.header("etag").to_owned();
    let stale = get(
        addr,
        &path,
        &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(
        (stale.status, stale.body.len() as u64),
        (StatusCode::OK, len)
    );
    let fresh = get(addr, &path, &[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!(
        (fresh.status, fresh.body.len()),
        (StatusCode::PARTIAL_CONTENT, 10)
    );
    let same = get(addr, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    let other = "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq";
    assert_eq!(
        get(addr, &format!("/piece/{other}"), &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let not_piece = format!("/piece/{}", s.imported.payload_cid);
    assert_eq!(
        get(addr, &not_piece, &[]).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(s.unseals.load(Ordering::SeqCst), 1);
    s.server.shutdown().await;
}

#[tokio::test]
async fn ipfs_requests_unseal_the_piece_once() {
    let s = setup().await;
    let addr = s.server.local_addr();
    let root = s.imported.payload_cid;
    assert!(!s.blocks.has(&root).unwrap());
    let path = format!("/ipfs/{root}?format=car");
    let all = futures::future::join_all((0..6).map(|_| get(addr, &path, &[]))).await;
    assert_eq!(s.unseals.load(Ordering::SeqCst), 1);
    for got in &all {
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body, all[0].body);
    }
    // The CAR verifies, and its file is the imported one.
    let store = MemoryBlockstore::new();
    let roots = rm_blockio::car::import(&all[0].body[..], &store).unwrap();
    assert_eq!(roots, vec![root]);
    let mut out = Vec::new();
    rm_blockio::unixfs::export_file(&store, &root, &mut out).unwrap();
    assert_eq!(out, s.data);
    s.server.shutdown().await;
}
