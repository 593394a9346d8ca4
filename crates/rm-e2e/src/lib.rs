//! End-to-end harness for rm: whole nodes (libp2p host, RocksDB, wallet, payment-channel
//! ledger, blockstore, pieces and sectors, registry and DHT announcer) wired to a client
//! and a provider, for the acceptance tests and benchmarks that need both sides of a deal.
//!
//! `rm-e2e` sits on top of the workspace (layer 6): it uses `rm_node::Node`, the node the
//! `rm` binary runs, so the tests run exactly what the binary runs. It is not published. Each [`Node`] has its own home directory, database and ledger, exactly
//! like two separate `rm` processes: the provider learns the client's payment channel from
//! its vouchers.
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> Result<(), rm_e2e::Error> {
//! use rm_e2e::{Node, lorem_path};
//! use rm_client::ClientStatus;
//! use rm_types::{Ask, QueryParams, TokenAmount};
//!
//! let dir = tempfile::tempdir().map_err(rm_e2e::Error::Io)?;
//! let provider_node = Node::open(&dir.path().join("p")).await?;
//! let client_node = Node::open(&dir.path().join("c")).await?;
//! let root = provider_node.import(&lorem_path(), rm_blockio::unixfs::Preset::GO_FIL_MARKETS)?;
//! let provider = provider_node.provider(rm_provider::Config::default()).await?;
//! provider.set_ask(Ask { price_per_byte: TokenAmount::from_atto(1000u64),
//!     unseal_price: TokenAmount::zero(), payment_interval: 10_000,
//!     payment_interval_increase: 1_000 })?;
//! provider.start();
//! let client = client_node.client(rm_client::Config::default()).await?;
//! let addrs = provider_node.addrs().await?;
//! let terms = client.query(provider_node.peer_id(), addrs.clone(), root, QueryParams::default()).await?;
//! let id = client.retrieve(rm_client::Retrieval::from_query(root, provider_node.peer_id(), addrs, &terms)).await?;
//! assert_eq!(client.wait(id).await?.status(), ClientStatus::Completed);
//! # Ok(()) }
//! ```
//! (`tempfile` is a dev-dependency; the example is for reading.)
//!
//! Besides the tests: [`attack`] holds the scripted attack loops that
//! `benches/under_attack.rs` and the soak (`rm-e2e-soak`, `cargo xtask soak`) run against
//! a provider, and [`proxy`] the TCP proxy they use to give clients and attackers
//! addresses of their own and to cut connections.

use std::path::{Path, PathBuf};

pub mod attack;
pub mod proxy;

pub use rm_node::{Error, Node, Options, keyspaces};

/// go-fil-markets' `lorem.txt` fixture (19,000 bytes), copied into `testdata/`.
pub fn lorem_path() -> PathBuf {
    fixtures().join("lorem.txt")
}

/// go-fil-markets' `lorem_under_1_block.txt` fixture (410 bytes), copied into `testdata/`.
pub fn lorem_small_path() -> PathBuf {
    fixtures().join("lorem_under_1_block.txt")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Deterministic incompressible bytes (xorshift from `seed`), so no two 1 MiB leaves of a
/// test file are equal: the data of the benchmarks and the soak.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
