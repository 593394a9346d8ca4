//! The Trustless Gateway over real sockets, checked with a plain HTTP client and
//! rm-blockio's verifying CAR reader against the gateway-conformance fixtures and the
//! block lists its tests assert.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cid::Cid;
use common::{cid_at, descendants, fixture, get, request};
use http::{Method, StatusCode};
use rm_blockio::Blockstore;
use rm_http::{Config, Gateway, Server};

const CAR: &str = "application/vnd.ipld.car";
const RAW: &str = "application/vnd.ipld.raw";

async fn serve(store: Arc<dyn Blockstore>, config: Config) -> Server {
    Gateway::new(store, config)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn cids(list: &[&str]) -> Vec<Cid> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// The standard headers of every CAR response.
fn check_car_headers(got: &common::Got, dups: &str) {
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(
        got.header("content-type"),
        format!("{CAR}; version=1; order=dfs; dups={dups}")
    );
    assert_eq!(got.header("x-content-type-options"), "nosniff");
    assert_eq!(got.header("accept-ranges"), "none");
    assert!(
        got.header("content-disposition")
            .starts_with("attachment; filename=\"")
    );
    assert!(got.header("content-disposition").ends_with(".car\""));
    assert!(!got.header("etag").is_empty());
    assert_eq!(
        got.header("cache-control"),
        "public, max-age=29030400, immutable"
    );
}

#[tokio::test]
async fn pathing_through_directories_hamts_and_dag_cbor() {
    let (store, roots) = fixture("subdir-with-two-single-block-files.car");
    let root = roots[0];
    let server = serve(store.clone(), Config::default()).await;
    let addr = server.local_addr();
    let subdir = cid_at(store.as_ref(), root, &["subdir"]);
    let ascii = cid_at(store.as_ref(), root, &["subdir", "ascii.txt"]);

    // ?format=car and Accept give the same CAR: the path's blocks, then the file.
    let by_param = get(
        addr,
        &format!("/ipfs/{root}/subdir/ascii.txt?format=car"),
        &[],
    )
    .await;
    check_car_headers(&by_param, "n");
    assert_eq!(by_param.car().1, vec![root, subdir, ascii]);
    assert_eq!(by_param.header("content-location"), "");
    let by_accept = get(
        addr,
        &format!("/ipfs/{root}/subdir/ascii.txt"),
        &[("accept", CAR)],
    )
    .await;
    check_car_headers(&by_accept, "n");
    assert_eq!(by_accept.body, by_param.body);
    assert_eq!(
        by_accept.header("content-location"),
        format!("/ipfs/{root}/subdir/ascii.txt?format=car")
    );
    assert_eq!(
        by_accept.header("x-ipfs-path"),
        format!("/ipfs/{root}/subdir/ascii.txt")
    );
    assert!(
        by_accept
            .header("x-ipfs-roots")
            .ends_with(&ascii.to_string())
    );
    assert!(
        by_accept
            .header("content-disposition")
            .contains("_ascii.txt.car")
    );
    // A name that is not there: 404 before any CAR.
    let missing = get(
        addr,
        &format!("/ipfs/{root}/subdir/i-do-not-exist?format=car"),
        &[],
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // dag-scope=block on a path: the path's blocks and the terminal block.
    let block = get(
        addr,
        &format!("/ipfs/{root}/subdir?format=car&dag-scope=block"),
        &[],
    )
    .await;
    assert_eq!(block.car().1, vec![root, subdir]);
    server.shutdown().await;

    // A HAMT-sharded directory: the shard(s) on the way to the name, then the file.
    let (store, roots) = fixture("single-layer-hamt-with-multi-block-files.car");
    let hamt = roots[0];
    let server = serve(store.clone(), Config::default()).await;
    let addr = server.local_addr();
    // The shards on the way are found here by searching every shard; the gateway finds
    // them by hashing the name.
    let mut expected = vec![hamt];
    expected.extend(common::hamt_path(store.as_ref(), hamt, "685.txt").unwrap());
    assert!(
        expected.len() >= 3,
        "the fixture has a shard between root and file"
    );
    let file = *expected.last().unwrap();
    expected.extend(descendants(store.as_ref(), file));
    let got = get(addr, &format!("/ipfs/{hamt}/685.txt?format=car"), &[]).await;
    check_car_headers(&got, "n");
    assert_eq!(got.car().1, expected);
    let mut expected = vec![hamt];
    expected.extend(common::hamt_path(store.as_ref(), hamt, "1.txt").unwrap());
    let got = get(
        addr,
        &format!("/ipfs/{hamt}/1.txt?format=car&dag-scope=block"),
        &[],
    )
    .await;
    assert_eq!(got.car().1, expected);
    // Every name of the directory resolves through the hash (a wrong hash finds nothing).
    for n in [2, 17, 333, 999] {
        let name = format!("{n}.txt");
        if common::hamt_path(store.as_ref(), hamt, &name).is_some() {
            let got = get(
                addr,
                &format!("/ipfs/{hamt}/{name}?format=car&dag-scope=block"),
                &[],
            )
            .await;
            assert_eq!(got.status, StatusCode::OK, "{name}");
        }
    }
    // dag-scope=entity of a sharded directory: every shard, nothing below.
    let mut shards = vec![hamt];
    shards.extend(common::hamt_shards(store.as_ref(), hamt));
    assert!(shards.len() > 2);
    let got = get(
        addr,
        &format!("/ipfs/{hamt}?format=car&dag-scope=entity"),
        &[],
    )
    .await;
    assert_eq!(got.car().1, shards);
    let got = get(
        addr,
        &format!("/ipfs/{hamt}?format=car&entity-bytes=0:*"),
        &[],
    )
    .await;
    assert_eq!(got.car().1, shards);
    server.shutdown().await;

    // DAG-CBOR at the root: fields lead to a link.
    let (store, roots) = fixture("dir-with-dag-cbor-with-links.car");
    let dir = roots[0];
    let server = serve(store.clone(), Config::default()).await;
    let addr = server.local_addr();
    let document = cid_at(store.as_ref(), dir, &["document"]);
    let single = cid_at(store.as_ref(), document, &["files", "single"]);
    let got = get(
        addr,
        &format!("/ipfs/{document}/files/single?format=car"),
        &[],
    )
    .await;
    check_car_headers(&got, "n");
    let mut expected = vec![document, single];
    expected.extend(descendants(store.as_ref(), single));
    assert_eq!(got.car().1, expected);
    // dag-scope=entity of DAG-CBOR: the document alone, not what it links to.
    let got = get(
        addr,
        &format!("/ipfs/{dir}/document?format=car&dag-scope=entity"),
        &[],
    )
    .await;
    assert_eq!(got.car().1, vec![dir, document]);
    // Pathing into a value that is not a link: 501.
    let got = get(addr, &format!("/ipfs/{document}/files?format=car"), &[]).await;
    assert_eq!(got.status, StatusCode::NOT_IMPLEMENTED);
    server.shutdown().await;
}

#[tokio::test]
async fn dag_scope_and_entity_bytes() {
    let (store, roots) = fixture("subdir-with-mixed-block-files.car");
    let root = roots[0];
    let server = serve(store.clone(), Config::default()).await;
    let addr = server.local_addr();
    let subdir = cid_at(store.as_ref(), root, &["subdir"]);
    let ascii = cid_at(store.as_ref(), root, &["subdir", "ascii.txt"]);
    let multi = cid_at(store.as_ref(), root, &["subdir", "multiblock.txt"]);
    // The leaves of multiblock.txt, as the conformance suite lists them (1026 bytes:
    // four of 256 bytes and one of 2).
    let leaves = cids(&[
        "bafkreie5noke3mb7hqxukzcy73nl23k6lxszxi5w3dtmuwz62wnvkpsscm",
        "bafkreih4ephajybraj6wnxsbwjwa77fukurtpl7oj7t7pfq545duhot7cq",
        "bafkreigu7buvm3cfunb35766dn7tmqyh2um62zcio63en2btvxuybgcpue",
        "bafkreicll3huefkc3qnrzeony7zcfo7cr3nbx64hnxrqzsixpceg332fhe",
        "bafkreifst3pqztuvj57lycamoi7z34b4emf7gawxs74nwrc2c7jncmpaqm",
    ]);
    assert_eq!(descendants(store.as_ref(), multi), leaves);
    let car = |q: String| async move {
        let got = get(addr, &q, &[]).await;
        check_car_headers(&got, "n");
        got.car().1
    };
    // entity: a directory's own block; a file's every block.
    assert_eq!(
        car(format!("/ipfs/{root}?format=car&dag-scope=entity")).await,
        vec![root]
    );
    assert_eq!(
        car(format!(
            "/ipfs/{root}/subdir/ascii.txt?format=car&dag-scope=entity"
        ))
        .await,
        vec![root, subdir, ascii]
    );
    let mut whole = vec![root, subdir, multi];
    whole.extend(&leaves);
    assert_eq!(
        car(format!(
            "/ipfs/{root}/subdir/multiblock.txt?format=car&dag-scope=entity"
        ))
        .await,
        whole
    );
    // all: everything below the terminal element.
    let mut all = vec![root, subdir];
    all.extend(descendants(store.as_ref(), subdir));
    assert_eq!(
        car(format!("/ipfs/{root}/subdir?format=car&dag-scope=all")).await,
        all
    );
    assert_eq!(car(format!("/ipfs/{root}/subdir?format=car")).await, all);
    // entity-bytes, with the ranges and block lists of the conformance suite.
    assert_eq!(
        car(format!(
            "/ipfs/{root}/subdir/multiblock.txt?format=car&dag-scope=entity&entity-bytes=0:*"
        ))
        .await,
        whole
    );
    let range = |r: &str| format!("/ipfs/{multi}?format=car&dag-scope=entity&entity-bytes={r}");
    let with = |ls: &[Cid]| {
        let mut v = vec![multi];
        v.extend_from_slice(ls);
        v
    };
    assert_eq!(car(range("512:*")).await, with(&leaves[2..]));
    assert_eq!(car(range("512:1023")).await, with(&leaves[2..4]));
    assert_eq!(car(range("512:-256")).await, with(&leaves[2..4]));
    assert_eq!(car(range("-5:*")).await, with(&leaves[3..]));
    assert_eq!(car(range("-9999:*")).await, with(&leaves));
    assert_eq!(car(range("-9999:-3")).await, with(&leaves[..4]));
    assert_eq!(car(range("0:0")).await, with(&leaves[..1]));
    // Out of the file: equivalent to dag-scope=block.
    assert_eq!(car(range("5000:*")).await, with(&[]));
    // entity-bytes alone implies dag-scope=entity.
    assert_eq!(
        car(format!("/ipfs/{multi}?format=car&entity-bytes=512:1023")).await,
        with(&leaves[2..4])
    );
    server.shutdown().await;

    // A block missing outside the range does not matter.
    let (store, roots) = fixture("file-3k-and-3-blocks-missing-block.car");
    let file = roots[0];
    let server = serve(store, Config::default()).await;
    let addr = server.local_addr();
    let first = format!("/ipfs/{file}?format=car&dag-scope=entity&entity-bytes=0:1000");
    let got = get(addr, &first, &[]).await;
    assert_eq!(
        got.car().1,
        vec![
            file,
            cids(&["QmPKt7ptM2ZYSGPUc8PmPT2VBkLDK3iqpG9TBJY7PCE9rF"])[0]
        ]
    );
    let last = format!("/ipfs/{file}?format=car&dag-scope=entity&entity-bytes=2200:*");
    let got = get(addr, &last, &[]).await;
    assert_eq!(
        got.car().1,
        vec![
            file,
            cids(&["QmWXY482zQdwecnfBsj78poUUuPXvyw2JAFAEMw4tzTavV"])[0]
        ]
    );
    // The whole file: the CAR is cut where the missing block is (200 already sent), and
    // a verifying reader sees a CAR that does not hold the whole file.
    let got = get(addr, &format!("/ipfs/{file}?format=car"), &[]).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.cut, "the response is cut, not ended");
    let summary = rm_blockio::car::inspect(&got.body[..]).unwrap();
    assert_eq!(
        summary.sections.len(),
        2,
        "the root and the first leaf, then the cut"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn order_and_duplicates() {
    let (store, roots) = fixture("dir-with-duplicate-files.car");
    let dir = roots[0];
    let server = serve(store.clone(), Config::default()).await;
    let addr = server.local_addr();
    let ascii = cid_at(store.as_ref(), dir, &["ascii.txt"]);
    assert_eq!(ascii, cid_at(store.as_ref(), dir, &["ascii-copy.txt"]));
    let mut with_dups = vec![dir];
    with_dups.extend(descendants(store.as_ref(), dir));
    assert_eq!(with_dups.iter().filter(|c| **c == ascii).count(), 2);
    let mut without = Vec::new();
    for c in &with_dups {
        if !without.contains(c) {
            without.push(*c);
        }
    }
    let accept = |v: &'static str| [("accept", v)];
    let y = get(
        addr,
        &format!("/ipfs/{dir}"),
        &accept("application/vnd.ipld.car; version=1; order=dfs; dups=y"),
    )
    .await;
    check_car_headers(&y, "y");
    assert_eq!(y.car().1, with_dups);
    let n = get(
        addr,
        &format!("/ipfs/{dir}"),
        &accept("application/vnd.ipld.car; version=1; order=dfs; dups=n"),
    )
    .await;
    check_car_headers(&n, "n");
    assert_eq!(n.car().1, without);
    // order=unk is answered with the order actually used.
    let unk = get(
        addr,
        &format!("/ipfs/{dir}"),
        &accept("application/vnd.ipld.car; version=1; order=unk"),
    )
    .await;
    check_car_headers(&unk, "n");
    // URL parameters win over Accept's.
    let q = get(
        addr,
        &format!("/ipfs/{dir}?format=car&car-dups=y"),
        &accept("application/vnd.ipld.car; dups=n"),
    )
    .await;
    check_car_headers(&q, "y");
    assert_ne!(q.header("etag"), n.header("etag"), "dups change the Etag");
    // ?format=car keeps Accept's parameters when Accept asks for a CAR too.
    let both = get(
        addr,
        &format!("/ipfs/{dir}?format=car"),
        &accept("application/vnd.ipld.car; version=1; order=dfs; dups=y"),
    )
    .await;
    assert_eq!(both.car().1, with_dups);
    // Identity blocks are never sent, even with dups=y.
    let id = "bafkqaf3imvwgy3zaneqgc3janfxgy2lomvscay3jmqfa";
    let got = get(
        addr,
        &format!("/ipfs/{id}"),
        &accept("application/vnd.ipld.car; dups=y"),
    )
    .await;
    check_car_headers(&got, "y");
    assert_eq!(got.car(), (cids(&[id]), vec![]));
    // Unsupported CAR variants: 400.
    for bad in ["car-version=2", "car-order=bfs", "car-dups=x"] {
        let got = get(addr, &format!("/ipfs/{dir}?format=car&{bad}"), &[]).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn raw_blocks_ranges_head_and_probes() {
    let (store, roots) = fixture("gateway-raw-block.car");
    let dir = cid_at(store.as_ref(), roots[0], &["dir"]);
    let server = serve(store.clone(), Config::default()).await;
    let addr = server.local_addr();
    let ascii = cid_at(store.as_ref(), dir, &["ascii.txt"]);
    let data = store.get(&ascii).unwrap().unwrap();
    let raw = get(addr, &format!("/ipfs/{ascii}"), &[("accept", RAW)]).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.body, data);
    assert_eq!(raw.header("content-type"), RAW);
    assert_eq!(raw.header("content-length"), data.len().to_string());
    assert_eq!(
        raw.header("content-disposition"),
        format!("attachment; filename=\"{ascii}.bin\"")
    );
    assert_eq!(raw.header("x-content-type-options"), "nosniff");
    assert_eq!(raw.header("etag"), format!("\"{ascii}.raw\""));
    assert_eq!(raw.header("x-ipfs-path"), format!("/ipfs/{ascii}"));
    assert_eq!(raw.header("x-ipfs-roots"), ascii.to_string());
    assert_eq!(
        raw.header("cache-control"),
        "public, max-age=29030400, immutable"
    );
    assert_eq!(
        raw.header("content-location"),
        format!("/ipfs/{ascii}?format=raw")
    );
    let named = get(
        addr,
        &format!("/ipfs/{ascii}?filename=foobar.bin"),
        &[("accept", RAW)],
    )
    .await;
    assert_eq!(
        named.header("content-disposition"),
        "attachment; filename=\"foobar.bin\""
    );
    // ?format wins over Accept, both ways.
    let as_car = get(addr, &format!("/ipfs/{dir}?format=car"), &[("accept", RAW)]).await;
    assert!(as_car.header("content-type").starts_with(CAR));
    let as_raw = get(addr, &format!("/ipfs/{dir}?format=raw"), &[("accept", CAR)]).await;
    assert_eq!(as_raw.header("content-type"), RAW);
    assert_eq!(as_raw.body, store.get(&dir).unwrap().unwrap());
    // Ranges of a raw block.
    let path = format!("/ipfs/{ascii}?format=raw");
    let part = get(addr, &path, &[("range", "bytes=1-3")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, data[1..=3]);
    assert_eq!(
        part.header("content-range"),
        format!("bytes 1-3/{}", data.len())
    );
    let tail = get(addr, &path, &[("range", "bytes=-4")]).await;
    assert_eq!(tail.body, data[data.len() - 4..]);
    let past = get(addr, &path, &[("range", &format!("bytes={}-", data.len()))]).await;
    assert_eq!(past.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        past.header("content-range"),
        format!("bytes */{}", data.len())
    );
    let many = get(addr, &path, &[("range", "bytes=0-1,3-4")]).await;
    assert_eq!((many.status, many.body.len()), (StatusCode::OK, data.len()));
    // HEAD: the headers of GET, no body.
    let head = request(addr, Method::HEAD, &path, &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), data.len().to_string());
    assert!(head.body.is_empty());
    let head_car = request(addr, Method::HEAD, &format!("/ipfs/{dir}?format=car"), &[]).await;
    assert_eq!(head_car.status, StatusCode::OK);
    assert!(head_car.header("content-type").starts_with(CAR));
    assert!(head_car.body.is_empty());
    // Conditional requests.
    let etag = raw.header("etag").to_owned();
    let same = get(addr, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    assert!(same.body.is_empty());
    let car_etag = as_car.header("etag").to_owned();
    let same = get(
        addr,
        &format!("/ipfs/{dir}?format=car"),
        &[("if-none-match", &car_etag)],
    )
    .await;
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    // The probes: the empty identity CID.
    let probe = get(addr, "/ipfs/bafkqaaa?format=raw", &[]).await;
    assert_eq!((probe.status, probe.body.len()), (StatusCode::OK, 0));
    let probe = get(addr, "/ipfs/bafkqaaa?format=car", &[]).await;
    assert_eq!(probe.car(), (cids(&["bafkqaaa"]), vec![]));
    let probe = request(addr, Method::HEAD, "/ipfs/bafkqaaa?format=raw", &[]).await;
    assert_eq!(probe.status, StatusCode::OK);
    server.shutdown().await;
}

#[tokio::test]
async fn error_statuses() {
    let (store, roots) = fixture("gateway-raw-block.car");
    let dir = roots[0];
    let config = Config {
        max_raw_block: 10,
        ..Config::default()
    };
    let server = serve(store.clone(), config).await;
    let addr = server.local_addr();
    let absent = "bafkreih4ephajybraj6wnxsbwjwa77fukurtpl7oj7t7pfq545duhot7cq";
    let status = |got: common::Got| got.status;
    let car = [("accept", CAR)];
    assert_eq!(
        status(get(addr, "/ipfs/not-a-cid?format=car", &[]).await),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(get(addr, &format!("/ipfs/{dir}"), &[]).await),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(get(addr, &format!("/ipfs/{dir}"), &[("accept", "*/*")]).await),
        StatusCode::NOT_ACCEPTABLE
    );
    assert_eq!(
        status(get(addr, &format!("/ipfs/{dir}"), &[("accept", "text/html")]).await),
        StatusCode::NOT_ACCEPTABLE
    );
    assert_eq!(
        status(get(addr, &format!("/ipfs/{absent}"), &car).await),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(get(addr, &format!("/ipfs/{absent}?format=raw"), &[]).await),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(
            request(
                addr,
                Method::HEAD,
                &format!("/ipfs/{absent}?format=raw"),
                &[]
            )
            .await
        ),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status(
            get(
                addr,
                &format!("/ipfs/{absent}?format=car"),
                &[("cache-control", "only-if-cached")]
            )
            .await
        ),
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        status(
            get(
                addr,
                &format!("/ipfs/{dir}?format=car"),
                &[("cache-control", "only-if-cached")]
            )
            .await
        ),
        StatusCode::OK
    );
    assert_eq!(
        status(get(addr, &format!("/ipfs/{dir}/x?format=raw"), &[]).await),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(get(addr, &format!("/ipfs/{dir}?format=car&dag-scope=x"), &[]).await),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(get(addr, &format!("/ipfs/{dir}?format=car&entity-bytes=x"), &[]).await),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status(get(addr, &format!("/ipfs/{dir}?format=raw"), &[]).await),
        StatusCode::GONE
    );
    assert_eq!(
        status(request(addr, Method::POST, &format!("/ipfs/{dir}"), &car).await),
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        status(get(addr, "/ipns/example.org", &car).await),
        StatusCode::NOT_IMPLEMENTED
    );
    assert_eq!(status(get(addr, "/", &[]).await), StatusCode::NOT_FOUND);
    assert_eq!(
        status(get(addr, &format!("/piece/{dir}"), &[]).await),
        StatusCode::BAD_REQUEST
    );
    let deep = format!("/ipfs/{dir}/{}?format=car", vec!["a"; 65].join("/"));
    assert_eq!(status(get(addr, &deep, &[]).await), StatusCode::BAD_REQUEST);
    let sw = [("accept", CAR), ("service-worker", "script")];
    assert_eq!(
        status(get(addr, &format!("/ipfs/{dir}"), &sw).await),
        StatusCode::BAD_REQUEST
    );
    server.shutdown().await;
}

/// A big file in small blocks, so a CAR response takes a while to drain.
fn big_file(len: u32) -> (Arc<rm_blockio::MemoryBlockstore>, Cid) {
    let store = Arc::new(rm_blockio::MemoryBlockstore::new());
    // No two blocks alike (a repeating pattern would make most blocks duplicates).
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let preset = rm_blockio::unixfs::Preset::KUBO_V1_RAW_LEAVES.with_chunk_size(4096);
    let root = rm_blockio::unixfs::Importer::import_bytes(&store, preset, &data)
        .unwrap()
        .root;
    (store, root)
}

#[tokio::test]
async fn limits_per_client_and_in_all() {
    let (store, root) = big_file(4_000_000);
    let config = Config {
        max_requests_per_ip: 1,
        read_ahead: 1,
        ..Config::default()
    };
    let server = serve(store.clone(), config).await;
    let addr = server.local_addr();
    // Hold one response open by not reading it.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(hyper_util::rt::TokioIo::new(stream))
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("/ipfs/{root}?format=car"))
        .header("host", "t")
        .body(http_body_util::Empty::new())
        .unwrap();
    let held = sender.send_request(req).await.unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    let second = get(addr, &format!("/ipfs/{root}?format=car"), &[]).await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(second.header("retry-after"), "1");
    drop(held);
    drop(sender);
    // Once the first is gone, the address may ask again.
    let mut ok = false;
    for _ in 0..100 {
        if get(addr, "/ipfs/bafkqaaa?format=raw", &[]).await.status == StatusCode::OK {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "the slot is released when the response is dropped");
    server.shutdown().await;

    let config = Config {
        max_concurrent_requests: 1,
        read_ahead: 1,
        ..Config::default()
    };
    let gateway = Gateway::new(store, config);
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let req = |path: String| {
        http::Request::get(path)
            .header("accept", CAR)
            .body(())
            .unwrap()
    };
    let first = gateway.handle(req(format!("/ipfs/{root}")), ip).await;
    assert_eq!(first.status(), StatusCode::OK);
    let busy = gateway.handle(req(format!("/ipfs/{root}")), other).await;
    assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(first);
    let again = gateway.handle(req("/ipfs/bafkqaaa".into()), other).await;
    assert_eq!(again.status(), StatusCode::OK);
}

#[tokio::test]
async fn header_and_request_timeouts_close_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (store, root) = big_file(4_000_000);
    let throttled = Config {
        header_timeout: Duration::from_millis(200),
        request_timeout: Duration::from_millis(300),
        max_bytes_per_second: 1_000_000,
        read_ahead: 1,
        ..Config::default()
    };
    let server = serve(store, throttled).await;
    let addr = server.local_addr();
    // Half a request line, then silence: the server hangs up.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /ipfs/").await.unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
        .await
        .expect("closed within the header timeout");
    assert!(matches!(n, Ok(0) | Err(_)) || String::from_utf8_lossy(&buf).contains("408"));
    // A response that cannot finish within the request timeout is cut there.
    let read_all = |addr, pause: Duration, chunk: usize| async move {
        let mut reader = tokio::net::TcpStream::connect(addr).await.unwrap();
        reader
            .write_all(
                format!("GET /ipfs/{root}?format=car HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut buf = vec![0u8; chunk];
        let mut total = 0usize;
        let started = std::time::Instant::now();
        loop {
            tokio::time::sleep(pause).await;
            match tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => total += n,
                Err(_) => panic!("the server neither sent nor closed"),
            }
            assert!(started.elapsed() < Duration::from_secs(30), "never cut off");
        }
        (total, started.elapsed())
    };
    let (total, took) = read_all(addr, Duration::ZERO, 64 << 10).await;
    assert!(total < 1_000_000, "cut off at the deadline ({total} bytes)");
    assert!(took < Duration::from_secs(5), "{took:?}");
    server.shutdown().await;

    // A reader too slow to take the body: the connection is closed at the deadline.
    let (store, root2) = big_file(16_000_000);
    let config = Config {
        request_timeout: Duration::from_millis(300),
        read_ahead: 1,
        ..Config::default()
    };
    let server = serve(store, config).await;
    let _ = root2;
    let addr = server.local_addr();
    let mut reader = tokio::net::TcpStream::connect(addr).await.unwrap();
    reader
        .write_all(format!("GET /ipfs/{root2}?format=car HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut total = 0usize;
    let started = std::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!(
                "the server neither sent nor closed ({total} bytes, {:?})",
                started.elapsed()
            ),
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never cut off");
    }
    assert!(total < 16_000_000, "cut off before the end ({total} bytes)");
    server.shutdown().await;
}
