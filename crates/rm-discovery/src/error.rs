//! The error type of rm-discovery.

/// What can go wrong in the registry, the announcer and the resolver's setup. (A lookup
/// itself does not fail: a source that fails is logged and skipped.)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] rm_store::Error),
    /// A stored record could not be decoded (or a record could not be encoded).
    #[error("corrupt {what} record: {reason}")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A payload already has the most peers a registry record holds.
    #[error("the registry already holds {limit} peers for this payload")]
    TooManyPeers {
        /// The limit ([`crate::registry::MAX_PEERS_PER_PAYLOAD`]).
        limit: usize,
    },
    /// The announcer already provides the most payloads it may.
    #[error("already providing {limit} payloads")]
    TooManyProvided {
        /// The limit ([`crate::AnnouncerConfig::max_provided`]).
        limit: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The network failed.
    #[error("network: {0}")]
    Network(#[from] rm_network::Error),
}
