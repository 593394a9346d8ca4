//! `rm deals`: the node's client and provider deals.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::cmd::retrieve::provider_of;
use crate::output::{self, Output};
use crate::{Global, exit, home};

/// Which side to list (both by default).
#[derive(Debug, Args)]
pub struct DealsArgs {
    /// Only deals this node made as a client.
    #[arg(long, conflicts_with = "provider")]
    pub client: bool,
    /// Only deals this node served as a provider.
    #[arg(long)]
    pub provider: bool,
}

/// Lists deals straight from the database: nothing is resumed or dialled.
pub async fn run(global: &Global, out: &Output, args: DealsArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    home::load(&home)?;
    let node = home::open(&home, &[]).await?;
    let (show_client, show_provider) = match (args.client, args.provider) {
        (false, false) => (true, true),
        (c, p) => (c, p),
    };
    let mut rows = Vec::new();
    let mut items = Vec::new();
    if show_client {
        for (id, deal) in node.client_deals().await? {
            let s = &deal;
            items.push(json!({
                "side": "client",
                "deal_id": id,
                "peer": provider_of(&deal),
                "payload_cid": s.proposal.payload_cid.to_string(),
                "status": deal.status().to_string(),
                "bytes": s.bytes_received,
                "paid": s.funds_spent.atto().to_string(),
                "message": s.message(),
            }));
            rows.push(vec![
                "client".into(),
                id.to_string(),
                output::short_peer(&provider_of(&deal)).to_owned(),
                s.proposal.payload_cid.to_string(),
                deal.status().to_string().to_string(),
                output::bytes(s.bytes_received),
                s.funds_spent.display_atto(),
                s.message().clone(),
            ]);
        }
    }
    if show_provider {
        for ((peer, id), deal) in node.provider_deals().await? {
            let s = &deal;
            let peer = rm_network::libp2p::PeerId::from_bytes(&peer)
                .map(|p| p.to_string())
                .unwrap_or_else(|_| "?".into());
            items.push(json!({
                "side": "provider",
                "deal_id": id,
                "peer": peer,
                "payload_cid": s.proposal.payload_cid.to_string(),
                "status": deal.status().to_string(),
                "bytes": s.bytes_sent,
                "paid": s.funds_received.atto().to_string(),
                "message": s.message(),
            }));
            rows.push(vec![
                "provider".into(),
                id.to_string(),
                output::short_peer(&peer).to_owned(),
                s.proposal.payload_cid.to_string(),
                deal.status().to_string().to_string(),
                output::bytes(s.bytes_sent),
                s.funds_received.display_atto(),
                s.message().clone(),
            ]);
        }
    }
    node.network.shutdown().await;
    let text = if rows.is_empty() {
        "no deals\n".to_owned()
    } else {
        output::table(
            &[
                "side", "id", "peer", "payload", "status", "bytes", "paid", "message",
            ],
            &rows,
        )
    };
    out.result(&json!({ "deals": items }), &text);
    Ok(exit::code(exit::OK))
}
