//! The verifying client against the gateway over real sockets, against providers that
//! truncate, corrupt or reorder their CARs, and across an interruption; and the two sides
//! of the walk against each other in memory.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use cid::Cid;
use http::Response;
use rm_blockio::unixfs::{Importer, Preset};
use rm_blockio::{Blockstore, MemoryBlockstore, SelectorVerifier, Traversal};
use rm_http::{
    CarProducer, Config, EntityBytes, FetchError, Gateway, HttpFetcher, Provider, Scope, Server,
    Spec, Walk,
};
use rm_types::Block;

const ORDERED: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=y";

fn file(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn gateway(store: Arc<MemoryBlockstore>) -> (Server, Provider) {
    let server = Gateway::new(store, Config::default())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let provider = Provider::parse(&server.url()).unwrap();
    (server, provider)
}

/// The CAR the gateway sends for `spec` with dups=y, built from the store.
fn car_bytes(store: &MemoryBlockstore, spec: &Spec) -> Vec<u8> {
    let mut out = Vec::new();
    rm_http::write_car(store, spec, true, &mut out).unwrap();
    out
}

/// A provider answering every request with `body` and `content_type`.
async fn fixed(body: Vec<u8>, content_type: &'static str) -> Provider {
    let body = Bytes::from(body);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        let mut r = Response::new(http_body_util::Full::new(body));
                        r.headers_mut()
                            .insert("content-type", content_type.parse().unwrap());
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Provider::parse(&format!("http://{addr}")).unwrap()
}

/// The blocks of a CAR, in order.
fn sections(car: &[u8]) -> Vec<(Cid, Vec<u8>)> {
    rm_blockio::car::Reader::new(car)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn rebuild(root: Cid, blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    let mut w = rm_blockio::car::Writer::new(Vec::new(), &[root]).unwrap();
    for (c, d) in blocks {
        w.write(c, d).unwrap();
    }
    w.finish().unwrap()
}

#[tokio::test]
async fn fetches_every_scope_and_range_verified() {
    let provider_store = Arc::new(MemoryBlockstore::new());
    let data = file(700_000, 7);
    let preset = Preset::KUBO_V1_RAW_LEAVES
        .with_chunk_size(16_384)
        .with_max_links(8);
    let root = Importer::import_bytes(&provider_store, preset, &data)
        .unwrap()
        .root;
    let (server, provider) = gateway(provider_store.clone()).await;
    for (scope, bytes) in [
        (Scope::All, None),
        (Scope::Entity, None),
        (Scope::Block, None),
        (Scope::Entity, EntityBytes::parse("100000:399999")),
        (Scope::Entity, EntityBytes::parse("-5:*")),
    ] {
        let spec = Spec {
            root,
            path: vec![],
            scope,
            bytes,
        };
        let mine = Arc::new(MemoryBlockstore::new());
        let fetcher = HttpFetcher::new(mine.clone(), None, Default::default());
        let report = fetcher
            .fetch(&spec, std::slice::from_ref(&provider), |_| {})
            .await
            .unwrap();
        let expected = rm_blockio::car::inspect(&car_bytes(&provider_store, &spec)[..]).unwrap();
        assert_eq!(
            report.steps as usize,
            expected.sections.len(),
            "{scope:?} {bytes:?}"
        );
        for (c, _) in &expected.sections {
            assert!(mine.has(c).unwrap());
        }
        assert_eq!(mine.len(), expected.sections.len());
        if let Some(b) = bytes {
            let (first, last) = b.resolve(data.len() as u64).unwrap();
            let mut out = Vec::new();
            rm_http::export::export_range(mine.as_ref(), &root, (first, last), &mut out).unwrap();
            assert_eq!(out, &data[first as usize..=last as usize]);
        } else if scope != Scope::Block {
            let mut out = Vec::new();
            rm_blockio::unixfs::export_file(mine.as_ref(), &root, &mut out).unwrap();
            assert_eq!(out, data);
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn bad_providers_are_left_for_the_next_and_nothing_bad_is_stored() {
    let provider_store = Arc::new(MemoryBlockstore::new());
    let data = file(300_000, 11);
    let preset = Preset::KUBO_V1_RAW_LEAVES.with_chunk_size(10_000);
    let root = Importer::import_bytes(&provider_store, preset, &data)
        .unwrap()
        .root;
    let spec = Spec::all(root);
    let car = car_bytes(&provider_store, &spec);
    let blocks = sections(&car);
    let (server, good) = gateway(provider_store.clone()).await;

    // Truncated in the middle of a block.
    let truncated = fixed(car[..car.len() / 2].to_vec(), ORDERED).await;
    // A block's bytes flipped (its section CID kept).
    let mut corrupt = car.clone();
    let at = car.len() - 5_000;
    corrupt[at] ^= 0xff;
    let corrupt = fixed(corrupt, ORDERED).await;
    // Two leaves swapped.
    let mut swapped = blocks.clone();
    swapped.swap(3, 4);
    let swapped = fixed(rebuild(root, &swapped), ORDERED).await;
    // Cut cleanly between two sections: looks complete, is not.
    let short = fixed(rebuild(root, &blocks[..10]), ORDERED).await;
    // Not a dups=y DFS CAR.
    let unordered = fixed(car.clone(), "application/vnd.ipld.car; version=1").await;

    for (bad, why) in [
        (truncated, "truncated"),
        (corrupt, "corrupt"),
        (swapped, "out of order"),
        (short, "incomplete"),
        (unordered, "no order"),
    ] {
        let mine = Arc::new(MemoryBlockstore::new());
        let db = rm_store::Db::memory();
        let progress = db.keyspace(rm_http::fetch::PROGRESS_KEYSPACE).unwrap();
        let fetcher = HttpFetcher::new(mine.clone(), Some(progress), Default::default());
        // The bad provider alone: the fetch fails, and what was stored is verified.
        let alone = fetcher
            .fetch(&spec, std::slice::from_ref(&bad), |_| {})
            .await;
        assert!(
            matches!(alone, Err(FetchError::AllFailed(_))),
            "{why}: {alone:?}"
        );
        for (c, _) in &blocks {
            if let Some(d) = mine.get(c).unwrap() {
                rm_blockio::codec::verify(c, &d).unwrap();
            }
        }
        let kept = mine.len();
        assert!(kept < blocks.len(), "{why}");
        // The bad one first, then the good one: it completes from where it was.
        let report = fetcher
            .fetch(&spec, &[bad.clone(), good.clone()], |_| {})
            .await
            .unwrap();
        assert_eq!(report.steps as usize, blocks.len(), "{why}");
        assert!(
            !report.failures.is_empty(),
            "{why}: the bad provider failed first"
        );
        assert_eq!(report.resumed_from as usize, kept, "{why}");
        let mut out = Vec::new();
        rm_blockio::unixfs::export_file(mine.as_ref(), &root, &mut out).unwrap();
        assert_eq!(out, data, "{why}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn an_interrupted_fetch_resumes_without_asking_twice() {
    let provider_store = Arc::new(MemoryBlockstore::new());
    let data = file(2_000_000, 3);
    let preset = Preset::KUBO_V1_RAW_LEAVES
        .with_chunk_size(65_536)
        .with_max_links(6);
    let root = Importer::import_bytes(&provider_store, preset, &data)
        .unwrap()
        .root;
    let spec = Spec::all(root);
    let car = car_bytes(&provider_store, &spec);
    let blocks = sections(&car);
    let dag_bytes: u64 = blocks.iter().map(|(_, d)| d.len() as u64).sum();
    let (server, good) = gateway(provider_store.clone()).await;
    // A provider whose connection drops 60% of the way through.
    let cut = fixed(car[..car.len() * 6 / 10].to_vec(), ORDERED).await;

    let mine = Arc::new(MemoryBlockstore::new());
    let db = rm_store::Db::memory();
    let progress = db.keyspace(rm_http::fetch::PROGRESS_KEYSPACE).unwrap();
    let fetcher = HttpFetcher::new(mine.clone(), Some(progress.clone()), Default::default());
    let first = fetcher
        .fetch(&spec, std::slice::from_ref(&cut), |_| {})
        .await;
    assert!(first.is_err());
    let stored: u64 = blocks
        .iter()
        .filter(|(c, _)| mine.has(c).unwrap())
        .map(|(_, d)| d.len() as u64)
        .sum();
    assert!(stored > 0 && stored < dag_bytes);

    // A new fetcher on the same store and records (a new process): only the rest moves.
    let again = HttpFetcher::new(mine.clone(), Some(progress), Default::default());
    let report = again
        .fetch(&spec, std::slice::from_ref(&good), |_| {})
        .await
        .unwrap();
    assert!(report.resumed_from > 0);
    assert_eq!(
        report.progress.block_bytes,
        dag_bytes - stored,
        "nothing stored is asked again"
    );
    assert!(report.progress.requests > 1, "the rest, sub-DAG by sub-DAG");
    let mut out = Vec::new();
    rm_blockio::unixfs::export_file(mine.as_ref(), &root, &mut out).unwrap();
    assert_eq!(out, data);
    // Run once more: complete already, nothing is asked.
    let done = again
        .fetch(&spec, std::slice::from_ref(&good), |_| {})
        .await
        .unwrap();
    assert_eq!((done.progress.requests, done.progress.wire_bytes), (0, 0));
    server.shutdown().await;
}

/// Drives the provider's walk (trusted store) and the client's (verifying) against each
/// other in memory, for every scope and a spread of ranges, and resumes the client at
/// every step through the asks it makes.
#[test]
fn both_sides_of_the_walk_agree_in_memory() {
    let store = MemoryBlockstore::new();
    let data = file(50_000, 5);
    let root = Importer::import_bytes(
        &store,
        Preset::KUBO_V1_RAW_LEAVES
            .with_chunk_size(1000)
            .with_max_links(4),
        &data,
    )
    .unwrap()
    .root;
    let (fixture, roots) = common::fixture("subdir-with-mixed-block-files.car");
    let mut specs = vec![];
    for scope in [Scope::All, Scope::Entity, Scope::Block] {
        specs.push((
            Spec {
                root,
                path: vec![],
                scope,
                bytes: None,
            },
            &store,
        ));
        specs.push((
            Spec {
                root: roots[0],
                path: vec!["subdir".into(), "multiblock.txt".into()],
                scope,
                bytes: None,
            },
            fixture.as_ref(),
        ));
    }
    for r in ["0:0", "999:1000", "12345:23456", "-1:*", "49000:-1", "0:*"] {
        specs.push((
            Spec {
                root,
                path: vec![],
                scope: Scope::Entity,
                bytes: EntityBytes::parse(r),
            },
            &store,
        ));
    }
    for (spec, source) in specs {
        let mut producer = CarProducer::new(source, &spec, true).unwrap();
        let mut sent = Vec::new();
        while let Some(s) = producer.next_section().unwrap() {
            sent.push(s);
        }
        // Straight through.
        let mut client = Walk::<SelectorVerifier>::new(&spec).unwrap();
        for (cid, data) in &sent {
            client.accept(&Block::new(cid, data.clone())).unwrap();
        }
        assert!(client.is_done(), "{spec:?}");
        // A wrong block is refused and changes nothing.
        if sent.len() > 1 {
            let mut client = Walk::<SelectorVerifier>::new(&spec).unwrap();
            let (c1, d1) = &sent[1];
            assert!(client.accept(&Block::new(c1, d1.clone())).is_err());
            assert_eq!(client.steps(), 0);
        }
        // Interrupted after k blocks, resumed through asks answered by the provider.
        for k in 0..sent.len() {
            let mut client = Walk::<SelectorVerifier>::new(&spec).unwrap();
            for (cid, data) in &sent[..k] {
                client.accept(&Block::new(cid, data.clone())).unwrap();
            }
            let mut asked = k;
            while let Some(ask) = client.next_ask().unwrap() {
                let mut sub = CarProducer::new(source, &ask.spec, true).unwrap();
                while let Some((cid, data)) = sub.next_section().unwrap() {
                    assert_eq!(cid, sent[asked].0, "{spec:?} resumed at {k}");
                    client.accept(&Block::new(&cid, data)).unwrap();
                    asked += 1;
                }
                assert!(client.answers(&ask), "{spec:?} at {k}: {ask:?}");
            }
            assert_eq!(asked, sent.len(), "{spec:?} resumed at {k}: nothing twice");
        }
        // The provider's walk reading everything it sends also agrees.
        let mut walk = Walk::<Traversal>::new(&spec).unwrap();
        for (cid, data) in &sent {
            assert_eq!(walk.expected(), Some(*cid));
            walk.accept(&Block::new(cid, data.clone())).unwrap();
        }
        assert!(walk.is_done());
    }
}
