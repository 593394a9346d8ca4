//! # rm-discovery: finding retrieval providers
//!
//! Layer 2 of the workspace: it builds on `rm-types` (the `PeerResolver` trait and
//! `RetrievalPeer`), `rm-store` (the keyspaces its records live in) and `rm-network` (the
//! Kademlia DHT); `rm-client` takes its [`Resolver`] as a `PeerResolver`, and a node
//! (`rm-node`) runs an [`Announcer`] next to its provider.
//!
//! - [`Registry`]: the local peer registry of go-fil-markets (`discovery`): payload CID
//!   -> `RetrievalPeer{Address, ID, PieceCID}`s in its own keyspace, keyed by
//!   multihash so a CIDv0 and a CIDv1 of the same content share a record.
//! - [`Announcer`]: the payloads this node provides, persisted in its own keyspace,
//!   announced as DHT provider records (keyed by the payload's multihash bytes, as IPFS
//!   does) when added, at start, and again every
//!   [`AnnouncerConfig::reannounce_interval`] (12 h; records live 48 h).
//! - [`Resolver`]: the registry first, then the DHT, with a timeout, deduplicated by peer
//!   id, at most [`ResolverConfig::max_results`]; malformed entries are skipped.
//!   [`Resolver::find`] returns [`Found`]s with the addresses to dial; as a
//!   `PeerResolver` it returns `RetrievalPeer`s, asking each DHT provider a query for the
//!   Filecoin address the DHT does not carry.
//!
//! One node's keyspaces: [`KEYSPACES`]. The cargo feature `rocksdb` (off by default)
//! forwards to `rm-store/rocksdb` for a registry and a provided set that persist.
//!
//! ## Example
//!
//! A registry entry found through the resolver (add `.with_network(network)` for the DHT).
//!
//! ```
//! use std::sync::Arc;
//! use rm_discovery::{Registry, Resolver, ResolverConfig, Source, registry};
//! use rm_types::{PeerResolver, RetrievalPeer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A node keeps the registry in a keyspace of its RocksDB database; here, in memory.
//! let registry = Arc::new(Registry::open(rm_store::Keyspace::memory(registry::DEFAULT_KEYSPACE)));
//! let payload: rm_types::Cid = "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb".parse()?;
//! let provider = rm_network::keys::generate().public().to_peer_id();
//! let peer = RetrievalPeer {
//!     address: "f01000".parse()?,
//!     id: rm_network::to_rm_peer(&provider),
//!     piece_cid: None,
//! };
//! registry.add_peer(&payload, peer.clone())?;
//!
//! let resolver = Resolver::new(ResolverConfig::default()).with_registry(registry);
//! let found = resolver.find(&payload).await;
//! assert_eq!((found[0].peer_id, found[0].source), (provider, Source::Registry));
//! assert_eq!(resolver.get_peers(&payload).await?, vec![peer]);
//! # Ok(())
//! # }
//! ```

pub mod announcer;
mod error;
pub mod registry;
mod resolver;

pub use announcer::{Announcer, AnnouncerConfig, AnnouncerStats};
pub use error::Error;
pub use registry::Registry;
pub use resolver::{Found, Resolver, ResolverConfig, Source};

/// The keyspaces rm-discovery uses in a node's database: the registry's and the provided
/// set's.
pub const KEYSPACES: [&str; 2] = [registry::DEFAULT_KEYSPACE, announcer::DEFAULT_KEYSPACE];
