//! # rm-http: HTTP retrieval from the same pieces, verified the same way
//!
//! Layer 3 of the `rm` workspace, next to `rm-client` and `rm-provider`: it depends on
//! `rm-types`, `rm-store` (a keyspace for fetch progress, no RocksDB), `rm-blockio` and
//! `rm-unseal`, and is wired into a node by `rm-node`. It speaks the protocol Filecoin
//! retrieval speaks now:
//!
//! * the provider side, [`Gateway`]: `GET`/`HEAD /ipfs/{cid}[/{path}]` as an IPFS
//!   Trustless Gateway (`application/vnd.ipld.raw` and `application/vnd.ipld.car` with
//!   `dag-scope`, `entity-bytes`, `order`, `dups`), and `GET`/`HEAD /piece/{pieceCid}`
//!   with single-range `Range`, from the node's blockstore, piece store and unsealer;
//! * the client side, [`HttpFetcher`]: a CAR stream verified block by block with the
//!   `SelectorVerifier` before it is stored, failing over between providers and resuming
//!   after a crash by asking only for what is missing.
//!
//! | module | what |
//! |---|---|
//! | [`walk`] | sans-IO: the block order of a request (path, scope, byte range), driven by both sides; what a resumed fetch asks for |
//! | [`request`] | sans-IO: an HTTP request to a route, its parameters and its refusals |
//! | [`range`] | sans-IO: RFC 9110 single-range requests |
//! | [`car`] | sans-IO: CAR framing, and a push-style decoder fed body chunks |
//! | [`hamt`] | HAMT-sharded directories: which shard holds a name |
//! | [`server`] | the hyper adapter: limits, timeouts, [`Gateway`] and [`Server`] |
//! | [`ipfs`], [`piece`] | the two routes |
//! | [`fetch`], [`client`] | the verifying, resuming client |
//! | [`export`] | a fetched file (or byte range) out of the store |
//!
//! Limits are [`server::Config`] and [`fetch::FetchConfig`] fields, each with a default;
//! `docs/http.md` describes what is served, every parameter and how a fetch resumes.
//!
//! ## Example
//!
//! A gateway on 127.0.0.1 serving a UnixFS file, and a fetch of it into another store:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use rm_blockio::{Blockstore, MemoryBlockstore, unixfs::{Importer, Preset}};
//! use rm_http::{Gateway, HttpFetcher, Provider, Spec};
//!
//! let provider_blocks = Arc::new(MemoryBlockstore::new());
//! let data = vec![7u8; 300_000];
//! let root = Importer::import_bytes(&provider_blocks, Preset::KUBO_V1_RAW_LEAVES, &data)?.root;
//! let server = Gateway::new(provider_blocks, Default::default())
//!     .bind("127.0.0.1:0".parse()?)
//!     .await?;
//!
//! let mine = Arc::new(MemoryBlockstore::new());
//! let fetcher = HttpFetcher::new(mine.clone(), None, Default::default());
//! let provider = Provider::parse(&server.url())?;
//! let report = fetcher.fetch(&Spec::all(root), &[provider], |_| {}).await?;
//! assert_eq!(report.steps, 3); // the root and two 256 KiB leaves
//! assert!(mine.has(&root)?);
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Errors
//!
//! [`Error`] for the crate's setup and exports; [`FetchError`] for a fetch (the provider's
//! faults are told apart from local ones); [`request::Refusal`] carries the status a bad
//! request gets; [`WalkError`] and [`car::CarError`] say why a DAG or a CAR is refused.
//! Nothing a peer sends panics: lengths are checked before buffering, every block is
//! verified before it is stored, and a rejected block changes nothing.

pub mod body;
pub mod car;
pub mod client;
pub mod export;
pub mod fetch;
pub mod hamt;
pub mod ipfs;
pub mod piece;
pub mod range;
pub mod request;
pub mod server;
pub mod walk;

pub use client::Provider;
pub use fetch::{FetchConfig, FetchError, FetchProgress, FetchReport, HttpFetcher};
pub use ipfs::{CarProducer, write_car};
pub use server::{Config, Gateway, Server};
pub use walk::{EntityBytes, Scope, Spec, Walk, WalkError};

/// The keyspaces this crate uses (name them when opening a node's database).
pub const KEYSPACES: [&str; 1] = [fetch::PROGRESS_KEYSPACE];

/// Errors of the gateway's setup and of exports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The listen address could not be bound.
    #[error("binding the HTTP listener: {0}")]
    Bind(#[source] std::io::Error),
    /// File system.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Producing a CAR failed.
    #[error(transparent)]
    Produce(#[from] ipfs::ProduceError),
    /// A DAG could not be walked.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// The blockstore failed.
    #[error(transparent)]
    Blockstore(#[from] rm_blockio::blockstore::Error),
}
