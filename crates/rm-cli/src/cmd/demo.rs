//! `rm demo`: the whole market on 127.0.0.1: the provider in an `rm serve` child process,
//! the client in this one, each with its own home, RocksDB and peak memory.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rm_client::{ClientStatus, Retrieval};
use rm_network::libp2p::{Multiaddr, PeerId};
use rm_types::{Ask, QueryParams, QueryResponseStatus, TokenAmount};
use serde_json::json;

use crate::output::{self, Output};
use crate::{Global, exit};
use rm_node::Node;
use rm_node::config::parse_size;

/// What data the demo moves.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Generate this much pseudo-random data (e.g. 64MiB, 1GiB).
    #[arg(long, default_value = "64MiB", conflicts_with = "file")]
    pub size: String,
    /// Use this file instead of generated data.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Keep the temporary homes (printed) instead of removing them.
    #[arg(long)]
    pub keep: bool,
    /// Give up (and cancel the deal) after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

/// The provider's terms in the demo: 1 attoFIL per byte, an unseal price, 1 MiB intervals.
fn demo_ask() -> Ask {
    Ask {
        price_per_byte: TokenAmount::from_atto(1u64),
        unseal_price: TokenAmount::from_atto(1000u64),
        payment_interval: 1 << 20,
        payment_interval_increase: 1 << 20,
    }
}

/// Imports data on a provider home, serves it from an `rm serve` child process, retrieves
/// it with payments from a client node in this process over real libp2p on 127.0.0.1,
/// checks the output is byte-identical, and prints a summary with each side's peak memory.
pub async fn run(_global: &Global, out: &Output, args: DemoArgs) -> Result<ExitCode> {
    let dir = tempfile::Builder::new()
        .prefix("rm-demo-")
        .tempdir()
        .context("creating a temporary directory")?;
    let say = |s: &str| {
        if !out.is_json() {
            eprintln!("{s}");
        }
    };
    let input = match &args.file {
        Some(f) => {
            if !f.is_file() {
                bail!("{} is not a file", f.display());
            }
            f.clone()
        }
        None => {
            let size = parse_size(&args.size).map_err(anyhow::Error::msg)?;
            let path = dir.path().join("input.bin");
            say(&format!(
                "generating {} of pseudo-random data",
                output::bytes(size)
            ));
            let bar = out.progress(Some(size));
            write_random(&path, size, &bar)?;
            bar.finish_and_clear();
            path
        }
    };
    let input_size = std::fs::metadata(&input)?.len();

    // The provider's home: imported and priced here, then served by an `rm serve` child
    // process, so each side's memory is its own.
    let phome = rm_node::Home::new(dir.path().join("provider"));
    phome.init()?;
    let t = Instant::now();
    let imported = {
        let pnode = Node::open_home(&phome, &[]).await?;
        let bar = out.progress(Some(input_size));
        let mut stage = "";
        let imported = pnode
            .import_piece_with_progress(
                &input,
                rm_blockio::unixfs::Preset::UNIXFS_V1_2025,
                &mut |p: rm_unseal::import::Progress| {
                    if p.stage.name() != stage {
                        stage = p.stage.name();
                        bar.reset();
                        bar.set_message(format!("import: {stage}"));
                    }
                    bar.set_length(p.total_bytes.unwrap_or(p.bytes).max(1));
                    bar.set_position(p.total_bytes.map_or(p.bytes, |t| p.bytes.min(t)));
                },
            )
            .with_context(|| format!("importing {}", input.display()))?;
        bar.finish_and_clear();
        let provider = pnode.provider(rm_provider::Config::default()).await?;
        provider.set_ask(demo_ask())?;
        provider.stop().await;
        pnode.network.shutdown().await;
        imported
    };
    let import_time = t.elapsed();
    let import_rss = peak_rss(std::process::id());
    say(&format!(
        "imported {} as piece {} ({:.2} s)",
        imported.payload_cid,
        imported.piece_cid,
        import_time.as_secs_f64()
    ));

    say("starting the provider (`rm serve`, its own process) and a client (this one)");
    let server = Server::start(phome.root()).await?;
    let (peer, addr) = (server.peer, server.addr.clone());
    let addrs = vec![addr];
    // From here this process is the client: its peak memory starts afresh (Linux).
    let client_rss_is_own = rm_node::process::reset_peak_rss();
    let cnode = Node::open(&dir.path().join("client")).await?;
    let client = cnode.client(rm_client::Config::default()).await?;
    let root = imported.payload_cid;

    let t = Instant::now();
    let terms = client
        .query(peer, addrs.clone(), root, QueryParams::default())
        .await?;
    if terms.status != QueryResponseStatus::Available {
        bail!(
            "the provider answered {:?}: {}",
            terms.status,
            terms.message
        );
    }
    say(&format!(
        "queried {}: {}/byte, unseal {}; retrieving",
        addrs
            .first()
            .map(|a| crate::cmd::full_addr(a, peer).to_string())
            .unwrap_or_default(),
        terms.min_price_per_byte.display_atto(),
        terms.unseal_price.display_atto()
    ));
    let mut events = client.subscribe_to_events();
    let id = client
        .retrieve(Retrieval::from_query(root, peer, addrs, &terms))
        .await?;
    let mut first_byte = None;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let bar = out.progress(Some(terms.size.max(1)));
    bar.set_message("retrieving");
    let deal = loop {
        if Instant::now() > deadline {
            client.cancel_deal(id).await?;
            bail!(
                "the retrieval took longer than --timeout-secs {}; cancelled",
                args.timeout_secs
            );
        }
        let d = client.retrieval_status(id)?.context("the deal vanished")?;
        if first_byte.is_none() && d.bytes_received > 0 {
            first_byte = Some(t.elapsed());
        }
        bar.set_position(d.bytes_received.min(terms.size));
        if d.status().is_final() {
            bar.finish_and_clear();
            break d;
        }
        tokio::select! {
            _ = events.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    };
    let transfer = t.elapsed();
    let client_rss = peak_rss(std::process::id());
    let provider_rss = server.peak_rss();
    client.close().await;
    cnode.network.shutdown().await;
    server.stop().await?;
    if deal.status() != ClientStatus::Completed {
        bail!("the deal ended {}: {}", deal.status(), deal.message());
    }
    let output_path = dir.path().join("output");
    rm_blockio::unixfs::export_path(cnode.blocks.as_ref(), &root, &output_path)?;
    let identical = same_bytes(&input, &output_path)?;
    // The provider's books, read from its home now that `rm serve` has stopped.
    let pnode = Node::open_home(&phome, &[]).await?;
    let pdeal = pnode
        .provider_deals()
        .await?
        .into_iter()
        .map(|(_, d)| d)
        .next()
        .context("the provider has no deal")?;
    pnode.network.shutdown().await;

    let s = &deal;
    let throughput = s.bytes_received as f64 / transfer.as_secs_f64().max(1e-9);
    let ttfb = first_byte.unwrap_or(transfer);
    let rows = vec![
        vec![
            "input".to_owned(),
            format!("{} ({})", input.display(), output::bytes(input_size)),
        ],
        vec!["payload CID".into(), root.to_string()],
        vec!["piece CID".into(), imported.piece_cid.to_string()],
        vec![
            "block bytes / blocks".into(),
            format!(
                "{} / {}",
                output::thousands(s.bytes_received),
                output::thousands(s.blocks_received)
            ),
        ],
        vec![
            "vouchers / total paid".into(),
            format!(
                "{} / {} (unseal {} + {} × 1 attoFIL/byte)",
                deal.vouchers.len(),
                s.funds_spent.display_atto(),
                s.proposal.params.unseal_price.display_atto(),
                output::thousands(s.bytes_received)
            ),
        ],
        vec![
            "provider received".into(),
            format!(
                "{}, deal {}",
                pdeal.funds_received.display_atto(),
                pdeal.status().to_string()
            ),
        ],
        vec![
            "import (UnixFS + CommP + sector)".into(),
            format!("{:.0} ms", import_time.as_secs_f64() * 1e3),
        ],
        vec![
            "peak RSS: provider / client".into(),
            format!(
                "{} (rm serve) / {}{}",
                mib(provider_rss),
                mib(client_rss),
                if client_rss_is_own {
                    ""
                } else {
                    " (this process, import included)"
                }
            ),
        ],
        vec!["peak RSS: import".into(), mib(import_rss)],
        vec![
            "time to first byte".into(),
            format!("{:.1} ms", ttfb.as_secs_f64() * 1e3),
        ],
        vec![
            "query + retrieval".into(),
            format!("{:.0} ms", transfer.as_secs_f64() * 1e3),
        ],
        vec![
            "throughput".into(),
            format!("{}/s", output::bytes(throughput as u64)),
        ],
        vec![
            "output".into(),
            if identical {
                "byte-identical to the input".into()
            } else {
                "DIFFERS from the input".into()
            },
        ],
    ];
    let homes = if args.keep {
        let kept = dir.keep();
        format!("homes kept in {}\n", kept.display())
    } else {
        String::new()
    };
    out.result(
        &json!({
            "input_size": input_size,
            "payload_cid": root.to_string(),
            "piece_cid": imported.piece_cid.to_string(),
            "bytes": s.bytes_received,
            "blocks": s.blocks_received,
            "vouchers": deal.vouchers.iter().map(|v| v.atto().to_string()).collect::<Vec<_>>(),
            "paid": s.funds_spent.atto().to_string(),
            "provider_paid": pdeal.funds_received.atto().to_string(),
            "import_ms": import_time.as_millis() as u64,
            "import_peak_rss_bytes": import_rss,
            "provider_peak_rss_bytes": provider_rss,
            "client_peak_rss_bytes": client_rss,
            "time_to_first_byte_ms": ttfb.as_secs_f64() * 1e3,
            "retrieval_ms": transfer.as_millis() as u64,
            "throughput_bytes_per_s": throughput,
            "identical": identical,
        }),
        &format!("\n{}{homes}", output::table(&["rm demo", ""], &rows)),
    );
    Ok(exit::code(if identical {
        exit::OK
    } else {
        exit::NOT_DONE
    }))
}

/// `bytes` in MiB, or "unknown" (not Linux).
fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "unknown".to_owned(),
        |b| format!("{:.1} MiB", b as f64 / f64::from(1 << 20)),
    )
}

/// The peak resident memory of process `pid` in bytes, where `/proc` says.
fn peak_rss(pid: u32) -> Option<u64> {
    rm_node::process::status_kib(pid, "VmHWM:").map(|kib| kib * 1024)
}

/// The provider: `rm serve` on the demo's provider home, in a child process of this same
/// binary, listening on a free 127.0.0.1 port with no HTTP and no metrics.
struct Server {
    child: tokio::process::Child,
    peer: PeerId,
    /// Its address, without `/p2p`.
    addr: Multiaddr,
    /// What it wrote on stderr, kept to explain a failure.
    stderr: tokio::task::JoinHandle<String>,
}

impl Server {
    /// Starts it and waits (at most 60 s) for the line saying where it listens.
    async fn start(home: &Path) -> Result<Server> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut child = tokio::process::Command::new(exe)
            .arg("--home")
            .arg(home)
            .args(["--json", "serve", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(["--no-http", "--no-metrics"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting `rm serve`")?;
        let mut err = child.stderr.take().context("the child's stderr")?;
        let stderr = tokio::spawn(async move {
            // The last 64 KiB is plenty to explain a failure.
            let mut kept = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 64 << 10 {
                    kept.drain(..kept.len() - (64 << 10));
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
        });
        let stdout = child.stdout.take().context("the child's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let Ok(Ok(Some(first))) = first else {
            let _ = child.kill().await;
            let why = stderr.await.unwrap_or_default();
            bail!("`rm serve` did not start: {}", why.trim());
        };
        // Its later lines (one per deal change) are read and dropped, so it never blocks
        // on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let listening: serde_json::Value =
            serde_json::from_str(&first).with_context(|| format!("`rm serve` said {first:?}"))?;
        let text = listening["addrs"][0]
            .as_str()
            .with_context(|| format!("`rm serve` listens nowhere: {first}"))?;
        let (peer, addr) = crate::cmd::parse_target(text)?;
        Ok(Server {
            child,
            peer,
            addr: addr.context("`rm serve` printed no address")?,
            stderr,
        })
    }

    /// Its peak resident memory so far.
    fn peak_rss(&self) -> Option<u64> {
        self.child.id().and_then(peak_rss)
    }

    /// Stops it as Ctrl-C would (SIGINT; it finishes its writes and closes its database)
    /// and waits at most 30 s for it to exit.
    async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            let pid = rustix::process::Pid::from_raw(pid as i32).context("the child's pid")?;
            rustix::process::kill_process(pid, rustix::process::Signal::INT)
                .context("stopping `rm serve`")?;
        }
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => {
                let why = self.stderr.await.unwrap_or_default();
                bail!("`rm serve` ended {status}: {}", why.trim())
            }
            Ok(Err(e)) => Err(e).context("waiting for `rm serve`"),
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("`rm serve` did not stop within 30 s of SIGINT")
            }
        }
    }
}

/// Writes `size` pseudo-random bytes (xorshift64; incompressible, no repeated blocks),
/// advancing `bar`.
fn write_random(path: &Path, size: u64, bar: &indicatif::ProgressBar) -> Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut left = size;
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = (buf.len() as u64).min(left) as usize;
        file.write_all(&buf[..n])?;
        left -= n as u64;
        bar.inc(n as u64);
    }
    file.flush()?;
    Ok(())
}

/// Whether two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
    }
    Ok(n)
}
