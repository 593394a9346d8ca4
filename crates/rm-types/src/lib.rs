//! # rm-types: the vocabulary of the rm retrieval market
//!
//! Layer 0 of the workspace: every type that crosses a crate boundary or the
//! wire, with its DAG-CBOR encoding, byte-compatible with go-fil-markets. It depends on no
//! other rm crate; everything above it does.
//!
//! | module | what |
//! |---|---|
//! | [`address`] | Filecoin addresses (ID, secp256k1, actor, BLS, delegated), `f`/`t` strings |
//! | [`token`] | [`TokenAmount`] in attoFIL, Filecoin big-int bytes |
//! | [`crypto`], [`paych`] | [`Signature`], [`SignedVoucher`] and its signing bytes |
//! | [`messages`] | `Query`, `QueryResponse`, `DealProposal`, `DealResponse`, `DealPayment` (map encoding) |
//! | [`tuple`](mod@tuple) | the same messages in the legacy tuple encoding (`/fil/retrieval/qry/0.0.1`) |
//! | [`status`] | [`DealStatus`] (wire numbers), query statuses, client/provider events |
//! | [`block`] | [`Block`]: a block on the wire, and CID recomputation from its prefix |
//! | [`payment`] | the payment math shared by client and provider |
//! | [`state`] | deal states, asks, retrieval peers |
//! | [`outcome`] | [`DealError`], why a deal failed, and [`Outcome`], how it ended |
//! | [`node`] | the node traits and [`PeerResolver`] |
//! | [`codec`] | DAG-CBOR helpers and the stream framing scanner |
//!
//! ## Example
//!
//! ```
//! use rm_types::{codec, tuple, Query, QueryResponse, QueryResponseStatus, QueryItemStatus, TokenAmount};
//!
//! let payload: cid::Cid = "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb".parse().unwrap();
//! let query = Query::new(payload);
//! // map encoding (qry/1.0.0) and tuple encoding (qry/0.0.1) of the same message
//! let map = codec::to_vec(&query)?;
//! let tup = tuple::to_vec(&query)?;
//! assert_eq!(codec::from_slice::<Query>(&map)?, tuple::from_slice::<Query>(&tup)?);
//!
//! let answer = QueryResponse {
//!     status: QueryResponseStatus::Available,
//!     piece_cid_found: QueryItemStatus::Available,
//!     size: 19_958,
//!     payment_address: "f01000".parse()?,
//!     min_price_per_byte: TokenAmount::from_atto(1000u64),
//!     max_payment_interval: 10_000,
//!     max_payment_interval_increase: 1_000,
//!     message: String::new(),
//!     unseal_price: TokenAmount::zero(),
//! };
//! assert_eq!(answer.piece_retrieval_price(), TokenAmount::from_atto(19_958_000u64));
//! # Ok::<(), rm_types::Error>(())
//! ```
//!
//! ## Errors
//!
//! Fallible operations return [`Error`]; address parsing has its own [`AddressError`]
//! (wrapped by [`Error::Address`]). No decoder panics: sizes are checked before
//! allocation, and unknown enum numbers, malformed addresses, over-long big integers and
//! bad signatures are typed errors.
//!
//! ## Features
//!
//! - `fvm`: lossless conversions to and from `fvm_shared` 4's `Address`, `TokenAmount`
//!   and `Signature`, for Forest and ref-fvm users.

pub mod address;
pub mod block;
pub mod codec;
pub mod crypto;
mod error;
#[cfg(feature = "fvm")]
pub mod fvm;
pub mod messages;
pub mod node;
pub mod outcome;
pub mod paych;
pub mod payment;
pub mod protocol;
pub mod state;
pub mod status;
pub mod token;
pub mod tuple;

pub use address::{Address, AddressError, Network, Protocol};
pub use block::{Block, Prefix};
pub use crypto::{Signature, SignatureType};
pub use error::Error;
pub use messages::{
    ClientMessage, DealCancel, DealId, DealPayment, DealProposal, DealResponse, Params, Query,
    QueryParams, QueryResponse, Resume, Selector, explore_all_selector,
};
pub use node::{
    ChainHead, ChannelAvailableFunds, ChannelSetup, NodeError, PeerResolver, ResolverError,
    RetrievalClientNode, RetrievalProviderNode,
};
pub use outcome::{DealError, MAX_REASON_LEN, Outcome, Side};
pub use paych::{ChainEpoch, Merge, ModVerifyParams, SignedVoucher};
pub use state::{
    Ask, ClientDealState, PaymentInfo, PeerId, ProviderDealIdentifier, ProviderDealState,
    RetrievalPeer,
};
pub use status::{ClientEvent, DealStatus, ProviderEvent, QueryItemStatus, QueryResponseStatus};
pub use token::TokenAmount;

/// Re-exported so that users name the same `Cid` type rm uses.
pub use cid::Cid;
/// Re-exported IPLD data model, for selectors.
pub use ipld_core::ipld::Ipld;
