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
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use rm_network::{
    Config, Event, Network, keys,
    libp2p::{Multiaddr, PeerId, StreamProtocol},
};
use rm_types::{Block, DealId, DealProposal, DealResponse, DealStatus, Params, TokenAmount};

const BLOCK: usize = 1 << 20;
const BLOCKS_PER_RESPONSE: usize = 4;
const BARE: StreamProtocol = StreamProtocol::new("/rm-bench/bare/1.0.0");

fn total_bytes() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        256 << 20
    } else {
        8 << 20
    }
}

fn response() -> DealResponse {
    let blocks = (0..BLOCKS_PER_RESPONSE)
        .map(|i| Block {
            prefix: vec![0x01, 0x55, 0x12, 0x20],
            data: (0..BLOCK).map(|j| (i * 31 + j * 7) as u8).collect(),
        })
        .collect();
    DealResponse {
        status: DealStatus::Ongoing,
        id: DealId(1),
        payment_owed: TokenAmount::zero(),
        message: String::new(),
        blocks,
    }
}

/// The provider: answers each deal stream with responses until `PaymentInterval` bytes
/// of block data are sent (the bench's way of saying how much), and serves the bare
/// protocol with 1 MiB writes.
async fn provider() -> Network {
    let loopback: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr");
    let net = Network::new(
        keys::generate(),
        Config::default().with_listen_addrs([loopback]),
    )
    .await
    .expect("provider starts");
    let (delegate, mut events) = tokio::sync::mpsc::channel(4);
    net.set_delegate(delegate);
    tokio::spawn(async move {
        let response = std::sync::Arc::new(response());
        while let Some(event) = events.recv().await {
            let Event::Deal(mut stream) = event else {
                continue;
            };
            let response = std::sync::Arc::clone(&response);
            tokio::spawn(async move {
                let Ok(proposal) = stream.read_proposal().await else {
                    return;
                };
                let mut sent = 0u64;
                while sent < proposal.params.payment_interval {
                    if stream.write_response(&response).await.is_err() {
                        return;
                    }
                    sent += (BLOCK * BLOCKS_PER_RESPONSE) as u64;
                }
                let _ = stream.close().await;
            });
        }
    });
    let mut incoming = net.accept(BARE).expect("bare protocol registers");
    tokio::spawn(async move {
        let block = vec![7u8; BLOCK];
        while let Some((_, mut stream)) = incoming.next().await {
            let block = block.clone();
            tokio::spawn(async move {
                let mut total = [0u8; 8];
                if stream.read_exact(&mut total).await.is_err() {
                    return;
                }
                let mut left = u64::from_be_bytes(total);
                while left > 0 {
                    if stream.write_all(&block).await.is_err() {
                        return;
                    }
                    left = left.saturating_sub(BLOCK as u64);
                }
                let _ = stream.close().await;
            });
        }
    });
    net
}

async fn deal_transfer(client: &Network, provider: PeerId, total: u64) {
    let mut stream = client
        .open_deal_stream(provider)
        .await
        .expect("deal stream opens");
    let proposal = DealProposal {
        payload_cid: "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb"
            .parse()
            .expect("valid cid"),
        id: DealId(1),
        params: Params::new(TokenAmount::zero(), total, 0),
        resume: None,
    };
    stream
        .write_proposal(&proposal)
        .await
        .expect("proposal written");
    let mut received = 0u64;
    while received < total {
        let response = stream.read_response().await.expect("response read");
        received += response
            .blocks
            .iter()
            .map(|b| b.data.len() as u64)
            .sum::<u64>();
    }
}

async fn bare_transfer(client: &Network, provider: PeerId, total: u64) {
    let mut stream = client
        .open_stream(provider, BARE)
        .await
        .expect("bare stream opens");
    stream
        .write_all(&total.to_be_bytes())
        .await
        .expect("request written");
    stream.flush().await.expect("flushed");
    let mut block = vec![0u8; BLOCK];
    let mut received = 0u64;
    while received < total {
        stream.read_exact(&mut block).await.expect("block read");
        received += BLOCK as u64;
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let total = total_bytes();
    let (client, provider_id) = runtime.block_on(async {
        let provider = provider().await;
        let client = Network::new(keys::generate(), Config::default())
            .await
            .expect("client starts");
        let addr = provider
            .listen_addrs()
            .await
            .expect("listen addrs")
            .remove(0);
        client
            .dial(provider.local_peer_id(), vec![addr])
            .await
            .expect("dial");
        let id = provider.local_peer_id();
        // The provider's handle must outlive the bench; leak it into the runtime.
        tokio::spawn(async move {
            let _keep = provider;
            std::future::pending::<()>().await;
        });
        (client, id)
    });

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
