//! `rm fetch`: a verified HTTP retrieval from trustless gateways, resumable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rm_http::{EntityBytes, FetchReport, Provider, Scope, Spec};
use rm_network::libp2p::Multiaddr;
use rm_network::libp2p::multiaddr::Protocol;
use rm_node::Node;
use rm_types::Cid;
use serde_json::json;

use crate::cmd::{parse_cid, parse_target, query};
use crate::output::{self, Output};
use crate::{Global, exit, home};

/// What to fetch from whom, and where to put it.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The provider(s), comma-separated, tried in order: http://HOST:PORT, a multiaddr
    /// ending in /tcp/PORT/http, or a libp2p multiaddr (…/p2p/PEER_ID) or peer id whose
    /// announced /http address is used.
    pub provider: String,
    /// The CID, optionally followed by a path: CID[/PATH].
    pub cid: String,
    /// Write the file or directory at the end of the path here.
    #[arg(short = 'o', long, value_name = "PATH", conflicts_with = "car")]
    pub output: Option<PathBuf>,
    /// Write the fetched blocks as a CAR (in the order the gateway sends them) here.
    #[arg(long, value_name = "PATH")]
    pub car: Option<PathBuf>,
    /// What of the terminal element to fetch: block, entity or all.
    #[arg(long, value_name = "SCOPE", default_value = "all")]
    pub dag_scope: String,
    /// Only the blocks of this byte range of a file: FROM:TO (inclusive; negative from
    /// the end; TO may be *). Implies --dag-scope entity.
    #[arg(long, value_name = "FROM:TO")]
    pub entity_bytes: Option<String>,
}

/// The spec of `CID[/PATH]`, scope and range.
fn spec(args: &FetchArgs) -> Result<Spec> {
    let text = args.cid.trim().trim_start_matches("/ipfs/");
    let mut parts = text.split('/').filter(|s| !s.is_empty());
    let root = parse_cid(parts.next().unwrap_or_default())?;
    let path: Vec<String> = parts.map(str::to_owned).collect();
    let bytes = args
        .entity_bytes
        .as_deref()
        .map(|b| {
            EntityBytes::parse(b)
                .with_context(|| format!("--entity-bytes {b:?} is not FROM:TO (TO may be *)"))
        })
        .transpose()?;
    let scope = if bytes.is_some() {
        Scope::Entity
    } else {
        Scope::parse(&args.dag_scope).with_context(|| {
            format!("--dag-scope {:?}: use block, entity or all", args.dag_scope)
        })?
    };
    Ok(Spec {
        root,
        path,
        scope,
        bytes,
    })
}

/// The HTTP address of a provider given one way or another.
async fn resolve(
    node: &Node,
    config: &rm_node::Config,
    text: &str,
    root: &Cid,
) -> Result<Provider> {
    if text.starts_with("http://") || text.starts_with("https://") || text.ends_with("/http") {
        return Ok(Provider::parse(text)?);
    }
    let (peer, addr) = parse_target(text)?;
    let addrs = query::provider_addrs(node, config, peer, addr, root).await?;
    let http = |addrs: &[Multiaddr]| {
        addrs
            .iter()
            .find(|a| a.iter().any(|p| matches!(p, Protocol::Http)))
            .cloned()
    };
    let mut found = http(&addrs);
    if found.is_none() {
        // Ask the peer itself: identify brings its announced addresses.
        node.network
            .dial(peer, addrs.clone())
            .await
            .with_context(|| format!("dialling {peer}"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while found.is_none() && Instant::now() < deadline {
            found = http(&node.network.known_addresses(peer).await?);
            if found.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let Some(addr) = found else {
        bail!("{peer} announces no HTTP address (/tcp/PORT/http): it does not serve HTTP");
    };
    let mut plain = Multiaddr::empty();
    for p in addr.iter() {
        if matches!(p, Protocol::P2p(_)) {
            break;
        }
        plain.push(p);
    }
    Ok(Provider::parse(&plain.to_string())?)
}

/// Fetches, writes the output, prints a summary. An interrupted run (Ctrl-C, a crash,
/// SIGKILL) keeps what it verified: the same command asks only for the rest.
pub async fn run(global: &Global, out: &Output, args: FetchArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let config = home::load(&home)?;
    let spec = spec(&args)?;
    let node = home::open(&home, &[]).await?;
    let result = fetch(&node, &config, &spec, &args, out).await;
    node.network.shutdown().await;
    result
}

async fn fetch(
    node: &Node,
    config: &rm_node::Config,
    spec: &Spec,
    args: &FetchArgs,
    out: &Output,
) -> Result<ExitCode> {
    let mut providers = Vec::new();
    for text in args
        .provider
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        providers.push(
            resolve(node, config, text, &spec.root)
                .await
                .with_context(|| format!("provider {text}"))?,
        );
    }
    let fetcher = node.http_fetcher(rm_http::FetchConfig::default())?;
    let started = Instant::now();
    let bar = out.progress(None);
    let mut last = Instant::now()
        .checked_sub(Duration::from_secs(1))
        .unwrap_or_else(Instant::now);
    let progress = |p: &rm_http::FetchProgress| {
        if last.elapsed() < Duration::from_millis(100) {
            return;
        }
        last = Instant::now();
        let rate = p.wire_bytes as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{} verified ({} blocks), {}/s from {}",
            output::bytes(p.block_bytes),
            output::thousands(p.blocks),
            output::bytes(rate as u64),
            p.provider
        ));
        out.event(&json!({
            "event": "progress",
            "steps": p.steps,
            "blocks": p.blocks,
            "bytes": p.block_bytes,
            "wire_bytes": p.wire_bytes,
            "provider": p.provider,
        }));
    };
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let report = tokio::select! {
        r = fetcher.fetch(spec, &providers, progress) => r,
        _ = interrupt.recv() => {
            bar.abandon();
            out.result(
                &json!({"event": "interrupted"}),
                "interrupted: what was verified is kept; run the same command again to resume\n",
            );
            return Ok(exit::code(exit::INTERRUPTED));
        }
    };
    bar.finish_and_clear();
    let report = report.context("fetching over HTTP")?;
    let written = write_output(node, spec, &report, args)?;
    out.result(
        &summary(spec, &report, started, written.as_deref()),
        &text(spec, &report, started, written.as_deref()),
    );
    Ok(exit::code(exit::OK))
}

/// Writes the file, directory or CAR asked for; returns where.
fn write_output(
    node: &Node,
    spec: &Spec,
    report: &FetchReport,
    args: &FetchArgs,
) -> Result<Option<PathBuf>> {
    let store = node.blocks.as_ref();
    if let Some(path) = &args.car {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        rm_http::write_car(store, spec, true, std::io::BufWriter::new(file))
            .with_context(|| format!("writing the CAR {}", path.display()))?;
        return Ok(Some(path.clone()));
    }
    let Some(path) = &args.output else {
        return Ok(None);
    };
    let terminal = report.terminal.context("the path did not resolve")?;
    if let Some(bytes) = spec.bytes {
        let size = file_size(store, &terminal)?;
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        if let Some(range) = bytes.resolve(size) {
            rm_http::export::export_range(store, &terminal, range, &mut file)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(Some(path.clone()));
    }
    if spec.scope == Scope::Block {
        bail!("--dag-scope block fetches one block, not a file: use --car");
    }
    rm_blockio::unixfs::export_path(store, &terminal, path)
        .with_context(|| format!("writing {} (use --car for non-UnixFS data)", path.display()))?;
    Ok(Some(path.clone()))
}

/// A UnixFS file's size, from its root block.
fn file_size(store: &dyn rm_blockio::Blockstore, root: &Cid) -> Result<u64> {
    let data = store
        .get(root)?
        .context("the file's root block is not stored")?;
    if root.codec() == rm_blockio::codec::RAW {
        return Ok(data.len() as u64);
    }
    let node = rm_blockio::codec::decode_dag_pb(&data)?;
    let fs = node
        .data
        .as_deref()
        .and_then(|d| rm_blockio::unixfs::UnixFsData::decode(d).ok())
        .context("--entity-bytes needs a UnixFS file")?;
    Ok(fs.filesize.unwrap_or_else(|| {
        fs.data.as_ref().map_or(0, |d| d.len() as u64) + fs.blocksizes.iter().sum::<u64>()
    }))
}

fn summary(
    spec: &Spec,
    r: &FetchReport,
    started: Instant,
    output: Option<&Path>,
) -> serde_json::Value {
    json!({
        "event": "done",
        "payload_cid": spec.root.to_string(),
        "terminal_cid": r.terminal.map(|c| c.to_string()),
        "steps": r.steps,
        "resumed_from": r.resumed_from,
        "blocks": r.progress.blocks,
        "bytes": r.progress.block_bytes,
        "wire_bytes": r.progress.wire_bytes,
        "wire_bytes_all_runs": r.wire_bytes_all_runs,
        "requests": r.progress.requests,
        "failures": r.failures,
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "output": output.map(|p| p.display().to_string()),
    })
}

fn text(spec: &Spec, r: &FetchReport, started: Instant, output: Option<&Path>) -> String {
    let mut s = format!(
        "fetched {} ({} blocks verified{}): {} this run in {} request(s), {:.2} s\n",
        spec.root,
        output::thousands(r.steps),
        if r.resumed_from > 0 {
            format!(", {} of them before", output::thousands(r.resumed_from))
        } else {
            String::new()
        },
        output::bytes(r.progress.wire_bytes),
        r.progress.requests,
        started.elapsed().as_secs_f64()
    );
    for f in &r.failures {
        s.push_str(&format!("  a provider failed: {f}\n"));
    }
    if let Some(p) = output {
        s.push_str(&format!("  wrote {}\n", p.display()));
    }
    s
}
