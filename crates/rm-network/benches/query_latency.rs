//! Query latency on 127.0.0.1.
//!
//! - `query/dial_to_first_response`: a fresh client (built outside the timed part) dials the
//!   provider, negotiates `/fil/retrieval/qry/1.0.0`, sends a `Query` and reads the
//!   `QueryResponse` (goal: median <= 5 ms; bare TCP+noise+yamux dial -> first byte is ~3 ms).
//! - `query/on_open_connection`: the same query over an existing connection.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use rm_network::{Config, Event, Network, keys};

mod common;
use rm_types::{Query, QueryItemStatus, QueryResponse, QueryResponseStatus, TokenAmount};

fn answer() -> QueryResponse {
    QueryResponse {
        status: QueryResponseStatus::Available,
        piece_cid_found: QueryItemStatus::Available,
        size: 19_000,
        payment_address: "f01000".parse().expect("valid address"),
        min_price_per_byte: TokenAmount::from_atto(1000u64),
        max_payment_interval: 1 << 20,
        max_payment_interval_increase: 1 << 20,
        message: String::new(),
        unseal_price: TokenAmount::zero(),
    }
}

async fn provider() -> Network {
    let (net, mut events) = common::listening(64).await;
    tokio::spawn(async move {
        let answer = answer();
        while let Some(event) = events.recv().await {
            if let Event::Query(request) = event {
                let _ = request.respond(answer.clone());
            }
        }
    });
    net
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let query = Query::new(
        "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb"
            .parse()
            .expect("valid cid"),
    );
    let (provider, addr) = runtime.block_on(async {
        let provider = provider().await;
        let addr = provider
            .listen_addrs()
            .await
            .expect("listen addrs")
            .remove(0);
        (provider, addr)
    });
    let provider_id = provider.local_peer_id();

    let mut group = c.benchmark_group("query");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("dial_to_first_response", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (query, addr) = (query.clone(), addr.clone());
            async move {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let client = Network::new(keys::generate(), Config::default())
                        .await
                        .expect("client starts");
                    client
                        .add_address(provider_id, addr.clone())
                        .await
                        .expect("address added");
                    let start = Instant::now();
                    let response = client
                        .query(provider_id, &query)
                        .await
                        .expect("query answered");
                    timed += start.elapsed();
                    assert_eq!(response.size, 19_000);
                    client.shutdown().await;
                }
                timed
            }
        });
    });
    let client = runtime.block_on(async {
        let client = Network::new(keys::generate(), Config::default())
            .await
            .expect("client starts");
        client
            .dial(provider_id, vec![addr.clone()])
            .await
            .expect("dial");
        client
    });
    group.bench_function("on_open_connection", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = client
                .query(provider_id, &query)
                .await
                .expect("query answered");
            assert_eq!(response.size, 19_000);
        });
    });
    group.finish();
    runtime.block_on(async {
        client.shutdown().await;
        provider.shutdown().await;
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
