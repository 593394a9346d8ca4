//! Prometheus metrics of a node: deals of both sides, bytes and payments, unseals, queries,
//! the libp2p host's connections and refusals, and the control interface's requests.
//!
//! [`Metrics`] is made by [`Node::open_options`](crate::Node::open_options) and filled
//! without any code in the crates below knowing about Prometheus:
//!
//! - deals, bytes, vouchers and attoFIL: the deal journals' notifications
//!   ([`rm_fsm::Journal::subscribe`]), one task per side ([`Node::provider`] and
//!   [`Node::client`] start them);
//! - unseals: the node's [`SectorAccess`] is wrapped ([`MeteredSectors`]), timing each
//!   unseal from the call to the last byte read (or the reader dropped);
//! - queries: the provider's query observer ([`rm_provider::Provider::set_query_observer`])
//!   and, for queries this node asks, [`Metrics::observe_query`];
//! - the host: [`rm_network::Network::metrics`] and its connected peers, read when scraped.
//!
//! [`Metrics::encode`] renders the OpenMetrics text format that `GET /metrics` serves
//! ([`Node::serve_metrics`](crate::Node::serve_metrics), `serve.rs`). Every metric is
//! documented in `docs/operations.md`.
//!
//! [`Node::provider`]: crate::Node::provider
//! [`Node::client`]: crate::Node::client

mod deals;
mod serve;

use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use rm_types::{DealError, QueryResponse, QueryResponseStatus, TokenAmount};
use rm_unseal::PaddedPieceSize;
use rm_unseal::sector::{BoxFuture, PieceReader, SectorAccess, SectorNumber};
use tokio::io::{AsyncRead, ReadBuf};

pub use serve::{CONTENT_TYPE, MetricsServer};

/// Labels naming a side of a deal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SideLabel {
    side: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailedLabels {
    side: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    side: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    stream: &'static str,
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabel {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds from 1 ms to about 9 hours, doubling (query answers, unseals).
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 25))
}

/// The counters behind the deal metrics, shared with the journal observers.
#[derive(Clone, Default)]
struct DealMetrics {
    started: Family<SideLabel, Counter>,
    completed: Family<SideLabel, Counter>,
    failed: Family<FailedLabels, Counter>,
    in_flight: Family<StatusLabels, Gauge>,
    bytes_sent: Counter,
    bytes_received: Counter,
    vouchers_received: Counter,
    vouchers_sent: Counter,
    funds_received: Counter<f64, AtomicU64>,
    funds_sent: Counter<f64, AtomicU64>,
    notifications_lost: Family<SideLabel, Counter>,
}

/// The libp2p host's counters, copied from [`rm_network::Metrics`] when scraped.
#[derive(Clone, Default)]
struct NetworkMetrics {
    connected_peers: Gauge,
    refused: Family<RefusedLabels, Counter>,
    bad_messages: Family<ReasonLabel, Counter>,
    deal_streams: Family<DirectionLabel, Counter>,
}

/// A node's metrics: a Prometheus registry and the live values behind it. Cheap to share
/// (`Arc`); see the module docs for where each value comes from.
pub struct Metrics {
    registry: Registry,
    deals: DealMetrics,
    network: NetworkMetrics,
    unseals: Family<ResultLabel, Counter>,
    unseal_seconds: Histogram,
    queries: Family<StatusLabels, Counter>,
    query_seconds: HistogramFamily<SideLabel>,
    control: Family<OpLabels, Counter>,
    /// The host whose counters are copied when scraped.
    host: Mutex<Option<rm_network::Network>>,
    /// One scrape at a time: copying the host's counters is a read-modify-write.
    scrape: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, all zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rm");
        let deals = DealMetrics::default();
        let network = NetworkMetrics::default();
        let unseals = Family::<ResultLabel, Counter>::default();
        let unseal_seconds = seconds_histogram();
        let queries = Family::<StatusLabels, Counter>::default();
        let query_seconds: HistogramFamily<SideLabel> =
            Family::new_with_constructor(seconds_histogram);
        let control = Family::<OpLabels, Counter>::default();
        let r = &mut registry;
        r.register(
            "deals_started",
            "Deals begun, by side (a provider counts every proposal it recorded)",
            deals.started.clone(),
        );
        r.register(
            "deals_completed",
            "Deals that ended Completed, by side",
            deals.completed.clone(),
        );
        r.register(
            "deals_failed",
            "Deals that ended without completing, by side and by the kind of their error (rm_types::DealError)",
            deals.failed.clone(),
        );
        r.register(
            "deals_in_flight",
            "Deals not ended, by side and status",
            deals.in_flight.clone(),
        );
        r.register_with_unit(
            "deal_sent",
            "Block bytes sent to clients in deals (sent again after a resume counts again)",
            Unit::Bytes,
            deals.bytes_sent.clone(),
        );
        r.register_with_unit(
            "deal_received",
            "Block bytes received from providers in deals, verified and stored",
            Unit::Bytes,
            deals.bytes_received.clone(),
        );
        r.register(
            "vouchers_received",
            "Payment vouchers accepted from clients",
            deals.vouchers_received.clone(),
        );
        r.register(
            "vouchers_sent",
            "Payment vouchers made for providers",
            deals.vouchers_sent.clone(),
        );
        r.register_with_unit(
            "funds_received",
            "attoFIL newly paid to this node by accepted vouchers (a float64: exact to 2^53)",
            Unit::Other("attofil".into()),
            deals.funds_received.clone(),
        );
        r.register_with_unit(
            "funds_sent",
            "attoFIL paid by this node in vouchers (a float64: exact to 2^53)",
            Unit::Other("attofil".into()),
            deals.funds_sent.clone(),
        );
        r.register(
            "deal_notifications_lost",
            "Deal notifications the metrics missed because they fell behind; deal metrics undercount by up to this many events",
            deals.notifications_lost.clone(),
        );
        r.register(
            "unseals",
            "Pieces unsealed (read out of a sector), by result",
            unseals.clone(),
        );
        r.register_with_unit(
            "unseal_duration",
            "Time to unseal a piece: from asking the sector store to the last byte read",
            Unit::Seconds,
            unseal_seconds.clone(),
        );
        r.register(
            "queries",
            "Queries answered (side provider) or asked (side client), by the answer's status",
            queries.clone(),
        );
        r.register_with_unit(
            "query_duration",
            "Provider: time to find a query's answer; client: time from dialling to the answer",
            Unit::Seconds,
            query_seconds.clone(),
        );
        r.register(
            "connected_peers",
            "Peers the libp2p host is connected to",
            network.connected_peers.clone(),
        );
        r.register(
            "network_refused",
            "Inbound queries and deal streams refused, by stream and by the limit that refused them (queue: the inbound queue was full or nobody took them)",
            network.refused.clone(),
        );
        r.register(
            "network_bad_messages",
            "Deal and query messages refused, by reason",
            network.bad_messages.clone(),
        );
        r.register(
            "network_deal_streams",
            "Deal streams accepted (inbound) and opened (outbound)",
            network.deal_streams.clone(),
        );
        r.register(
            "control_requests",
            "Requests to the control interface, by operation and result",
            control.clone(),
        );
        // Series known in advance exist from the start, at zero.
        for side in ["client", "provider"] {
            let side = SideLabel { side };
            let _ = deals.started.get_or_create(&side);
            let _ = deals.completed.get_or_create(&side);
            let _ = deals.notifications_lost.get_or_create(&side);
        }
        for result in ["ok", "error"] {
            let _ = unseals.get_or_create(&ResultLabel { result });
        }
        Metrics {
            registry,
            deals,
            network,
            unseals,
            unseal_seconds,
            queries,
            query_seconds,
            control,
            host: Mutex::new(None),
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// Copies `network`'s counters and connections into every scrape.
    pub fn watch_network(&self, network: rm_network::Network) {
        *self.host.lock().unwrap_or_else(PoisonError::into_inner) = Some(network);
    }

    /// Counts one query, answered by this node (`side` `"provider"`) or asked by it
    /// (`"client"`; `None`: no answer came), and how long it took.
    pub fn observe_query(
        &self,
        side: &'static str,
        answer: Option<&QueryResponse>,
        took: Duration,
    ) {
        let status = match answer.map(|a| a.status) {
            Some(QueryResponseStatus::Available) => "available",
            Some(QueryResponseStatus::Unavailable) => "unavailable",
            Some(QueryResponseStatus::Error) => "error",
            Some(_) => "other",
            None => "failed",
        };
        self.queries
            .get_or_create(&StatusLabels { side, status })
            .inc();
        self.query_seconds
            .get_or_create(&SideLabel { side })
            .observe(took.as_secs_f64());
    }

    /// Counts one request to the control interface.
    pub fn observe_control(&self, op: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.control.get_or_create(&OpLabels { op, result }).inc();
    }

    fn observe_unseal(&self, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.unseals.get_or_create(&ResultLabel { result }).inc();
        self.unseal_seconds.observe(took.as_secs_f64());
    }

    /// The metrics in the OpenMetrics text format (what `GET /metrics` returns), after
    /// copying the host's counters.
    pub async fn encode(&self) -> String {
        let _one = self.scrape.lock().await;
        let host = self
            .host
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(host) = host {
            self.copy_network(&host).await;
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    async fn copy_network(&self, host: &rm_network::Network) {
        let n = &self.network;
        if let Ok(peers) = host.connected_peers().await {
            n.connected_peers.set(peers.len() as i64);
        }
        let m = host.metrics();
        let refused = |stream, limit| n.refused.get_or_create(&RefusedLabels { stream, limit });
        catch_up(&refused("query", "per_peer"), m.queries_refused_per_peer);
        catch_up(&refused("query", "per_ip"), m.queries_refused_per_ip);
        catch_up(&refused("query", "total"), m.queries_refused_total);
        catch_up(
            &refused("query", "queue"),
            m.queries_refused.saturating_sub(
                m.queries_refused_per_peer + m.queries_refused_per_ip + m.queries_refused_total,
            ),
        );
        catch_up(&refused("deal", "per_peer"), m.rejected_streams_per_peer);
        catch_up(&refused("deal", "per_ip"), m.rejected_streams_per_ip);
        catch_up(&refused("deal", "total"), m.rejected_streams_total);
        catch_up(
            &refused("deal", "queue"),
            m.rejected_streams.saturating_sub(
                m.rejected_streams_per_peer + m.rejected_streams_per_ip + m.rejected_streams_total,
            ),
        );
        let bad = |reason| n.bad_messages.get_or_create(&ReasonLabel { reason });
        catch_up(&bad("oversized"), m.oversized);
        catch_up(&bad("too_many_blocks"), m.too_many_blocks);
        catch_up(&bad("malformed"), m.malformed);
        catch_up(&bad("truncated"), m.truncated);
        catch_up(&bad("timeout"), m.timeouts);
        let streams = |direction| n.deal_streams.get_or_create(&DirectionLabel { direction });
        catch_up(&streams("inbound"), m.deal_streams_accepted);
        catch_up(&streams("outbound"), m.deal_streams_opened);
    }
}

/// Raises `counter` to `value` (a monotonic count read from elsewhere).
fn catch_up(counter: &Counter, value: u64) {
    let now = counter.get();
    if value > now {
        counter.inc_by(value - now);
    }
}

/// The kind of a deal error, as the `reason` label says it.
pub fn error_kind(error: Option<&DealError>) -> &'static str {
    match error {
        Some(DealError::Network(_)) => "network",
        Some(DealError::Protocol(_)) => "protocol",
        Some(DealError::Payment(_)) => "payment",
        Some(DealError::Unseal(_)) => "unseal",
        Some(DealError::Storage(_)) => "storage",
        Some(DealError::Rejected(_)) => "rejected",
        Some(DealError::NotFound(_)) => "not_found",
        Some(DealError::Peer(_)) => "peer",
        Some(DealError::Cancelled { .. }) => "cancelled",
        Some(DealError::Timeout(_)) => "timeout",
        Some(DealError::Internal(_)) => "internal",
        Some(_) => "other",
        None => "unknown",
    }
}

/// attoFIL as a float64 (exact up to 2^53).
fn atto_f64(amount: &TokenAmount) -> f64 {
    amount.atto().to_string().parse().unwrap_or(0.0)
}

/// A [`SectorAccess`] that times every unseal into [`Metrics`]: from the call to the end
/// of the returned reader (its last byte, an error, or its drop).
pub struct MeteredSectors {
    inner: Arc<dyn SectorAccess>,
    metrics: Arc<Metrics>,
}

impl MeteredSectors {
    /// `inner`, timed into `metrics`.
    pub fn new(inner: Arc<dyn SectorAccess>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl SectorAccess for MeteredSectors {
    fn unseal(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<PieceReader, rm_unseal::Error>> {
        Box::pin(async move {
            let started = Instant::now();
            match self.inner.unseal(sector, offset, length).await {
                Ok(reader) => Ok(Box::pin(Timed {
                    inner: reader,
                    started,
                    metrics: Some(Arc::clone(&self.metrics)),
                }) as PieceReader),
                Err(e) => {
                    self.metrics.observe_unseal(false, started.elapsed());
                    Err(e)
                }
            }
        })
    }

    fn is_unsealed(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<bool, rm_unseal::Error>> {
        self.inner.is_unsealed(sector, offset, length)
    }

    /// Not an unseal (the sector file is read in place), so not timed.
    fn open_unsealed(
        &self,
        sector: SectorNumber,
        offset: u64,
        length: PaddedPieceSize,
    ) -> BoxFuture<'_, Result<Option<Arc<dyn rm_unseal::PieceData>>, rm_unseal::Error>> {
        self.inner.open_unsealed(sector, offset, length)
    }
}

/// An unsealed piece's reader that records its unseal when it ends.
struct Timed {
    inner: PieceReader,
    started: Instant,
    /// Taken when the unseal is recorded.
    metrics: Option<Arc<Metrics>>,
}

impl Timed {
    fn record(&mut self, ok: bool) {
        if let Some(m) = self.metrics.take() {
            m.observe_unseal(ok, self.started.elapsed());
        }
    }
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = self.inner.as_mut().poll_read(cx, buf);
        match &poll {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                self.record(true)
            }
            Poll::Ready(Err(_)) => self.record(false),
            _ => {}
        }
        poll
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        // A reader dropped before its end: the loader read what it needed (a piece's
        // zero fill is not read) or gave up; either way the unseal is over.
        self.record(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_label_values() {
        assert_eq!(error_kind(Some(&DealError::network("x"))), "network");
        assert_eq!(
            error_kind(Some(&DealError::cancelled(rm_types::Side::Client, ""))),
            "cancelled"
        );
        assert_eq!(error_kind(None), "unknown");
    }

    #[tokio::test]
    async fn the_text_names_every_metric() {
        let m = Metrics::new();
        m.observe_query("client", None, Duration::from_millis(3));
        m.observe_unseal(true, Duration::from_millis(20));
        m.observe_control("ask", true);
        let text = m.encode().await;
        for name in [
            "rm_deals_started_total{side=\"provider\"} 0",
            "rm_deals_completed_total{side=\"client\"} 0",
            "rm_unseals_total{result=\"error\"} 0",
            "rm_deal_sent_bytes_total",
            "rm_funds_received_attofil_total",
            "rm_queries_total{side=\"client\",status=\"failed\"} 1",
            "rm_query_duration_seconds_count{side=\"client\"} 1",
            "rm_unseals_total{result=\"ok\"} 1",
            "rm_unseal_duration_seconds_count 1",
            "rm_control_requests_total{op=\"ask\",result=\"ok\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
