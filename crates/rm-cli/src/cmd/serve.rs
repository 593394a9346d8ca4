//! `rm serve`: run the provider and the DHT until Ctrl-C.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use rm_node::control::{Change, Operations};
use serde_json::json;

use crate::cmd::{deals, full_addr};
use crate::output::{self, Output, node_error};
use crate::{Global, exit, home};

/// Where to listen.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A multiaddr to listen on, e.g. /ip4/0.0.0.0/tcp/24001 (repeatable)
    /// [default: config's network.listen].
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Where to serve HTTP retrievals (IPFS Trustless Gateway and /piece/): HOST:PORT;
    /// port 0 picks a free port.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_HTTP_LISTEN)]
    pub http_listen: String,
    /// Serve no HTTP.
    #[arg(long)]
    pub no_http: bool,
    /// Where to serve Prometheus metrics (GET /metrics): HOST:PORT; port 0 picks a free
    /// port [default: config's metrics.listen, 127.0.0.1:24090].
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "no_metrics")]
    pub metrics_listen: Option<String>,
    /// Serve no metrics.
    #[arg(long)]
    pub no_metrics: bool,
}

/// Where `rm serve` serves HTTP unless told otherwise.
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:24080";

/// Serves queries and deals, announces what the node holds, answers the control socket
/// (`rm import`, `rm ask`, `rm deals`, `rm fund`, `rm query` on the same home), serves
/// metrics, prints one line per deal status change, and stops cleanly on Ctrl-C or
/// SIGTERM.
pub async fn run(global: &Global, out: &Output, args: ServeArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let config = home::load(&home)?;
    let listen = if args.listen.is_empty() {
        config.network.listen.clone()
    } else {
        args.listen
    };
    let metrics_listen = match (&args.metrics_listen, args.no_metrics) {
        (_, true) => None,
        (Some(text), false) => rm_node::config::parse_listen("--metrics-listen", text)?,
        (None, false) => config.metrics_listen()?,
    };
    let node = Arc::new(home::open(&home, &listen).await?);
    let provider = node.provider(config.provider_config()?).await?;
    let ops = Arc::new(Operations::serving(
        Arc::clone(&node),
        config.clone(),
        provider.clone(),
    ));
    // Subscribed before the provider starts: no deal goes unprinted.
    let mut changes = ops
        .follow()
        .context("the serving provider has no deal events")?;
    provider.start();
    let peer = node.peer_id();
    let addrs: Vec<String> = node
        .addrs()
        .await?
        .iter()
        .map(|a| full_addr(a, peer).to_string())
        .collect();
    let (http, http_urls) = start_http(&node, &args.http_listen, args.no_http).await?;
    let metrics = match metrics_listen {
        Some(addr) => Some(
            node.serve_metrics(addr)
                .await
                .with_context(|| format!("serving metrics on {addr}"))?,
        ),
        None => None,
    };
    let metrics_url = metrics.as_ref().map(|m| m.url());
    let control = rm_node::ControlServer::bind(&home, Arc::clone(&ops))
        .await
        .map_err(node_error)
        .context("opening the control socket")?;
    let joined = node.join_dht(&config).await?;
    // Announce everything held now that the DHT has peers.
    let provided = node.announcer.provided()?;
    for payload in &provided {
        node.announcer.provide(payload)?;
    }
    let ask = provider.ask();
    let mut text = format!("rm serve: provider {peer}\n");
    for a in &addrs {
        text.push_str(&format!("  listening on {a}\n"));
    }
    for u in &http_urls {
        text.push_str(&format!("  serving HTTP on {u}\n"));
    }
    if let Some(u) = &metrics_url {
        text.push_str(&format!("  metrics on {u}\n"));
    }
    text.push_str(&format!(
        "  control socket {} (rm import, ask, deals, fund, query use it)\n",
        control.path().display()
    ));
    text.push_str(&format!(
        "  ask: {}/byte, unseal {}, interval {} + {} bytes\n  \
         serving {}; DHT bootstrap peers: {}\n  Ctrl-C stops\n",
        ask.price_per_byte.display_atto(),
        ask.unseal_price.display_atto(),
        output::thousands(ask.payment_interval),
        output::thousands(ask.payment_interval_increase),
        output::count(provided.len() as u64, "payload"),
        joined
    ));
    out.result(
        &json!({
            "event": "listening",
            "peer_id": peer.to_string(),
            "addrs": addrs,
            "http_urls": http_urls,
            "metrics_url": metrics_url,
            "control_socket": control.path().display().to_string(),
            "payloads": provided.len(),
            "bootstrap_peers": joined,
        }),
        &text,
    );

    use tokio::signal::unix::{SignalKind, signal};
    // Registered once, before the loop: a signal between two turns is not lost.
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            change = changes.next() => match change {
                Some(Change::Deal(deal)) => {
                    let mut v = serde_json::to_value(&*deal)?;
                    if let Some(m) = v.as_object_mut() {
                        m.insert("event".into(), json!("deal"));
                    }
                    out.result(&v, &deals::line(&deal));
                }
                Some(Change::Lagged(n)) => {
                    tracing::warn!(missed = n, "deal notifications missed; the log skips them");
                }
                // The provider is gone.
                None => break,
            },
        }
    }
    control.shutdown();
    if let Some(m) = metrics {
        m.shutdown();
    }
    provider.stop().await;
    if let Some(server) = http {
        server.shutdown().await;
    }
    node.network.shutdown().await;
    out.result(&json!({"event": "stopped"}), "rm serve: stopped\n");
    Ok(exit::code(exit::OK))
}

/// Serves HTTP on `listen` (unless `off`) and announces it as `/ip…/tcp/PORT/http`
/// addresses of the node (identify and provider records carry them); returns the server
/// and its `http://HOST:PORT` URLs.
async fn start_http(
    node: &rm_node::Node,
    listen: &str,
    off: bool,
) -> Result<(Option<rm_http::Server>, Vec<String>)> {
    use rm_network::libp2p::multiaddr::{Multiaddr, Protocol};
    if off {
        return Ok((None, Vec::new()));
    }
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--http-listen {listen:?} is not HOST:PORT"))?;
    let server = node
        .serve_http(addr, rm_http::Config::default())
        .await
        .with_context(|| format!("serving HTTP on {listen}"))?;
    let bound = server.local_addr();
    // A wildcard address is announced as the IPs libp2p listens on.
    let mut ips = Vec::new();
    if bound.ip().is_unspecified() {
        for a in node.addrs().await? {
            for p in a.iter() {
                let ip: Option<std::net::IpAddr> = match p {
                    Protocol::Ip4(ip) => Some(ip.into()),
                    Protocol::Ip6(ip) => Some(ip.into()),
                    _ => None,
                };
                if let Some(ip) = ip.filter(|ip| !ip.is_unspecified() && !ips.contains(ip)) {
                    ips.push(ip);
                }
            }
        }
    }
    if ips.is_empty() {
        ips.push(bound.ip());
    }
    let mut urls = Vec::new();
    for ip in ips {
        let mut ma = Multiaddr::empty();
        ma.push(match ip {
            std::net::IpAddr::V4(v4) => Protocol::Ip4(v4),
            std::net::IpAddr::V6(v6) => Protocol::Ip6(v6),
        });
        ma.push(Protocol::Tcp(bound.port()));
        ma.push(Protocol::Http);
        node.network.add_external_address(ma).await?;
        urls.push(format!(
            "http://{}",
            std::net::SocketAddr::new(ip, bound.port())
        ));
    }
    Ok((Some(server), urls))
}
