//! `rm pieces`: the pieces a node holds; show one; remove one and free its disk space.
//! The work is `rm_node::Node`'s (`Node::pieces`, `Node::piece`, `Node::remove_piece`),
//! reached through a [`Session`]: the running server's when `rm serve` runs on the home,
//! else the home opened directly. This is arguments and output.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use rm_node::Session;
use rm_node::control::api::PieceView;

use crate::output::{self, Output, node_error};
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

fn cached_text(p: &PieceView) -> String {
    match (p.cached_bytes, p.cache_complete) {
        (Some(bytes), Some(true)) => output::bytes(bytes),
        (Some(bytes), _) => format!("{} (unsealing)", output::bytes(bytes)),
        (None, _) => "-".into(),
    }
}

fn sectors_text(p: &PieceView) -> String {
    p.deals
        .iter()
        .map(|d| format!("{}@{}", d.sector, d.offset))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `rm pieces`: through the running server's control socket when `rm serve` runs on
/// the home, else on the home opened directly.
pub async fn run(global: &Global, out: &Output, args: PiecesArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let config = home::load(&home)?;
    let session = home::session(&home, config).await?;
    let result = act(&session, out, args.action.unwrap_or(PiecesAction::List)).await;
    session.close().await;
    result
}

async fn act(session: &Session, out: &Output, action: PiecesAction) -> Result<ExitCode> {
    match action {
        PiecesAction::List => {
            let view = session.pieces().await.map_err(node_error)?;
            let rows: Vec<Vec<String>> = view
                .pieces
                .iter()
                .map(|p| {
                    vec![
                        p.piece_cid.clone(),
                        p.payload_cids
                            .first()
                            .cloned()
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
            out.result(&serde_json::to_value(&view)?, &text);
        }
        PiecesAction::Show { piece } => {
            let cid = crate::cmd::parse_cid(&piece)?.to_string();
            let p = session
                .piece(&cid)
                .await
                .map_err(node_error)
                .with_context(|| format!("piece {cid}"))?;
            let rows = vec![
                vec!["piece".into(), p.piece_cid.clone()],
                vec![
                    "payloads".into(),
                    if p.payload_cids.is_empty() {
                        "? (not readable without an unseal)".into()
                    } else {
                        p.payload_cids.join(", ")
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
                &serde_json::to_value(&p)?,
                &output::table(&["rm pieces show", ""], &rows),
            );
        }
        PiecesAction::Remove { piece } => {
            let cid = crate::cmd::parse_cid(&piece)?.to_string();
            let r = session
                .remove_piece(&cid)
                .await
                .map_err(node_error)
                .with_context(|| format!("removing piece {cid}"))?;
            let freed = r.disk_bytes_before.saturating_sub(r.disk_bytes_after);
            out.result(
                &serde_json::to_value(&r)?,
                &format!(
                    "removed piece {cid}: {} block locations; data on disk {} -> {} ({} freed)\n",
                    output::thousands(r.blocks),
                    output::bytes(r.disk_bytes_before),
                    output::bytes(r.disk_bytes_after),
                    output::bytes(freed),
                ),
            );
        }
    }
    Ok(exit::code(exit::OK))
}
