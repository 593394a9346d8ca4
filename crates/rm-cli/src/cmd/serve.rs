//! `rm serve`: run the provider and the DHT until Ctrl-C.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::cmd::full_addr;
use crate::output::{self, Output};
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
}

/// Where `rm serve` serves HTTP unless told otherwise.
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:24080";

/// Serves queries and deals, announces what the node holds, prints one line per deal
/// status change, and stops cleanly on Ctrl-C or SIGTERM.
pub async fn run(global: &Global, out: &Output, args: ServeArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let config = home::load(&home)?;
    let listen = if args.listen.is_empty() {
        config.network.listen.clone()
    } else {
        args.listen
    };
    let node = home::open(&home, &listen).await?;
    let provider = node.provider(config.provider_config()?).await?;
    let mut events = provider.subscribe_to_events();
    provider.start();
    let peer = node.peer_id();
    let addrs: Vec<String> = node
        .addrs()
        .await?
        .iter()
        .map(|a| full_addr(a, peer).to_string())
        .collect();
    let (http, http_urls) = start_http(&node, &args.http_listen, args.no_http).await?;
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
            "http": http_urls,
            "payloads": provided.len(),
            "bootstrap_peers": joined,
        }),
        &text,
    );

    use tokio::signal::unix::{SignalKind, signal};
    // Registered once, before the loop: a signal between two turns is not lost.
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut last: HashMap<(Vec<u8>, u64), rm_provider::ProviderStatus> = HashMap::new();
    loop {
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            note = events.recv() => {
                let note = match note {
                    Ok(note) => note,
                    Err(rm_fsm::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "deal notifications missed; the log skips them");
                        continue;
                    }
                    // Closed: the provider is gone.
                    Err(_) => break,
                };
                let rm_fsm::Notification::Applied { id: key, snapshot, .. } = note else { continue };
                let status = snapshot.state.status();
                if last.get(&key) == Some(&status) {
                    continue;
                }
                let client = rm_network::libp2p::PeerId::from_bytes(&key.0)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|_| "?".into());
                let deal = &snapshot.state;
                out.result(
                    &json!({
                        "event": "deal",
                        "client": client,
                        "deal_id": key.1,
                        "payload_cid": deal.proposal.payload_cid.to_string(),
                        "status": status.to_string(),
                        "bytes_sent": deal.bytes_sent,
                        "funds_received": deal.funds_received.atto().to_string(),
                        "message": deal.message(),
                    }),
                    &format!(
                        "deal {}/{}: {} ({} sent, {} received){}\n",
                        output::short_peer(&client),
                        key.1,
                        status,
                        output::bytes(deal.bytes_sent),
                        deal.funds_received.display_atto(),
                        if deal.message().is_empty() { String::new() } else { format!(": {}", deal.message()) }
                    ),
                );
                if status.is_final() {
                    last.remove(&key);
                } else {
                    last.insert(key, status);
                }
            }
        }
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
