//! The retrieval provider: answer queries, decide on deals, stream verified-order blocks
//! and collect payment-channel vouchers as the client pays.
//!
//! `rm-provider` is layer 3 of the `rm` workspace. Each deal is a persistent
//! state machine ([`rm_fsm`]) keyed by `(client peer, client deal id)` whose transition
//! table is data ([`fsm::table`], rendered in `docs/state-machines/provider.md`). Blocks
//! come from any [`rm_blockio::Blockstore`] in the traversal order of the deal's selector;
//! vouchers are checked and saved by any [`rm_types::RetrievalProviderNode`] (rm's own is
//! `rm_paych::PaychNode`).
//!
//! # How a deal runs
//!
//! [`Provider::start`] makes the provider the network's receiver. A deal stream starts with
//! a proposal: the provider checks the terms against its [`Ask`](rm_types::Ask), the
//! payload against its blockstore and asks the custom decider ([`Provider::set_decider`]);
//! then it writes `Accepted` (or `FundsNeededUnseal` when an unseal price is due first)
//! and sends blocks, several per response, until the block that reaches the next payment
//! point (`Params::next_payment_point`; the math is in `docs/payments.md`). That response says `FundsNeeded` and
//! what is owed; the provider reads a voucher, saves it (only its new delta counts) and
//! goes on, or answers a partial payment with the remainder. After the last block the
//! whole balance is due (`FundsNeededLastPayment`); then `Completed`.
//!
//! A stream that breaks leaves the deal where it was. When the client comes back with the
//! same deal id and a `Resume` (how far it verified), the provider continues from that
//! block; money already received stays counted. A deal nobody resumes within
//! [`Config::resume_window`] ends `Errored`; a restarted provider waits the same way.
//!
//! # Example
//!
//! ```no_run
//! # async fn example<N: rm_types::RetrievalProviderNode>(
//! #     network: rm_network::Network,
//! #     node: N,
//! #     db: rm_store::Db,
//! #     blocks: std::sync::Arc<dyn rm_blockio::Blockstore>,
//! # ) -> Result<(), rm_provider::Error> {
//! use rm_provider::{Config, Provider};
//! use rm_types::{Ask, TokenAmount};
//!
//! let provider = Provider::new(network, node, blocks, &db, Config::default()).await?;
//! provider.set_ask(Ask {
//!     price_per_byte: TokenAmount::from_atto(1000u64),
//!     unseal_price: TokenAmount::zero(),
//!     payment_interval: 1 << 20,
//!     payment_interval_increase: 1 << 20,
//! })?;
//! provider.set_decider(std::sync::Arc::new(|deal| {
//!     if deal.proposal.params.selector.is_some() {
//!         Err("whole DAGs only".to_owned())
//!     } else {
//!         Ok(())
//!     }
//! }));
//! provider.start();
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! API calls return [`Error`]; a failed deal ends in a final status with a message, and
//! the client is told in a `DealResponse`.

mod error;
pub mod fsm;
mod provider;

pub use error::Error;
pub use fsm::{Event, PaymentLane, ProviderDeal};
pub use provider::{
    Config, DEALS_KEYSPACE, DealKey, Deals, Decider, KEYSPACES, META_KEYSPACE, Provider,
    ProviderSubscription,
};
