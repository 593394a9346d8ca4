//! The soak under faults (issue 17, item 8): one provider process and many client
//! processes for N minutes, with connections cut, clients and the provider killed
//! (SIGKILL) and restarted at random, and the attacks of `rm_e2e::attack::MIX` running
//! beside them. `cargo xtask soak [--minutes N]` builds the workspace and runs it.
//!
//! ```text
//! rm-e2e-soak [--minutes N] [--deals D] [--concurrency C] [--seed S]
//! ```
//!
//! - **Provider**: `rm-e2e-node provider` on a fixed port, holding files of 64 KiB,
//!   512 KiB, 2 MiB and 8 MiB in pieces, price 1 attoFIL/byte, payment intervals of
//!   1 MiB; payment timeout and resume window 20 s. It is killed and restarted on the
//!   same home and port at random times in the first half of the soak.
//! - **Clients**: D deals (default 100 per minute) launched evenly over the first 90% of
//!   the time, each an `rm-e2e-node client` process with its own home, a random file and
//!   random terms (payment interval 64 KiB, 256 KiB or 1 MiB), at most C at once. About
//!   one deal in five is killed 20–300 ms after its process starts (up to twice) and
//!   started again on its home, where it resumes. Clients reach the provider
//!   through a TCP proxy (from 127.0.0.2) that cuts a random live connection every
//!   0.5–1.5 s; a reconnect may also go straight to the provider (from 127.0.0.1).
//! - **Attacks**: the mix runs from 20% to 80% of the soak through a second proxy that
//!   connects from 127.0.0.3, so the provider sees the attackers at an address of their
//!   own (it remembers debts per address).
//!
//! Afterwards every deal must be final and `Completed`, its output identical to its
//! file, and paid exactly its price (price × the bytes of its DAG) by the client's
//! vouchers and on the provider's books; every deal the provider completed was paid
//! exactly. The provider's alive tokio tasks, open file descriptors and RSS are measured
//! when it first started (idle) and again once the load has stopped and it is idle
//! again; the soak fails if tasks or descriptors grew by more than 16, or RSS by more
//! than 128 MiB (its caches: RocksDB's block cache and memtables fill with use).
//! Exit status 0 only if everything holds.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rm_blockio::unixfs::{Importer, Preset};
use rm_blockio::{BlockReader, MemoryBlockstore, Selector};
use rm_e2e::attack::{self, MIX, Tally, Target};
use rm_e2e::proxy::Proxy;
use rm_types::{Cid, Params, TokenAmount};
use tokio::io::AsyncBufReadExt;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const SIZES: [u64; 4] = [64 * KIB, 512 * KIB, 2 * MIB, 8 * MIB];
const INTERVALS: [u64; 3] = [64 * KIB, 256 * KIB, MIB];
const DEADLINES_SECS: u64 = 20;
const MAX_TASK_GROWTH: u64 = 16;
const MAX_FD_GROWTH: u64 = 16;
const MAX_RSS_GROWTH_KIB: u64 = 128 * 1024;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// `rm-e2e-node`, built next to this binary.
fn node_exe() -> PathBuf {
    std::env::current_exe()
        .map(|p| p.with_file_name("rm-e2e-node"))
        .unwrap_or_else(|_| PathBuf::from("rm-e2e-node"))
}

/// A deterministic random source (xorshift64*).
struct Rng(u64);

impl Rng {
    /// A source from any seed (splitmix64 spreads seeds that differ in a few bits).
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Args {
    minutes: f64,
    deals: usize,
    concurrency: usize,
    seed: u64,
}

fn args() -> Result<Args> {
    let mut a = Args {
        minutes: 1.0,
        deals: 0,
        concurrency: 8,
        seed: 0x5eed,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--minutes" => a.minutes = value.parse()?,
            "--deals" => a.deals = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            "--seed" => a.seed = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if a.deals == 0 {
        a.deals = ((a.minutes * 100.0).round() as usize).max(10);
    }
    Ok(a)
}

/// Block bytes of the DAG `rm import` makes of `bytes` (v1-1mib), and its root.
fn dag(bytes: &[u8]) -> Result<(Cid, u64)> {
    let store = MemoryBlockstore::new();
    let root = Importer::import_bytes(&store, Preset::UNIXFS_V1_2025, bytes)?.root;
    let mut total = 0;
    for block in BlockReader::new(&store, root, &Selector::explore_all_recursively())? {
        total += block?.data.len() as u64;
    }
    Ok((root, total))
}

fn open_fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The provider process and its latest `STATS` figure.
struct Provider {
    child: std::process::Child,
    tasks: Arc<AtomicU64>,
    ready: Vec<String>,
}

#[derive(Clone, Copy, Debug)]
struct Stats {
    tasks: u64,
    fds: u64,
    rss_kib: u64,
}

impl Provider {
    fn spawn(home: &Path, port: u16, files: &[PathBuf]) -> Result<Provider> {
        let rest: Vec<String> = files[1..].iter().map(|f| f.display().to_string()).collect();
        let mut child = std::process::Command::new(node_exe())
            .arg("provider")
            .arg(home)
            .arg(format!("/ip4/127.0.0.1/tcp/{port}"))
            .arg(&files[0])
            .args(["1", "0", &MIB.to_string(), &MIB.to_string(), "v1-1mib"])
            .env("RM_E2E_FILES", rest.join(","))
            .env("RM_E2E_CHAIN", "64")
            .env("RM_E2E_STATS", "1")
            .env("RM_E2E_DEADLINES", DEADLINES_SECS.to_string())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let ready = loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("READY") => break l,
                Some(Ok(_)) => continue,
                _ => return Err("the provider exited before READY".into()),
            }
        };
        let tasks = Arc::new(AtomicU64::new(u64::MAX));
        let seen = Arc::clone(&tasks);
        std::thread::spawn(move || {
            for line in lines.map_while(std::result::Result::ok) {
                if let Some(n) = line.strip_prefix("STATS ").and_then(|n| n.parse().ok()) {
                    seen.store(n, Ordering::Relaxed);
                }
            }
        });
        Ok(Provider {
            child,
            tasks,
            ready: ready.split(' ').map(str::to_owned).collect(),
        })
    }

    fn stats(&self) -> Option<Stats> {
        let pid = self.child.id();
        let tasks = self.tasks.load(Ordering::Relaxed);
        (tasks != u64::MAX).then_some(())?;
        Some(Stats {
            tasks,
            fds: open_fds(pid)?,
            rss_kib: rm_node::process::status_kib(pid, "VmRSS:")?,
        })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Provider {
    /// Never leaves the provider running (an early return or a panic of the soak).
    fn drop(&mut self) {
        self.kill();
    }
}

/// One honest deal and how it went.
#[derive(Debug, Default)]
struct DealReport {
    file: usize,
    interval: u64,
    kills: u32,
    retries: u32,
    done: Option<String>,
    message: Option<String>,
    error: Option<String>,
}

struct Shared {
    peer: String,
    proxy_addr: String,
    payment: String,
    files: Vec<PathBuf>,
    roots: Vec<Cid>,
    dir: PathBuf,
}

/// Runs deal `n` to its end: its client process, killed at random and started again.
async fn run_deal(n: usize, s: Arc<Shared>, seed: u64, deadline: Instant) -> DealReport {
    let mut rng = Rng::new(seed);
    let file = rng.below(s.files.len() as u64) as usize;
    let interval = INTERVALS[rng.below(INTERVALS.len() as u64) as usize];
    let mut report = DealReport {
        file,
        interval,
        ..DealReport::default()
    };
    let home = s.dir.join(format!("client-{n}"));
    let out = s.dir.join(format!("out-{n}"));
    let kill_this = rng.below(5) == 0;
    while Instant::now() < deadline {
        let mut cmd = tokio::process::Command::new(node_exe());
        cmd.arg("client")
            .arg(&home)
            .args([
                &s.peer,
                &s.proxy_addr,
                &s.roots[file].to_string(),
                &s.payment,
                "1",
            ])
            .arg(&out)
            .env("RM_E2E_LISTEN", "/ip4/127.0.0.2/tcp/0")
            .env("RM_E2E_TERMS", format!("{interval},{interval}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let Ok(mut child) = cmd.spawn() else {
            report.error = Some("the client did not start".into());
            return report;
        };
        let Some(stdout) = child.stdout.take() else {
            report.error = Some("no stdout".into());
            return report;
        };
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let kill_at = (kill_this && report.kills < 2)
            .then(|| tokio::time::Instant::now() + Duration::from_millis(20 + rng.below(280)));
        let mut killed = false;
        loop {
            let sleep = async {
                match kill_at {
                    Some(t) if !killed => tokio::time::sleep_until(t).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(l)) if l.starts_with("DONE") => report.done = Some(l),
                    Ok(Some(l)) if l.starts_with("MESSAGE ") => report.message = Some(l[8..].to_owned()),
                    Ok(Some(_)) => {}
                    _ => break,
                },
                () = sleep => {
                    let _ = child.start_kill();
                    killed = true;
                }
            }
        }
        let _ = child.wait().await;
        if report.done.is_some() {
            return report;
        }
        if killed {
            report.kills += 1;
        } else {
            // Exited without an answer (the provider was down for its query): again.
            report.retries += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    report.error = Some("not final by the deadline".into());
    report
}

fn main() -> ExitCode {
    match soak() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

fn soak() -> Result<bool> {
    let args = args()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("rm-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = rt.block_on(run(&args, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(args: &Args, dir: &Path) -> Result<bool> {
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    println!(
        "soak: {:.1} min, {} deals, at most {} at once, seed {}",
        args.minutes, args.deals, args.concurrency, args.seed
    );
    let mut files = Vec::new();
    let mut expected = Vec::new();
    let mut roots = Vec::new();
    for (i, size) in SIZES.iter().enumerate() {
        let path = dir.join(format!("file-{i}.bin"));
        let bytes = rm_e2e::random_bytes(*size as usize, 1000 + i as u64);
        let (root, total) = dag(&bytes)?;
        std::fs::write(&path, &bytes)?;
        files.push(path);
        roots.push(root);
        expected.push(total);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let home = dir.join("provider");
    let mut provider = Provider::spawn(&home, port, &files)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = provider.stats().ok_or("no provider stats")?;
    println!(
        "provider idle at start: {} tasks, {} fds, RSS {} MiB",
        start.tasks,
        start.fds,
        start.rss_kib / 1024
    );
    let ready = provider.ready.clone();
    if ready.get(4).map(String::as_str) != Some(roots[0].to_string().as_str()) {
        return Err(format!("the provider's root {ready:?} is not {}", roots[0]).into());
    }
    let proxy = Proxy::start(port, std::net::IpAddr::from([127, 0, 0, 2])).await?;
    let shared = Arc::new(Shared {
        peer: ready[1].clone(),
        proxy_addr: format!("/ip4/127.0.0.1/tcp/{}", proxy.port()),
        payment: ready[3].clone(),
        files: files.clone(),
        roots: roots.clone(),
        dir: dir.to_path_buf(),
    });
    let attack_proxy = Proxy::start(port, std::net::IpAddr::from([127, 0, 0, 3])).await?;
    let target = Target {
        peer: ready[1].parse()?,
        addr: format!("/ip4/127.0.0.1/tcp/{}", attack_proxy.port()).parse()?,
        payment: ready[3].parse()?,
        root: roots[3],
        chain: Some(ready[5].parse()?),
        params: Params::new(TokenAmount::from_atto(1u64), MIB, MIB),
        homes: dir.join("attackers"),
    };
    let began = Instant::now();
    let deal_deadline = began + duration + Duration::from_secs(180);
    let mut rng = Rng::new(args.seed);

    // The deals, launched evenly over the first 90% of the soak.
    let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut deals = tokio::task::JoinSet::new();
    let spacing = duration.mul_f64(0.9) / args.deals as u32;
    {
        let shared = Arc::clone(&shared);
        let permits = Arc::clone(&permits);
        let seed = rng.next();
        let count = args.deals;
        deals.spawn(async move {
            let mut launched = tokio::task::JoinSet::new();
            for n in 0..count {
                let permit = Arc::clone(&permits).acquire_owned().await;
                let s = Arc::clone(&shared);
                launched.spawn(async move {
                    let report = run_deal(n, s, seed ^ (n as u64 * 0x9e37), deal_deadline).await;
                    drop(permit);
                    (n, report)
                });
                tokio::time::sleep(spacing).await;
            }
            let mut reports = Vec::new();
            while let Some(r) = launched.join_next().await {
                if let Ok(r) = r {
                    reports.push(r);
                }
            }
            reports
        });
    }

    // Faults and attacks until the deals are done and the time is up.
    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<Arc<Tally>> = MIX.iter().map(|_| Arc::default()).collect();
    let mut attacks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut provider_kills = 0;
    let max_kills = ((args.minutes * 2.0).ceil() as u32).clamp(1, 6);
    let mut next_fault = Instant::now() + Duration::from_secs(2);
    let mut finished = None;
    let reports = loop {
        match tokio::time::timeout(Duration::from_millis(200), deals.join_next()).await {
            Ok(Some(Ok(reports))) => finished = Some(reports),
            Ok(Some(Err(e))) => return Err(format!("the deals' task: {e}").into()),
            // Joined already: the deals are done, the time is not up.
            Ok(None) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(_) => {}
        }
        let elapsed = began.elapsed().as_secs_f64() / duration.as_secs_f64();
        if elapsed >= 1.0
            && let Some(reports) = finished.take()
        {
            break reports;
        }
        if attacks.is_empty() && (0.2..0.8).contains(&elapsed) {
            for ((kind, loops, pause), tally) in MIX.iter().zip(&tallies) {
                attacks.extend(attack::spawn(*kind, *loops, *pause, &target, &stop, tally));
            }
        }
        if !attacks.is_empty() && elapsed >= 0.8 && !stop.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
            for a in &attacks {
                a.abort();
            }
        }
        if Instant::now() >= next_fault {
            next_fault = Instant::now() + Duration::from_millis(500 + rng.below(1000));
            if elapsed < 0.5 && provider_kills < max_kills && rng.below(10) == 0 {
                provider.kill();
                provider_kills += 1;
                tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
                provider = Provider::spawn(&home, port, &files)?;
            } else {
                proxy.cut(rng.next());
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    for a in &attacks {
        a.abort();
    }
    let load_ended = began.elapsed();

    // The provider settles: attack deals end within their deadlines (20 s).
    let settle_until = Instant::now() + Duration::from_secs(2 * DEADLINES_SECS + 20);
    let mut end = provider.stats().ok_or("no provider stats")?;
    while Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        end = provider.stats().ok_or("no provider stats")?;
        if end.tasks <= start.tasks + MAX_TASK_GROWTH && end.fds <= start.fds + MAX_FD_GROWTH {
            break;
        }
    }
    provider.kill();

    // The provider's books.
    let node = rm_e2e::Node::open(&home).await?;
    let books = node.provider(rm_provider::Config::default()).await?;
    let mut provider_completed = 0;
    let mut provider_statuses: HashMap<String, u64> = HashMap::new();
    let mut books_wrong = Vec::new();
    for (_, deal) in books.list_deals()? {
        *provider_statuses
            .entry(deal.status().to_string())
            .or_default() += 1;
        if deal.status() == rm_provider::ProviderStatus::Completed {
            provider_completed += 1;
            let want = roots
                .iter()
                .position(|r| *r == deal.proposal.payload_cid)
                .map(|i| expected[i]);
            let price = &deal.proposal.params.price_per_byte;
            let paid_right =
                Some(deal.bytes_sent) == want && deal.funds_received == price * deal.bytes_sent;
            if !paid_right {
                books_wrong.push(format!(
                    "{}: {} bytes sent of {want:?}, {} received",
                    deal.proposal.payload_cid, deal.bytes_sent, deal.funds_received
                ));
            }
        }
    }
    node.network.shutdown().await;

    // The clients' side.
    let mut ok = true;
    let mut completed = 0;
    let (mut kills, mut retries) = (0, 0);
    for (n, r) in &reports {
        kills += r.kills;
        retries += r.retries;
        let problem = check_deal(r, &files, &expected, &dir.join(format!("out-{n}")));
        match problem {
            None => completed += 1,
            Some(p) => {
                ok = false;
                println!("deal {n} (file {}, interval {}): {p}", r.file, r.interval);
            }
        }
    }
    println!(
        "deals: {completed}/{} completed, output identical and paid exactly; {} client processes killed mid-deal and resumed, {} started again after the provider was away",
        args.deals, kills, retries
    );
    if reports.len() != args.deals {
        ok = false;
        println!("only {} deals reported", reports.len());
    }
    println!(
        "faults: provider killed {provider_kills} times, {} of {} proxied connections cut; ran {:.0} s",
        proxy.cuts(),
        proxy.accepted(),
        load_ended.as_secs_f64()
    );
    for ((kind, loops, _), tally) in MIX.iter().zip(&tallies) {
        println!(
            "attack {kind:?} ({loops} loops): {} attempts, {} refused or ended by the provider, {} bytes of blocks sent unpaid",
            tally.attempts(),
            tally.refused(),
            tally.unpaid_bytes()
        );
    }
    let mut statuses: Vec<_> = provider_statuses.into_iter().collect();
    statuses.sort();
    println!(
        "provider books: {provider_completed} deals completed, each paid exactly: {}; all deals by status {statuses:?}",
        books_wrong.is_empty()
    );
    for w in &books_wrong {
        ok = false;
        println!("  wrongly paid: {w}");
    }
    println!(
        "provider idle at the end: {} tasks (start {}), {} fds (start {}), RSS {} MiB (start {} MiB)",
        end.tasks,
        start.tasks,
        end.fds,
        start.fds,
        end.rss_kib / 1024,
        start.rss_kib / 1024
    );
    if end.tasks > start.tasks + MAX_TASK_GROWTH
        || end.fds > start.fds + MAX_FD_GROWTH
        || end.rss_kib > start.rss_kib + MAX_RSS_GROWTH_KIB
    {
        ok = false;
        println!(
            "the provider did not come back within the margins (+{MAX_TASK_GROWTH} tasks, +{MAX_FD_GROWTH} fds, +{} MiB)",
            MAX_RSS_GROWTH_KIB / 1024
        );
    }
    println!("soak: {}", if ok { "passed" } else { "FAILED" });
    Ok(ok)
}

/// What is wrong with a deal's end, if anything.
fn check_deal(r: &DealReport, files: &[PathBuf], expected: &[u64], out: &Path) -> Option<String> {
    if let Some(e) = &r.error {
        return Some(e.clone());
    }
    let done = r.done.as_deref()?;
    let mut parts = done.split(' ').skip(1);
    let (status, spent, vouchers) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
    if status != "Completed" {
        return Some(format!(
            "ended {status}: {}",
            r.message.as_deref().unwrap_or_default()
        ));
    }
    let want = expected[r.file];
    if spent != want.to_string() {
        return Some(format!("paid {spent}, the price is {want}"));
    }
    if vouchers.split(',').next_back() != Some(spent) {
        return Some(format!(
            "last voucher {vouchers} is not the amount spent {spent}"
        ));
    }
    match (std::fs::read(out), std::fs::read(&files[r.file])) {
        (Ok(a), Ok(b)) if a == b => None,
        _ => Some("the output differs from the file".into()),
    }
}
