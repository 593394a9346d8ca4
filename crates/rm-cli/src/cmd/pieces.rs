//! `rm pieces`: the pieces a node holds; show one; remove one and free its disk space.
//! The work is `rm_node::Node`'s ([`Node::pieces`], [`Node::piece`],
//! [`Node::remove_piece`]); this is arguments and output.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use rm_node::{Node, PieceSummary};
use serde_json::{Value, json};

use crate::output::{self, Output};
use crate::{Global, exit, home};

/// What to do with pieces.
#[derive(Debug, Args)]
pub struct PiecesArgs {
    /// list (the default), show or remove.
    #[command(subcommand)]
    pub action: Option<PiecesAction>,
}

/// `rm pieces …`.
#[derive(Debug, Subcommand)]
pub enum PiecesAction {
    /// Every piece: size, sectors, unsealed-cache copy.
    List,
    /// One piece: the payloads it holds, where it is stored, its cached copy.
    Show {
        /// The piece CID (baga…).
        piece: String,
    },
    /// Remove a piece and free its disk space (sector bytes, cached copy, blocks).
    Remove {
        /// The piece CID (baga…).
        piece: String,
    },
}

fn summary_json(p: &PieceSummary) -> Value {
    json!({
        "piece_cid": p.piece_cid.to_string(),
        "payload_cids": p.payloads.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "data_size": p.data_size,
        "piece_size": p.piece_size,
        "deals": p.deals.iter().map(|d| json!({
            "deal_id": d.deal_id,
            "sector": d.sector_id,
            "offset": d.offset,
            "length": d.length,
        })).collect::<Vec<_>>(),
        "cached_bytes": p.cached.as_ref().map(|c| c.bytes),
        "cache_complete": p.cached.as_ref().map(|c| c.complete),
        "readers": p.readers,
    })
}

fn cached_text(p: &PieceSummary) -> String {
    match &p.cached {
        Some(c) if c.complete => output::bytes(c.bytes),
        Some(c) => format!("{} (unsealing)", output::bytes(c.bytes)),
        None => "-".into(),
    }
}

fn sectors_text(p: &PieceSummary) -> String {
    p.deals
        .iter()
        .map(|d| format!("{}@{}", d.sector_id, d.offset))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `rm pieces`, opening the home directly (the server must be stopped).
pub async fn run(global: &Global, out: &Output, args: PiecesArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    home::load(&home)?;
    let node = home::open(&home, &[]).await?;
    let result = act(&node, out, args.action.unwrap_or(PiecesAction::List)).await;
    node.network.shutdown().await;
    result
}

async fn act(node: &Node, out: &Output, action: PiecesAction) -> Result<ExitCode> {
    match action {
        PiecesAction::List => {
            let pieces = node.pieces().await?;
            let rows: Vec<Vec<String>> = pieces
                .iter()
                .map(|p| {
                    vec![
                        p.piece_cid.to_string(),
                        p.payloads
                            .first()
                            .map(ToString::to_string)
                            .unwrap_or_else(|| "?".into()),
                        p.data_size.map(output::bytes).unwrap_or_else(|| "?".into()),
                        sectors_text(p),
                        cached_text(p),
                    ]
                })
                .collect();
            let text = if rows.is_empty() {
                "no pieces\n".to_owned()
            } else {
                output::table(
                    &["piece", "payload", "data", "sector@offset", "cached"],
                    &rows,
                )
            };
            out.result(
                &json!({ "pieces": pieces.iter().map(summary_json).collect::<Vec<_>>() }),
                &text,
            );
        }
        PiecesAction::Show { piece } => {
            let cid = crate::cmd::parse_cid(&piece)?;
            let p = node
                .piece(&cid)
                .await
                .with_context(|| format!("piece {cid}"))?;
            let rows = vec![
                vec!["piece".into(), p.piece_cid.to_string()],
                vec![
                    "payloads".into(),
                    if p.payloads.is_empty() {
                        "? (not readable without an unseal)".into()
                    } else {
                        p.payloads
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                ],
                vec![
                    "data / piece size".into(),
                    format!(
                        "{} / {}",
                        p.data_size.map(output::bytes).unwrap_or_else(|| "?".into()),
                        p.piece_size
                            .map(output::bytes)
                            .unwrap_or_else(|| "?".into())
                    ),
                ],
                vec!["sector@offset".into(), sectors_text(&p)],
                vec!["unsealed cache".into(), cached_text(&p)],
                vec!["deals reading it".into(), p.readers.to_string()],
            ];
            out.result(
                &summary_json(&p),
                &output::table(&["rm pieces show", ""], &rows),
            );
        }
        PiecesAction::Remove { piece } => {
            let cid = crate::cmd::parse_cid(&piece)?;
            let r = node
                .remove_piece(&cid)
                .await
                .with_context(|| format!("removing piece {cid}"))?;
            let freed = r.disk_before.saturating_sub(r.disk_after);
            out.result(
                &json!({
                    "piece_cid": cid.to_string(),
                    "payload_cids": r.removed.roots.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "blocks": r.removed.blocks,
                    "orphaned_blocks": r.removed.orphaned,
                    "sector_bytes_freed": r.removed.sector_bytes,
                    "cache_bytes_freed": r.removed.cache_bytes,
                    "unprovided": r.unprovided.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "disk_bytes_before": r.disk_before,
                    "disk_bytes_after": r.disk_after,
                }),
                &format!(
                    "removed piece {cid}: {} block locations; data on disk {} -> {} ({} freed)\n",
                    output::thousands(r.removed.blocks),
                    output::bytes(r.disk_before),
                    output::bytes(r.disk_after),
                    output::bytes(freed),
                ),
            );
        }
    }
    Ok(exit::code(exit::OK))
}
