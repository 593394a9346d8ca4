//! `rm query`: ask a provider about a payload.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use rm_network::libp2p::{Multiaddr, PeerId};
use rm_node::control::api::{QueryRequest, QueryView};
use rm_types::{Cid, Query, QueryParams, QueryResponse};

use crate::cmd::{parse_cid, parse_target};
use crate::output::{self, Output, node_error};
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

/// Prints the provider's answer; exit code 3 when the payload is not available. While
/// `rm serve` runs on the home, the server asks (its host is already up and in the DHT).
pub async fn run(global: &Global, out: &Output, args: QueryArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let config = home::load(&home)?;
    let (peer, addr) = parse_target(&args.provider)?;
    let payload = parse_cid(&args.cid)?;
    let piece = args.piece.as_deref().map(parse_cid).transpose()?;
    let request = QueryRequest {
        peer_id: peer.to_string(),
        addrs: addr.iter().map(ToString::to_string).collect(),
        payload_cid: payload.to_string(),
        piece_cid: piece.map(|p| p.to_string()),
    };
    let session = home::session(&home, config).await?;
    let answer = session.query(request).await;
    session.close().await;
    let answer = answer
        .map_err(node_error)
        .with_context(|| format!("querying {peer}"))?;
    out.result(&serde_json::to_value(&answer)?, &answer_text(&answer));
    Ok(exit::code(if answer.available() {
        exit::OK
    } else {
        exit::NOT_DONE
    }))
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
    node.find_provider(config, peer, payload, true)
        .await
        .map_err(node_error)
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

fn answer_text(a: &QueryView) -> String {
    let mut s = format!("status             {}\n", a.status);
    if a.available() {
        s.push_str(&format!(
            "size               {} (upper bound of the bytes a whole retrieval costs)\n\
             price per byte     {}\nunseal price       {}\n\
             payment interval   {} + {} bytes\npay to             {}\n",
            output::thousands(a.size),
            a.price_per_byte.display_atto(),
            a.unseal_price.display_atto(),
            output::thousands(a.payment_interval),
            output::thousands(a.payment_interval_increase),
            a.wallet
        ));
    }
    if !a.message.is_empty() {
        s.push_str(&format!("message            {}\n", a.message));
    }
    s
}
