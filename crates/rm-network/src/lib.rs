//! # rm-network: the libp2p side of the rm retrieval market
//!
//! Layer 1 of the workspace: it depends only on `rm-types` among the rm crates, and
//! `rm-client`, `rm-provider` and `rm-discovery` build on it. It speaks go-fil-markets'
//! three retrieval protocols (`docs/protocol.md`) over raw yamux substreams with
//! go-cbor-util framing (DAG-CBOR items back to back, no length prefix), byte-compatible
//! with Go peers:
//!
//! | protocol | client | provider |
//! |---|---|---|
//! | `/fil/retrieval/qry/1.0.0` (map encoding) | [`Control::query`], [`Network::query`] | [`Event::Query`] |
//! | `/fil/retrieval/qry/0.0.1` (tuple encoding) | the same; tried when the peer lacks 1.0.0 | the same |
//! | `/fil/retrieval/0.0.1` (deal stream) | [`Control::open_deal_stream`], [`Network::open_deal_stream`] | [`Event::Deal`] |
//!
//! ## A tour
//!
//! Two ways in, one implementation:
//!
//! - **[`Behaviour`]** (`behaviour.rs`, its connection handler in `handler.rs`): the
//!   retrieval protocols as a libp2p `NetworkBehaviour`, for a program that has a `Swarm`
//!   of its own. It composes with other behaviours (`#[derive(NetworkBehaviour)]`), reports
//!   inbound queries and deal streams as [`Event`]s from the swarm, and opens outbound ones
//!   for its [`Control`], a cloneable handle for async code. Its settings are a
//!   [`BehaviourConfig`]. `examples/compose.rs` runs it next to `libp2p::ping`.
//! - **[`Network`]** (`network.rs`): a ready-made host running that behaviour in its own
//!   tokio task with TCP + noise + yamux, identify, ping (`ping.rs`: inbound pings are
//!   answered even when the peer refuses ours), raw streams of custom protocols
//!   (`libp2p-stream`), an address book, and a Kademlia DHT (`dht.rs`, `/ipfs/kad/1.0.0`
//!   by default) for provider records keyed by a payload CID's multihash ([`record_key`]:
//!   [`Network::start_providing`], [`Network::get_providers`]). Its inbound [`Event`]s go to
//!   a delegate, a bounded channel ([`Network::set_delegate`]), following go-fil-markets'
//!   original `RetrievalReceiver` pattern. Its [`Config`] holds the behaviour's settings
//!   and its own.
//!
//! Underneath: `query.rs` (one `Query`, one `QueryResponse`, in the version's encoding),
//! `deal.rs` ([`DealStream`]: the typed messages of one deal, checked per side),
//! `framing.rs` (reading items back to back under a size cap, writing a `DealResponse`'s
//! blocks without copying them), `idle.rs` (two deadlines on every deal message: no
//! progress, whole message), `limiter.rs` (permits per peer and in total), `metrics.rs`
//! ([`Metrics`]), `keys.rs` (the host's ed25519 key in a file).
//!
//! **Every byte a peer sends drives bounded work.** Inbound queries and deal streams have
//! separate limits per peer and in total (a query over its limits is refused with a clean
//! close, [`Error::QueryRefused`] on the client; a deal stream is reset); every message has
//! a size cap and deadlines; every queue is bounded. Each limit is a [`BehaviourConfig`] /
//! [`Config`] field with a documented default.

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
//! counted in [`Metrics`] ([`Behaviour::metrics`], [`Network::metrics`]). Inbound queries
//! over their limits, or that nobody takes, are closed without an answer and counted as
//! `queries_refused`; such deal streams are reset and counted as `rejected_streams`.
//! Nothing that arrives from the network can make this crate panic or buffer more than
//! the configured cap.

pub mod behaviour;
mod config;
mod conn_limits;
mod deal;
mod dht;
mod error;
mod framing;
mod handler;
mod host;
mod idle;
pub mod keys;
mod limiter;
mod metrics;
mod network;
mod ping;
mod query;

pub use behaviour::{Behaviour, Config as BehaviourConfig, Control, Event};
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
pub use network::Network;
pub use query::{QueryProtocol, QueryRequest};
