//! Issue 17's acceptance benchmark: an honest 64 MiB paid retrieval while a mix of attacks
//! runs against the same provider, against the same retrieval unattacked, in one run.
//!
//! The provider is its own process (`rm-e2e-node provider`, default limits, the file in a
//! piece read straight from its sector), so its peak RSS is its own (`VmHWM` from /proc).
//! The honest client is a fresh node per retrieval, straight over loopback. The attackers
//! reach the provider through a TCP proxy that connects from 127.0.0.3
//! (`rm_e2e::proxy`), so they come from another address than the honest client, as they
//! would in the network (the provider limits and remembers peers by address).
//! Retrievals alternate: unattacked, attacked, unattacked, ...; each attacked one starts
//! after the attacks have run for 5 s; the medians, their ratio and every run are
//! printed. The attackers run on a runtime of their own in this process.
//!
//! The attacks are `rm_e2e::attack::MIX`, each a loop in its own task from fresh peer ids: a selector whose work doubles per level over a 64-deep chain; leeches
//! that take the first payment interval (1 MiB) on credit and vanish; deals paid with
//! forged vouchers; resumes of unknown deals claiming 1,000 blocks; deal streams opened
//! and left silent; queries for payloads the provider does not have.
//!
//! `cargo bench -p rm-e2e --bench under_attack` (release). `RM_BENCH_RUNS=<n>` retrievals
//! of each kind (default 7).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rm_client::ClientStatus;
use rm_e2e::Node;
use rm_e2e::attack::{self, MIX, Tally, Target};
use rm_types::{Params, QueryParams, TokenAmount};

const MIB: usize = 1 << 20;
const SIZE: usize = 64 * MIB;
const NODE: &str = env!("CARGO_BIN_EXE_rm-e2e-node");
/// Seconds the attacks run before an attacked retrieval starts.
const WARM_UP: u64 = 5;

/// One honest paid retrieval of the 64 MiB file into a fresh client on 127.0.0.2; its
/// throughput in MiB/s.
async fn honest(t: &Target, n: usize) -> f64 {
    let via = &t.addr;
    let home = t.homes.join(format!("honest-{n}"));
    let node = Node::open(&home).await.unwrap();
    let client = node.client(rm_client::Config::default()).await.unwrap();
    let start = Instant::now();
    let terms = client
        .query(t.peer, vec![via.clone()], t.root, QueryParams::default())
        .await
        .unwrap();
    let retrieval = rm_client::Retrieval::from_query(t.root, t.peer, vec![via.clone()], &terms);
    let id = client.retrieve(retrieval).await.unwrap();
    let deal = client.wait(id).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(deal.status(), ClientStatus::Completed, "{}", deal.message());
    // Outside the timing: the file is whole.
    let file = t.homes.join("data.bin");
    assert!(node.export(&t.root).unwrap() == std::fs::read(file).unwrap());
    client.close().await;
    node.network.shutdown().await;
    drop(node);
    let _ = std::fs::remove_dir_all(&home);
    SIZE as f64 / MIB as f64 / elapsed.as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        println!("under_attack: a benchmark; run it with `cargo bench`");
        return;
    }
    let runs: usize = std::env::var("RM_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The attackers run on threads of their own, as another machine's would: their
    // blocking work (a RocksDB home per new peer id) must not stall the honest client's
    // runtime. They still share the two cores.
    let attack_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.bin");
    std::fs::write(&file, rm_e2e::random_bytes(SIZE, 17)).unwrap();
    let mut child = Command::new(NODE)
        .args([
            "provider",
            dir.path().join("provider").to_str().unwrap(),
            "/ip4/127.0.0.1/tcp/0",
            file.to_str().unwrap(),
            "1",
            "0",
            &MIB.to_string(),
            &MIB.to_string(),
            "v1-1mib",
        ])
        .env("RM_E2E_CHAIN", "64")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready: Vec<String> = lines
        .find_map(|l| l.ok().filter(|l| l.starts_with("READY")))
        .expect("provider ready")
        .split(' ')
        .map(str::to_owned)
        .collect();
    let pid = child.id();
    // Killed however the benchmark ends (an assertion failing included).
    let _child = KillOnDrop(child);
    let t = Target {
        peer: ready[1].parse().unwrap(),
        addr: ready[2].parse().unwrap(),
        payment: ready[3].parse().unwrap(),
        root: ready[4].parse().unwrap(),
        chain: Some(ready[5].parse().unwrap()),
        params: Params::new(TokenAmount::from_atto(1u64), MIB as u64, MIB as u64),
        homes: dir.path().to_path_buf(),
    };
    let start_rss = rm_node::process::status_kib(pid, "VmRSS:").unwrap_or(0);
    let (mut calm, mut attacked) = (Vec::new(), Vec::new());
    let tallies: Vec<Arc<Tally>> = MIX.iter().map(|_| Arc::default()).collect();
    let mut attack_time = Duration::ZERO;
    rt.block_on(async {
        let port = t.addr.iter().find_map(|p| match p {
            rm_network::libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        });
        let proxy = rm_e2e::proxy::Proxy::start(port.unwrap(), [127, 0, 0, 3].into())
            .await
            .unwrap();
        let mut attackers = t.clone();
        attackers.addr = format!("/ip4/127.0.0.1/tcp/{}", proxy.port())
            .parse()
            .unwrap();
        // A warm-up retrieval, not counted.
        honest(&t, 0).await;
        for run in 0..runs {
            calm.push(honest(&t, 1 + 2 * run).await);
            let stop = Arc::new(AtomicBool::new(false));
            let mut handles = Vec::new();
            let entered = attack_rt.enter();
            for ((kind, loops, pause), tally) in MIX.iter().zip(&tallies) {
                handles.extend(attack::spawn(
                    *kind, *loops, *pause, &attackers, &stop, tally,
                ));
            }
            drop(entered);
            // Let the attacks reach their steady state (every loop has its peer id).
            tokio::time::sleep(Duration::from_secs(WARM_UP)).await;
            let began = Instant::now();
            attacked.push(honest(&t, 2 + 2 * run).await);
            attack_time += began.elapsed() + Duration::from_secs(WARM_UP);
            stop.store(true, Ordering::Relaxed);
            for h in handles {
                h.abort();
            }
        }
    });
    let peak = rm_node::process::status_kib(pid, "VmHWM:").unwrap_or(0);
    let (calm_m, attacked_m) = (median(&mut calm), median(&mut attacked));
    println!(
        "under_attack/honest_64mib: unattacked median {calm_m:.1} MiB/s, attacked median {attacked_m:.1} MiB/s ({runs} runs each, alternating); ratio {:.2}",
        attacked_m / calm_m
    );
    println!("  unattacked runs MiB/s: {calm:.1?}");
    println!("  attacked runs MiB/s:   {attacked:.1?}");
    println!(
        "  provider process: RSS {} MiB at start, peak {} MiB",
        start_rss / 1024,
        peak / 1024
    );
    for ((kind, loops, _), tally) in MIX.iter().zip(&tallies) {
        let attempts = tally.attempts();
        println!(
            "  attack {kind:?} ({loops} loops): {attempts} attempts ({:.0}/s), {} refused or ended by the provider, {} bytes of blocks sent unpaid",
            attempts as f64 / attack_time.as_secs_f64(),
            tally.refused(),
            tally.unpaid_bytes(),
        );
    }
}

/// A child process killed when this is dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
