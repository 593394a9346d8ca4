//! Heap allocations per MiB of block data moved over a deal stream, client and provider
//! in one process (the same transfer as `deal_throughput`'s `responses_4x1MiB`), counted
//! with dhat's global allocator; the bare stream is counted the same way for comparison.
//!
//! `cargo bench -p rm-network --bench alloc_per_mib` moves 64 MiB per transfer; under
//! `cargo test` (no `--bench` argument) 8 MiB, to prove it works. It prints figures rather
//! than timing anything: the counting allocator makes every allocation slower.

use rm_network::{Network, libp2p::PeerId};

mod common;
use common::{bare_transfer, connected, deal_transfer};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const MIB: f64 = (1 << 20) as f64;

/// Counts what `transfer` allocates, across every thread of the process.
fn count(
    runtime: &tokio::runtime::Runtime,
    name: &str,
    total: u64,
    transfer: impl Future<Output = ()>,
) {
    let before = dhat::HeapStats::get();
    runtime.block_on(transfer);
    let after = dhat::HeapStats::get();
    let blocks = after.total_blocks - before.total_blocks;
    let bytes = after.total_bytes - before.total_bytes;
    let mib = total as f64 / MIB;
    println!(
        "{name:<12} {mib:>4.0} MiB: {:>8.1} allocations/MiB, {:>8.1} KiB allocated/MiB \
         ({blocks} allocations, {:.1} MiB in all)",
        blocks as f64 / mib,
        bytes as f64 / 1024.0 / mib,
        bytes as f64 / MIB,
    );
}

fn main() {
    let total: u64 = if std::env::args().any(|a| a == "--bench") {
        64 << 20
    } else {
        8 << 20
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (client, provider): (Network, PeerId) = connected(&runtime);
    // Warm up: connection buffers and the first stream's allocations are not counted.
    runtime.block_on(deal_transfer(&client, provider, 8 << 20));
    runtime.block_on(bare_transfer(&client, provider, 8 << 20));
    let _profiler = dhat::Profiler::builder().testing().build();
    count(
        &runtime,
        "deal stream",
        total,
        deal_transfer(&client, provider, total),
    );
    count(
        &runtime,
        "bare stream",
        total,
        bare_transfer(&client, provider, total),
    );
}
