//! The crate's error types.

use crate::machine::Invalid;

/// An error from the engine, a store or a counter.
///
/// Every error that concerns one machine names it by the `Debug` rendering of its id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `begin` was called with an id that is already stored.
    #[error("machine {0} already exists")]
    Exists(String),
    /// An event was sent to an id that was never begun.
    #[error("machine {0} not found")]
    NotFound(String),
    /// An event was sent to a machine that has reached a final state; it absorbs nothing.
    #[error("machine {0} is in a final state")]
    Final(String),
    /// The event has no transition from the machine's state, or the rule's action refused
    /// it. The state is unchanged.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The journal was closed before the event was written.
    #[error("journal closed")]
    Closed,
    /// A snapshot handed to [`Journal::record`](crate::Journal::record) is not newer than
    /// the stored one (a driver running on a stale copy of the state).
    #[error("machine {id}: snapshot {given} is not newer than the stored {stored}")]
    Stale {
        /// The machine.
        id: String,
        /// The stored `seq`.
        stored: u64,
        /// The `seq` handed in.
        given: u64,
    },
    /// The store failed; the event was not applied.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A state could not be encoded as DAG-CBOR (or is larger than
    /// [`Config::max_state_bytes`](crate::Config::max_state_bytes)); the event was not applied.
    #[error("encoding state: {0}")]
    Encode(String),
    /// Stored bytes could not be decoded (a corrupt or foreign record).
    #[error("decoding record {key}: {reason}")]
    Decode {
        /// The stored key, hex-encoded.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// A stored counter reached `u64::MAX`.
    #[error("counter overflow")]
    CounterOverflow,
}

/// An error from a [`Store`](crate::Store).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database failed (or has no such keyspace).
    #[error(transparent)]
    Db(#[from] rm_store::Error),
    /// A blocking store task failed (it panicked or the runtime is shutting down).
    #[error("store task failed: {0}")]
    Task(String),
}

/// Hex rendering of a key for error messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
