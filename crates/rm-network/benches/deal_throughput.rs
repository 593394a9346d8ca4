//! Deal-stream throughput vs a bare libp2p stream, one connection on 127.0.0.1.
//!
//! - `deal_stream/responses_4x1MiB`: the provider writes `DealResponse`s carrying four
//!   1 MiB blocks each (encoded once per message, block data written in place); the client
//!   reads them with the size-capped incremental reader and decodes them.
//! - `deal_stream/bare_stream_1MiB`: the same bytes of block data over a raw libp2p stream
//!   with `write_all` / `read_exact` of 1 MiB, no framing.
//!
//! Both run in the same process, over the same connection, in the same run; the goal is
//! deal >= 0.9x bare. `cargo bench` moves 256 MiB per iteration; under `cargo test` (no
//! `--bench` argument) each function runs once on 8 MiB to prove it works.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

mod common;
use common::{bare_transfer, connected, deal_transfer};

fn total_bytes() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        256 << 20
    } else {
        8 << 20
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let total = total_bytes();
    let (client, provider_id) = connected(&runtime);

    let mut group = c.benchmark_group("deal_stream");
    group.throughput(Throughput::Bytes(total));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("responses_4x1MiB", |b| {
        b.to_async(&runtime)
            .iter(|| deal_transfer(&client, provider_id, total));
    });
    group.bench_function("bare_stream_1MiB", |b| {
        b.to_async(&runtime)
            .iter(|| bare_transfer(&client, provider_id, total));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
