//! The provider handle: its settings, its ask and decider, and the dispatcher that hands
//! queries to the answerer and deal streams to the sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rm_blockio::{Blockstore, Selector as DagSelector};
use rm_fsm::{Journal, Subscription};
use rm_network::Network;
use rm_store::{Db, Keyspace};
use rm_types::{Ask, Cid, Outcome, Params, RetrievalProviderNode, TokenAmount, codec};
use rm_unseal::Unsealer;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Error;
use crate::credit::{CreditBook, CreditLimits};
use crate::deal::{DealConfig, ProviderDeal};
use crate::fsm::{self, ProviderEvent, ProviderState, ProviderTable};
use crate::lanes::Lanes;
use crate::sessions::Session;

/// The keyspace holding provider deals.
pub const DEALS_KEYSPACE: &str = "provider-deals-v2";
/// The keyspace holding the ask.
pub const META_KEYSPACE: &str = "provider-meta";
/// Every keyspace the provider needs in its database.
pub const KEYSPACES: [&str; 2] = [DEALS_KEYSPACE, META_KEYSPACE];

/// A provider deal's key: the client's peer id bytes and the client's deal id.
pub type DealKey = (Vec<u8>, u64);

/// The journal of provider deals.
pub type Deals = Journal<ProviderTable, DealKey>;

/// What subscribers of [`Provider::subscribe_to_events`] receive.
pub type ProviderSubscription = Subscription<DealKey, ProviderState, ProviderEvent>;

/// A custom deal decider: `Ok(())` accepts, `Err(reason)` rejects with that reason.
pub type Decider = Arc<dyn Fn(&ProviderState) -> Result<(), String> + Send + Sync>;

/// Told of every query answered by a started provider: the answer and how long finding
/// it took (for metrics; see [`Provider::set_query_observer`]).
pub type QueryObserver = Arc<dyn Fn(&rm_types::QueryResponse, Duration) + Send + Sync>;

/// What the deals pruned from the journal added up to ([`Provider::pruned_totals`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProviderTotals {
    /// Deals that completed.
    pub completed: u64,
    /// Deals cancelled by either side.
    pub cancelled: u64,
    /// Deals that failed, were rejected or found nothing.
    pub failed: u64,
    /// Bytes of block data sent.
    pub bytes_sent: u64,
    /// Everything received in vouchers.
    pub funds_received: TokenAmount,
}

/// Most deals pruned in one pass (a pass runs hourly; more wait for the next).
const PRUNE_LIMIT: usize = 100_000;

/// Settings of a [`Provider`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The deal journal's settings (durability).
    pub fsm: rm_fsm::Config,
    /// Response sizes, payment and resume deadlines, the rate limit of each deal.
    pub deal: DealConfig,
    /// How many DAG sizes the query answerer keeps. Default 1024.
    pub size_cache: usize,
    /// Capacity of the network event channel. Default 64.
    pub event_queue: usize,
    /// Finished deals are deleted this long after they ended, their numbers kept in
    /// [`Provider::pruned_totals`]; `None` keeps them forever. Pruned hourly while the
    /// provider runs. Default 30 days.
    pub deal_retention: Option<Duration>,
    /// The credit extended across paid deals, per client peer, address and channel.
    pub credit: CreditLimits,
    /// Most block bytes read for all deals together and not yet written to their
    /// streams. A deal reserves room for a response before it reads the blocks and gives
    /// it back once the response is written, so a thousand deals whose clients read
    /// slowly hold this much block data, not a thousand responses. Default 32 MiB.
    pub max_bytes_in_flight: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fsm: rm_fsm::Config::default(),
            deal: DealConfig::default(),
            size_cache: 1024,
            event_queue: 64,
            deal_retention: Some(Duration::from_secs(30 * 24 * 3600)),
            credit: CreditLimits::default(),
            max_bytes_in_flight: 32 << 20,
        }
    }
}

/// Units of [`Config::max_bytes_in_flight`] the semaphore counts (KiB: a `u32` of permits
/// covers any budget).
pub(crate) const IN_FLIGHT_UNIT: usize = 1024;

const ASK_KEY: &[u8] = b"ask";

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The traversal selector of a deal's params.
pub(crate) fn dag_selector(params: &Params) -> Result<DagSelector, String> {
    let bytes = codec::to_vec(&params.selector_or_all()).map_err(|e| e.to_string())?;
    DagSelector::from_dag_cbor(&bytes).map_err(|e| format!("invalid selector: {e}"))
}

pub(crate) struct Inner<N> {
    pub(crate) network: Network,
    pub(crate) node: N,
    pub(crate) blockstore: Arc<dyn Blockstore>,
    /// Pieces deals read their blocks from; `None` serves the blockstore alone.
    pub(crate) unsealer: Option<Arc<Unsealer>>,
    /// Where each running deal reads its blocks (its piece, open while the deal runs).
    pub(crate) sources: Mutex<HashMap<DealKey, Arc<dyn Blockstore>>>,
    pub(crate) deals: Deals,
    meta: Keyspace,
    ask: RwLock<Ask>,
    decider: RwLock<Option<Decider>>,
    query_observer: RwLock<Option<QueryObserver>>,
    pub(crate) config: Config,
    /// The running deals: where to hand a stream that resumes one.
    pub(crate) sessions: Mutex<HashMap<DealKey, Session>>,
    pub(crate) sizes: Mutex<HashMap<Cid, u64>>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    pruner: Mutex<Option<JoinHandle<()>>>,
    /// Credit extended across deals.
    pub(crate) credit: Mutex<CreditBook>,
    /// Which deal each (channel, lane) pays: a lane pays one deal only.
    pub(crate) lanes: Lanes,
    /// Room for block bytes read and not yet written, in [`IN_FLIGHT_UNIT`]s
    /// ([`Config::max_bytes_in_flight`]).
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
}

impl<N> Inner<N> {
    pub(crate) fn current_ask(&self) -> Ask {
        self.ask
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn decide(&self, deal: &ProviderState) -> Result<(), String> {
        let decider = self
            .decider
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match decider {
            Some(decide) => decide(deal),
            None => Ok(()),
        }
    }
}

/// A retrieval provider: answers queries from its piece store and blockstore, decides on
/// deals, unseals pieces, streams blocks and collects vouchers.
///
/// Cheap to clone. [`Provider::start`] makes it the network's receiver of queries and
/// deal streams.
pub struct Provider<N> {
    pub(crate) inner: Arc<Inner<N>>,
}

impl<N> Clone for Provider<N> {
    fn clone(&self) -> Self {
        Provider {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<N> std::fmt::Debug for Provider<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("peer", &self.inner.network.local_peer_id())
            .finish_non_exhaustive()
    }
}

impl<N: RetrievalProviderNode> Provider<N> {
    /// Opens the provider on `db` (which must have [`KEYSPACES`]), serving blocks from
    /// `blockstore` alone (no pieces) and saving vouchers through `node`. Deals left
    /// unfinished by an earlier run wait [`DealConfig::resume_window`] for their clients.
    pub async fn new(
        network: Network,
        node: N,
        blockstore: Arc<dyn Blockstore>,
        db: &Db,
        config: Config,
    ) -> Result<Self, Error> {
        Self::open(network, node, blockstore, None, db, config).await
    }

    /// Like [`Provider::new`], serving pieces: queries are answered from the piece store
    /// of `unsealer`, and a deal reads its blocks from its piece where they lie
    /// ([`Unsealer::open`]: the sector file, or the unsealed cache as the unseal fills
    /// it), checking each against its CID; payloads found only in the blockstore are
    /// served from it as well.
    pub async fn with_pieces(
        network: Network,
        node: N,
        blockstore: Arc<dyn Blockstore>,
        unsealer: Arc<Unsealer>,
        db: &Db,
        config: Config,
    ) -> Result<Self, Error> {
        Self::open(network, node, blockstore, Some(unsealer), db, config).await
    }

    async fn open(
        network: Network,
        node: N,
        blockstore: Arc<dyn Blockstore>,
        unsealer: Option<Arc<Unsealer>>,
        db: &Db,
        config: Config,
    ) -> Result<Self, Error> {
        let store = db
            .keyspace(DEALS_KEYSPACE)
            .map_err(rm_fsm::StoreError::from)?;
        let meta = db
            .keyspace(META_KEYSPACE)
            .map_err(rm_fsm::StoreError::from)?;
        let ask = match meta.get(ASK_KEY).map_err(rm_fsm::StoreError::from)? {
            Some(bytes) => codec::from_slice(&bytes).map_err(|e| Error::Corrupt(e.to_string()))?,
            None => Ask::default(),
        };
        let deals = Journal::open(fsm::table().clone(), store, config.fsm.clone());
        let credit = CreditBook::new(config.credit.clone());
        let in_flight = Arc::new(tokio::sync::Semaphore::new(
            (config.max_bytes_in_flight / IN_FLIGHT_UNIT).max(1),
        ));
        let provider = Provider {
            inner: Arc::new(Inner {
                network,
                node,
                blockstore,
                unsealer,
                sources: Mutex::new(HashMap::new()),
                deals,
                lanes: Lanes::new(meta.clone()),
                meta,
                ask: RwLock::new(ask),
                decider: RwLock::new(None),
                query_observer: RwLock::new(None),
                config,
                sessions: Mutex::new(HashMap::new()),
                sizes: Mutex::new(HashMap::new()),
                dispatcher: Mutex::new(None),
                pruner: Mutex::new(None),
                credit: Mutex::new(credit),
                in_flight,
            }),
        };
        let ask = provider.ask();
        for (key, snapshot) in provider.inner.deals.unfinished()? {
            tracing::info!(deal = key.1, status = %snapshot.state.status, "provider deal waits for its client");
            let deal = ProviderDeal::restore(
                rm_types::DealId(key.1),
                snapshot,
                ask.clone(),
                Instant::now(),
                provider.inner.config.deal.clone(),
            );
            provider.spawn(key, deal, None);
        }
        Ok(provider)
    }

    /// Registers the provider as the network's receiver of queries and deal streams.
    pub fn start(&self) {
        let (tx, mut rx) = mpsc::channel(self.inner.config.event_queue.max(1));
        self.inner.network.set_delegate(tx);
        let this = self.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                match event {
                    rm_network::Event::Query(request) => {
                        let this = this.clone();
                        tokio::spawn(async move {
                            let started = Instant::now();
                            let answer = this.inner.answer(&request.query).await;
                            let observer = this
                                .inner
                                .query_observer
                                .read()
                                .unwrap_or_else(PoisonError::into_inner)
                                .clone();
                            if let Some(observe) = observer {
                                observe(&answer, started.elapsed());
                            }
                            if let Err(e) = request.respond(answer) {
                                tracing::debug!(error = %e, "query answer not delivered");
                            }
                        });
                    }
                    rm_network::Event::Deal(stream) => {
                        let this = this.clone();
                        tokio::spawn(async move { this.handle_stream(stream).await });
                    }
                    _ => {}
                }
            }
        });
        if let Some(old) = lock(&self.inner.dispatcher).replace(task) {
            old.abort();
        }
        if let Some(retention) = self.inner.config.deal_retention {
            let pruner = spawn_pruning(self.inner.deals.clone(), retention);
            if let Some(old) = lock(&self.inner.pruner).replace(pruner) {
                old.abort();
            }
        }
    }

    /// Stops the provider for good: no more queries or deals, every deal's driver is
    /// stopped. Deals keep their state and resume in a provider opened again on the same
    /// database.
    pub async fn stop(&self) {
        self.inner.network.clear_delegate();
        if let Some(task) = lock(&self.inner.dispatcher).take() {
            task.abort();
        }
        if let Some(task) = lock(&self.inner.pruner).take() {
            task.abort();
        }
        let sessions: Vec<Session> = lock(&self.inner.sessions).drain().map(|(_, s)| s).collect();
        for session in sessions {
            session.task.abort();
        }
        self.inner.deals.close().await;
    }

    /// The current ask.
    pub fn ask(&self) -> Ask {
        self.inner.current_ask()
    }

    /// Sets and persists the ask (price per byte, intervals, unseal price). Deals not
    /// decided yet are judged against the new one.
    pub fn set_ask(&self, ask: Ask) -> Result<(), Error> {
        if ask.price_per_byte.is_negative() || ask.unseal_price.is_negative() {
            return Err(Error::InvalidAsk("prices may not be negative".into()));
        }
        if ask.price_per_byte.is_positive() && ask.payment_interval == 0 {
            return Err(Error::InvalidAsk(
                "a paid ask needs a payment interval".into(),
            ));
        }
        let bytes = codec::to_vec(&ask).map_err(|e| Error::Corrupt(e.to_string()))?;
        let mut batch = rm_store::WriteBatch::new();
        batch.put(&self.inner.meta, ASK_KEY, &bytes);
        self.inner
            .meta
            .db()
            .write(batch, rm_store::Durability::Machine)
            .map_err(rm_fsm::StoreError::from)?;
        *self
            .inner
            .ask
            .write()
            .unwrap_or_else(PoisonError::into_inner) = ask;
        Ok(())
    }

    /// Installs a custom deal decider, run after the ask checks.
    pub fn set_decider(&self, decider: Decider) {
        *self
            .inner
            .decider
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(decider);
    }

    /// Installs a function told of every query the started provider answers, with the
    /// time the answer took to find (the node's metrics use it).
    pub fn set_query_observer(&self, observer: QueryObserver) {
        *self
            .inner
            .query_observer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(observer);
    }

    /// The deals' journal (snapshots with sequence numbers, listing).
    pub fn deals(&self) -> &Deals {
        &self.inner.deals
    }

    /// Every event applied to any provider deal, in order per deal.
    pub fn subscribe_to_events(&self) -> ProviderSubscription {
        self.inner.deals.subscribe()
    }

    /// Every deal, finished or not.
    pub fn list_deals(&self) -> Result<Vec<(DealKey, ProviderState)>, Error> {
        Ok(self.inner.deals.list(|_, _| true)?)
    }

    /// Deletes the deals that ended before `ended_before`, adding their numbers to
    /// [`Provider::pruned_totals`]; returns how many. Running deals are never touched.
    pub async fn prune_deals(&self, ended_before: SystemTime) -> Result<usize, Error> {
        prune(&self.inner.deals, ended_before).await
    }

    /// The numbers of every deal pruned so far.
    pub fn pruned_totals(&self) -> Result<ProviderTotals, Error> {
        Ok(self.inner.deals.totals()?)
    }

    /// One deal by client peer and deal id.
    pub fn deal(&self, key: &DealKey) -> Result<Option<ProviderState>, Error> {
        Ok(self.inner.deals.get(key)?)
    }

    /// The answer to a query: from the piece store (as go-fil-markets: `Size` is the
    /// unpadded size of the first piece holding the payload), else from the blockstore
    /// (`Size` is the DAG's block bytes).
    pub async fn answer(&self, query: &rm_types::Query) -> rm_types::QueryResponse {
        self.inner.answer(query).await
    }
}

async fn prune(deals: &Deals, ended_before: SystemTime) -> Result<usize, Error> {
    let fold = |t: &mut ProviderTotals, _: &DealKey, deal: &ProviderState| {
        match deal.outcome() {
            Some(Outcome::Completed) => t.completed += 1,
            Some(Outcome::Cancelled) => t.cancelled += 1,
            Some(Outcome::Failed) | None => t.failed += 1,
        }
        t.bytes_sent += deal.bytes_sent;
        t.funds_received += &deal.funds_received;
    };
    Ok(deals.prune(ended_before, PRUNE_LIMIT, fold).await?)
}

/// Prunes `deals` now and then every hour, while the journal is open.
pub(crate) fn spawn_pruning(deals: Deals, retention: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let Some(before) = SystemTime::now().checked_sub(retention) else {
                continue;
            };
            match prune(&deals, before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deals = n, "pruned finished provider deals"),
                Err(Error::Fsm(rm_fsm::Error::Closed)) => return,
                Err(e) => tracing::warn!(error = %e, "pruning provider deals failed"),
            }
        }
    })
}
