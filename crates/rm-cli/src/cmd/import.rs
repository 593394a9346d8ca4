//! `rm import`: store data as a piece in a sector.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use rm_node::control::api::{ImportProgress, ImportRequest, ImportView};

use crate::output::{self, Output, node_error};
use crate::{Global, exit, home};

/// What to import.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A file or directory (imported as UnixFS), or with --car a CAR file.
    pub path: PathBuf,
    /// UnixFS layout: v1-1mib, kubo-v1 or kubo-v0 [default: config's import.preset].
    #[arg(long)]
    pub preset: Option<String>,
    /// PATH is a CAR (v1) file: store it as it is.
    #[arg(long)]
    pub car: bool,
}

/// Imports with a progress bar, prints the payload and piece CIDs, and adds the payload
/// to what the node provides. While `rm serve` runs the server imports it, announces it
/// on the DHT and serves it as soon as the import ends; otherwise `rm serve` announces it
/// when it starts.
pub async fn run(global: &Global, out: &Output, args: ImportArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let config = home::load(&home)?;
    if let Some(p) = &args.preset {
        rm_node::config::preset(p)?;
    }
    if !args.path.exists() {
        anyhow::bail!("{} does not exist", args.path.display());
    }
    let request = ImportRequest {
        path: args.path.clone(),
        preset: args.preset,
        car: args.car,
    };
    let session = home::session(&home, config).await?;
    let bar = out.progress(Some(0));
    let sink = {
        let bar = bar.clone();
        let mut stage = String::new();
        Box::new(move |p: ImportProgress| {
            if p.stage != stage {
                stage.clone_from(&p.stage);
                bar.reset();
                bar.set_length(p.total_bytes.unwrap_or(0));
                bar.set_message(stage_name(&stage).to_owned());
            }
            if let Some(total) = p.total_bytes {
                bar.set_length(total);
            } else {
                bar.set_length(p.bytes);
            }
            bar.set_position(p.total_bytes.map_or(p.bytes, |t| p.bytes.min(t)));
        })
    };
    let imported = session.import(request, sink).await;
    bar.finish_and_clear();
    session.close().await;
    let imported = imported
        .map_err(node_error)
        .with_context(|| format!("importing {}", args.path.display()))?;
    out.result(&serde_json::to_value(&imported)?, &text(&imported));
    Ok(exit::code(exit::OK))
}

/// What each stage of an import does, for the progress bar.
fn stage_name(stage: &str) -> &str {
    match stage {
        "unixfs" => "[1/5] chunking into UnixFS",
        "car" => "[2/5] writing the CAR",
        "verify" => "[3/5] verifying, piece commitment",
        "write" => "[4/5] writing into the sector",
        "index" => "[5/5] indexing blocks",
        other => other,
    }
}

fn text(i: &ImportView) -> String {
    format!(
        "payload  {}\npiece    {}\n  {} in {}; piece of {} in sector {} at offset {}{}\n",
        i.payload_cid,
        i.piece_cid,
        output::bytes(i.car_size),
        output::count(i.blocks, "block"),
        output::bytes(i.piece_size),
        i.sector,
        i.offset,
        if i.new { "" } else { " (stored already)" }
    )
}
