//! UnixFS import throughput (into an in-memory blockstore).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rm_blockio::blockstore::MemoryBlockstore;
use rm_blockio::unixfs::{Importer, Preset};
use std::hint::black_box;

fn bench_import(c: &mut Criterion) {
    let data: Vec<u8> = (0..16usize << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    let mut group = c.benchmark_group("unixfs_import_16mib");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    for (name, preset) in [
        ("kubo_v0", Preset::KUBO_V0),
        ("kubo_v1_raw_leaves", Preset::KUBO_V1_RAW_LEAVES),
        ("unixfs_v1_2025", Preset::UNIXFS_V1_2025),
        ("go_fil_markets", Preset::GO_FIL_MARKETS),
    ] {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let store = MemoryBlockstore::new();
                black_box(Importer::import_bytes(&store, preset, &data).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_import);
criterion_main!(benches);
