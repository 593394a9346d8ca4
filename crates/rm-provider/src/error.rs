//! The provider's error type.

/// Errors of the provider API. Deal failures are not API errors: they end the deal
/// (`Errored`, `Rejected`, …) with a message in its state and a response to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ask is invalid.
    #[error("invalid ask: {0}")]
    InvalidAsk(String),
    /// A stored record does not decode.
    #[error("corrupt provider record: {0}")]
    Corrupt(String),
    /// The deal store or state machines failed.
    #[error("deal store: {0}")]
    Fsm(#[from] rm_fsm::Error),
    /// The database failed.
    #[error("deal store: {0}")]
    Store(#[from] rm_fsm::StoreError),
}
