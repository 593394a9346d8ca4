//! Why a deal failed, and how a deal ended: kept in the deal records of both sides.
//!
//! [`DealError`] is typed so a network failure (worth resuming) and a protocol violation
//! by the peer (never worth resuming) cannot be confused; it is rendered into
//! go-fil-markets' free-text `Message` only on the wire ([`DealError::wire_message`]).
//! Reasons are cut to [`MAX_REASON_LEN`] bytes when the error is made, so no peer can
//! make a record grow by sending a long message.

use serde::{Deserialize, Serialize};

/// The longest reason kept in a [`DealError`], in bytes (longer ones are cut at a
/// character boundary and end with `…`).
pub const MAX_REASON_LEN: usize = 512;

/// Which side of a deal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// The side that pays and receives blocks.
    Client,
    /// The side that serves blocks and is paid.
    Provider,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Provider => "provider",
        })
    }
}

/// Why a deal did not complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum DealError {
    /// The stream or the connection failed (and reconnecting did not help): retryable.
    #[error("network: {0}")]
    Network(String),
    /// The peer broke the protocol: a block that is not the next one, an unexpected
    /// message, a claim that does not add up, a request for money that is not owed.
    #[error("protocol violation by the peer: {0}")]
    Protocol(String),
    /// Paying or being paid failed: channel setup, voucher creation or a voucher refused.
    #[error("payment: {0}")]
    Payment(String),
    /// Unsealing the data failed.
    #[error("Unable to unseal piece: {0}")]
    Unseal(String),
    /// Local storage failed (blockstore, database, sector files).
    #[error("storage: {0}")]
    Storage(String),
    /// The provider rejected the proposal (terms, selector, its decider).
    #[error("deal rejected: {0}")]
    Rejected(String),
    /// The provider does not have the payload.
    #[error("deal not found: {0}")]
    NotFound(String),
    /// The peer reported that it failed, with its message.
    #[error("the peer failed: {0}")]
    Peer(String),
    /// A side cancelled the deal.
    #[error("{by} cancelled retrieval{}", if .reason.is_empty() { String::new() } else { format!(": {}", .reason) })]
    Cancelled {
        /// Who cancelled.
        by: Side,
        /// Why, as they said it.
        reason: String,
    },
    /// Nothing moved for too long: no progress, no resume, no payment.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A bug in this implementation: the deal machine refused its own event.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DealError {
    /// A network error.
    pub fn network(reason: impl std::fmt::Display) -> Self {
        DealError::Network(cut(reason))
    }

    /// A protocol violation by the peer.
    pub fn protocol(reason: impl std::fmt::Display) -> Self {
        DealError::Protocol(cut(reason))
    }

    /// A payment failure.
    pub fn payment(reason: impl std::fmt::Display) -> Self {
        DealError::Payment(cut(reason))
    }

    /// An unseal failure.
    pub fn unseal(reason: impl std::fmt::Display) -> Self {
        // The error displays as go-fil-markets' "Unable to unseal piece: …"; a reason that
        // already says so (rm-unseal's own error) is not prefixed twice.
        let reason = reason.to_string();
        let reason = reason
            .strip_prefix("Unable to unseal piece: ")
            .unwrap_or(&reason);
        DealError::Unseal(cut(reason))
    }

    /// A local storage failure.
    pub fn storage(reason: impl std::fmt::Display) -> Self {
        DealError::Storage(cut(reason))
    }

    /// A rejection.
    pub fn rejected(reason: impl std::fmt::Display) -> Self {
        DealError::Rejected(cut(reason))
    }

    /// The payload is not there.
    pub fn not_found(reason: impl std::fmt::Display) -> Self {
        DealError::NotFound(cut(reason))
    }

    /// The peer's own failure, with its message.
    pub fn peer(reason: impl std::fmt::Display) -> Self {
        DealError::Peer(cut(reason))
    }

    /// A cancellation.
    pub fn cancelled(by: Side, reason: impl std::fmt::Display) -> Self {
        DealError::Cancelled {
            by,
            reason: cut(reason),
        }
    }

    /// A timeout.
    pub fn timeout(reason: impl std::fmt::Display) -> Self {
        DealError::Timeout(cut(reason))
    }

    /// A bug in this implementation.
    pub fn internal(reason: impl std::fmt::Display) -> Self {
        DealError::Internal(cut(reason))
    }

    /// Whether trying again (resuming on a new stream) may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DealError::Network(_))
    }

    /// How the deal ended, as both sides must agree on it.
    pub fn outcome(&self) -> Outcome {
        match self {
            DealError::Cancelled { .. } => Outcome::Cancelled,
            _ => Outcome::Failed,
        }
    }

    /// The text a provider puts in `DealResponse.Message` (go-fil-markets carries the bare
    /// reason for rejections and unseal failures, as in "Price per byte too low").
    pub fn wire_message(&self) -> String {
        match self {
            DealError::Rejected(reason) | DealError::NotFound(reason) => reason.clone(),
            DealError::Peer(reason) => reason.clone(),
            other => other.to_string(),
        }
    }
}

/// How a deal ended, in the categories both sides must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// Every block sent, verified and paid.
    Completed,
    /// Cancelled by either side.
    Cancelled,
    /// Anything else: rejected, not found, an error on either side.
    Failed,
}

/// `reason` as text of at most [`MAX_REASON_LEN`] bytes.
fn cut(reason: impl std::fmt::Display) -> String {
    let mut text = reason.to_string();
    if text.len() > MAX_REASON_LEN {
        let mut end = MAX_REASON_LEN - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let e = DealError::protocol("é".repeat(1000));
        let DealError::Protocol(reason) = &e else {
            unreachable!()
        };
        assert!(reason.len() <= MAX_REASON_LEN);
        assert!(reason.ends_with('…'));
        assert_eq!(
            DealError::network("short"),
            DealError::Network("short".into())
        );
    }

    #[test]
    fn wire_messages_are_go_fil_markets_texts() {
        assert_eq!(
            DealError::rejected("Price per byte too low").wire_message(),
            "Price per byte too low"
        );
        assert_eq!(
            DealError::unseal("no sectors").to_string(),
            "Unable to unseal piece: no sectors"
        );
        assert_eq!(
            DealError::unseal("Unable to unseal piece: sector 3 is gone").to_string(),
            "Unable to unseal piece: sector 3 is gone"
        );
        assert_eq!(
            DealError::cancelled(Side::Client, "").to_string(),
            "client cancelled retrieval"
        );
        assert_eq!(
            DealError::cancelled(Side::Client, "changed my mind").to_string(),
            "client cancelled retrieval: changed my mind"
        );
    }

    #[test]
    fn records_round_trip_as_dag_cbor() {
        for e in [
            DealError::network("reset"),
            DealError::cancelled(Side::Provider, "bye"),
            DealError::timeout("no payment in 600 s"),
        ] {
            let bytes = crate::codec::to_vec(&e).unwrap();
            assert_eq!(crate::codec::from_slice::<DealError>(&bytes).unwrap(), e);
        }
    }

    #[test]
    fn only_network_errors_are_retryable_and_outcomes_are_three() {
        assert!(DealError::network("x").is_retryable());
        assert!(!DealError::protocol("x").is_retryable());
        assert_eq!(
            DealError::cancelled(Side::Client, "").outcome(),
            Outcome::Cancelled
        );
        assert_eq!(DealError::rejected("no").outcome(), Outcome::Failed);
    }
}
