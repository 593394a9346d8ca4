//! `rm deals`: the node's client and provider deals.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;
use rm_fsm::{Group, RocksStore, rocksdb::DB};
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
    let config = home::load(&home)?;
    let node = home::open(&home, &config, &[]).await?;
    let (show_client, show_provider) = match (args.client, args.provider) {
        (false, false) => (true, true),
        (c, p) => (c, p),
    };
    let mut rows = Vec::new();
    let mut items = Vec::new();
    if show_client {
        for (id, deal) in client_deals(&node.db).await? {
            let s = &deal.state;
            items.push(json!({
                "side": "client",
                "deal_id": id,
                "peer": provider_of(&deal),
                "payload_cid": s.proposal.payload_cid.to_string(),
                "status": deal.status().short_name(),
                "bytes": s.total_received,
                "paid": s.funds_spent.atto().to_string(),
                "message": s.message,
            }));
            rows.push(vec![
                "client".into(),
                id.to_string(),
                output::short_peer(&provider_of(&deal)).to_owned(),
                s.proposal.payload_cid.to_string(),
                deal.status().short_name().to_string(),
                output::bytes(s.total_received),
                s.funds_spent.display_atto(),
                s.message.clone(),
            ]);
        }
    }
    if show_provider {
        for ((peer, id), deal) in provider_deals(&node.db).await? {
            let s = &deal.state;
            let peer = rm_network::libp2p::PeerId::from_bytes(&peer)
                .map(|p| p.to_string())
                .unwrap_or_else(|_| "?".into());
            items.push(json!({
                "side": "provider",
                "deal_id": id,
                "peer": peer,
                "payload_cid": s.proposal.payload_cid.to_string(),
                "status": deal.status().short_name(),
                "bytes": s.total_sent,
                "paid": s.funds_received.atto().to_string(),
                "message": s.message,
            }));
            rows.push(vec![
                "provider".into(),
                id.to_string(),
                output::short_peer(&peer).to_owned(),
                s.proposal.payload_cid.to_string(),
                deal.status().short_name().to_string(),
                output::bytes(s.total_sent),
                s.funds_received.display_atto(),
                s.message.clone(),
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

/// Every client deal in `db`, read without starting the client.
pub async fn client_deals(db: &Arc<DB>) -> Result<Vec<(u64, rm_client::ClientDeal)>> {
    let store = RocksStore::new(Arc::clone(db), rm_client::DEALS_CF)?;
    let group = Group::open(
        rm_client::fsm::table(),
        (),
        store,
        rm_fsm::Config::default(),
    )
    .await?;
    Ok(group.list(|_, _| true)?)
}

/// Every provider deal in `db`, read without starting the provider.
pub async fn provider_deals(
    db: &Arc<DB>,
) -> Result<Vec<(rm_provider::DealKey, rm_provider::ProviderDeal)>> {
    let store = RocksStore::new(Arc::clone(db), rm_provider::DEALS_CF)?;
    let group = Group::open(
        rm_provider::fsm::table(),
        (),
        store,
        rm_fsm::Config::default(),
    )
    .await?;
    Ok(group.list(|_, _| true)?)
}
