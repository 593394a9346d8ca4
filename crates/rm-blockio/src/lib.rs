//! # rm-blockio: how a provider reads, and a client verifies, the blocks of a deal
//!
//! Layer 1 of the `rm` workspace: among the rm crates it depends only on `rm-types` (for
//! [`rm_types::Block`], the wire form of a block) and `rm-store` (the keyspaces a
//! [`DbBlockstore`] or a [`FileBlockstore`] index lives in). It holds the IPLD tooling a
//! retrieval deal and the `rm` binary need:
//!
//! | module | what |
//! |---|---|
//! | [`codec`] | dag-pb, DAG-CBOR and raw; sha2-256, blake2b-256, identity; an order-keeping data model ([`codec::Node`]) |
//! | [`selector`] | IPLD selectors decoded from / encoded to DAG-CBOR; the explore-all selector |
//! | [`traversal`] | the one traversal engine, in go-ipld-prime's order, pulled one block at a time |
//! | [`reader`] | provider side: [`reader::BlockReader`] yields blocks in traversal order from a blockstore, resumable |
//! | [`verifier`] | client side: [`verifier::SelectorVerifier`] accepts a block only if it is the next one needed |
//! | [`blockstore`] | [`blockstore::Blockstore`]: a keyspace of the node's database, a file indexed in one, memory |
//! | [`car`] | CAR v1 streaming [`car::Reader`] (verifying) and [`car::Writer`] |
//! | [`unixfs`] | kubo-compatible UnixFS import ([`unixfs::Importer`], [`unixfs::Preset`]) and streaming export |
//!
//! The reader and the verifier drive the same [`traversal::Traversal`], so the provider
//! sends exactly the order the client expects, repeated links included.
//!
//! ## Example
//!
//! Import bytes as UnixFS, read the DAG's blocks in traversal order (the provider), and
//! verify them one by one (the client):
//!
//! ```
//! use rm_blockio::blockstore::MemoryBlockstore;
//! use rm_blockio::reader::BlockReader;
//! use rm_blockio::selector::Selector;
//! use rm_blockio::unixfs::{Importer, Preset};
//! use rm_blockio::verifier::SelectorVerifier;
//!
//! let provider_store = MemoryBlockstore::new();
//! let data = vec![42u8; 5000];
//! let root = Importer::import_bytes(&provider_store, Preset::GO_FIL_MARKETS, &data)?.root;
//!
//! let selector = Selector::explore_all_recursively();
//! let mut verifier = SelectorVerifier::new(root, &selector)?;
//! let mut received = 0;
//! for block in BlockReader::new(&provider_store, root, &selector)? {
//!     let block = block?; // an rm_types::Block {prefix, data}, as sent in a DealResponse
//!     let verified = verifier.verify(&block)?;
//!     received += block.data.len();
//!     if verified.done {
//!         break;
//!     }
//! }
//! assert!(verifier.is_done());
//! assert_eq!(verifier.blocks_verified(), 6); // the root and five 1 KiB leaves
//! assert!(received > data.len());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Errors
//!
//! Each module has its own `thiserror` enum (`codec::Error`, `selector::ParseError`,
//! `traversal::Error`, `reader::Error`, `verifier::Error`, `blockstore::Error`,
//! `car::Error`, `unixfs::Error`), all `#[non_exhaustive]`; errors of a lower module are
//! wrapped, not flattened. Nothing panics on input from disk or the network: malformed
//! blocks, CARs and selectors are errors, and lengths are checked against caps before any
//! allocation. A rejected block never changes the verifier's state.

pub mod blockstore;
pub mod car;
pub mod codec;
pub mod reader;
pub mod selector;
pub mod traversal;
pub mod unixfs;
pub mod verifier;

pub use blockstore::{
    Blockstore, DbBlockstore, FileBlockstore, MemoryBlockstore, ScratchBlockstore,
};
/// Block data shared without copying (what [`Blockstore::put_many`] takes and
/// [`rm_types::Block`] carries), re-exported so callers need no `bytes` dependency.
pub use bytes::Bytes;
pub use reader::BlockReader;
pub use selector::Selector;
pub use traversal::Traversal;
pub use verifier::SelectorVerifier;
