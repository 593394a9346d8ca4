//! The retrieval client: find a provider, ask its terms, make a deal, receive verified
//! blocks and pay for them as they arrive.
//!
//! `rm-client` is layer 3 of the `rm` workspace. It runs each deal as a
//! persistent state machine ([`rm_fsm`]) whose transition table is data ([`fsm::table`],
//! rendered in `docs/state-machines/client.md`), talks to providers through [`rm_network`],
//! checks every block against the traversal with [`rm_blockio::SelectorVerifier`] before it
//! is stored or paid for, and pays through any [`rm_types::RetrievalClientNode`] (the
//! embedded one is `rm_paych::PaychNode`).
//!
//! # How a deal runs
//!
//! Each deal is a [`ClientDeal`]: a deterministic machine with no I/O, no async and no
//! clock reads (`deal.rs`; quinn-proto's `Connection` is the model). It takes inputs as
//! method calls — a response arrived, blocks verified and stored, a voucher made, the
//! stream lost, a timer fired at `now`, the user cancelled — and yields
//! [`ClientAction`]s: persist this event, connect, send this message, verify these blocks,
//! make a voucher for this amount, check the channel's funds. Its record and transitions
//! are data ([`fsm::table`], rendered in `docs/state-machines/client.md`).
//!
//! A thin driver (`driver.rs`) carries the actions out on the network, the blockstore,
//! the node and the deal journal, one task per deal, and feeds the results back. Every
//! event is persisted before any effect of it: a voucher is recorded before it is sent.
//! [`Client::new`] resumes unfinished deals from their last persisted snapshot; a lost
//! stream is re-established a bounded number of times in a row, and the provider is told
//! how far the deal got (`Resume` in the proposal; `docs/protocol.md`).
//!
//! Payments follow `docs/payments.md`: when the provider stops for payment the client pays
//! `verified bytes × price + unseal price` as one cumulative voucher on its lane, never
//! for an unverified byte, never beyond the deal's budget and never more than the provider
//! may ask ([`logic::decide_payment`]). A provider's early request (an `Ongoing` response
//! naming an amount) is paid the same way at once, while blocks keep coming
//! ([`DealConfig::pay_early`]), so the provider need not stop. A channel that cannot cover a
//! voucher moves the deal to `InsufficientFunds` until [`Client::add_more_funds`];
//! [`Client::cancel_deal`] ends it as `Cancelled` on both sides.
//!
//! # Example
//!
//! ```no_run
//! # async fn example<N: rm_types::RetrievalClientNode>(
//! #     network: rm_network::Network,
//! #     node: N,
//! #     db: rm_store::Db,
//! #     blocks: std::sync::Arc<dyn rm_blockio::Blockstore>,
//! #     wallet: rm_types::Address,
//! #     provider: rm_network::libp2p::PeerId,
//! #     addr: rm_network::libp2p::Multiaddr,
//! #     payload: rm_types::Cid,
//! # ) -> Result<(), rm_client::Error> {
//! use rm_client::{Client, ClientStatus, Config, Retrieval};
//! use rm_types::QueryParams;
//!
//! let client = Client::new(network, node, blocks, &db, wallet, Config::default()).await?;
//! let terms = client.query(provider, vec![addr.clone()], payload, QueryParams::default()).await?;
//! let id = client
//!     .retrieve(Retrieval::from_query(payload, provider, vec![addr], &terms))
//!     .await?;
//! let deal = client.wait(id).await?;
//! assert_eq!(deal.status, ClientStatus::Completed);
//! println!("paid {} in {} vouchers", deal.funds_spent, deal.vouchers.len());
//! # Ok(())
//! # }
//! ```
//!
//! `node` is any [`rm_types::RetrievalClientNode`]; rm's own is `rm_paych::PaychNode`.
//!
//! # Errors
//!
//! API calls return [`Error`]. A failed deal is not an API error: it ends in a final status
//! (`Errored`, `Rejected`, `DealNotFound`, `Cancelled`) with a typed
//! [`DealError`](rm_types::DealError) in its record.

mod client;
pub mod deal;
mod driver;
mod error;
pub mod fsm;
pub mod logic;

pub use client::{
    Caps, Client, ClientSubscription, ClientTotals, Config, DEALS_KEYSPACE, Deals, KEYSPACES,
    META_KEYSPACE, Retrieval,
};
pub use deal::{ClientAction, ClientDeal, DealConfig, Outbound, VerifyError};
pub use error::Error;
pub use fsm::{ClientEvent, ClientState, ClientStatus};
