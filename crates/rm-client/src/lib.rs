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
//! [`Client::retrieve`] takes a deal id from the stored counter, persists the deal as `New`
//! and starts a runner task. The runner does what the current status calls for — propose,
//! set up the payment channel, read responses, pay — and records each outcome as an event;
//! the state machine decides the next status. Because every step is persisted before the
//! next one starts, [`Client::new`] resumes unfinished deals after a crash: the runner
//! re-opens the deal stream and tells the provider how far it got (`Resume` in the
//! proposal; `docs/protocol.md`). A lost connection is handled the same way, a bounded
//! number of times in a row ([`Config::max_reconnects`]).
//!
//! Payments follow `docs/payments.md`: when the provider stops at a payment point the client pays
//! `verified bytes × price + unseal price` as one cumulative voucher on its lane, never for
//! an unverified byte and never more than the provider may ask ([`logic::decide_payment`]).
//! A channel that cannot cover a voucher moves the deal to `InsufficientFunds` until
//! [`Client::add_more_funds`]; [`Client::cancel_deal`] ends it as `Cancelled` on both sides.
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
//! use rm_client::{Client, Config, Retrieval};
//! use rm_types::{DealStatus, QueryParams};
//!
//! let client = Client::new(network, node, blocks, &db, wallet, Config::default()).await?;
//! let terms = client.query(provider, vec![addr.clone()], payload, QueryParams::default()).await?;
//! let id = client
//!     .retrieve(Retrieval::from_query(payload, provider, vec![addr], &terms))
//!     .await?;
//! let deal = client.wait(id).await?;
//! assert_eq!(deal.status(), DealStatus::Completed);
//! println!("paid {} in {} vouchers", deal.state.funds_spent, deal.vouchers.len());
//! # Ok(())
//! # }
//! ```
//!
//! `node` is any [`rm_types::RetrievalClientNode`]; rm's own is `rm_paych::PaychNode`.
//!
//! # Errors
//!
//! API calls return [`Error`]. A failed deal is not an API error: it ends in a final status
//! (`Errored`, `Rejected`, `DealNotFound`, `Cancelled`) with the reason in its `Message`.

mod client;
mod error;
pub mod fsm;
pub mod logic;

pub use client::{
    Client, ClientSubscription, Config, DEALS_KEYSPACE, Deals, KEYSPACES, META_KEYSPACE, Retrieval,
};
pub use error::Error;
pub use fsm::{ClientDeal, Event};
