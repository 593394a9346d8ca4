//! `rm retrieve`: a paid, verified retrieval with a progress bar, resumable.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rm_client::{Client, ClientState, ClientStatus, Retrieval};
use rm_network::libp2p::PeerId;
use rm_paych::PaychNode;
use rm_types::{Cid, DealId, Ipld, QueryResponseStatus};
use serde_json::json;

use crate::cmd::{ipld_from_json, parse_amount, parse_cid, parse_target, query};
use crate::output::{self, Output};
use crate::{Global, exit, home};
use rm_node::Node;

/// What to retrieve from whom, and where to put it.
#[derive(Debug, Args)]
pub struct RetrieveArgs {
    /// The provider: a multiaddr ending in /p2p/PEER_ID, or a peer id (found on the DHT).
    pub provider: String,
    /// The payload CID.
    pub cid: String,
    /// Where to write the file or directory (or the CAR with --car).
    #[arg(short = 'o', long, value_name = "PATH")]
    pub output: PathBuf,
    /// Write the retrieved blocks as a CAR file instead of the UnixFS file/directory.
    #[arg(long)]
    pub car: bool,
    /// Refuse a provider asking more than this per byte (attoFIL, or "0.5 FIL"). Default:
    /// `[client] max_price_per_byte` of config.toml.
    #[arg(long, value_name = "AMOUNT")]
    pub max_price: Option<String>,
    /// Refuse a provider asking more than this to unseal. Default: `[client]
    /// max_unseal_price`.
    #[arg(long, value_name = "AMOUNT")]
    pub max_unseal_price: Option<String>,
    /// Refuse a deal costing more than this in all (price × size + unseal price), and
    /// funds added beyond it. Default: `[client] max_total`.
    #[arg(long, value_name = "AMOUNT")]
    pub max_total: Option<String>,
    /// Retrieve only what this IPLD selector (DAG-JSON) selects; use with --car.
    #[arg(long, value_name = "JSON")]
    pub selector: Option<String>,
    /// Retrieve from this piece only.
    #[arg(long, value_name = "PIECE_CID")]
    pub piece: Option<String>,
    /// Add this much (attoFIL) to a resumed deal that ran out of funds.
    #[arg(long, value_name = "AMOUNT")]
    pub add_funds: Option<String>,
}

/// Retrieves, writes the output, prints a summary. An interrupted run (Ctrl-C, a crash,
/// SIGKILL) leaves the deal in the node's database: the same command resumes it.
pub async fn run(global: &Global, out: &Output, args: RetrieveArgs) -> Result<ExitCode> {
    let home = home::resolve(global.home.as_deref())?;
    let config = home::load(&home)?;
    let (peer, addr) = parse_target(&args.provider)?;
    let payload = parse_cid(&args.cid)?;
    let selector = args.selector.as_deref().map(ipld_from_json).transpose()?;
    let piece = args.piece.as_deref().map(parse_cid).transpose()?;
    let mut caps = config.client_caps()?;
    if let Some(cap) = args.max_price.as_deref().map(parse_amount).transpose()? {
        caps = caps.with_max_price_per_byte(cap);
    }
    if let Some(cap) = args
        .max_unseal_price
        .as_deref()
        .map(parse_amount)
        .transpose()?
    {
        caps = caps.with_max_unseal_price(cap);
    }
    if let Some(cap) = args.max_total.as_deref().map(parse_amount).transpose()? {
        caps = caps.with_max_total(cap);
    }
    let add_funds = args.add_funds.as_deref().map(parse_amount).transpose()?;
    if selector.is_some() && !args.car {
        bail!("a partial retrieval (--selector) can only be written as a CAR: add --car");
    }
    // Checked now, before anything is dialled; used to check and to write the output.
    let dag_selector = dag_selector(selector.as_ref())?;

    out.event(&json!({
        "event": "caps",
        "max_price_per_byte": caps.max_price_per_byte.atto().to_string(),
        "max_unseal_price": caps.max_unseal_price.atto().to_string(),
        "max_total": caps.max_total.atto().to_string(),
    }));
    if !out.is_json() {
        eprintln!(
            "spending caps: {} per byte, {} to unseal, {} in all (--max-price, \
             --max-unseal-price, --max-total)",
            caps.max_price_per_byte.display_atto(),
            caps.max_unseal_price.display_atto(),
            caps.max_total.display_atto()
        );
    }

    let node = home::open(&home, &[]).await?;
    let client = node.client(config.client_config()?).await?;
    let mut events = client.subscribe_to_events();
    let started = Instant::now();
    let rm_peer = rm_network::to_rm_peer(&peer);
    let same = |d: &ClientState| {
        d.proposal.payload_cid == payload
            && d.provider == rm_peer
            && d.proposal.params.selector == selector
            && (piece.is_none() || d.proposal.params.piece_cid == piece)
    };
    let deals = client.list_deals()?;
    let unfinished = deals
        .iter()
        .find(|(_, d)| same(d) && !d.status().is_final())
        .map(|(id, _)| *id);
    let done_before = deals
        .iter()
        .rev()
        .find(|(_, d)| same(d) && d.status() == ClientStatus::Completed)
        .map(|(id, _)| *id);
    let (id, how) = match (unfinished, done_before) {
        (Some(id), _) => {
            if let Some((_, d)) = deals.iter().find(|(i, _)| *i == id)
                && let Err(e) = caps.check(&d.proposal.params, &d.total_funds)
            {
                bail!("deal {} was made on other terms: {e}", id.0);
            }
            // The provider may be back at another address: the one given is tried too.
            if let Some(a) = &addr {
                node.network.add_address(peer, a.clone()).await?;
            }
            (id, "resumed")
        }
        (None, Some(id)) if dag_complete(&node, &payload, &dag_selector) => {
            (id, "retrieved before")
        }
        _ => {
            let addrs = query::provider_addrs(&node, &config, peer, addr, &payload).await?;
            let terms = query::query(&node, peer, addrs.clone(), payload, piece).await?;
            if terms.status != QueryResponseStatus::Available {
                out.result(
                    &json!({"status": format!("{:?}", terms.status), "message": terms.message}),
                    &format!(
                        "the provider cannot serve it: {:?}: {}\n",
                        terms.status, terms.message
                    ),
                );
                return finish(&node, client, exit::NOT_DONE).await;
            }
            let mut retrieval = Retrieval::from_query(payload, peer, addrs, &terms);
            retrieval.params.selector = selector.clone();
            retrieval.params.piece_cid = piece;
            retrieval.caps = caps.clone();
            // Refused before any channel is funded (Client::retrieve checks it again).
            if let Err(e) = caps.check(&retrieval.params, &retrieval.total_funds) {
                bail!("the provider's terms are refused: {e}; raise the cap to accept them");
            }
            (client.retrieve(retrieval).await?, "new")
        }
    };
    if how == "resumed" && !out.is_json() {
        eprintln!("resuming deal {}", id.0);
    }
    if let Some(amount) = &add_funds {
        let stuck = client
            .retrieval_status(id)?
            .is_some_and(|d| d.status() == ClientStatus::InsufficientFunds);
        if !stuck {
            bail!(
                "deal {} is not waiting for funds: --add-funds is not needed",
                id.0
            );
        }
        if let Some(d) = client.retrieval_status(id)?
            && &d.total_funds + amount > caps.max_total
        {
            bail!(
                "adding {} would put deal {} at {}, over the cap of {} in all (--max-total)",
                amount.display_atto(),
                id.0,
                (&d.total_funds + amount).display_atto(),
                caps.max_total.display_atto()
            );
        }
        client.add_more_funds(id, amount.clone()).await?;
    }

    let Some(deal) = follow(&client, &mut events, id, out, started).await? else {
        let msg = format!(
            "interrupted: deal {} is kept; run the same command again to resume it",
            id.0
        );
        out.result(
            &json!({"event": "interrupted", "deal_id": id.0}),
            &format!("{msg}\n"),
        );
        return Ok(exit::code(exit::INTERRUPTED));
    };
    if deal.status() == ClientStatus::InsufficientFunds {
        out.result(
            &summary_json(id, &deal, how, started, None),
            &format!(
                "deal {} ran out of funds ({} spent, {} more owed): run the same command \
                 with --add-funds AMOUNT to go on\n",
                id.0,
                deal.funds_spent.display_atto(),
                deal.voucher_shortfall.display_atto()
            ),
        );
        return finish(&node, client, exit::NOT_DONE).await;
    }
    if deal.status() != ClientStatus::Completed {
        out.result(
            &summary_json(id, &deal, how, started, None),
            &format!(
                "deal {} ended {}: {}\n",
                id.0,
                deal.status(),
                deal.message()
            ),
        );
        return finish(&node, client, exit::NOT_DONE).await;
    }
    write_output(&node, &payload, &dag_selector, &args.output, args.car)?;
    let summary = summary_json(id, &deal, how, started, Some(&args.output));
    let elapsed = started.elapsed().as_secs_f64();
    let paid = format!(
        "paid {} in {}",
        deal.funds_spent.display_atto(),
        output::count(deal.vouchers.len() as u64, "voucher")
    );
    let text = if how == "retrieved before" {
        // Nothing moved now: no rate to report.
        format!(
            "already retrieved in deal {} ({} in {}; {paid}); wrote {}\n",
            id.0,
            output::bytes(deal.bytes_received),
            output::count(deal.blocks_received, "block"),
            args.output.display(),
        )
    } else {
        // A resumed deal counts the bytes of earlier runs too: the rate is this run's
        // share only when the deal is new.
        let rate = if how == "new" {
            format!(
                ", {}/s",
                output::bytes((deal.bytes_received as f64 / elapsed.max(1e-9)) as u64)
            )
        } else {
            String::new()
        };
        format!(
            "retrieved {} in {} ({}) to {}\n  {paid}; {:.2} s{rate}\n",
            payload,
            output::count(deal.blocks_received, "block"),
            output::bytes(deal.bytes_received),
            args.output.display(),
            elapsed,
        )
    };
    out.result(&summary, &text);
    finish(&node, client, exit::OK).await
}

/// Follows deal `id` until it ends (`Some`) or Ctrl-C (`None`), drawing progress.
async fn follow(
    client: &Client<PaychNode>,
    events: &mut rm_client::ClientSubscription,
    id: DealId,
    out: &Output,
    started: Instant,
) -> Result<Option<ClientState>> {
    let bar = if out.is_json() {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };
    // Registered once, before the loop: a Ctrl-C between two turns is not lost.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut last_bytes = u64::MAX;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let current = client
            .retrieval_status(id)?
            .with_context(|| format!("deal {} is not in this node's database", id.0))?;
        let bytes = current.bytes_received;
        if bytes != last_bytes {
            last_bytes = bytes;
            let rate = bytes as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{} received, {}/s, {} paid, {}",
                output::bytes(bytes),
                output::bytes(rate as u64),
                current.funds_spent.display_atto(),
                current.status()
            ));
            out.event(&json!({
                "event": "progress",
                "deal_id": id.0,
                "status": current.status().to_string(),
                "bytes": bytes,
                "paid": current.funds_spent.atto().to_string(),
            }));
        }
        if current.status().is_final() || current.status() == ClientStatus::InsufficientFunds {
            bar.finish_and_clear();
            return Ok(Some(current));
        }
        tokio::select! {
            _ = interrupt.recv() => {
                bar.abandon();
                return Ok(None);
            }
            _ = tick.tick() => {}
            note = events.recv() => {
                if note.is_err() {
                    // Lagged or closed: the status read at the top of the loop is the truth.
                    tick.tick().await;
                }
            }
        }
    }
}

/// The traversal selector: the one given (DAG-JSON, already parsed) or explore-all.
fn dag_selector(selector: Option<&Ipld>) -> Result<rm_blockio::Selector> {
    Ok(match selector {
        Some(s) => rm_blockio::Selector::from_dag_cbor(&rm_types::codec::to_vec(s)?)
            .context("the selector is not a valid IPLD selector")?,
        None => rm_blockio::Selector::explore_all_recursively(),
    })
}

/// Writes the retrieved DAG: the UnixFS file or directory, or a CAR of what `selector`
/// selects.
fn write_output(
    node: &Node,
    payload: &Cid,
    selector: &rm_blockio::Selector,
    path: &Path,
    car: bool,
) -> Result<()> {
    if car {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        rm_blockio::car::export(
            node.blocks.as_ref(),
            *payload,
            selector,
            std::io::BufWriter::new(file),
        )
        .with_context(|| format!("writing the CAR {}", path.display()))?;
    } else {
        rm_blockio::unixfs::export_path(node.blocks.as_ref(), payload, path).with_context(
            || format!("writing {} (use --car for non-UnixFS data)", path.display()),
        )?;
    }
    Ok(())
}

fn summary_json(
    id: DealId,
    deal: &ClientState,
    how: &str,
    started: Instant,
    output: Option<&Path>,
) -> serde_json::Value {
    json!({
        "event": "done",
        "deal": how,
        "deal_id": id.0,
        "status": deal.status().to_string(),
        "message": deal.message(),
        "bytes": deal.bytes_received,
        "blocks": deal.blocks_received,
        "vouchers": deal.vouchers.iter().map(|v| v.atto().to_string()).collect::<Vec<_>>(),
        "total_paid": deal.funds_spent.atto().to_string(),
        "elapsed_ms": started.elapsed().as_millis() as u64,
        "output": output.map(|p| p.display().to_string()),
    })
}

async fn finish(node: &Node, client: Client<PaychNode>, code: u8) -> Result<ExitCode> {
    client.close().await;
    node.network.shutdown().await;
    Ok(exit::code(code))
}

/// Whether every block `selector` reaches under `payload` is in the node's blockstore:
/// after a power loss a retrieved DAG may have lost its tail.
fn dag_complete(node: &Node, payload: &Cid, selector: &rm_blockio::Selector) -> bool {
    match rm_blockio::BlockReader::new(node.blocks.as_ref(), *payload, selector) {
        Ok(mut reader) => reader.all(|b| b.is_ok()),
        Err(_) => false,
    }
}

/// The provider peer of a stored deal, for listings.
pub fn provider_of(deal: &ClientState) -> String {
    rm_network::from_rm_peer(&deal.provider)
        .map(|p: PeerId| p.to_string())
        .unwrap_or_else(|_| "?".into())
}
