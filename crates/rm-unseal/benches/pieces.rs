//! Piece throughput: Fr32 padding, CommP, and unseal + load of a 256 MiB piece.
//!
//! `cargo bench --workspace --bench pieces`. Throughput is in unpadded bytes.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rm_blockio::ScratchBlockstore;
use rm_blockio::unixfs::Preset;
use rm_unseal::{FileSectorStore, PieceStore, Unsealer, commp, fr32, import, sector, unseal};

/// Pseudo-random bytes (xorshift), so nothing compresses or dedupes.
fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
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

fn bench_commp(c: &mut Criterion) {
    let input = data(64 << 20);
    let mut group = c.benchmark_group("pieces_64mib");
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(10);
    group.bench_function("commp", |b| {
        b.iter(|| black_box(commp::commp(&input).unwrap()))
    });
    let whole = input.len() / 127 * 127;
    let mut out = vec![0u8; whole / 127 * 128];
    group.bench_function("fr32_pad", |b| {
        b.iter(|| {
            fr32::pad_into(&input[..whole], &mut out).unwrap();
            black_box(&out);
        })
    });
    group.finish();
}

fn bench_unseal(c: &mut Criterion) {
    let home = tempfile::tempdir().unwrap();
    // The piece store is read a few times per load; memory or RocksDB makes no difference
    // to these figures, so the bench builds without RocksDB too.
    let db = rm_store::Db::memory();
    let pieces = Arc::new(PieceStore::open(&db).unwrap());
    let sectors = Arc::new(
        FileSectorStore::open(
            home.path().join("sectors"),
            db.keyspace(FileSectorStore::DEFAULT_KEYSPACE).unwrap(),
            sector::Config::default(),
        )
        .unwrap(),
    );
    let file = home.path().join("payload");
    std::fs::write(&file, data(256 << 20)).unwrap();
    let staging = home.path().join("staging");
    let imported = import::import_path(
        &pieces,
        &sectors,
        &file,
        Preset::KUBO_V1_RAW_LEAVES,
        &staging,
    )
    .unwrap();
    std::fs::remove_file(&file).unwrap();
    let access: Arc<dyn rm_unseal::SectorAccess> = sectors.clone();
    let unsealer = Unsealer::new(
        pieces,
        access,
        db.keyspace(unseal::LOADED_KEYSPACE).unwrap(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let mut group = c.benchmark_group("pieces_256mib");
    group.throughput(Throughput::Bytes(imported.car_size));
    group.sample_size(10);
    group.bench_function("unseal_load", |b| {
        b.iter(|| {
            // A fresh destination each time, so every iteration unseals and loads it all.
            let into = Arc::new(ScratchBlockstore::new_in(home.path()).unwrap());
            let loaded = runtime
                .block_on(unsealer.load(&imported.payload_cid, None, into.clone()))
                .unwrap();
            assert_eq!(loaded.blocks, imported.blocks);
            black_box(into)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_commp, bench_unseal);
criterion_main!(benches);
