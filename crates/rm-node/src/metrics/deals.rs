//! Deal metrics from the deal journals' notifications: one task per side, holding only its
//! subscription (it ends when the journal is gone).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use rm_client::{Client, ClientEvent, ClientState};
use rm_fsm::{Notification, RecvError, Snapshot, Status as _};
use rm_provider::{DealKey, Provider, ProviderEvent, ProviderState};
use rm_types::{DealError, Outcome, RetrievalClientNode, RetrievalProviderNode, TokenAmount};

use super::{DealMetrics, FailedLabels, Metrics, SideLabel, StatusLabels, atto_f64, error_kind};

/// What the metrics need of a deal record, whichever side.
struct View<'a> {
    status: &'static str,
    outcome: Option<Outcome>,
    error: Option<&'a DealError>,
    /// Block bytes sent (provider) or received (client) so far.
    bytes: u64,
    /// attoFIL received (provider) or paid (client) so far.
    funds: &'a TokenAmount,
}

fn provider_view(s: &ProviderState) -> View<'_> {
    View {
        status: s.status.name(),
        outcome: s.outcome(),
        error: s.error.as_ref(),
        bytes: s.bytes_sent,
        funds: &s.funds_received,
    }
}

fn client_view(s: &ClientState) -> View<'_> {
    View {
        status: s.status.name(),
        outcome: s.outcome(),
        error: s.error.as_ref(),
        bytes: s.bytes_received,
        funds: &s.funds_spent,
    }
}

/// A deal not ended, as last seen.
struct Seen {
    seq: u64,
    status: &'static str,
    bytes: u64,
    funds: TokenAmount,
}

/// The deals of one side not ended yet, and the counters they move.
struct Tally<K> {
    side: &'static str,
    metrics: DealMetrics,
    deals: HashMap<K, Seen>,
}

impl<K: Hash + Eq> Tally<K> {
    fn new(side: &'static str, metrics: DealMetrics) -> Self {
        Tally {
            side,
            metrics,
            deals: HashMap::new(),
        }
    }

    fn in_flight(&self, status: &'static str) -> prometheus_client::metrics::gauge::Gauge {
        self.metrics.in_flight.get_or_create_owned(&StatusLabels {
            side: self.side,
            status,
        })
    }

    /// A deal found unfinished when counting starts: in flight, nothing counted.
    fn seed(&mut self, id: K, seq: u64, view: View<'_>) {
        if view.outcome.is_some() || self.deals.contains_key(&id) {
            return;
        }
        self.in_flight(view.status).inc();
        self.deals.insert(
            id,
            Seen {
                seq,
                status: view.status,
                bytes: view.bytes,
                funds: view.funds.clone(),
            },
        );
    }

    /// A deal's new snapshot: count what moved since the last one and where it is now.
    fn update(&mut self, id: K, began: bool, seq: u64, view: View<'_>) {
        let m = &self.metrics;
        let side = SideLabel { side: self.side };
        let previous = match self.deals.remove(&id) {
            // Older than what was seen (a notification older than the listing read at the start).
            Some(seen) if seq <= seen.seq => {
                self.deals.insert(id, seen);
                return;
            }
            Some(seen) => {
                self.in_flight(seen.status).dec();
                Some(seen)
            }
            None => None,
        };
        if began {
            m.started.get_or_create(&side).inc();
        }
        // Only what is known to have moved: a deal first seen mid-way counts from here.
        let (bytes_before, funds_before) = match &previous {
            Some(seen) => (seen.bytes, Some(&seen.funds)),
            None if began => (0, None),
            None => (view.bytes, Some(view.funds)),
        };
        if view.bytes > bytes_before {
            let moved = view.bytes - bytes_before;
            if self.side == "provider" {
                m.bytes_sent.inc_by(moved);
            } else {
                m.bytes_received.inc_by(moved);
            }
        }
        let paid = match funds_before {
            Some(before) if view.funds > before => view.funds - before,
            Some(_) => TokenAmount::zero(),
            None => view.funds.clone(),
        };
        if paid.is_positive() {
            if self.side == "provider" {
                m.funds_received.inc_by(atto_f64(&paid));
            } else {
                m.funds_sent.inc_by(atto_f64(&paid));
            }
        }
        match view.outcome {
            Some(Outcome::Completed) => {
                m.completed.get_or_create(&side).inc();
            }
            Some(_) => {
                m.failed
                    .get_or_create(&FailedLabels {
                        side: self.side,
                        reason: error_kind(view.error),
                    })
                    .inc();
            }
            None => {
                self.in_flight(view.status).inc();
                self.deals.insert(
                    id,
                    Seen {
                        seq,
                        status: view.status,
                        bytes: view.bytes,
                        funds: view.funds.clone(),
                    },
                );
            }
        }
    }

    fn lost(&self, n: u64) {
        self.metrics
            .notifications_lost
            .get_or_create(&SideLabel { side: self.side })
            .inc_by(n);
    }
}

impl Metrics {
    /// Counts `provider`'s deals from now on (deals unfinished now are in flight), and
    /// the queries it answers. [`Node::provider`](crate::Node::provider) calls it.
    pub fn observe_provider<N: RetrievalProviderNode>(self: &Arc<Self>, provider: &Provider<N>) {
        let metrics = Arc::clone(self);
        provider.set_query_observer(Arc::new(move |answer, took| {
            metrics.observe_query("provider", Some(answer), took);
        }));
        // Subscribed before the unfinished deals are read: nothing falls in between.
        let mut events = provider.subscribe_to_events();
        let mut tally = Tally::<DealKey>::new("provider", self.deals.clone());
        match provider.deals().unfinished() {
            Ok(deals) => {
                for (id, snapshot) in deals {
                    tally.seed(id, snapshot.seq, provider_view(&snapshot.state));
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: provider deals not read"),
        }
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(note) => {
                        let voucher = matches!(
                            note,
                            Notification::Applied {
                                event: ProviderEvent::PaymentReceived { .. }
                                    | ProviderEvent::PartialPaymentReceived { .. },
                                ..
                            }
                        );
                        if voucher {
                            tally.metrics.vouchers_received.inc();
                        }
                        apply(&mut tally, note, provider_view);
                    }
                    Err(RecvError::Lagged(n)) => tally.lost(n),
                    Err(_) => break,
                }
            }
        });
    }

    /// Counts `client`'s deals from now on. [`Node::client`](crate::Node::client) calls it.
    pub fn observe_client<N: RetrievalClientNode>(self: &Arc<Self>, client: &Client<N>) {
        let mut events = client.subscribe_to_events();
        let mut tally = Tally::<u64>::new("client", self.deals.clone());
        match client.deals().unfinished() {
            Ok(deals) => {
                for (id, snapshot) in deals {
                    tally.seed(id, snapshot.seq, client_view(&snapshot.state));
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: client deals not read"),
        }
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(note) => {
                        if matches!(
                            note,
                            Notification::Applied {
                                event: ClientEvent::PaymentSent { .. },
                                ..
                            }
                        ) {
                            tally.metrics.vouchers_sent.inc();
                        }
                        apply(&mut tally, note, client_view);
                    }
                    Err(RecvError::Lagged(n)) => tally.lost(n),
                    Err(_) => break,
                }
            }
        });
    }
}

fn apply<K: Hash + Eq, S, E>(
    tally: &mut Tally<K>,
    note: Notification<K, S, E>,
    view: fn(&S) -> View<'_>,
) {
    let (id, snapshot, began): (K, Snapshot<S>, bool) = match note {
        Notification::Began { id, snapshot } => (id, snapshot, true),
        Notification::Applied { id, snapshot, .. } => (id, snapshot, false),
        _ => return,
    };
    tally.update(id, began, snapshot.seq, view(&snapshot.state));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(
        status: &'static str,
        outcome: Option<Outcome>,
        bytes: u64,
        funds: &'a TokenAmount,
    ) -> View<'a> {
        View {
            status,
            outcome,
            error: None,
            bytes,
            funds,
        }
    }

    #[test]
    fn a_provider_deal_moves_the_counters_once() {
        let metrics = DealMetrics::default();
        let mut t = Tally::<u64>::new("provider", metrics.clone());
        let zero = TokenAmount::zero();
        let paid = TokenAmount::from_atto(500u64);
        t.update(1, true, 0, view("New", None, 0, &zero));
        t.update(1, false, 1, view("Ongoing", None, 1000, &zero));
        // A stale notification changes nothing.
        t.update(1, false, 1, view("Ongoing", None, 1000, &zero));
        // A resume sends bytes again: they count again.
        t.update(1, false, 2, view("Ongoing", None, 400, &zero));
        t.update(1, false, 3, view("Ongoing", None, 1000, &paid));
        let gauge = |status| {
            metrics
                .in_flight
                .get_or_create(&StatusLabels {
                    side: "provider",
                    status,
                })
                .get()
        };
        assert_eq!((gauge("New"), gauge("Ongoing")), (0, 1));
        t.update(
            1,
            false,
            4,
            view("Completed", Some(Outcome::Completed), 1000, &paid),
        );
        assert_eq!(gauge("Ongoing"), 0);
        assert_eq!(metrics.bytes_sent.get(), 1600);
        assert_eq!(metrics.funds_received.get(), 500.0);
        let side = SideLabel { side: "provider" };
        assert_eq!(metrics.started.get_or_create(&side).get(), 1);
        assert_eq!(metrics.completed.get_or_create(&side).get(), 1);
        assert!(t.deals.is_empty());
    }

    #[test]
    fn a_seeded_deal_counts_only_what_moves_later() {
        let metrics = DealMetrics::default();
        let mut t = Tally::<u64>::new("client", metrics.clone());
        let before = TokenAmount::from_atto(100u64);
        let after = TokenAmount::from_atto(250u64);
        t.seed(7, 5, view("Ongoing", None, 2000, &before));
        t.update(
            7,
            false,
            6,
            view("Errored", Some(Outcome::Failed), 2500, &after),
        );
        assert_eq!(metrics.bytes_received.get(), 500);
        assert_eq!(metrics.funds_sent.get(), 150.0);
        let failed = metrics
            .failed
            .get_or_create(&FailedLabels {
                side: "client",
                reason: "unknown",
            })
            .get();
        assert_eq!(failed, 1);
        assert_eq!(
            metrics
                .started
                .get_or_create(&SideLabel { side: "client" })
                .get(),
            0
        );
    }
}
