//! HTTP retrieval over loopback (criterion, release).
//!
//! * `concurrent/1000_small_requests`: 1,000 raw-block requests at once on 1,000
//!   connections; every one must be answered 200. Peak RSS of the process is printed.
//! * `first_block/dag_scope_block`: from the request to the first verified block stored
//!   (a `dag-scope=block` fetch of a file's root on a new connection).
//! * `fetch_256mib/*`: a 256 MiB UnixFS file in 1 MiB raw leaves fetched as a CAR,
//!   every block verified with the `SelectorVerifier` and stored in a `FileBlockstore`
//!   (`rm_http_verified_filestore`), against a bare hyper response of the same bytes
//!   hashed with SHA-256 (`bare_hyper_sha256`), in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use rm_blockio::unixfs::{Importer, Preset};
use rm_blockio::{FileBlockstore, MemoryBlockstore};
use rm_http::{Config, Gateway, HttpFetcher, Provider, Scope, Spec};
use sha2::{Digest, Sha256};

const FILE: usize = 256 << 20;

fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn get_status(addr: std::net::SocketAddr, path: &str) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", "b")
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(req).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

fn concurrent(c: &mut Criterion) {
    let rt = runtime();
    let store = Arc::new(MemoryBlockstore::new());
    let small = Importer::import_bytes(&store, Preset::UNIXFS_V1_2025, &data(4096))
        .unwrap()
        .root;
    let config = Config {
        max_requests_per_ip: 2000,
        max_concurrent_requests: 2000,
        ..Config::default()
    };
    let server = rt
        .block_on(Gateway::new(store, config).bind("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let addr = server.local_addr();
    let path = format!("/ipfs/{small}?format=raw");
    let mut group = c.benchmark_group("concurrent");
    group.sample_size(10);
    group.bench_function("1000_small_requests", |b| {
        b.iter(|| {
            rt.block_on(async {
                let all =
                    futures::future::join_all((0..1000).map(|_| get_status(addr, &path))).await;
                let ok = all.iter().filter(|s| **s == 200).count();
                assert_eq!(ok, 1000, "every request answered 200");
            })
        })
    });
    group.finish();
    println!(
        "concurrent/1000_small_requests: all 1000 answered 200 each time; {}",
        rss()
    );
    rt.block_on(server.shutdown());
}

fn first_block(c: &mut Criterion) {
    let rt = runtime();
    let store = Arc::new(MemoryBlockstore::new());
    let root = Importer::import_bytes(&store, Preset::UNIXFS_V1_2025, &data(8 << 20))
        .unwrap()
        .root;
    let server = rt
        .block_on(Gateway::new(store, Config::default()).bind("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let provider = Provider::parse(&server.url()).unwrap();
    let spec = Spec {
        root,
        path: vec![],
        scope: Scope::Block,
        bytes: None,
    };
    let mut group = c.benchmark_group("first_block");
    group.bench_function("dag_scope_block", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mine = Arc::new(MemoryBlockstore::new());
                let fetcher = HttpFetcher::new(mine, None, Default::default());
                let report = fetcher
                    .fetch(&spec, std::slice::from_ref(&provider), |_| {})
                    .await
                    .unwrap();
                assert_eq!(report.steps, 1);
            })
        })
    });
    group.finish();
    rt.block_on(server.shutdown());
}

/// A bare hyper server answering every request with `chunks`.
async fn bare_server(chunks: Arc<Vec<Bytes>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let chunks = Arc::clone(&chunks);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let frames = chunks
                        .iter()
                        .cloned()
                        .map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b)))
                        .collect::<Vec<_>>();
                    async move {
                        Ok::<_, std::convert::Infallible>(Response::new(StreamBody::new(
                            futures::stream::iter(frames),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn bare_fetch(addr: std::net::SocketAddr) -> ([u8; 32], u64) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(4 << 20)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "b")
        .body(Empty::new())
        .unwrap();
    let mut body = sender.send_request(req).await.unwrap().into_body();
    let mut hasher = Sha256::new();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            n += d.len() as u64;
            hasher.update(&d);
        }
    }
    (hasher.finalize().into(), n)
}

fn fetch_256mib(c: &mut Criterion) {
    let rt = runtime();
    let file = data(FILE);
    let provider_store = Arc::new(MemoryBlockstore::new());
    let root = Importer::import_bytes(&provider_store, Preset::UNIXFS_V1_2025, &file)
        .unwrap()
        .root;
    let chunks: Arc<Vec<Bytes>> =
        Arc::new(file.chunks(1 << 20).map(Bytes::copy_from_slice).collect());
    let expected: [u8; 32] = Sha256::digest(&file).into();
    drop(file);
    let server = rt
        .block_on(
            Gateway::new(provider_store, Config::default()).bind("127.0.0.1:0".parse().unwrap()),
        )
        .unwrap();
    let provider = Provider::parse(&server.url()).unwrap();
    let bare = rt.block_on(bare_server(chunks));
    let dir = tempfile::tempdir().unwrap();

    let mut group = c.benchmark_group("fetch_256mib");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(FILE as u64));
    group.bench_function("bare_hyper_sha256", |b| {
        b.iter(|| {
            let (digest, n) = rt.block_on(bare_fetch(bare));
            assert_eq!((digest, n), (expected, FILE as u64));
        })
    });
    let mut run = 0u32;
    group.bench_function("rm_http_verified_filestore", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let db = rm_store::Db::memory();
                let path = dir.path().join(format!("blocks-{run}.dat"));
                let store = Arc::new(
                    FileBlockstore::open(
                        &path,
                        db.keyspace(FileBlockstore::DEFAULT_KEYSPACE).unwrap(),
                    )
                    .unwrap(),
                );
                let fetcher = HttpFetcher::new(store, None, Default::default());
                let started = Instant::now();
                let report = rt
                    .block_on(fetcher.fetch(
                        &Spec::all(root),
                        std::slice::from_ref(&provider),
                        |_| {},
                    ))
                    .unwrap();
                total += started.elapsed();
                assert_eq!(report.steps, 257, "the root and 256 leaves");
                drop(fetcher);
                let _ = std::fs::remove_file(&path);
            }
            total
        })
    });
    group.finish();
    rt.block_on(server.shutdown());
}

criterion_group!(benches, concurrent, first_block, fetch_256mib);
criterion_main!(benches);
