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
//!     arrive, at the end writes the file to <out> and prints "PEAK_RSS <KiB>",
//!     "MESSAGE <why it ended>" and "DONE <status> <funds-spent> <voucher,voucher,...>"
//! ```
//!
//! Environment (all optional):
//!
//! - `RM_E2E_MAX_INBOUND=<n>` raises the provider's inbound deal and query limits and its
//!   unpaid-deal credit limits to `n` (benchmarks with many trusted deals at once).
//! - `RM_E2E_FILES=<file>,<file>...`: the provider imports these too and prints
//!   `FILE <path> <root>` for each before READY (the soak's mixed sizes).
//! - `RM_E2E_DEADLINES=<secs>`: the provider's payment timeout and resume window.
//! - `RM_E2E_STATS=1`: after READY the provider prints `STATS <alive tokio tasks>` every
//!   half second (the soak's leak check).
//! - `RM_E2E_LISTEN=<multiaddr>`: where the client listens (and so dials from).
//! - `RM_E2E_TERMS=<interval>,<increase>`: the client proposes these payment intervals
//!   instead of the query's (at most the ask's).
//! - `RM_E2E_CHAIN=<depth>`: the provider also stores a chain of `depth` one-link
//!   DAG-CBOR blocks in its blockstore and appends its root to the READY line (the target
//!   of the selector attack in `rm_e2e::attack`).

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

fn main() -> Result<()> {
    // As `rm serve` does: one malloc arena per core for the provider process.
    if std::env::args().nth(1).as_deref() == Some("provider") {
        rm_node::process::one_malloc_arena_per_core();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<()> {
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
    if let Ok(files) = std::env::var("RM_E2E_FILES") {
        for file in files.split(',').filter(|f| !f.is_empty()) {
            let root = node.import(Path::new(file), Preset::UNIXFS_V1_2025)?;
            println!("FILE {file} {root}");
        }
    }
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
    if let Ok(n) = std::env::var("RM_E2E_MAX_INBOUND") {
        // Each deal takes one interval on credit before it pays: as many live unpaid
        // deals as inbound ones, from one peer and from the one address.
        let n: usize = n.parse()?;
        config.credit.max_unpaid_deals_per_peer = n;
        config.credit.max_unpaid_deals_per_ip = n;
    }
    if let Ok(secs) = std::env::var("RM_E2E_DEADLINES") {
        let d = Duration::from_secs(secs.parse()?);
        config.deal.payment_timeout = d;
        config.deal.resume_window = d;
    }
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
    let chain = match std::env::var("RM_E2E_CHAIN") {
        Ok(depth) => format!(" {}", chain(&node, depth.parse()?, &root)?),
        Err(_) => String::new(),
    };
    println!(
        "READY {} {addr} {} {root}{chain}",
        node.peer_id(),
        node.address
    );
    let stats = std::env::var_os("RM_E2E_STATS").is_some();
    let runtime = tokio::runtime::Handle::current();
    loop {
        if stats {
            println!("STATS {}", runtime.metrics().num_alive_tasks());
            tokio::time::sleep(Duration::from_millis(500)).await;
        } else {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
}

/// Stores a chain of `depth` DAG-CBOR blocks, each a list holding the link to the next
/// (CIDs of `like`'s version); returns its root.
fn chain(node: &Node, depth: usize, like: &rm_types::Cid) -> Result<rm_types::Cid> {
    use rm_blockio::Blockstore;
    use rm_blockio::codec::{self, DAG_CBOR, Node as Value, SHA2_256};
    let mut links = Vec::new();
    let mut root = None;
    for _ in 0..depth {
        let bytes = Value::List(links).to_dag_cbor()?;
        let cid = codec::cid_of(like.version(), DAG_CBOR, SHA2_256, &bytes)?;
        node.blocks.put(&cid, &bytes)?;
        links = vec![Value::link(cid)];
        root = Some(cid);
    }
    root.ok_or_else(|| "a chain of no blocks".into())
}

async fn client(args: &[String]) -> Result<()> {
    let home = Path::new(arg(args, 2)?);
    let node = match std::env::var("RM_E2E_LISTEN") {
        Ok(listen) => Node::open_with(home, &listen, rm_network::Config::default()).await?,
        Err(_) => Node::open(home).await?,
    };
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
            if let Ok(terms) = std::env::var("RM_E2E_TERMS") {
                let (interval, increase) = terms.split_once(',').ok_or("RM_E2E_TERMS: a,b")?;
                retrieval.params.payment_interval = interval.parse()?;
                retrieval.params.payment_interval_increase = increase.parse()?;
            }
            client.retrieve(retrieval).await?
        }
    };
    loop {
        let deal = client.retrieval_status(id)?.ok_or("deal vanished")?;
        println!("PROGRESS {}", deal.bytes_received);
        if deal.status().is_final() {
            // The peak of the deal itself, before the file is exported.
            println!(
                "PEAK_RSS {}",
                rm_node::process::status_kib(std::process::id(), "VmHWM:").unwrap_or(0)
            );
            if deal.status() == rm_client::ClientStatus::Completed {
                let root = deal.proposal.payload_cid;
                let mut out = std::io::BufWriter::new(std::fs::File::create(arg(args, 8)?)?);
                rm_blockio::unixfs::export_file(node.blocks.as_ref(), &root, &mut out)?;
                std::io::Write::flush(&mut out)?;
            }
            println!("MESSAGE {}", deal.message().replace('\n', " "));
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
