//! CAR v1 write and read (with verification) throughput.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rm_blockio::blockstore::MemoryBlockstore;
use rm_blockio::car;
use rm_blockio::selector::Selector;
use rm_blockio::unixfs::{Importer, Preset};
use std::hint::black_box;

fn bench_car(c: &mut Criterion) {
    let store = MemoryBlockstore::new();
    let data: Vec<u8> = (0..16usize << 20).map(|i| (i % 251) as u8).collect();
    let root = Importer::import_bytes(&store, Preset::KUBO_V1_RAW_LEAVES, &data)
        .unwrap()
        .root;
    let selector = Selector::explore_all_recursively();
    let mut bytes = Vec::new();
    car::export(&store, root, &selector, &mut bytes).unwrap();

    let mut group = c.benchmark_group("car_16mib");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.sample_size(20);
    group.bench_function("write", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(bytes.len());
            car::export(&store, root, &selector, &mut out).unwrap();
            black_box(out)
        })
    });
    group.bench_function("read_verify", |b| {
        b.iter(|| {
            let reader = car::Reader::new(&bytes[..]).unwrap();
            for section in reader {
                black_box(section.unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_car);
criterion_main!(benches);
