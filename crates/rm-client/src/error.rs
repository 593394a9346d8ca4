//! The client's error type.

use rm_types::DealId;

use crate::fsm::ClientStatus;

/// Errors of the client API. Deal failures are not errors of the API: they end the deal
/// (`Errored`, `Rejected`, …) with a [`DealError`](rm_types::DealError) in its state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request itself is invalid (terms, selector, funds).
    #[error("invalid retrieval request: {0}")]
    InvalidRequest(String),
    /// The terms ask more than the retrieval's [`Caps`](crate::Caps) allow.
    #[error("the {what} asked, {quoted}, is over the cap of {cap}")]
    OverCap {
        /// Which cap: "price per byte", "unseal price" or "total".
        what: &'static str,
        /// What the terms ask.
        quoted: rm_types::TokenAmount,
        /// The cap.
        cap: rm_types::TokenAmount,
    },
    /// The terms are invalid.
    #[error("invalid deal terms: {0}")]
    Terms(#[from] rm_types::Error),
    /// No deal has this id.
    #[error("unknown deal {}", .0.0)]
    UnknownDeal(DealId),
    /// The deal is not in a status where this can be done.
    #[error("deal {} is {status}, not {wanted}", .id.0)]
    WrongStatus {
        /// The deal.
        id: DealId,
        /// Its status.
        status: ClientStatus,
        /// The status the operation needs.
        wanted: &'static str,
    },
    /// The network failed (dialing, querying).
    #[error("network: {0}")]
    Network(#[from] rm_network::Error),
    /// The node (payment channels) failed.
    #[error("node: {0}")]
    Node(#[from] rm_types::NodeError),
    /// Finding providers failed.
    #[error("finding providers: {0}")]
    Resolver(#[from] rm_types::node::ResolverError),
    /// The deal store or state machines failed.
    #[error("deal store: {0}")]
    Fsm(#[from] rm_fsm::Error),
    /// Opening the deal store failed.
    #[error("deal store: {0}")]
    Store(#[from] rm_fsm::StoreError),
    /// The client was closed.
    #[error("client closed")]
    Closed,
}
