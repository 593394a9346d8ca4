//! Whole-deal benchmarks (issue 7), over loopback with real libp2p and RocksDB:
//!
//! * `retrieval_256mib/paid_verified_deal` — a paid retrieval (price 1 attoFIL/byte,
//!   intervals 1 MiB + 1 MiB) of a 256 MiB UnixFS file with 1 MiB raw leaves into a fresh
//!   client, blocks verified and stored; against `retrieval_256mib/bare_stream_sha256`, the
//!   same blocks over one bare libp2p stream (TCP + noise + yamux), each SHA-256-checked
//!   against its CID, nothing stored, sent from memory; and against
//!   `retrieval_256mib/bare_stream_sha256_from_store`, the same bare stream with the
//!   provider reading each block from its blockstore with the check every sent block gets
//!   (`BlockReader`, as deals do: the block hashed against its CID before it goes out),
//!   one block read ahead of the write.
//! * `first_block/dial_to_first_verified_block` — fresh client host: dial, query, propose,
//!   first verified block (lorem.txt, price 1000).
//! * After criterion: 100 and then 1,000 concurrent 1 MiB deals on one provider process
//!   (its peak RSS from /proc), and the peak RSS of a client process retrieving 256 MiB.
//!
//! `cargo bench --workspace --bench retrieval -- --noplot` (release). Set
//! `RM_BENCH_SKIP_PROCESSES=1` to run only the criterion part, and `RM_BENCH_NO_EARLY=1`
//! for a provider that never asks for payment early (by default it does in intervals of
//! 2 MiB and more: `rm_provider::DealConfig::ask_early_from`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use rm_blockio::unixfs::Preset;
use rm_blockio::{BlockReader, Selector};
use rm_client::ClientStatus;
use rm_e2e::{Node, lorem_path};
use rm_network::libp2p::{Multiaddr, PeerId, StreamProtocol};
use rm_types::{Ask, Cid, QueryParams, TokenAmount};
use sha2::Digest;

const MIB: usize = 1 << 20;
const BIG: usize = 256 * MIB;
const BARE: &str = "/rm-bench/bare/1";
const BARE_STORE: &str = "/rm-bench/bare-store/1";
const NODE: &str = env!("CARGO_BIN_EXE_rm-e2e-node");

fn ask(price: u64, interval: u64) -> Ask {
    Ask {
        price_per_byte: TokenAmount::from_atto(price),
        unseal_price: TokenAmount::zero(),
        payment_interval: interval,
        payment_interval_increase: interval,
    }
}

struct Served {
    node: Node,
    root: Cid,
    addrs: Vec<Multiaddr>,
    _provider: rm_provider::Provider<rm_paych::PaychNode>,
}

async fn serve(dir: &Path, file: &Path, preset: Preset, ask: Ask) -> Served {
    let node = Node::open(&dir.join("provider")).await.unwrap();
    // Straight into the blockstore: these figures are for the transfer, not the unseal
    // (rm-unseal's `pieces` bench measures that).
    let root = node.import_blocks(file, preset).unwrap();
    let mut config = rm_provider::Config::default();
    // `RM_BENCH_NO_EARLY=1`: the provider never asks for payment early (A/B of
    // `DealConfig::ask_early_from`).
    if std::env::var_os("RM_BENCH_NO_EARLY").is_some() {
        config.deal.ask_early_from = None;
    }
    let provider = node.provider(config).await.unwrap();
    provider.set_ask(ask).unwrap();
    provider.start();
    let addrs = node.addrs().await.unwrap();
    Served {
        node,
        root,
        addrs,
        _provider: provider,
    }
}

/// Dials and queries the provider, then starts a deal on its terms.
async fn start_deal(
    client: &rm_client::Client<rm_paych::PaychNode>,
    served: &Served,
) -> rm_types::DealId {
    let peer = served.node.peer_id();
    let terms = client
        .query(
            peer,
            served.addrs.clone(),
            served.root,
            QueryParams::default(),
        )
        .await
        .unwrap();
    let retrieval =
        rm_client::Retrieval::from_query(served.root, peer, served.addrs.clone(), &terms);
    client.retrieve(retrieval).await.unwrap()
}

/// One retrieval into a fresh client node; returns the time from dial to the end. With
/// `in_memory`, verified blocks go to a memory blockstore instead of RocksDB (to see what
/// storing costs).
async fn retrieve(served: &Served, home: &Path, in_memory: bool) -> Duration {
    let cnode = Node::open(home).await.unwrap();
    let client = if in_memory {
        rm_client::Client::new(
            cnode.network.clone(),
            cnode.paych.clone(),
            Arc::new(rm_blockio::MemoryBlockstore::new()),
            &cnode.db,
            cnode.address.clone(),
            rm_client::Config::default(),
        )
        .await
        .unwrap()
    } else {
        cnode.client(rm_client::Config::default()).await.unwrap()
    };
    let start = Instant::now();
    let id = start_deal(&client, served).await;
    let deal = client.wait(id).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(deal.status(), ClientStatus::Completed, "{}", deal.message());
    client.close().await;
    cnode.network.shutdown().await;
    elapsed
}

/// Serves `blocks` on the bare protocol: `[u32 length][data]` each, then end of stream.
fn serve_bare(node: &Node, blocks: Arc<Vec<(Cid, rm_blockio::Bytes)>>) {
    let mut incoming = node.network.accept(StreamProtocol::new(BARE)).unwrap();
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            let blocks = Arc::clone(&blocks);
            tokio::spawn(async move {
                for (_, data) in blocks.iter() {
                    stream
                        .write_all(&(data.len() as u32).to_be_bytes())
                        .await
                        .unwrap();
                    stream.write_all(data).await.unwrap();
                }
                stream.close().await.unwrap();
            });
        }
    });
}

/// Serves the blocks of `root` on the bare protocol as `serve_bare` does, but read from
/// `store` and checked against their CIDs as a deal's provider reads them (on the
/// blocking pool, a few blocks ahead of the writes).
fn serve_bare_from_store(node: &Node, root: Cid) {
    let mut incoming = node
        .network
        .accept(StreamProtocol::new(BARE_STORE))
        .unwrap();
    let store = node.blocks.clone();
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<rm_blockio::Bytes>(2);
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                let reader =
                    BlockReader::new(store, root, &Selector::explore_all_recursively()).unwrap();
                for block in reader {
                    if tx.blocking_send(block.unwrap().data).is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                while let Some(data) = rx.recv().await {
                    stream
                        .write_all(&(data.len() as u32).to_be_bytes())
                        .await
                        .unwrap();
                    stream.write_all(&data).await.unwrap();
                }
                stream.close().await.unwrap();
            });
        }
    });
}

/// Reads the bare stream and SHA-256-checks every block against its CID.
async fn bare(client: &rm_network::Network, peer: PeerId, cids: &[Cid], protocol: &'static str) {
    let mut stream = client
        .open_stream(peer, StreamProtocol::new(protocol))
        .await
        .unwrap();
    let mut buf = vec![0u8; 2 * MIB];
    for cid in cids {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.unwrap();
        let len = u32::from_be_bytes(len) as usize;
        stream.read_exact(&mut buf[..len]).await.unwrap();
        let digest = sha2::Sha256::digest(&buf[..len]);
        assert_eq!(&digest[..], cid.hash().digest());
    }
}

fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Removes a finished client's home; RocksDB may still be closing, so retry briefly.
fn remove(home: &Path) {
    for _ in 0..50 {
        if std::fs::remove_dir_all(home).is_ok() || !home.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn criterion_part(rt: &tokio::runtime::Runtime) {
    let _runtime = rt.enter();
    let mut c = Criterion::default().configure_from_args();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, rm_e2e::random_bytes(BIG, 7)).unwrap();
    let served = rt.block_on(serve(
        dir.path(),
        &file,
        Preset::UNIXFS_V1_2025,
        ask(1, MIB as u64),
    ));
    let blocks: Vec<(Cid, rm_blockio::Bytes)> = BlockReader::new(
        served.node.blocks.clone(),
        served.root,
        &Selector::explore_all_recursively(),
    )
    .unwrap()
    .map(|b| {
        let b = b.unwrap();
        (b.cid().unwrap(), b.data)
    })
    .collect();
    let total: usize = blocks.iter().map(|(_, d)| d.len()).sum();
    let cids: Vec<Cid> = blocks.iter().map(|(c, _)| *c).collect();
    serve_bare(&served.node, Arc::new(blocks));
    serve_bare_from_store(&served.node, served.root);
    let bare_client = rt
        .block_on(Node::open(&dir.path().join("bare-client")))
        .unwrap();
    rt.block_on(
        bare_client
            .network
            .dial(served.node.peer_id(), served.addrs.clone()),
    )
    .unwrap();

    let mut group = c.benchmark_group("retrieval_256mib");
    group.throughput(Throughput::Bytes(total as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, in_memory) in [
        ("paid_verified_deal", false),
        ("paid_verified_deal_memory_blockstore", true),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    let home = dir.path().join(format!("client-{}", next_id()));
                    sum += rt.block_on(retrieve(&served, &home, in_memory));
                    remove(&home);
                }
                sum
            })
        });
    }
    for (name, protocol) in [
        ("bare_stream_sha256", BARE),
        ("bare_stream_sha256_from_store", BARE_STORE),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(bare(
                        &bare_client.network,
                        served.node.peer_id(),
                        &cids,
                        protocol,
                    ));
                }
                start.elapsed()
            })
        });
    }
    group.finish();

    let lorem = rt.block_on(serve(
        &dir.path().join("lorem"),
        &lorem_path(),
        Preset::GO_FIL_MARKETS,
        Ask {
            payment_interval_increase: 1_000,
            ..ask(1000, 10_000)
        },
    ));
    let mut group = c.benchmark_group("first_block");
    group.sample_size(20);
    group.bench_function("dial_to_first_verified_block", |b| {
        b.iter_custom(|iters| {
            let mut sum = Duration::ZERO;
            for _ in 0..iters {
                let home = dir.path().join(format!("first-{}", next_id()));
                sum += rt.block_on(first_block(&lorem, &home));
                remove(&home);
            }
            sum
        })
    });
    group.finish();
    c.final_summary();
}

/// Dial, query, propose, first verified block.
async fn first_block(served: &Served, home: &Path) -> Duration {
    let cnode = Node::open(home).await.unwrap();
    let client = cnode.client(rm_client::Config::default()).await.unwrap();
    let mut events = client.subscribe_to_events();
    let start = Instant::now();
    let id = start_deal(&client, served).await;
    let elapsed = loop {
        if let Ok(rm_fsm::Notification::Applied { snapshot, .. }) = events.recv().await
            && snapshot.state.blocks_received > 0
        {
            break start.elapsed();
        }
    };
    client.wait(id).await.unwrap();
    client.close().await;
    cnode.network.shutdown().await;
    elapsed
}

/// Spawns an `rm-e2e-node provider` child; returns it with its READY fields.
fn provider_process(
    home: &Path,
    file: &Path,
    args: &[&str],
    max_inbound: usize,
) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(NODE)
        .args([
            "provider",
            home.to_str().unwrap(),
            "/ip4/127.0.0.1/tcp/0",
            file.to_str().unwrap(),
        ])
        .args(args)
        .env("RM_E2E_MAX_INBOUND", max_inbound.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with("READY")))
        .expect("provider ready");
    (child, ready.split(' ').map(str::to_owned).collect())
}

fn processes_part(rt: &tokio::runtime::Runtime) {
    let _runtime = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    // c. Concurrent 1 MiB deals against one provider process.
    let small = dir.path().join("one-mib.bin");
    std::fs::write(&small, rm_e2e::random_bytes(MIB, 11)).unwrap();
    let (mut child, ready) = provider_process(
        &dir.path().join("provider"),
        &small,
        &["1", "0", "1048576", "1048576", "v1-1mib"],
        4096,
    );
    let peer: PeerId = ready[1].parse().unwrap();
    let addr: Multiaddr = ready[2].parse().unwrap();
    let root: Cid = ready[4].parse().unwrap();
    for deals in [100usize, 1000] {
        let start = Instant::now();
        let completed = rt.block_on(concurrent(dir.path(), deals, peer, addr.clone(), root));
        println!(
            "concurrent_deals/{deals}: {completed}/{deals} completed in {:.2} s; provider process peak RSS {} MiB",
            start.elapsed().as_secs_f64(),
            rm_node::process::status_kib(child.id(), "VmHWM:").unwrap_or(0) / 1024
        );
    }
    let _ = child.kill();
    let _ = child.wait();

    // The client's peak RSS for a 256 MiB retrieval, in its own process.
    let big = dir.path().join("big.bin");
    std::fs::write(&big, rm_e2e::random_bytes(BIG, 7)).unwrap();
    let (mut child, ready) = provider_process(
        &dir.path().join("big-provider"),
        &big,
        &["1", "0", "1048576", "1048576", "v1-1mib"],
        64,
    );
    let out = dir.path().join("out.bin");
    let client = Command::new(NODE)
        .args([
            "client",
            dir.path().join("big-client").to_str().unwrap(),
            &ready[1],
            &ready[2],
            &ready[4],
            &ready[3],
            "1",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&client.stdout);
    let rss = stdout
        .lines()
        .find(|l| l.starts_with("PEAK_RSS"))
        .unwrap_or("PEAK_RSS ?");
    let done = stdout
        .lines()
        .find(|l| l.starts_with("DONE"))
        .unwrap_or("DONE ?");
    println!(
        "client_256mib: {done}; client process {rss} KiB; output identical: {}",
        std::fs::read(&out)
            .map(|o| o == std::fs::read(&big).unwrap())
            .unwrap_or(false)
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `deals` concurrent deals from 4 client nodes; returns how many completed.
async fn concurrent(dir: &Path, deals: usize, peer: PeerId, addr: Multiaddr, root: Cid) -> usize {
    let mut clients = Vec::new();
    for i in 0..4 {
        let node = Node::open(&dir.join(format!("cc-{deals}-{i}")))
            .await
            .unwrap();
        let client = node.client(rm_client::Config::default()).await.unwrap();
        clients.push((node, client));
    }
    let terms = clients[0]
        .1
        .query(peer, vec![addr.clone()], root, QueryParams::default())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..deals {
        let (_, client) = &clients[i % 4];
        let retrieval = rm_client::Retrieval::from_query(root, peer, vec![addr.clone()], &terms);
        ids.push((i % 4, client.retrieve(retrieval).await.unwrap()));
    }
    let mut completed = 0;
    for (c, id) in ids {
        let deal = tokio::time::timeout(Duration::from_secs(300), clients[c].1.wait(id))
            .await
            .unwrap()
            .unwrap();
        if deal.status() == ClientStatus::Completed {
            completed += 1;
        } else {
            eprintln!(
                "deal {} ended {:?}: {}",
                id.0,
                deal.status(),
                deal.message()
            );
        }
    }
    for (node, client) in clients {
        client.close().await;
        node.network.shutdown().await;
    }
    completed
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        // `cargo test --all-targets` would run a 256 MiB import in a debug build.
        println!("retrieval: benchmarks run with `cargo bench`; nothing to do in test mode");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    criterion_part(&rt);
    if std::env::var_os("RM_BENCH_SKIP_PROCESSES").is_none() {
        processes_part(&rt);
    }
}
