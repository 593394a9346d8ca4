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
//! Each deal is a [`ProviderDeal`]: a deterministic machine with no I/O, no async and no
//! clock reads (`deal.rs`). Its inputs — the payload located, the decider's answer, the
//! piece unsealed, blocks read, a client message, a voucher saved, the stream lost, a
//! client back on a new stream, a timer — are method calls; its outputs are
//! [`ProviderAction`]s: persist this event, unseal, read the next blocks up to the
//! credit limit, save this voucher, send this response. Its record and transitions are
//! data ([`fsm::table`], rendered in `docs/state-machines/provider.md`).
//!
//! [`Provider::start`] makes the provider the network's receiver. Queries are answered by
//! `queries.rs`; each deal stream goes to `sessions.rs`, which starts a driver task for a
//! new deal (`driver.rs`, one per deal, not per stream), hands a stream that resumes a
//! running deal to its driver, and answers a stream for a finished deal from its record.
//!
//! A deal is accepted after the ask checks (go-fil-markets `CheckDealParams`) and the
//! custom decider ([`Provider::set_decider`]); it writes `Accepted` (or
//! `FundsNeededUnseal` when an unseal price is due first), unseals the payload and sends
//! blocks, several per response, up to its credit limit, one interval past what it was
//! paid for (`Params::credit_limit`; the math is in `docs/payments.md`). That response says
//! `FundsNeeded` and what is owed; the provider saves the client's voucher (only its new
//! delta counts) and goes on, or answers a partial payment with the remainder. In long
//! intervals ([`DealConfig::ask_early_from`]) it asks halfway, on an `Ongoing` response,
//! and keeps sending: a client that pays at once is never stopped. After the
//! last block the whole balance is due (`FundsNeededLastPayment`); the deal is recorded
//! `Completed` before `Completed` is written.
//!
//! A stream that breaks leaves the deal where it was. When the client comes back with the
//! same deal id and a `Resume` (how far it verified, checked against the DAG), the
//! provider continues from that block; money already received stays counted. A deal
//! nobody resumes within [`DealConfig::resume_window`] ends `Errored`; a restarted
//! provider waits the same way.
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
//! API calls return [`Error`]; a failed deal ends in a final status with a typed
//! [`DealError`](rm_types::DealError) in its record, and the client is told in a
//! `DealResponse`.

mod credit;
pub mod deal;
mod driver;
mod error;
pub mod fsm;
mod lanes;
mod provider;
mod queries;
mod sessions;

pub use credit::CreditLimits;
pub use deal::{
    DealConfig, Finished, Located, ProviderAction, ProviderDeal, ReadBlocks, answer_finished,
};
pub use error::Error;
pub use fsm::{PaymentLane, ProviderEvent, ProviderState, ProviderStatus};
pub use provider::{
    Config, DEALS_KEYSPACE, DealKey, Deals, Decider, KEYSPACES, META_KEYSPACE, Provider,
    ProviderSubscription, ProviderTotals, QueryObserver,
};
