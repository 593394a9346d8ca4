//! # rm-network: the libp2p host of the rm retrieval market
//!
//! Layer 1 of the workspace: it depends only on `rm-types` among the rm crates,
//! and `rm-client`, `rm-provider` and `rm-discovery` build on it. It runs a libp2p 0.57
//! host (TCP + noise + yamux, identify, ping) in its own tokio task and speaks the three
//! three retrieval protocols (`docs/protocol.md`) over raw yamux substreams (opened with `libp2p-stream`,
//! accepted by a small behaviour of its own that queues bursts) with go-cbor-util framing
//! (DAG-CBOR items back to back, no length prefix), byte-compatible with Go peers:
//!
//! | protocol | API |
//! |---|---|
//! | `/fil/retrieval/qry/1.0.0` (map encoding) | [`Network::query`] (client), [`Event::Query`] (provider) |
//! | `/fil/retrieval/qry/0.0.1` (tuple encoding) | the same; the client falls back to it when the peer lacks 1.0.0 |
//! | `/fil/retrieval/0.0.1` (deal stream) | [`Network::open_deal_stream`] (client), [`Event::Deal`] (provider), both a [`DealStream`] |
//!
//! The same swarm runs a Kademlia DHT (`/ipfs/kad/1.0.0` by default) for provider
//! records keyed by a payload CID's multihash ([`record_key`]): [`Network::add_dht_peer`],
//! [`Network::bootstrap`], [`Network::start_providing`], [`Network::get_providers`]
//! (providers with addresses to dial). rm-discovery builds announcing and resolving on it.
//!
//! The provider side follows go-fil-markets' original `RetrievalReceiver` delegate pattern: [`Network::set_delegate`] takes
//! the sending half of a bounded channel of [`Event`]s. Every limit (message and block
//! sizes, blocks per response, inbound streams per peer and in total, read, write and idle
//! timeouts) is a [`Config`] field with a documented default; the wire rules are written
//! down in `docs/protocol.md`.
//!
//! ## Example
//!
//! Two hosts on 127.0.0.1; the provider's delegate answers a query.
//!
//! ```
//! use rm_network::{Config, Event, Network, keys};
//! use rm_types::{Query, QueryItemStatus, QueryResponse, QueryResponseStatus, TokenAmount};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let loopback: libp2p::Multiaddr = "/ip4/127.0.0.1/tcp/0".parse()?;
//! let provider = Network::new(keys::generate(), Config::default().with_listen_addrs([loopback])).await?;
//!
//! // The delegate: a bounded channel of inbound queries and deal streams.
//! let (delegate, mut events) = tokio::sync::mpsc::channel(16);
//! provider.set_delegate(delegate);
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         if let Event::Query(request) = event {
//!             let answer = QueryResponse {
//!                 status: QueryResponseStatus::Available,
//!                 piece_cid_found: QueryItemStatus::Available,
//!                 size: 19_000,
//!                 payment_address: "f01000".parse().unwrap(),
//!                 min_price_per_byte: TokenAmount::from_atto(1000u64),
//!                 max_payment_interval: 1 << 20,
//!                 max_payment_interval_increase: 1 << 20,
//!                 message: String::new(),
//!                 unseal_price: TokenAmount::zero(),
//!             };
//!             let _ = request.respond(answer);
//!         }
//!     }
//! });
//!
//! let client = Network::new(keys::generate(), Config::default()).await?;
//! let addr = provider.listen_addrs().await?.remove(0);
//! client.add_address(provider.local_peer_id(), addr).await?;
//! let payload = "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb".parse()?;
//! let response = client.query(provider.local_peer_id(), &Query::new(payload)).await?;
//! assert_eq!(response.size, 19_000);
//! assert_eq!(provider.metrics().queries_answered, 1);
//! client.shutdown().await;
//! provider.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Errors
//!
//! Every fallible call returns [`Error`]. Failures caused by a peer's bytes or pace
//! ([`Error::TooLarge`], [`Error::TooManyBlocks`], [`Error::Malformed`],
//! [`Error::Truncated`], [`Error::Timeout`]) reset the stream they happened on and are
//! counted in [`Metrics`] ([`Network::metrics`]); inbound streams over a concurrency limit,
//! or that no delegate takes, are reset on arrival and counted as `rejected_streams`.
//! Nothing that arrives from the network can make this crate panic or buffer more than
//! the configured cap.

mod behaviour;
mod config;
mod deal;
mod dht;
mod error;
mod framing;
mod idle;
mod inbound;
pub mod keys;
mod limiter;
mod metrics;
mod network;
mod query;

pub use config::{Config, DEFAULT_DHT_PROTOCOL};
pub use deal::{DealStream, Role};
pub use dht::record_key;
pub use error::Error;
pub use keys::{from_rm_peer, to_rm_peer};
/// Re-exported so that users name the same libp2p types (`PeerId`, `Multiaddr`,
/// `identity::Keypair`, `Stream`, `StreamProtocol`) as this crate.
pub use libp2p;
/// Inbound raw streams of a custom protocol ([`Network::accept`]).
pub use libp2p_stream::IncomingStreams;
pub use metrics::Metrics;
pub use network::{Event, Network};
pub use query::{QueryProtocol, QueryRequest};
