//! `rm import`: store data as a piece in a sector.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use crate::output::{self, Output};
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

/// Imports, prints the payload and piece CIDs, and adds the payload to what the node
/// provides: `rm serve` announces it on the DHT when it starts (import while the server
/// is stopped: one process owns a home).
pub async fn run(global: &Global, out: &Output, args: ImportArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let config = home::load(&home)?;
    let node = home::open(&home, &[]).await?;
    let preset_name = args.preset.unwrap_or_else(|| config.import.preset.clone());
    let imported = if args.car {
        node.import_car(&args.path)
            .with_context(|| format!("importing the CAR {}", args.path.display()))?
    } else {
        let preset = rm_node::config::preset(&preset_name)?;
        node.import_piece(&args.path, preset)
            .with_context(|| format!("importing {}", args.path.display()))?
    };
    node.network.shutdown().await;
    let p = &imported.placement;
    out.result(
        &json!({
            "payload_cid": imported.payload_cid.to_string(),
            "piece_cid": imported.piece_cid.to_string(),
            "car_size": imported.car_size,
            "piece_size": imported.piece_size.get(),
            "blocks": imported.blocks,
            "sector": p.sector,
            "offset": p.offset,
            "new": imported.written,
            "preset": if args.car { None } else { Some(preset_name) },
        }),
        &format!(
            "payload  {}\npiece    {}\n  {} in {}; piece of {} in sector {} at offset {}{}\n",
            imported.payload_cid,
            imported.piece_cid,
            output::bytes(imported.car_size),
            output::count(imported.blocks, "block"),
            output::bytes(imported.piece_size.get()),
            p.sector,
            p.offset,
            if imported.written {
                ""
            } else {
                " (stored already)"
            }
        ),
    );
    Ok(exit::code(exit::OK))
}
