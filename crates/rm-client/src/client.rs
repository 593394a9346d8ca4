//! The client handle and the per-deal runner that drives the deal stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rm_blockio::{Blockstore, Selector as DagSelector, SelectorVerifier};
use rm_fsm::{Counter, Group, Subscription};
use rm_network::libp2p::{Multiaddr, PeerId};
use rm_network::{DealStream, Network};
use rm_store::Db;
use rm_types::{
    Address, ChannelSetup, Cid, ClientDealState, DealCancel, DealId, DealPayment, DealProposal,
    DealResponse, DealStatus, NodeError, Params, PeerResolver, Query, QueryParams, QueryResponse,
    Resume, RetrievalClientNode, RetrievalPeer, TokenAmount, codec,
};
use tokio::sync::watch;

use crate::Error;
use crate::fsm::{self, ClientDeal, ClientTable, Event};
use crate::logic::{self, Payment};

/// The keyspace holding client deals.
pub const DEALS_KEYSPACE: &str = "client-deals";
/// The keyspace holding the deal-id counter.
pub const META_KEYSPACE: &str = "client-meta";
/// Every keyspace the client needs in its database (name them when opening it).
pub const KEYSPACES: [&str; 2] = [DEALS_KEYSPACE, META_KEYSPACE];

/// The group of client deal machines, keyed by deal id.
pub type Deals = Group<ClientTable, u64>;

/// What subscribers of [`Client::subscribe_to_events`] receive.
pub type ClientSubscription = Subscription<u64, ClientDeal, Event>;

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The deal machines' settings (durability, queue sizes).
    pub fsm: rm_fsm::Config,
    /// How many times in a row a lost deal stream is re-established before the deal fails.
    /// Default 5.
    pub max_reconnects: u32,
    /// Pause before the first reconnect; doubles each time up to `max_backoff`. Default
    /// 100 ms.
    pub reconnect_backoff: Duration,
    /// Longest pause between reconnects. Default 2 s.
    pub max_backoff: Duration,
    /// Longest wait for one node call (chain head, channel creation or top-up, lane,
    /// voucher); a call that takes longer fails the step like a node error. Default 10
    /// minutes (a channel on a real chain takes a few epochs).
    pub node_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fsm: rm_fsm::Config::default(),
            max_reconnects: 5,
            reconnect_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            node_timeout: Duration::from_secs(600),
        }
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
        }
    }
}

struct Inner<N> {
    network: Network,
    node: N,
    blockstore: Arc<dyn Blockstore>,
    deals: Deals,
    counter: Counter,
    wallet: Address,
    config: Config,
    /// One poke channel per running deal (wakes a runner waiting for funds or a cancel)
    /// and its task, aborted by `close`.
    runners: Mutex<HashMap<u64, (watch::Sender<u64>, tokio::task::AbortHandle)>>,
}

/// A retrieval client: queries providers, makes deals and drives them to the end.
///
/// Cheap to clone. Every deal runs in its own task and is persisted in RocksDB at every
/// step; [`Client::new`] resumes the deals a previous process left unfinished.
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
        let deals = Group::open(fsm::table(), (), store, config.fsm.clone()).await?;
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
            }),
        };
        let unfinished = client
            .inner
            .deals
            .list(|_, deal| !deal.status().is_terminal())?;
        for (id, _) in unfinished {
            tracing::info!(deal = id, "resuming client deal");
            client.spawn_runner(id);
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
    pub async fn retrieve(&self, retrieval: Retrieval) -> Result<DealId, Error> {
        retrieval.params.validate()?;
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
        let state = ClientDealState {
            proposal: DealProposal::new(
                retrieval.payload_cid,
                DealId(id),
                retrieval.params.clone(),
            ),
            total_funds: retrieval.total_funds,
            client_wallet: self.inner.wallet.clone(),
            miner_wallet: retrieval.miner_wallet,
            payment_info: None,
            status: DealStatus::New,
            sender: rm_network::to_rm_peer(&retrieval.provider),
            total_received: 0,
            blocks_received: 0,
            message: String::new(),
            bytes_paid_for: 0,
            current_interval: retrieval.params.payment_interval,
            payment_requested: TokenAmount::zero(),
            funds_spent: TokenAmount::zero(),
            unseal_funds_paid: TokenAmount::zero(),
            wait_msg_cid: None,
            voucher_shortfall: TokenAmount::zero(),
            last_payment_requested: false,
            all_blocks_received: false,
        };
        let deal = ClientDeal {
            state,
            provider_addrs: retrieval
                .provider_addrs
                .iter()
                .map(ToString::to_string)
                .collect(),
            last_voucher: None,
            vouchers: Vec::new(),
        };
        self.inner.deals.begin(id, deal).await?;
        self.spawn_runner(id);
        Ok(DealId(id))
    }

    /// The deal machines themselves (snapshots with sequence numbers, listing).
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
        if deal.status() != DealStatus::InsufficientFunds {
            return Err(Error::WrongStatus {
                id,
                status: deal.status(),
                wanted: "InsufficientFunds",
            });
        }
        let channel = deal
            .state
            .payment_info
            .as_ref()
            .map(|p| p.pay_ch.clone())
            .ok_or(Error::InvalidRequest(
                "the deal has no payment channel".into(),
            ))?;
        let node = &self.inner.node;
        let head = node.chain_head().await?;
        // The node adds what is asked for to the pair's channel (Lotus `GetPaych`).
        let setup = node
            .get_or_create_payment_channel(
                &deal.state.client_wallet,
                &deal.state.miner_wallet,
                &amount,
                &head,
            )
            .await?;
        if let ChannelSetup::AddingFunds {
            channel: topped, ..
        }
        | ChannelSetup::Ready { channel: topped } = &setup
            && topped != &channel
        {
            return Err(Error::InvalidRequest(format!(
                "the node funded channel {topped}, not the deal's channel {channel}"
            )));
        }
        let event = match setup {
            ChannelSetup::AddingFunds { channel, wait } => Event::PaymentChannelAddingFunds {
                channel,
                wait,
                added: amount,
            },
            ChannelSetup::Ready { .. } => Event::RecheckFunds(amount),
            ChannelSetup::Creating { .. } => {
                return Err(Error::InvalidRequest(
                    "the node created a new channel instead of adding funds".into(),
                ));
            }
        };
        self.inner.deals.send(&id.0, event).await?;
        self.poke(id.0);
        Ok(())
    }

    /// Cancels a deal: the provider is told, both sides end as `Cancelled`.
    pub async fn cancel_deal(&self, id: DealId) -> Result<(), Error> {
        self.inner.deals.send(&id.0, Event::Cancel).await?;
        self.poke(id.0);
        Ok(())
    }

    /// The deal's current state, if it exists.
    pub fn retrieval_status(&self, id: DealId) -> Result<Option<ClientDeal>, Error> {
        Ok(self.inner.deals.get(&id.0)?)
    }

    /// Every deal, finished or not, by id.
    pub fn list_deals(&self) -> Result<Vec<(DealId, ClientDeal)>, Error> {
        Ok(self
            .inner
            .deals
            .list(|_, _| true)?
            .into_iter()
            .map(|(id, deal)| (DealId(id), deal))
            .collect())
    }

    /// Waits until the deal reaches a final status and returns it.
    pub async fn wait(&self, id: DealId) -> Result<ClientDeal, Error> {
        let mut events = self.subscribe_to_events();
        loop {
            let deal = self.deal(id)?;
            if deal.status().is_terminal() {
                return Ok(deal);
            }
            // Re-read the state at least once a second whatever the subscription says.
            match tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
                Err(_) | Ok(Ok(_)) | Ok(Err(rm_fsm::RecvError::Lagged(_))) => {}
                Ok(Err(_)) => return Err(Error::Closed),
            }
        }
    }

    /// Stops every deal runner and the state machines (deals stay stored and resume on the
    /// next [`Client::new`]).
    pub async fn close(&self) {
        let runners: Vec<_> = lock(&self.inner.runners).drain().collect();
        for (_, (_, task)) in runners {
            task.abort();
        }
        self.inner.deals.close().await;
    }

    fn deal(&self, id: DealId) -> Result<ClientDeal, Error> {
        self.inner.deals.get(&id.0)?.ok_or(Error::UnknownDeal(id))
    }

    fn poke(&self, id: u64) {
        if let Some((tx, _)) = lock(&self.inner.runners).get(&id) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn spawn_runner(&self, id: u64) {
        let (tx, rx) = watch::channel(0u64);
        // The lock is held until the task is registered, so its own removal comes later.
        let mut runners = lock(&self.inner.runners);
        let runner = Runner {
            inner: Arc::clone(&self.inner),
            id,
            stream: None,
            verifier: None,
            resent: false,
            fresh_stream: false,
            failures: 0,
        };
        let task = tokio::spawn(runner.run(rx));
        runners.insert(id, (tx, task.abort_handle()));
    }
}

/// Runs a node call with a time limit.
async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, NodeError>>,
) -> Result<T, NodeError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(NodeError::Backend(Box::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("node call timed out after {limit:?}"),
        )))),
    }
}

/// The traversal selector of a deal's params, for the verifier.
fn dag_selector(params: &Params) -> Result<DagSelector, Error> {
    let bytes = codec::to_vec(&params.selector_or_all())
        .map_err(|e| Error::InvalidRequest(format!("selector does not encode: {e}")))?;
    DagSelector::from_dag_cbor(&bytes)
        .map_err(|e| Error::InvalidRequest(format!("invalid selector: {e}")))
}

/// Why a runner step stopped.
enum Stop {
    /// The stream failed; reconnect and resume.
    Net(String),
    /// The deal must move on with this event.
    Event(Box<Event>),
    /// An event raced with a cancel or failure and was not applied: act on the new status.
    Raced,
    /// The client is closing.
    Shutdown,
}

fn stop(event: Event) -> Stop {
    Stop::Event(Box::new(event))
}

impl From<rm_network::Error> for Stop {
    fn from(e: rm_network::Error) -> Self {
        Stop::Net(e.to_string())
    }
}

type Step = Result<(), Stop>;

/// Whether the machine applied an event.
enum Applied {
    Yes,
    Raced,
    Stop,
}

/// Drives one deal: does what the deal's current status calls for (the entry action),
/// records the outcome as an event, and repeats until the deal is final.
struct Runner<N> {
    inner: Arc<Inner<N>>,
    id: u64,
    stream: Option<DealStream>,
    verifier: Option<SelectorVerifier>,
    /// The last voucher was re-sent on the current stream.
    resent: bool,
    /// The current stream was opened with a resumed proposal and the provider has not
    /// answered yet.
    fresh_stream: bool,
    failures: u32,
}

impl<N: RetrievalClientNode> Runner<N> {
    async fn run(mut self, mut poke: watch::Receiver<u64>) {
        loop {
            let deal = match self.inner.deals.get(&self.id) {
                Ok(Some(deal)) => deal,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(deal = self.id, error = %e, "cannot read client deal");
                    break;
                }
            };
            if deal.status().is_terminal() {
                break;
            }
            tracing::trace!(
                deal = self.id,
                status = deal.status().short_name(),
                "client step"
            );
            match self.step(&deal, &mut poke).await {
                Ok(()) => {}
                Err(Stop::Event(event)) => {
                    if !self.send(*event).await {
                        break;
                    }
                }
                Err(Stop::Raced) => {}
                Err(Stop::Shutdown) => break,
                Err(Stop::Net(reason)) => {
                    self.stream = None;
                    // Rebuilt from the blockstore and the persisted count on reconnect.
                    self.verifier = None;
                    self.failures += 1;
                    tracing::debug!(deal = self.id, %reason, attempt = self.failures, "deal stream lost");
                    if self.failures > self.inner.config.max_reconnects {
                        if !self.send(Event::DataTransferError(reason)).await {
                            break;
                        }
                    } else {
                        let backoff = self
                            .inner
                            .config
                            .reconnect_backoff
                            .saturating_mul(1 << (self.failures - 1).min(16))
                            .min(self.inner.config.max_backoff);
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = poke.changed() => {}
                        }
                    }
                }
            }
        }
        if let Some(stream) = self.stream.take()
            && let Err(e) = stream.close().await
        {
            // The deal is final; a provider already gone changes nothing.
            tracing::debug!(deal = self.id, error = %e, "closing the deal stream");
        }
        lock(&self.inner.runners).remove(&self.id);
    }

    /// Applies `event`; false when the runner must stop (group closed). An event the
    /// machine refuses is a bug or a race with a cancel: the deal then errors.
    async fn send(&mut self, event: Event) -> bool {
        !matches!(self.apply(event).await, Applied::Stop)
    }

    async fn apply(&mut self, event: Event) -> Applied {
        match self.inner.deals.send(&self.id, event).await {
            Ok(_) => Applied::Yes,
            Err(rm_fsm::Error::Invalid(invalid)) => {
                let status = self
                    .inner
                    .deals
                    .get(&self.id)
                    .ok()
                    .flatten()
                    .map(|d| d.status());
                if matches!(status, Some(DealStatus::Cancelling | DealStatus::Failing)) {
                    // Raced with a cancel or a failure: the loop handles that status next.
                    return Applied::Raced;
                }
                tracing::warn!(deal = self.id, %invalid, "client deal refused an event");
                let fallback = Event::DataTransferError(invalid.to_string());
                match self.inner.deals.send(&self.id, fallback).await {
                    Ok(_) => Applied::Raced,
                    Err(_) => Applied::Stop,
                }
            }
            Err(e) => {
                tracing::warn!(deal = self.id, error = %e, "client deal machine stopped");
                Applied::Stop
            }
        }
    }

    /// Applies `event`; an event that was not applied ends the current step, so nothing
    /// that depends on it (writing a voucher) happens.
    async fn emit(&mut self, event: Event) -> Step {
        match self.apply(event).await {
            Applied::Yes => Ok(()),
            Applied::Raced => Err(Stop::Raced),
            Applied::Stop => Err(Stop::Shutdown),
        }
    }

    async fn step(&mut self, deal: &ClientDeal, poke: &mut watch::Receiver<u64>) -> Step {
        use DealStatus as D;
        match deal.status() {
            D::New => {
                self.ensure_stream(deal).await?;
                self.emit(Event::DealProposed).await
            }
            D::WaitForAcceptance => self.await_acceptance(deal).await,
            D::Accepted => self.setup_channel(deal).await,
            D::PaymentChannelCreating
            | D::PaymentChannelAddingInitialFunds
            | D::PaymentChannelAddingFunds => self.wait_channel(deal, poke).await,
            D::PaymentChannelAllocatingLane => self.allocate_lane(deal).await,
            D::Ongoing if deal.state.payment_requested.is_positive() => {
                // A request that arrived while the channel was set up or topped up.
                let owed = deal.state.payment_requested.clone();
                if deal.state.last_payment_requested {
                    self.emit(Event::LastPaymentRequested(owed)).await
                } else {
                    self.emit(Event::PaymentRequested(owed)).await
                }
            }
            D::Ongoing | D::BlocksComplete | D::Finalizing => self.read_response(deal).await,
            D::FundsNeeded | D::FundsNeededLastPayment => self.pay(deal).await,
            D::CheckFunds => self.check_funds(deal).await,
            D::InsufficientFunds => {
                // Woken by add_more_funds (which records the new funds) or cancel_deal; an
                // error means the client is closing.
                poke.changed().await.map_err(|_| Stop::Shutdown)
            }
            D::Cancelling | D::Failing => {
                let reason = if deal.state.message.is_empty() {
                    "client cancelled retrieval".to_owned()
                } else {
                    deal.state.message.clone()
                };
                if let Some(mut stream) = self.stream.take() {
                    let cancel = DealCancel {
                        id: DealId(self.id),
                        reason,
                    };
                    // Best effort: without a stream the provider ends the deal when its
                    // resume window closes.
                    let told = match stream.write_cancel(&cancel).await {
                        Ok(()) => stream.close().await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = told {
                        tracing::debug!(deal = self.id, error = %e, "cancel not delivered");
                    }
                }
                self.emit(Event::CancelComplete).await
            }
            other => {
                self.emit(Event::DataTransferError(format!(
                    "no client action for status {}",
                    other.short_name()
                )))
                .await
            }
        }
    }

    /// Opens the deal stream if there is none: dials the provider and writes the proposal,
    /// with how far the deal got when it is not new.
    async fn ensure_stream(&mut self, deal: &ClientDeal) -> Step {
        if self.stream.is_some() {
            return Ok(());
        }
        let network = &self.inner.network;
        let peer = rm_network::from_rm_peer(&deal.state.sender)
            .map_err(|e| stop(Event::DataTransferError(e.to_string())))?;
        let addrs: Vec<Multiaddr> = deal
            .provider_addrs
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        network.dial(peer, addrs).await?;
        let mut stream = network.open_deal_stream(peer).await?;
        let mut proposal = deal.state.proposal.clone();
        let resumed = deal.status() != DealStatus::New;
        if resumed {
            proposal.resume = Some(Resume {
                blocks: deal.state.blocks_received,
                bytes: deal.state.total_received,
            });
        }
        stream.write_proposal(&proposal).await?;
        self.stream = Some(stream);
        self.resent = false;
        self.fresh_stream = resumed;
        Ok(())
    }

    async fn read(&mut self, deal: &ClientDeal) -> Result<DealResponse, Stop> {
        self.ensure_stream(deal).await?;
        let stream = self.stream.as_mut().ok_or(Stop::Net("no stream".into()))?;
        let response = stream.read_response().await?;
        self.failures = 0;
        self.fresh_stream = false;
        if response.id != DealId(self.id) {
            return Err(stop(Event::UnknownResponseReceived(format!(
                "response for deal {} on the stream of deal {}",
                response.id.0, self.id
            ))));
        }
        Ok(response)
    }

    async fn await_acceptance(&mut self, deal: &ClientDeal) -> Step {
        let response = self.read(deal).await?;
        if !response.blocks.is_empty() {
            return Err(stop(Event::UnknownResponseReceived(
                "blocks before the deal was accepted".into(),
            )));
        }
        let event = match response.status {
            DealStatus::Accepted => Event::DealAccepted,
            DealStatus::FundsNeededUnseal => Event::UnsealPaymentRequested(response.payment_owed),
            DealStatus::Rejected => Event::DealRejected(response.message),
            DealStatus::DealNotFound => Event::DealNotFound(response.message),
            DealStatus::Cancelled => Event::ProviderCancelled,
            DealStatus::Errored | DealStatus::Failing => Event::ProviderErrored(response.message),
            other => Event::UnknownResponseReceived(other.short_name().to_owned()),
        };
        self.emit(event).await
    }

    async fn setup_channel(&mut self, deal: &ClientDeal) -> Step {
        if deal.state.proposal.params.is_free() {
            return self.emit(Event::PaymentChannelSkip).await;
        }
        let node = &self.inner.node;
        let result = bounded(self.inner.config.node_timeout, async {
            let head = node.chain_head().await?;
            node.get_or_create_payment_channel(
                &deal.state.client_wallet,
                &deal.state.miner_wallet,
                &deal.state.total_funds,
                &head,
            )
            .await
        })
        .await;
        let event = match result {
            Ok(ChannelSetup::Creating { wait }) => Event::PaymentChannelCreateInitiated(wait),
            Ok(ChannelSetup::AddingFunds { channel, wait }) => Event::PaymentChannelAddingFunds {
                channel,
                wait,
                added: TokenAmount::zero(),
            },
            Ok(ChannelSetup::Ready { channel }) => Event::PaymentChannelReady(channel),
            Err(e) => Event::PaymentChannelErrored(e.to_string()),
        };
        self.emit(event).await
    }

    async fn wait_channel(&mut self, deal: &ClientDeal, poke: &mut watch::Receiver<u64>) -> Step {
        let limit = self.inner.config.node_timeout;
        let event = match &deal.state.wait_msg_cid {
            None => Event::PaymentChannelErrored("no message to wait for".into()),
            Some(wait) => {
                let ready = bounded(limit, self.inner.node.wait_for_payment_channel_ready(wait));
                tokio::select! {
                    result = ready => match result {
                        Ok(channel) => Event::PaymentChannelReady(channel),
                        Err(e) => Event::PaymentChannelErrored(e.to_string()),
                    },
                    // A cancel while waiting: look at the status again.
                    changed = poke.changed() => {
                        return changed.map_err(|_| Stop::Shutdown);
                    }
                }
            }
        };
        self.emit(event).await
    }

    async fn allocate_lane(&mut self, deal: &ClientDeal) -> Step {
        let event = match &deal.state.payment_info {
            None => Event::AllocateLaneErrored("no payment channel".into()),
            Some(info) => match bounded(
                self.inner.config.node_timeout,
                self.inner.node.allocate_lane(&info.pay_ch),
            )
            .await
            {
                Ok(lane) => Event::LaneAllocated(lane),
                Err(e) => Event::AllocateLaneErrored(e.to_string()),
            },
        };
        self.emit(event).await
    }

    fn verifier(&mut self, deal: &ClientDeal) -> Result<&mut SelectorVerifier, Stop> {
        if self.verifier.is_none() {
            let fail = |e: String| stop(Event::DataTransferError(e));
            let selector =
                dag_selector(&deal.state.proposal.params).map_err(|e| fail(e.to_string()))?;
            let root = deal.state.proposal.payload_cid;
            let verifier = SelectorVerifier::resume(
                root,
                &selector,
                deal.state.blocks_received,
                self.inner.blockstore.as_ref(),
            )
            .map_err(|e| fail(format!("resuming verification: {e}")))?;
            self.verifier = Some(verifier);
        }
        self.verifier
            .as_mut()
            .ok_or(Stop::Net("verifier missing".into()))
    }

    /// Reads one response: verifies and stores its blocks, records them, then acts on its
    /// status.
    async fn read_response(&mut self, deal: &ClientDeal) -> Step {
        let response = self.read(deal).await?;
        let mut deal = deal.clone();
        if !response.blocks.is_empty() {
            if deal.status() != DealStatus::Ongoing {
                return Err(stop(Event::UnknownResponseReceived(format!(
                    "blocks in status {}",
                    deal.status().short_name()
                ))));
            }
            let verifier = self.verifier(&deal)?;
            let mut verified = Vec::with_capacity(response.blocks.len());
            let mut bytes = 0u64;
            for block in response.blocks {
                match verifier.verify(&block) {
                    Ok(v) => {
                        bytes += block.data.len() as u64;
                        verified.push((v.cid, block.data));
                    }
                    Err(e) => {
                        // Nothing of this response is stored or paid for.
                        self.verifier = None;
                        return Err(stop(Event::BlockRejected(e.to_string())));
                    }
                }
            }
            let blocks = verifier.blocks_verified();
            let done = verifier.is_done();
            if let Err(e) = self.inner.blockstore.put_many(&verified) {
                self.verifier = None;
                return Err(stop(Event::DataTransferError(format!(
                    "storing blocks: {e}"
                ))));
            }
            let bytes = deal.state.total_received + bytes;
            self.emit(Event::BlocksReceived { blocks, bytes }).await?;
            deal.state.blocks_received = blocks;
            deal.state.total_received = bytes;
            if done {
                self.emit(Event::AllBlocksReceived).await?;
                deal.state.status = DealStatus::BlocksComplete;
            }
        }
        let all = deal.status() != DealStatus::Ongoing;
        let event = match response.status {
            DealStatus::Accepted | DealStatus::Ongoing => return Ok(()),
            DealStatus::FundsNeeded | DealStatus::FundsNeededUnseal if !all => {
                Event::PaymentRequested(response.payment_owed)
            }
            DealStatus::FundsNeeded | DealStatus::FundsNeededLastPayment if all => {
                Event::LastPaymentRequested(response.payment_owed)
            }
            DealStatus::FundsNeededLastPayment => Event::EarlyTermination,
            DealStatus::Completed if all => Event::Complete,
            DealStatus::Completed => Event::EarlyTermination,
            DealStatus::Cancelled => Event::ProviderCancelled,
            DealStatus::Errored | DealStatus::Failing => Event::ProviderErrored(response.message),
            other => Event::UnknownResponseReceived(other.short_name().to_owned()),
        };
        self.emit(event).await
    }

    async fn pay(&mut self, deal: &ClientDeal) -> Step {
        let mut owed = deal.state.payment_requested.clone();
        if self.stream.is_none() || self.fresh_stream {
            // After a reconnect the provider speaks first: its acceptance again, then what it
            // still needs. A bounded number of responses is read.
            let mut asked = false;
            for _ in 0..4 {
                let response = self.read(deal).await?;
                match response.status {
                    DealStatus::Accepted | DealStatus::Ongoing if response.blocks.is_empty() => {}
                    DealStatus::FundsNeeded
                    | DealStatus::FundsNeededLastPayment
                    | DealStatus::FundsNeededUnseal
                        if response.blocks.is_empty() =>
                    {
                        owed = response.payment_owed;
                        asked = true;
                        break;
                    }
                    other => {
                        return Err(stop(Event::UnknownResponseReceived(format!(
                            "{} while the client owes a payment",
                            other.short_name()
                        ))));
                    }
                }
            }
            if !asked {
                return Err(stop(Event::UnknownResponseReceived(
                    "no payment request after resuming".into(),
                )));
            }
        }
        let info = match &deal.state.payment_info {
            Some(info) => info.clone(),
            None => {
                return Err(stop(Event::BadPaymentRequested(
                    "payment requested for a deal without a payment channel".into(),
                )));
            }
        };
        let voucher = match logic::decide_payment(&deal.state, &owed, self.resent) {
            Payment::Refuse(reason) => return Err(stop(Event::BadPaymentRequested(reason))),
            Payment::OverBudget(short) => return Err(stop(Event::VoucherShortfall(short))),
            Payment::Resend => {
                let voucher = deal
                    .last_voucher
                    .clone()
                    .ok_or(stop(Event::BadPaymentRequested(
                        "no voucher to resend".into(),
                    )))?;
                self.resent = true;
                let payment = DealPayment {
                    id: DealId(self.id),
                    payment_channel: info.pay_ch.clone(),
                    payment_voucher: Some(voucher.clone()),
                };
                self.write_payment(deal, &payment).await?;
                // Back to reading; the provider answers the resent voucher.
                let total = deal.state.funds_spent.clone();
                return self.emit(Event::PaymentSent { voucher, total }).await;
            }
            Payment::Pay(total) => {
                let node = &self.inner.node;
                let made = bounded(self.inner.config.node_timeout, async {
                    let head = node.chain_head().await?;
                    node.create_payment_voucher(&info.pay_ch, &total, info.lane, &head)
                        .await
                })
                .await;
                match made {
                    Ok(voucher) => {
                        // Recorded before it is sent: a crash in between re-sends it.
                        self.emit(Event::PaymentSent {
                            voucher: voucher.clone(),
                            total,
                        })
                        .await?;
                        voucher
                    }
                    Err(NodeError::Shortfall { shortfall }) => {
                        return Err(stop(Event::VoucherShortfall(shortfall)));
                    }
                    Err(e) => return Err(stop(Event::CreateVoucherFailed(e.to_string()))),
                }
            }
        };
        let payment = DealPayment {
            id: DealId(self.id),
            payment_channel: info.pay_ch,
            payment_voucher: Some(voucher),
        };
        self.write_payment(deal, &payment).await
    }

    async fn write_payment(&mut self, deal: &ClientDeal, payment: &DealPayment) -> Step {
        self.ensure_stream(deal).await?;
        let stream = self.stream.as_mut().ok_or(Stop::Net("no stream".into()))?;
        stream.write_payment(payment).await?;
        Ok(())
    }

    async fn check_funds(&mut self, deal: &ClientDeal) -> Step {
        let Some(info) = &deal.state.payment_info else {
            return self
                .emit(Event::PaymentChannelErrored("no payment channel".into()))
                .await;
        };
        let available = match bounded(
            self.inner.config.node_timeout,
            self.inner.node.check_available_funds(&info.pay_ch),
        )
        .await
        {
            Ok(a) => a,
            Err(e) => return self.emit(Event::PaymentChannelErrored(e.to_string())).await,
        };
        let params = &deal.state.proposal.params;
        let total = params.amount_for_bytes(deal.state.total_received);
        let over_budget = &total - &deal.state.total_funds;
        if over_budget.is_positive() {
            // The deal's own budget is the limit, whatever the channel holds.
            return self.emit(Event::FundsExpended(over_budget)).await;
        }
        let need = &total - &deal.state.funds_spent;
        // A voucher raising this lane from FundsSpent to the new total needs `need` more
        // than every lane's latest voucher already commits.
        let unredeemed = &available.confirmed - &available.voucher_redeemed;
        let shortfall = &need - &unredeemed;
        let event = if !shortfall.is_positive() {
            Event::PaymentChannelReady(info.pay_ch.clone())
        } else if let Some(wait) = available.pending_wait_sentinel {
            if (&available.pending + &available.queued) >= shortfall {
                Event::PaymentChannelAddingFunds {
                    channel: info.pay_ch.clone(),
                    wait,
                    added: TokenAmount::zero(),
                }
            } else {
                Event::FundsExpended(&shortfall - &(&available.pending + &available.queued))
            }
        } else {
            Event::FundsExpended(shortfall)
        };
        self.emit(event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_node_call_that_never_returns_times_out() {
        let never = std::future::pending::<Result<(), NodeError>>();
        let result = bounded(Duration::from_millis(20), never).await;
        assert!(
            matches!(&result, Err(NodeError::Backend(e)) if e.to_string().contains("timed out")),
            "{result:?}"
        );
        let ready = async { Ok::<_, NodeError>(7) };
        assert_eq!(bounded(Duration::from_millis(20), ready).await.unwrap(), 7);
    }
}
