//! `rm query`: ask a provider about a payload.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use rm_network::libp2p::{Multiaddr, PeerId};
use rm_types::{Cid, Query, QueryParams, QueryResponse, QueryResponseStatus};
use serde_json::json;

use crate::cmd::{parse_cid, parse_target};
use crate::output::{self, Output};
use crate::{Global, exit, home};
use rm_node::Node;

/// Whom to ask about what.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The provider: a multiaddr ending in /p2p/PEER_ID, or a peer id (found on the DHT).
    pub provider: String,
    /// The payload CID.
    pub cid: String,
    /// Ask about the payload in this piece only.
    #[arg(long, value_name = "PIECE_CID")]
    pub piece: Option<String>,
}

/// Prints the provider's answer; exit code 3 when the payload is not available.
pub async fn run(global: &Global, out: &Output, args: QueryArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let config = home::load(&home)?;
    let (peer, addr) = parse_target(&args.provider)?;
    let payload = parse_cid(&args.cid)?;
    let piece = args.piece.as_deref().map(parse_cid).transpose()?;
    let node = home::open(&home, &[]).await?;
    let addrs = provider_addrs(&node, &config, peer, addr, &payload).await?;
    let answer = query(&node, peer, addrs, payload, piece).await;
    node.network.shutdown().await;
    let answer = answer?;
    out.result(&answer_json(&answer), &answer_text(&answer));
    Ok(exit::code(
        if answer.status == QueryResponseStatus::Available {
            exit::OK
        } else {
            exit::NOT_DONE
        },
    ))
}

/// Addresses to dial `peer` at: the one given, else the DHT's (joined through the
/// configured bootstrap peers).
pub async fn provider_addrs(
    node: &Node,
    config: &rm_node::Config,
    peer: PeerId,
    addr: Option<Multiaddr>,
    payload: &Cid,
) -> Result<Vec<Multiaddr>> {
    if let Some(a) = addr {
        return Ok(vec![a]);
    }
    if node.join_dht(config).await? == 0 {
        bail!(
            "no address for {peer}: give a multiaddr ending in /p2p/{peer}, or list DHT \
             bootstrap peers in config.toml"
        );
    }
    let found = node
        .resolver(rm_discovery::ResolverConfig::default())
        .find(payload)
        .await;
    match found.into_iter().find(|f| f.peer_id == peer) {
        Some(f) if !f.addrs.is_empty() => Ok(f.addrs),
        _ => bail!("the DHT does not know {peer} as a provider of {payload}"),
    }
}

/// Dials `peer` and asks about `payload`.
pub async fn query(
    node: &Node,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    payload: Cid,
    piece: Option<Cid>,
) -> Result<QueryResponse> {
    node.network
        .dial(peer, addrs)
        .await
        .with_context(|| format!("dialling {peer}"))?;
    let q = Query {
        payload_cid: payload,
        params: QueryParams { piece_cid: piece },
    };
    node.network
        .query(peer, &q)
        .await
        .with_context(|| format!("querying {peer}"))
}

/// The answer as JSON.
pub fn answer_json(a: &QueryResponse) -> serde_json::Value {
    json!({
        "status": format!("{:?}", a.status),
        "piece_cid_found": format!("{:?}", a.piece_cid_found),
        "size": a.size,
        "payment_address": a.payment_address.to_string(),
        "min_price_per_byte": a.min_price_per_byte.atto().to_string(),
        "max_payment_interval": a.max_payment_interval,
        "max_payment_interval_increase": a.max_payment_interval_increase,
        "unseal_price": a.unseal_price.atto().to_string(),
        "message": a.message,
    })
}

fn answer_text(a: &QueryResponse) -> String {
    let mut s = format!("status             {:?}\n", a.status);
    if a.status == QueryResponseStatus::Available {
        s.push_str(&format!(
            "size               {} (upper bound of the bytes a whole retrieval costs)\n\
             price per byte     {}\nunseal price       {}\n\
             payment interval   {} + {} bytes\npay to             {}\n",
            output::thousands(a.size),
            a.min_price_per_byte.display_atto(),
            a.unseal_price.display_atto(),
            output::thousands(a.max_payment_interval),
            output::thousands(a.max_payment_interval_increase),
            a.payment_address
        ));
    }
    if !a.message.is_empty() {
        s.push_str(&format!("message            {}\n", a.message));
    }
    s
}
