//! The client handle: starts deals, resumes unfinished ones, and passes the user's
//! requests (cancel, add funds) to each deal's driver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rm_blockio::{Blockstore, Selector as DagSelector};
use rm_fsm::{Counter, Journal, Subscription};
use rm_network::Network;
use rm_network::libp2p::{Multiaddr, PeerId};
use rm_store::Db;
use rm_types::{
    Address, ChannelSetup, Cid, DealId, DealProposal, Params, PeerResolver, Query, QueryParams,
    QueryResponse, RetrievalClientNode, RetrievalPeer, TokenAmount, codec,
};
use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::deal::{ClientDeal, DealConfig};
use crate::driver::{Command, Driver};
use crate::fsm::{self, ClientEvent, ClientState, ClientStatus, ClientTable};

/// The keyspace holding client deals.
pub const DEALS_KEYSPACE: &str = "client-deals-v2";
/// The keyspace holding the deal-id counter.
pub const META_KEYSPACE: &str = "client-meta";
/// Every keyspace the client needs in its database (name them when opening it).
pub const KEYSPACES: [&str; 2] = [DEALS_KEYSPACE, META_KEYSPACE];

/// The journal of client deals, keyed by deal id.
pub type Deals = Journal<ClientTable, u64>;

/// What subscribers of [`Client::subscribe_to_events`] receive.
pub type ClientSubscription = Subscription<u64, ClientState, ClientEvent>;

/// What the deals pruned from the journal added up to ([`Client::pruned_totals`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ClientTotals {
    /// Deals that completed.
    pub completed: u64,
    /// Deals cancelled by either side.
    pub cancelled: u64,
    /// Deals that failed, were rejected or found nothing.
    pub failed: u64,
    /// Bytes of verified block data received.
    pub bytes_received: u64,
    /// Everything paid in vouchers.
    pub funds_spent: TokenAmount,
}

/// Most deals pruned in one pass.
const PRUNE_LIMIT: usize = 100_000;

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The deal journal's settings (durability).
    pub fsm: rm_fsm::Config,
    /// Reconnects, read and progress deadlines of each deal.
    pub deal: DealConfig,
    /// Longest wait for one node call (chain head, channel creation or top-up, lane,
    /// voucher); a call that takes longer fails like a node error. Default 10 minutes (a
    /// channel on a real chain takes a few epochs).
    pub node_timeout: Duration,
    /// Commands queued for one deal (cancel, add funds). Default 8.
    pub command_queue: usize,
    /// Finished deals are deleted this long after they ended, their numbers kept in
    /// [`Client::pruned_totals`]; `None` keeps them forever. Pruned when the client opens
    /// and hourly while it runs. Default 30 days.
    pub deal_retention: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fsm: rm_fsm::Config::default(),
            deal: DealConfig::default(),
            node_timeout: Duration::from_secs(600),
            command_queue: 8,
            deal_retention: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// The most a retrieval may cost: [`Client::retrieve`] refuses terms over a cap before
/// any payment channel is funded, and the deal never pays beyond its total funds.
///
/// The defaults are deliberately small: 1,000,000 attoFIL per byte (about 0.001 FIL per
/// GiB), an unseal price of 0.001 FIL and 0.01 FIL in all. A retrieval that should cost more
/// says so.
///
/// ```
/// use rm_client::Caps;
/// use rm_types::TokenAmount;
///
/// let caps = Caps::default().with_max_total(TokenAmount::from_atto(5_000_000u64));
/// assert_eq!(caps.max_total, TokenAmount::from_atto(5_000_000u64));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Caps {
    /// The highest price per byte accepted.
    pub max_price_per_byte: TokenAmount,
    /// The highest unseal price accepted.
    pub max_unseal_price: TokenAmount,
    /// The most put into the deal in all (its total funds).
    pub max_total: TokenAmount,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            max_price_per_byte: TokenAmount::from_atto(1_000_000u64),
            max_unseal_price: TokenAmount::from_atto(1_000_000_000_000_000u64),
            max_total: TokenAmount::from_atto(10_000_000_000_000_000u64),
        }
    }
}

impl Caps {
    /// These caps with another price-per-byte cap.
    #[must_use]
    pub fn with_max_price_per_byte(mut self, cap: TokenAmount) -> Self {
        self.max_price_per_byte = cap;
        self
    }

    /// These caps with another unseal-price cap.
    #[must_use]
    pub fn with_max_unseal_price(mut self, cap: TokenAmount) -> Self {
        self.max_unseal_price = cap;
        self
    }

    /// These caps with another cap on the total.
    #[must_use]
    pub fn with_max_total(mut self, cap: TokenAmount) -> Self {
        self.max_total = cap;
        self
    }

    /// Whether `params` and `total_funds` are within the caps; the first cap exceeded
    /// otherwise.
    pub fn check(&self, params: &Params, total_funds: &TokenAmount) -> Result<(), Error> {
        let over = |what: &'static str, quoted: &TokenAmount, cap: &TokenAmount| {
            Err(Error::OverCap {
                what,
                quoted: quoted.clone(),
                cap: cap.clone(),
            })
        };
        if params.price_per_byte > self.max_price_per_byte {
            return over(
                "price per byte",
                &params.price_per_byte,
                &self.max_price_per_byte,
            );
        }
        if params.unseal_price > self.max_unseal_price {
            return over("unseal price", &params.unseal_price, &self.max_unseal_price);
        }
        if total_funds > &self.max_total {
            return over("total", total_funds, &self.max_total);
        }
        Ok(())
    }
}

/// What [`Client::retrieve`] needs to start a deal.
#[derive(Debug, Clone)]
pub struct Retrieval {
    /// The root of the wanted DAG.
    pub payload_cid: Cid,
    /// The terms (price, intervals, unseal price, selector, piece).
    pub params: Params,
    /// The most the client will put in the payment channel for this deal.
    pub total_funds: TokenAmount,
    /// The provider.
    pub provider: PeerId,
    /// Where to reach it (may be empty when the network already knows).
    pub provider_addrs: Vec<Multiaddr>,
    /// The provider's payment address (from its query response).
    pub miner_wallet: Address,
    /// The most the terms may ask ([`Caps::default`] unless set).
    pub caps: Caps,
}

impl Retrieval {
    /// A retrieval on the terms of a provider's query response: its minimum price and
    /// largest intervals, funds for the whole payload, the whole DAG.
    pub fn from_query(
        payload_cid: Cid,
        provider: PeerId,
        provider_addrs: Vec<Multiaddr>,
        response: &QueryResponse,
    ) -> Self {
        let mut params = Params::new(
            response.min_price_per_byte.clone(),
            response.max_payment_interval,
            response.max_payment_interval_increase,
        );
        params.unseal_price = response.unseal_price.clone();
        Retrieval {
            payload_cid,
            total_funds: response.piece_retrieval_price(),
            params,
            provider,
            provider_addrs,
            miner_wallet: response.payment_address.clone(),
            caps: Caps::default(),
        }
    }
}

pub(crate) struct Inner<N> {
    pub(crate) network: Network,
    pub(crate) node: N,
    pub(crate) blockstore: Arc<dyn Blockstore>,
    pub(crate) deals: Deals,
    counter: Counter,
    wallet: Address,
    pub(crate) config: Config,
    /// The command channel of each running deal's driver, and its task.
    runners: Mutex<HashMap<u64, (mpsc::Sender<Command>, tokio::task::AbortHandle)>>,
    /// The newest state of each running deal whose last events were published and not
    /// written yet (verified blocks are written with the next payment or the end): what
    /// [`Client::retrieval_status`] shows. Removed at the next write and when the driver
    /// stops.
    unwritten: Mutex<HashMap<u64, ClientState>>,
    pruner: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<N> Inner<N> {
    fn runners(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, (mpsc::Sender<Command>, tokio::task::AbortHandle)>>
    {
        self.runners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.runners().remove(&id);
        self.set_unwritten(id, None);
    }

    /// Records (or, with `None`, forgets) the newest state of deal `id` not written yet.
    pub(crate) fn set_unwritten(&self, id: u64, state: Option<&ClientState>) {
        let mut map = self
            .unwritten
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match state {
            Some(state) => {
                map.insert(id, state.clone());
            }
            None => {
                map.remove(&id);
            }
        }
    }

    fn unwritten(&self, id: u64) -> Option<ClientState> {
        let map = self
            .unwritten
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&id).cloned()
    }
}

/// A retrieval client: queries providers, makes deals and drives them to the end.
///
/// Cheap to clone. Every deal runs in its own task and is persisted at every step;
/// [`Client::new`] resumes the deals a previous process left unfinished.
pub struct Client<N> {
    inner: Arc<Inner<N>>,
}

impl<N> Clone for Client<N> {
    fn clone(&self) -> Self {
        Client {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<N> std::fmt::Debug for Client<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.inner.network.local_peer_id())
            .field("wallet", &self.inner.wallet)
            .finish_non_exhaustive()
    }
}

/// The traversal selector of a deal's params, for the verifier.
pub(crate) fn dag_selector(params: &Params) -> Result<DagSelector, Error> {
    let bytes = codec::to_vec(&params.selector_or_all())
        .map_err(|e| Error::InvalidRequest(format!("selector does not encode: {e}")))?;
    DagSelector::from_dag_cbor(&bytes)
        .map_err(|e| Error::InvalidRequest(format!("invalid selector: {e}")))
}

impl<N: RetrievalClientNode> Client<N> {
    /// Opens the client on `db` (which must have [`KEYSPACES`]), paying from `wallet`
    /// through `node` and storing verified blocks in `blockstore`. Every unfinished deal of
    /// an earlier run is resumed. Must be called inside a tokio runtime.
    pub async fn new(
        network: Network,
        node: N,
        blockstore: Arc<dyn Blockstore>,
        db: &Db,
        wallet: Address,
        config: Config,
    ) -> Result<Self, Error> {
        let store = db
            .keyspace(DEALS_KEYSPACE)
            .map_err(rm_fsm::StoreError::from)?;
        let meta = db
            .keyspace(META_KEYSPACE)
            .map_err(rm_fsm::StoreError::from)?;
        let deals = Journal::open(fsm::table().clone(), store, config.fsm.clone());
        let client = Client {
            inner: Arc::new(Inner {
                network,
                node,
                blockstore,
                deals,
                counter: Counter::new(meta, "deal-id"),
                wallet,
                config,
                runners: Mutex::new(HashMap::new()),
                unwritten: Mutex::new(HashMap::new()),
                pruner: Mutex::new(None),
            }),
        };
        if let Some(retention) = client.inner.config.deal_retention {
            let deals = client.inner.deals.clone();
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    tick.tick().await;
                    let Some(before) = std::time::SystemTime::now().checked_sub(retention) else {
                        continue;
                    };
                    match prune(&deals, before).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(deals = n, "pruned finished client deals"),
                        Err(Error::Fsm(rm_fsm::Error::Closed)) => return,
                        Err(e) => tracing::warn!(error = %e, "pruning client deals failed"),
                    }
                }
            });
            *client
                .inner
                .pruner
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(task);
        }
        for (id, snapshot) in client.inner.deals.unfinished()? {
            tracing::info!(deal = id, status = %snapshot.state.status, "resuming client deal");
            let deal = ClientDeal::restore(
                DealId(id),
                snapshot,
                Instant::now(),
                client.inner.config.deal.clone(),
            );
            client.spawn(deal);
        }
        Ok(client)
    }

    /// The client's libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.network.local_peer_id()
    }

    /// The wallet address the client pays from.
    pub fn wallet(&self) -> &Address {
        &self.inner.wallet
    }

    /// Providers that may hold `payload_cid`, from `resolver`: e.g. rm-discovery's
    /// `Resolver` (the node's local registry first, then DHT provider records; it leaves the
    /// providers' addresses in the network's address book, so [`Client::query`] and
    /// [`Client::retrieve`] can reach them by peer id), or its `Registry` alone.
    pub async fn find_providers(
        &self,
        resolver: &impl PeerResolver,
        payload_cid: &Cid,
    ) -> Result<Vec<RetrievalPeer>, Error> {
        Ok(resolver.get_peers(payload_cid).await?)
    }

    /// Asks `provider` about `payload_cid` (terms and size).
    pub async fn query(
        &self,
        provider: PeerId,
        addrs: Vec<Multiaddr>,
        payload_cid: Cid,
        params: QueryParams,
    ) -> Result<QueryResponse, Error> {
        let network = &self.inner.network;
        if !addrs.is_empty() {
            network.dial(provider, addrs).await?;
        }
        let query = Query {
            payload_cid,
            params,
        };
        Ok(network.query(provider, &query).await?)
    }

    /// Starts a deal and returns its id at once; follow it with
    /// [`Client::subscribe_to_events`], [`Client::wait`] or [`Client::retrieval_status`].
    ///
    /// Terms over the retrieval's [`Caps`] are refused here ([`Error::OverCap`]), before
    /// anything is stored, dialled or funded.
    pub async fn retrieve(&self, retrieval: Retrieval) -> Result<DealId, Error> {
        retrieval.params.validate()?;
        retrieval
            .caps
            .check(&retrieval.params, &retrieval.total_funds)?;
        dag_selector(&retrieval.params)?;
        if retrieval.total_funds.is_negative() {
            return Err(Error::InvalidRequest(
                "total funds may not be negative".into(),
            ));
        }
        if !retrieval.params.is_free() && !retrieval.total_funds.is_positive() {
            return Err(Error::InvalidRequest(
                "a paid retrieval needs total funds for its payment channel".into(),
            ));
        }
        let id = self.inner.counter.next_async().await?;
        let state = ClientState::new(
            DealProposal::new(retrieval.payload_cid, DealId(id), retrieval.params),
            rm_network::to_rm_peer(&retrieval.provider),
            retrieval
                .provider_addrs
                .iter()
                .map(ToString::to_string)
                .collect(),
            self.inner.wallet.clone(),
            retrieval.miner_wallet,
            retrieval.total_funds,
        );
        self.inner.deals.begin(id, state.clone()).await?;
        let deal = ClientDeal::new(
            DealId(id),
            state,
            Instant::now(),
            self.inner.config.deal.clone(),
        );
        self.spawn(deal);
        Ok(DealId(id))
    }

    /// The deals' journal (snapshots with sequence numbers, listing).
    pub fn deals(&self) -> &Deals {
        &self.inner.deals
    }

    /// Every event applied to any client deal, in order per deal.
    pub fn subscribe_to_events(&self) -> ClientSubscription {
        self.inner.deals.subscribe()
    }

    /// Adds `amount` to the deal's payment channel and budget, and lets a deal waiting in
    /// `InsufficientFunds` continue.
    pub async fn add_more_funds(&self, id: DealId, amount: TokenAmount) -> Result<(), Error> {
        if !amount.is_positive() {
            return Err(Error::InvalidRequest("added funds must be positive".into()));
        }
        let deal = self.deal(id)?;
        if deal.status != ClientStatus::InsufficientFunds {
            return Err(Error::WrongStatus {
                id,
                status: deal.status,
                wanted: "InsufficientFunds",
            });
        }
        let node = &self.inner.node;
        let head = node.chain_head().await?;
        // The node adds what is asked for to the pair's channel (Lotus `GetPaych`).
        let setup: ChannelSetup = node
            .get_or_create_payment_channel(&deal.client_wallet, &deal.miner_wallet, &amount, &head)
            .await?;
        let (reply, answer) = oneshot::channel();
        self.command(
            id,
            Command::AddFunds {
                amount,
                setup,
                reply,
            },
        )
        .await?;
        answer
            .await
            .map_err(|_| Error::Closed)?
            .map_err(|e| Error::InvalidRequest(e.to_string()))
    }

    /// Cancels a deal: the provider is told, both sides end as `Cancelled`.
    pub async fn cancel_deal(&self, id: DealId) -> Result<(), Error> {
        self.command(id, Command::Cancel(String::new())).await
    }

    async fn command(&self, id: DealId, command: Command) -> Result<(), Error> {
        let sender = self.inner.runners().get(&id.0).map(|(tx, _)| tx.clone());
        match sender {
            Some(tx) => tx.send(command).await.map_err(|_| Error::Closed),
            None => {
                let deal = self.deal(id)?;
                Err(Error::WrongStatus {
                    id,
                    status: deal.status,
                    wanted: "a deal in progress",
                })
            }
        }
    }

    /// The deal's current state, if it exists: as the journal has it, or newer while the
    /// deal runs (blocks verified and stored since its last write).
    pub fn retrieval_status(&self, id: DealId) -> Result<Option<ClientState>, Error> {
        if let Some(state) = self.inner.unwritten(id.0) {
            return Ok(Some(state));
        }
        Ok(self.inner.deals.get(&id.0)?)
    }

    /// Every deal, finished or not, by id.
    pub fn list_deals(&self) -> Result<Vec<(DealId, ClientState)>, Error> {
        Ok(self
            .inner
            .deals
            .list(|_, _| true)?
            .into_iter()
            .map(|(id, deal)| (DealId(id), deal))
            .collect())
    }

    /// Deletes the deals that ended before `ended_before`, adding their numbers to
    /// [`Client::pruned_totals`]; returns how many. Running deals are never touched.
    pub async fn prune_deals(&self, ended_before: std::time::SystemTime) -> Result<usize, Error> {
        prune(&self.inner.deals, ended_before).await
    }

    /// The numbers of every deal pruned so far.
    pub fn pruned_totals(&self) -> Result<ClientTotals, Error> {
        Ok(self.inner.deals.totals()?)
    }

    /// Waits until the deal reaches a final status and returns it.
    pub async fn wait(&self, id: DealId) -> Result<ClientState, Error> {
        let mut events = self.subscribe_to_events();
        loop {
            let deal = self.deal(id)?;
            if deal.status.is_final() {
                return Ok(deal);
            }
            if !self.inner.runners().contains_key(&id.0) {
                // Its driver stopped: it finished just now, or the journal failed, or the
                // client is closing.
                let deal = self.deal(id)?;
                if deal.status.is_final() {
                    return Ok(deal);
                }
                return Err(Error::Closed);
            }
            // Re-read the state at least once a second whatever the subscription says.
            match tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
                Err(_) | Ok(Ok(_)) | Ok(Err(rm_fsm::RecvError::Lagged(_))) => {}
                Ok(Err(_)) => return Err(Error::Closed),
            }
        }
    }

    /// Stops every deal's driver (deals stay stored and resume on the next
    /// [`Client::new`]) and closes the journal.
    pub async fn close(&self) {
        let pruner = self
            .inner
            .pruner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = pruner {
            task.abort();
        }
        let runners: Vec<_> = self.inner.runners().drain().collect();
        for (_, (_, task)) in runners {
            task.abort();
        }
        self.inner.deals.close().await;
    }

    fn deal(&self, id: DealId) -> Result<ClientState, Error> {
        self.inner.deals.get(&id.0)?.ok_or(Error::UnknownDeal(id))
    }

    fn spawn(&self, deal: ClientDeal) {
        let id = deal.id().0;
        let (tx, rx) = mpsc::channel(self.inner.config.command_queue.max(1));
        // The lock is held until the task is registered, so its own removal comes later.
        let mut runners = self.inner.runners();
        let driver = Driver {
            inner: Arc::clone(&self.inner),
            deal,
            commands: rx,
        };
        let task = tokio::spawn(driver.run());
        runners.insert(id, (tx, task.abort_handle()));
    }
}

async fn prune(deals: &Deals, ended_before: std::time::SystemTime) -> Result<usize, Error> {
    let fold = |t: &mut ClientTotals, _: &u64, deal: &ClientState| {
        match deal.outcome() {
            Some(rm_types::Outcome::Completed) => t.completed += 1,
            Some(rm_types::Outcome::Cancelled) => t.cancelled += 1,
            Some(rm_types::Outcome::Failed) | None => t.failed += 1,
        }
        t.bytes_received += deal.bytes_received;
        t.funds_spent += &deal.funds_spent;
    };
    Ok(deals.prune(ended_before, PRUNE_LIMIT, fold).await?)
}
