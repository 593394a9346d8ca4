//! `rm demo`: the whole market on 127.0.0.1 in one process.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rm_client::{ClientStatus, Retrieval};
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

/// Imports data on a provider node, retrieves it with payments on a client node over real
/// libp2p on 127.0.0.1, checks the output is byte-identical, and prints a summary.
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

    say("starting a provider and a client (each with its own RocksDB, wallet and ledger)");
    let pnode = Node::open(&dir.path().join("provider")).await?;
    let cnode = Node::open(&dir.path().join("client")).await?;
    let t = Instant::now();
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
    let import_time = t.elapsed();
    say(&format!(
        "imported {} as piece {} ({:.2} s)",
        imported.payload_cid,
        imported.piece_cid,
        import_time.as_secs_f64()
    ));
    let provider = pnode.provider(rm_provider::Config::default()).await?;
    provider.set_ask(demo_ask())?;
    provider.start();
    let client = cnode.client(rm_client::Config::default()).await?;
    let addrs = pnode.addrs().await?;
    let peer = pnode.peer_id();
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
        if first_byte.is_none()
            && let Some(d) = client.retrieval_status(id)?
            && d.bytes_received > 0
        {
            first_byte = Some(t.elapsed());
        }
        let d = client.retrieval_status(id)?.context("the deal vanished")?;
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
    if deal.status() != ClientStatus::Completed {
        bail!("the deal ended {}: {}", deal.status(), deal.message());
    }
    let output_path = dir.path().join("output");
    rm_blockio::unixfs::export_path(cnode.blocks.as_ref(), &root, &output_path)?;
    let identical = same_bytes(&input, &output_path)?;
    let pdeal = provider
        .list_deals()?
        .into_iter()
        .map(|(_, d)| d)
        .next()
        .context("the provider has no deal")?;

    client.close().await;
    provider.stop().await;
    cnode.network.shutdown().await;
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
