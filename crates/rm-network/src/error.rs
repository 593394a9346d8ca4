//! The error type of rm-network.

use std::{path::PathBuf, time::Duration};

use libp2p::{Multiaddr, PeerId};

use crate::deal::Role;

/// Everything that can go wrong on the network: opening streams, framing, limits,
/// timeouts, key files.
///
/// Errors that come from a peer's bytes (limits, malformed or truncated messages,
/// timeouts) reset the stream they happened on and are counted in [`crate::Metrics`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer speaks none of the protocols we tried.
    #[error("peer {peer} supports none of {protocols:?}")]
    UnsupportedProtocol {
        /// The peer.
        peer: PeerId,
        /// The protocol ids tried, in order.
        protocols: Vec<String>,
    },
    /// A stream could not be opened (dial failure, connection lost during negotiation).
    #[error("cannot open a stream to {peer}: {reason}")]
    OpenStream {
        /// The peer.
        peer: PeerId,
        /// What libp2p reported.
        reason: String,
    },
    /// An explicit dial failed.
    #[error("dialing {peer} failed: {reason}")]
    Dial {
        /// The peer.
        peer: PeerId,
        /// What libp2p reported.
        reason: String,
    },
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// What libp2p reported.
        reason: String,
    },
    /// The transport could not be built.
    #[error("transport setup failed: {0}")]
    Transport(String),
    /// A read, write, stream open or handler did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// The configured limit.
        after: Duration,
    },
    /// A message or block was larger than its configured cap.
    #[error("{what} is {len} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was too large (`message`, `block`).
        what: &'static str,
        /// Its size in bytes (at least this many).
        len: u64,
        /// The limit that applied.
        limit: u64,
    },
    /// A `DealResponse` carried more blocks than allowed.
    #[error("response carries {count} blocks, over the limit of {limit}")]
    TooManyBlocks {
        /// Blocks in the response.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes were not a well-formed DAG-CBOR item of the expected message type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The stream ended in the middle of a message.
    #[error("stream ended after {received} bytes of an unfinished message")]
    Truncated {
        /// Bytes of the unfinished message that arrived.
        received: usize,
    },
    /// The peer closed the stream where a message was expected.
    #[error("stream closed by the peer")]
    Closed,
    /// The provider closed a query stream without an answer: it is over its query limits
    /// (a refusal, counted as `queries_refused` on its side), or it could not answer (as
    /// go-fil-markets does when it cannot answer at all). The stream ended cleanly; unlike
    /// a reset or a timeout this says nothing against the connection: ask again later.
    #[error("{peer} closed the query stream without an answer (busy, or unable to answer)")]
    QueryRefused {
        /// The provider.
        peer: PeerId,
    },
    /// The stream was reset after an earlier error and cannot be used any more.
    #[error("stream was reset after an earlier error")]
    Reset,
    /// A deal-stream method was called on the wrong side (e.g. `read_proposal` by a client).
    #[error("a {role:?} deal stream cannot {op}")]
    WrongRole {
        /// The stream's role.
        role: Role,
        /// The operation attempted.
        op: &'static str,
    },
    /// A message could not be encoded.
    #[error("encoding failed: {0}")]
    Encode(rm_types::Error),
    /// An I/O error on a stream.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A protocol was registered for inbound streams twice.
    #[error("protocol {0} is already accepted")]
    AlreadyRegistered(String),
    /// The network task has stopped ([`crate::Network::shutdown`] or a crash).
    #[error("the network task has stopped")]
    Shutdown,
    /// A key file could not be read, written or parsed.
    #[error("key file {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A DHT operation could not run or failed (no known DHT peers, too many operations in
    /// progress, the provider store is full).
    #[error("DHT: {0}")]
    Dht(String),
    /// Bytes that should be a peer id are not one.
    #[error("invalid peer id bytes")]
    InvalidPeerId,
}

impl Error {
    /// Whether the peer broke the protocol: its bytes were malformed, or over a size or
    /// count cap. Unlike a lost connection or a timeout, trying again will not help; a
    /// deal ends with a protocol error.
    pub fn is_peer_violation(&self) -> bool {
        matches!(
            self,
            Error::TooLarge { .. } | Error::TooManyBlocks { .. } | Error::Malformed(_)
        )
    }

    /// Maps an rm-types codec error (from the scanner or a decoder) to ours.
    pub(crate) fn from_codec(e: rm_types::Error) -> Self {
        match e {
            rm_types::Error::TooLarge { what, len, limit } => Error::TooLarge { what, len, limit },
            other => Error::Malformed(other.to_string()),
        }
    }
}
