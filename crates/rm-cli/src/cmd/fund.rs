//! `rm fund`: payment channels in the local ledger.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use rm_node::control::api::{FundRequest, FundView};

use crate::cmd::parse_amount;
use crate::output::{self, Output, node_error};
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
    let config = home::load(&home)?;
    let request = FundRequest {
        channel: args.channel,
        amount: args.amount.as_deref().map(parse_amount).transpose()?,
    };
    let session = home::session(&home, config).await?;
    let view = session.fund(request).await;
    session.close().await;
    let view = view.map_err(node_error)?;
    out.result(&serde_json::to_value(&view)?, &text(&view));
    Ok(exit::code(exit::OK))
}

fn text(view: &FundView) -> String {
    let rows: Vec<Vec<String>> = view
        .channels
        .iter()
        .map(|c| {
            vec![
                c.channel.clone(),
                if c.ours { "pays" } else { "is paid" }.into(),
                if c.ours { c.to.clone() } else { c.from.clone() },
                c.funds.display_atto(),
                c.committed.display_atto(),
                c.available.display_atto(),
                c.owed.display_atto(),
            ]
        })
        .collect();
    let mut text = String::new();
    if let Some(added) = &view.added {
        text.push_str(&format!(
            "added {} to {}\n",
            added.amount.display_atto(),
            added.channel
        ));
    }
    text.push_str(&if rows.is_empty() {
        format!("no payment channels (wallet {})\n", view.wallet)
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
    text
}
