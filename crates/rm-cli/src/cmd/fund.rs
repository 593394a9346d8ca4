//! `rm fund`: payment channels in the local ledger.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use rm_types::Address;
use serde_json::json;

use crate::cmd::parse_amount;
use crate::output::{self, Output};
use crate::{Global, exit, home};

/// A channel and an amount to add; nothing lists the channels.
#[derive(Debug, Args)]
pub struct FundArgs {
    /// The payment channel's address (from `rm fund`).
    #[arg(requires = "amount")]
    pub channel: Option<String>,
    /// attoFIL to add (or "0.5 FIL").
    pub amount: Option<String>,
}

/// Lists the ledger's channels (funds, committed by vouchers, available, owed to this
/// node; with `--json`, the lanes paying this node and their latest vouchers) or adds
/// funds to one. The local ledger stands in for the chain: funds added are
/// final at once.
pub async fn run(global: &Global, out: &Output, args: FundArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    home::load(&home)?;
    let node = home::open(&home, &[]).await?;
    let mut added = None;
    if let (Some(channel), Some(amount)) = (&args.channel, &args.amount) {
        let address: Address = channel
            .parse()
            .with_context(|| format!("{channel:?} is not a channel address"))?;
        let amount = parse_amount(amount)?;
        node.ledger
            .add_funds(&address, &amount)
            .with_context(|| format!("adding funds to {address}"))?;
        added = Some((address, amount));
    }
    let channels = node.ledger.channels()?;
    let mine = node.address.clone();
    // Per channel paying this node: each lane's redeemed state and the latest voucher
    // received on it (what would be submitted on chain), as hex of its CBOR.
    let mut lanes = Vec::with_capacity(channels.len());
    for c in &channels {
        let mut received = Vec::new();
        if c.to == mine {
            for (lane, state) in node.ledger.lanes(&c.address)? {
                let voucher = node
                    .ledger
                    .latest_voucher(&c.address, lane)?
                    .map(|v| rm_types::codec::to_vec(&v).map(hex))
                    .transpose()
                    .context("encoding a stored voucher")?;
                received.push(json!({
                    "lane": lane,
                    "nonce": state.nonce,
                    "redeemed": state.redeemed.atto().to_string(),
                    "voucher": voucher,
                }));
            }
        }
        lanes.push(received);
    }
    node.network.shutdown().await;
    let items: Vec<_> = channels
        .iter()
        .zip(lanes)
        .map(|(c, lanes)| {
            json!({
                "channel": c.address.to_string(),
                "from": c.from.to_string(),
                "to": c.to.to_string(),
                "funds": c.funds.atto().to_string(),
                "committed": c.committed.atto().to_string(),
                "available": c.available().atto().to_string(),
                "owed_to_recipient": c.to_send.atto().to_string(),
                "ours": c.from == mine,
                "lanes_received": lanes,
            })
        })
        .collect();
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|c| {
            vec![
                c.address.to_string(),
                if c.from == mine { "pays" } else { "is paid" }.into(),
                if c.from == mine {
                    c.to.to_string()
                } else {
                    c.from.to_string()
                },
                c.funds.display_atto(),
                c.committed.display_atto(),
                c.available().display_atto(),
                c.to_send.display_atto(),
            ]
        })
        .collect();
    let mut text = String::new();
    if let Some((address, amount)) = &added {
        text.push_str(&format!("added {} to {address}\n", amount.display_atto()));
    }
    text.push_str(&if rows.is_empty() {
        format!("no payment channels (wallet {mine})\n")
    } else {
        output::table(
            &[
                "channel",
                "this node",
                "peer wallet",
                "funds",
                "committed",
                "available",
                "owed",
            ],
            &rows,
        )
    });
    out.result(
        &json!({
            "wallet": mine.to_string(),
            "added": added.as_ref().map(|(a, n)| json!({"channel": a.to_string(), "amount": n.atto().to_string()})),
            "channels": items,
        }),
        &text,
    );
    Ok(exit::code(exit::OK))
}

/// Lowercase hex of `bytes`.
fn hex(bytes: Vec<u8>) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
