//! Counters of what the host rejected and served.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// A snapshot of the counters of a [`crate::Behaviour`] ([`crate::Behaviour::metrics`],
/// [`crate::Network::metrics`]). Every counter only
/// grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Messages over their size cap, and blocks over `max_block_size`.
    pub oversized: u64,
    /// `DealResponse`s with more than `max_blocks_per_response` blocks.
    pub too_many_blocks: u64,
    /// Messages that were not well-formed DAG-CBOR of the expected type.
    pub malformed: u64,
    /// Streams that ended in the middle of a message.
    pub truncated: u64,
    /// Reads, writes, stream opens and delegate hand-offs that timed out.
    pub timeouts: u64,
    /// Inbound deal streams reset on arrival: over a deal-stream limit or the inbound
    /// queue, no delegate set, or the delegate did not take them in time.
    pub rejected_streams: u64,
    /// Of `rejected_streams`: refused because the client peer had
    /// `max_inbound_deals_per_peer` deal streams open.
    pub rejected_streams_per_peer: u64,
    /// Of `rejected_streams`: refused because the peers of the client's IP address had
    /// `max_inbound_deals_per_ip` deal streams open.
    pub rejected_streams_per_ip: u64,
    /// Of `rejected_streams`: refused because `max_inbound_deals` deal streams were open.
    /// (The rest of `rejected_streams` found the inbound queue full, no delegate, or a
    /// delegate too slow to take them.)
    pub rejected_streams_total: u64,
    /// Inbound queries refused with a clean close and no answer: over a query limit or
    /// the inbound queue, no delegate set, or the delegate did not take them in time.
    pub queries_refused: u64,
    /// Of `queries_refused`: refused because the peer had `max_inbound_queries_per_peer`
    /// queries open.
    pub queries_refused_per_peer: u64,
    /// Of `queries_refused`: refused because the peers of the IP address had
    /// `max_inbound_queries_per_ip` queries open.
    pub queries_refused_per_ip: u64,
    /// Of `queries_refused`: refused because `max_inbound_queries` queries were open.
    pub queries_refused_total: u64,
    /// Queries answered (provider side).
    pub queries_answered: u64,
    /// Queries that fell back to an older protocol version (client side).
    pub query_fallbacks: u64,
    /// Inbound deal streams admitted and reported as [`crate::Event::Deal`] (a host's
    /// delegate that then does not take one also counts it in `rejected_streams`).
    pub deal_streams_accepted: u64,
    /// Outbound deal streams opened.
    pub deal_streams_opened: u64,
}

/// The live counters behind [`Metrics`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) oversized: AtomicU64,
    pub(crate) too_many_blocks: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) truncated: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) rejected_streams: AtomicU64,
    pub(crate) rejected_streams_per_peer: AtomicU64,
    pub(crate) rejected_streams_per_ip: AtomicU64,
    pub(crate) rejected_streams_total: AtomicU64,
    pub(crate) queries_refused: AtomicU64,
    pub(crate) queries_refused_per_peer: AtomicU64,
    pub(crate) queries_refused_per_ip: AtomicU64,
    pub(crate) queries_refused_total: AtomicU64,
    pub(crate) queries_answered: AtomicU64,
    pub(crate) query_fallbacks: AtomicU64,
    pub(crate) deal_streams_accepted: AtomicU64,
    pub(crate) deal_streams_opened: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Counts an error that came from a peer's bytes or behaviour.
    pub(crate) fn record(&self, error: &Error) {
        let counter = match error {
            Error::TooLarge { .. } => &self.oversized,
            Error::TooManyBlocks { .. } => &self.too_many_blocks,
            Error::Malformed(_) => &self.malformed,
            Error::Truncated { .. } => &self.truncated,
            Error::Timeout { .. } => &self.timeouts,
            _ => return,
        };
        bump(counter);
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            oversized: get(&self.oversized),
            too_many_blocks: get(&self.too_many_blocks),
            malformed: get(&self.malformed),
            truncated: get(&self.truncated),
            timeouts: get(&self.timeouts),
            rejected_streams: get(&self.rejected_streams),
            rejected_streams_per_peer: get(&self.rejected_streams_per_peer),
            rejected_streams_per_ip: get(&self.rejected_streams_per_ip),
            rejected_streams_total: get(&self.rejected_streams_total),
            queries_refused: get(&self.queries_refused),
            queries_refused_per_peer: get(&self.queries_refused_per_peer),
            queries_refused_per_ip: get(&self.queries_refused_per_ip),
            queries_refused_total: get(&self.queries_refused_total),
            queries_answered: get(&self.queries_answered),
            query_fallbacks: get(&self.query_fallbacks),
            deal_streams_accepted: get(&self.deal_streams_accepted),
            deal_streams_opened: get(&self.deal_streams_opened),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_land_in_their_counters() {
        let c = Counters::default();
        c.record(&Error::TooLarge {
            what: "message",
            len: 10,
            limit: 5,
        });
        c.record(&Error::TooManyBlocks { count: 3, limit: 2 });
        c.record(&Error::Malformed("x".into()));
        c.record(&Error::Truncated { received: 1 });
        c.record(&Error::Timeout {
            what: "read",
            after: std::time::Duration::from_secs(1),
        });
        c.record(&Error::Closed);
        let m = c.snapshot();
        assert_eq!(
            (
                m.oversized,
                m.too_many_blocks,
                m.malformed,
                m.truncated,
                m.timeouts
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(m.rejected_streams, 0);
    }
}
