//! `rm deals`: the node's client and provider deals; `--follow` streams status changes.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use rm_node::control::api::{DealView, DealsRequest};
use serde_json::json;

use crate::output::{self, Output, node_error};
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
    /// After the list, print every status change of the running server's deals until
    /// Ctrl-C or the server stops (needs `rm serve` running on this home).
    #[arg(long)]
    pub follow: bool,
}

/// Lists deals straight from the database (or from the running server): nothing is
/// resumed or dialled.
pub async fn run(global: &Global, out: &Output, args: DealsArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let config = home::load(&home)?;
    let request = DealsRequest {
        client: args.client,
        provider: args.provider,
        follow: args.follow,
    };
    let session = home::session(&home, config).await?;
    if args.follow {
        let result = follow(&session, request, out).await;
        session.close().await;
        return result;
    }
    let deals = session.deals(request).await;
    session.close().await;
    let deals = deals.map_err(node_error)?;
    let rows: Vec<Vec<String>> = deals.iter().map(row).collect();
    let text = if rows.is_empty() {
        "no deals\n".to_owned()
    } else {
        output::table(&HEADER, &rows)
    };
    out.result(&json!({ "deals": deals }), &text);
    Ok(exit::code(exit::OK))
}

const HEADER: [&str; 8] = [
    "side", "id", "peer", "payload", "status", "bytes", "paid", "message",
];

fn row(d: &DealView) -> Vec<String> {
    vec![
        d.side.clone(),
        d.deal_id.to_string(),
        output::short_peer(&d.peer).to_owned(),
        d.payload_cid.clone(),
        d.status.clone(),
        output::bytes(d.bytes),
        d.paid.display_atto(),
        d.message.clone(),
    ]
}

/// One line per deal: the listing, then each change, as `{"event":"deal",…}` with
/// `--json`.
async fn follow(
    session: &rm_node::Session,
    request: DealsRequest,
    out: &Output,
) -> Result<ExitCode> {
    let print = |d: DealView| {
        let mut v = serde_json::to_value(&d).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.insert("event".into(), json!("deal"));
        }
        out.result(&v, &line(&d));
    };
    let served = session.is_served();
    let listed = |n: u64| {
        out.result(
            &json!({"event": "listed", "count": n}),
            &format!(
                "{} listed{}\n",
                output::count(n, "deal"),
                if served {
                    "; following status changes (Ctrl-C stops)"
                } else {
                    ""
                }
            ),
        );
    };
    let lagged = |n: u64| {
        out.result(
            &json!({"event": "lagged", "missed": n}),
            &format!("(fell behind: {n} changes not shown)\n"),
        );
    };
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let result = tokio::select! {
        r = session.follow_deals(request, print, listed, lagged) => r,
        _ = interrupt.recv() => return Ok(exit::code(exit::OK)),
    };
    match result {
        Ok(()) => {
            out.result(&json!({"event": "stopped"}), "the server stopped\n");
            Ok(exit::code(exit::OK))
        }
        Err(rm_node::Error::Control(e)) if matches!(*e, rm_node::ControlError::NotServing) => {
            Err(anyhow::Error::new(*e).context("rm deals --follow"))
        }
        Err(e) => Err(node_error(e)),
    }
}

/// A deal as one line of text.
pub fn line(d: &DealView) -> String {
    format!(
        "{} deal {}/{}: {} ({} {}, {} paid){}\n",
        d.side,
        output::short_peer(&d.peer),
        d.deal_id,
        d.status,
        output::bytes(d.bytes),
        if d.side == "provider" {
            "sent"
        } else {
            "received"
        },
        d.paid.display_atto(),
        if d.message.is_empty() {
            String::new()
        } else {
            format!(": {}", d.message)
        }
    )
}
