//! A provider or client node as its own process, for the crash tests (`tests/restart.rs`):
//! the test kills it with SIGKILL mid-deal and starts it again on the same home.
//!
//! ```text
//! rm-e2e-node provider <home> <listen> <file> <price> <bytes-per-second> [<interval> <increase> <preset>]
//!     imports <file> (preset go-fil-markets, or v1-1mib), serves it, prints
//!     "READY <peer> <listen-addr> <payment-address> <root>" and runs until killed;
//!     bytes-per-second 0 = unlimited (then many blocks per response)
//! rm-e2e-node client <home> <peer> <addr> <root> <payment-address> <price> <out>
//!     queries the provider and starts a deal on its terms unless the home already has one
//!     (then the restarted client resumes it), prints "PROGRESS <bytes>" as verified bytes
//!     arrive, at the end writes the file to <out> and prints "PEAK_RSS <KiB>" and
//!     "DONE <status> <funds-spent> <voucher,voucher,...>"
//! ```
//!
//! `RM_E2E_MAX_INBOUND=<n>` raises the provider's inbound deal limits (benchmarks).

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use rm_blockio::unixfs::Preset;
use rm_e2e::Node;
use rm_types::{Ask, TokenAmount};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

fn arg(args: &[String], i: usize) -> Result<&str> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("missing argument {i}; see the file's docs").into())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match arg(&args, 1)? {
        "provider" => provider(&args).await,
        "client" => client(&args).await,
        other => Err(format!("unknown role {other}").into()),
    }
}

async fn provider(args: &[String]) -> Result<()> {
    let home = Path::new(arg(args, 2)?);
    let mut net = rm_network::Config::default();
    if let Ok(n) = std::env::var("RM_E2E_MAX_INBOUND") {
        let n: usize = n.parse()?;
        net.max_inbound_deals = n;
        net.max_inbound_deals_per_peer = n;
        net.max_inbound_queries = n;
        net.max_inbound_queries_per_peer = n;
        // The benchmark's client nodes share 127.0.0.1.
        net.max_inbound_deals_per_ip = n;
        net.max_inbound_queries_per_ip = n;
    }
    let node = Node::open_with(home, arg(args, 3)?, net).await?;
    let preset = match arg(args, 9).unwrap_or("go-fil-markets") {
        "v1-1mib" => Preset::UNIXFS_V1_2025,
        _ => Preset::GO_FIL_MARKETS,
    };
    let root = node.import(Path::new(arg(args, 4)?), preset)?;
    let price: u64 = arg(args, 5)?.parse()?;
    let rate: u64 = arg(args, 6)?.parse()?;
    let interval: u64 = arg(args, 7).unwrap_or("10000").parse()?;
    let increase: u64 = arg(args, 8).unwrap_or("1000").parse()?;
    let mut config = rm_provider::Config::default();
    if rate > 0 {
        config.deal.max_blocks_per_response = 1;
        config.deal.max_bytes_per_second = Some(rate);
    }
    let provider = node.provider(config).await?;
    provider.set_ask(Ask {
        price_per_byte: TokenAmount::from_atto(price),
        unseal_price: TokenAmount::zero(),
        payment_interval: interval,
        payment_interval_increase: increase,
    })?;
    provider.start();
    let addr = node
        .addrs()
        .await?
        .into_iter()
        .next()
        .ok_or("no listen address")?;
    println!("READY {} {addr} {} {root}", node.peer_id(), node.address);
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

async fn client(args: &[String]) -> Result<()> {
    let home = Path::new(arg(args, 2)?);
    let node = Node::open(home).await?;
    let mut config = rm_client::Config::default();
    config.deal.max_reconnects = 50;
    config.deal.max_backoff = Duration::from_millis(300);
    let client = node.client(config).await?;
    let mut events = client.subscribe_to_events();
    let id = match client.list_deals()?.into_iter().next() {
        Some((id, _)) => id,
        None => {
            let payload = arg(args, 5)?.parse()?;
            let provider = arg(args, 3)?.parse()?;
            let addrs = vec![arg(args, 4)?.parse()?];
            let terms = client
                .query(
                    provider,
                    addrs.clone(),
                    payload,
                    rm_types::QueryParams::default(),
                )
                .await?;
            let mut retrieval = rm_client::Retrieval::from_query(payload, provider, addrs, &terms);
            let price: u64 = arg(args, 7)?.parse()?;
            if retrieval.params.price_per_byte != TokenAmount::from_atto(price) {
                return Err("the provider's price is not the expected one".into());
            }
            retrieval.miner_wallet = arg(args, 6)?.parse()?;
            client.retrieve(retrieval).await?
        }
    };
    loop {
        let deal = client.retrieval_status(id)?.ok_or("deal vanished")?;
        println!("PROGRESS {}", deal.bytes_received);
        if deal.status().is_final() {
            // The peak of the deal itself, before the file is exported.
            println!("PEAK_RSS {}", peak_rss_kib().unwrap_or(0));
            if deal.status() == rm_client::ClientStatus::Completed {
                let root = deal.proposal.payload_cid;
                let mut out = std::io::BufWriter::new(std::fs::File::create(arg(args, 8)?)?);
                rm_blockio::unixfs::export_file(node.blocks.as_ref(), &root, &mut out)?;
                std::io::Write::flush(&mut out)?;
            }
            let vouchers: Vec<String> =
                deal.vouchers.iter().map(|v| v.atto().to_string()).collect();
            println!(
                "DONE {} {} {}",
                deal.status(),
                deal.funds_spent.atto(),
                vouchers.join(",")
            );
            return Ok(());
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), events.recv()).await;
    }
}

/// This process' peak resident set size (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
