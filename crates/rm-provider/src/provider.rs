//! The provider handle, the query answerer and the per-stream deal runner.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rm_blockio::{BlockReader, Blockstore, Selector as DagSelector};
use rm_fsm::{Group, Subscription};
use rm_network::{DealStream, Network};
use rm_store::{Db, Keyspace};
use rm_types::{
    Ask, Block, Cid, ClientMessage, DealId, DealProposal, DealResponse, DealStatus, Params,
    ProviderDealState, QueryItemStatus, QueryResponse, QueryResponseStatus, RetrievalProviderNode,
    TokenAmount, codec,
};
use rm_unseal::Unsealer;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Error;
use crate::fsm::{self, Event, PaymentLane, ProviderDeal, ProviderTable};

/// The keyspace holding provider deals.
pub const DEALS_KEYSPACE: &str = "provider-deals";
/// The keyspace holding the ask.
pub const META_KEYSPACE: &str = "provider-meta";
/// Every keyspace the provider needs in its database.
pub const KEYSPACES: [&str; 2] = [DEALS_KEYSPACE, META_KEYSPACE];

/// A provider deal's key: the client's peer id bytes and the client's deal id.
pub type DealKey = (Vec<u8>, u64);

/// The group of provider deal machines.
pub type Deals = Group<ProviderTable, DealKey>;

/// What subscribers of [`Provider::subscribe_to_events`] receive.
pub type ProviderSubscription = Subscription<DealKey, ProviderDeal, Event>;

/// A custom deal decider: `Ok(())` accepts, `Err(reason)` rejects with that reason.
pub type Decider = Arc<dyn Fn(&ProviderDealState) -> Result<(), String> + Send + Sync>;

/// Settings of a [`Provider`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The deal machines' settings (durability, queue sizes).
    pub fsm: rm_fsm::Config,
    /// Most bytes of block data per response (must fit the network's message size).
    /// Default 4 MiB.
    pub max_response_bytes: usize,
    /// Most blocks per response. Default 1024.
    pub max_blocks_per_response: usize,
    /// How long the provider waits for a payment (the client may be adding funds).
    /// Default 10 minutes.
    pub payment_timeout: Duration,
    /// How long a deal whose stream broke waits for the client to resume it before it
    /// errors. Default 10 minutes.
    pub resume_window: Duration,
    /// How many DAG sizes the query answerer keeps. Default 1024.
    pub size_cache: usize,
    /// Capacity of the network event channel. Default 64.
    pub event_queue: usize,
    /// Most bytes of block data per second sent on one deal, or no limit (the default).
    pub max_bytes_per_second: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fsm: rm_fsm::Config::default(),
            max_response_bytes: 4 << 20,
            max_blocks_per_response: 1024,
            payment_timeout: Duration::from_secs(600),
            resume_window: Duration::from_secs(600),
            size_cache: 1024,
            event_queue: 64,
            max_bytes_per_second: None,
        }
    }
}

const ASK_KEY: &[u8] = b"ask";

struct Attached {
    generation: u64,
    task: Option<JoinHandle<()>>,
}

struct Inner<N> {
    network: Network,
    node: N,
    blockstore: Arc<dyn Blockstore>,
    /// Pieces to unseal into the blockstore; `None` serves the blockstore alone.
    unsealer: Option<Arc<Unsealer>>,
    deals: Deals,
    meta: Keyspace,
    ask: RwLock<Ask>,
    decider: RwLock<Option<Decider>>,
    config: Config,
    attached: Mutex<HashMap<DealKey, Attached>>,
    generation: Mutex<u64>,
    sizes: Mutex<HashMap<Cid, u64>>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    /// Which deal each (channel, lane) pays: a lane pays one deal only.
    lanes: Mutex<HashMap<(rm_types::Address, u64), DealKey>>,
}

/// A retrieval provider: answers queries from its piece store and blockstore, decides on
/// deals, unseals pieces, streams blocks and collects vouchers.
///
/// Cheap to clone. [`Provider::start`] makes it the network's receiver of queries and
/// deal streams.
pub struct Provider<N> {
    inner: Arc<Inner<N>>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn response(id: DealId, status: DealStatus) -> DealResponse {
    DealResponse {
        status,
        id,
        payment_owed: TokenAmount::zero(),
        message: String::new(),
        blocks: Vec::new(),
    }
}

/// Answers a stream the provider will not serve with `r`, then closes it. The peer may
/// already be gone; that is only logged.
async fn refuse_stream(mut stream: DealStream, r: &DealResponse) {
    let peer = stream.peer();
    let sent = match stream.write_response(r).await {
        Ok(()) => stream.close().await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        tracing::debug!(%peer, error = %e, "refusal not delivered");
    }
}

/// The traversal selector of a deal's params.
fn dag_selector(params: &Params) -> Result<DagSelector, String> {
    let bytes = codec::to_vec(&params.selector_or_all()).map_err(|e| e.to_string())?;
    DagSelector::from_dag_cbor(&bytes).map_err(|e| format!("invalid selector: {e}"))
}

impl<N: RetrievalProviderNode> Provider<N> {
    /// Opens the provider on `db` (which must have [`KEYSPACES`]), serving blocks
    /// from `blockstore` alone (no pieces) and saving vouchers through `node`. Deals left
    /// unfinished by an earlier run wait [`Config::resume_window`] for their clients to come
    /// back.
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
    /// of `unsealer`, and a deal unseals its piece into `blockstore` before any data is
    /// sent (payloads found only in the blockstore are served from it as well).
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
        let deals = Group::open(fsm::table(), (), store, config.fsm.clone()).await?;
        let provider = Provider {
            inner: Arc::new(Inner {
                network,
                node,
                blockstore,
                unsealer,
                deals,
                meta,
                ask: RwLock::new(ask),
                decider: RwLock::new(None),
                config,
                attached: Mutex::new(HashMap::new()),
                generation: Mutex::new(0),
                sizes: Mutex::new(HashMap::new()),
                dispatcher: Mutex::new(None),
                lanes: Mutex::new(HashMap::new()),
            }),
        };
        {
            let mut lanes = lock(&provider.inner.lanes);
            for (key, deal) in provider.inner.deals.list(|_, d| d.lane.is_some())? {
                if let Some(lane) = deal.lane {
                    lanes.insert((lane.channel, lane.lane), key);
                }
            }
        }
        for (key, _) in provider
            .inner
            .deals
            .list(|_, deal| !deal.status().is_terminal())?
        {
            provider.detach(&key, None);
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
                            let answer = this.answer(&request.query).await;
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
    }

    /// Stops the provider for good: no more queries or deals, the deal machines are
    /// closed. Deals keep their state and resume in a provider opened again on the same
    /// database.
    pub async fn stop(&self) {
        self.inner.network.clear_delegate();
        if let Some(task) = lock(&self.inner.dispatcher).take() {
            task.abort();
        }
        let tasks: Vec<_> = lock(&self.inner.attached)
            .drain()
            .filter_map(|(_, a)| a.task)
            .collect();
        for task in tasks {
            task.abort();
        }
        self.inner.deals.close().await;
    }

    /// The current ask.
    pub fn ask(&self) -> Ask {
        self.inner
            .ask
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets and persists the ask (price per byte, intervals, unseal price).
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

    /// The deal machines themselves (snapshots with sequence numbers, listing).
    pub fn deals(&self) -> &Deals {
        &self.inner.deals
    }

    /// Every event applied to any provider deal, in order per deal.
    pub fn subscribe_to_events(&self) -> ProviderSubscription {
        self.inner.deals.subscribe()
    }

    /// Every deal, finished or not.
    pub fn list_deals(&self) -> Result<Vec<(DealKey, ProviderDeal)>, Error> {
        Ok(self.inner.deals.list(|_, _| true)?)
    }

    /// One deal by client peer and deal id.
    pub fn deal(&self, key: &DealKey) -> Result<Option<ProviderDeal>, Error> {
        Ok(self.inner.deals.get(key)?)
    }

    /// The answer to a query: from the piece store (as go-fil-markets: `Size` is the
    /// unpadded size of the first piece holding the payload), else from the blockstore
    /// (`Size` is the DAG's block bytes).
    pub async fn answer(&self, query: &rm_types::Query) -> QueryResponse {
        // As go-fil-markets v1.28.3 (`retrievalmarket/impl/provider.go`, HandleQueryStream):
        // the ask's fields are filled in only when the payload is available; otherwise
        // they stay zero and `PieceCIDFound` is `Unavailable`, whether a piece was named
        // or not (docs/protocol.md, "Query answers").
        let mut answer = QueryResponse {
            status: QueryResponseStatus::Unavailable,
            piece_cid_found: QueryItemStatus::Unavailable,
            size: 0,
            payment_address: rm_types::Address::new_id(0),
            min_price_per_byte: TokenAmount::zero(),
            max_payment_interval: 0,
            max_payment_interval_increase: 0,
            message: String::new(),
            unseal_price: TokenAmount::zero(),
        };
        let address = async {
            let head = self.inner.node.chain_head().await?;
            self.inner.node.payment_address(&head).await
        }
        .await;
        match address {
            Ok(a) => answer.payment_address = a,
            Err(e) => {
                answer.status = QueryResponseStatus::Error;
                answer.message = format!("failed to look up payment address: {e}");
                return answer;
            }
        }
        let payload = &query.payload_cid;
        let piece = query.params.piece_cid.as_ref();
        // An identity payload CID (its block inline, e.g. `bafkqaaa`) is held where every
        // link inside it is held, as go-fil-markets' `provider_pieces.go` resolves it:
        // pieces holding all of its links; none with no links. (The blockstore "has" every
        // identity CID, so it is not asked about the CID itself.)
        let located = if payload.hash().code() == rm_blockio::codec::IDENTITY {
            let found = match &self.inner.unsealer {
                Some(unsealer) => match unsealer.pieces_for(payload, piece) {
                    Ok(infos) => Some(Ok(Located::Pieces(infos))),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => Some(Err(e.to_string())),
                },
                None => None,
            };
            found.unwrap_or_else(|| {
                fn links(cid: &Cid, out: &mut Vec<Cid>) -> Result<(), String> {
                    let node = rm_blockio::codec::Node::decode(cid.codec(), cid.hash().digest())
                        .map_err(|e| format!("decoding identity CID {cid}: {e}"))?;
                    let mut stack = vec![&node];
                    while let Some(node) = stack.pop() {
                        match node {
                            rm_blockio::codec::Node::Link(link)
                                if link.hash().code() == rm_blockio::codec::IDENTITY =>
                            {
                                links(link, out)?;
                            }
                            rm_blockio::codec::Node::Link(link) if !out.contains(link) => {
                                out.push(**link);
                            }
                            rm_blockio::codec::Node::List(items) => {
                                stack.extend(items.iter().rev())
                            }
                            rm_blockio::codec::Node::Map(entries) => {
                                stack.extend(entries.iter().rev().map(|(_, v)| v));
                            }
                            _ => {}
                        }
                    }
                    Ok(())
                }
                let mut linked = Vec::new();
                links(payload, &mut linked)?;
                if linked.is_empty() {
                    return Ok(Located::Nowhere);
                }
                let Some(unsealer) = &self.inner.unsealer else {
                    for link in &linked {
                        if !self
                            .inner
                            .blockstore
                            .has(link)
                            .map_err(|e| format!("blockstore: {e}"))?
                        {
                            return Ok(Located::Nowhere);
                        }
                    }
                    return Ok(Located::Blockstore);
                };
                let mut common: Option<Vec<rm_unseal::PieceInfo>> = None;
                for link in &linked {
                    let infos = match unsealer.pieces_for(link, piece) {
                        Ok(infos) => infos,
                        Err(e) if e.is_not_found() => return Ok(Located::Nowhere),
                        Err(e) => return Err(e.to_string()),
                    };
                    common = Some(match common {
                        None => infos,
                        Some(c) => c
                            .into_iter()
                            .filter(|i| infos.iter().any(|j| j.piece_cid == i.piece_cid))
                            .collect(),
                    });
                }
                match common {
                    Some(infos) if !infos.is_empty() => Ok(Located::Pieces(infos)),
                    _ => Ok(Located::Nowhere),
                }
            })
        } else {
            self.locate(payload, piece)
        };
        let ask = self.ask();
        let fill_ask = |answer: &mut QueryResponse| {
            answer.status = QueryResponseStatus::Available;
            answer.min_price_per_byte = ask.price_per_byte.clone();
            answer.max_payment_interval = ask.payment_interval;
            answer.max_payment_interval_increase = ask.payment_interval_increase;
            answer.unseal_price = ask.unseal_price.clone();
        };
        match located {
            Ok(Located::Pieces(infos)) => {
                let length = infos.iter().flat_map(|i| &i.deals).next().map(|d| d.length);
                match length.map(rm_unseal::PaddedPieceSize::new) {
                    Some(Ok(size)) => {
                        fill_ask(&mut answer);
                        answer.piece_cid_found = QueryItemStatus::Available;
                        answer.size = size.unpadded().get();
                    }
                    Some(Err(e)) => {
                        answer.status = QueryResponseStatus::Error;
                        answer.message = format!("invalid piece record: {e}");
                    }
                    None => {
                        answer.status = QueryResponseStatus::Error;
                        answer.message = format!(
                            "failed to fetch storage deals containing payload [{}]",
                            query.payload_cid
                        );
                    }
                }
            }
            // rm's own case (no piece involved): `PieceCIDFound` is `Unknown`.
            Ok(Located::Blockstore) => match self.dag_size(&query.payload_cid) {
                Ok(Some(size)) => {
                    fill_ask(&mut answer);
                    answer.piece_cid_found = QueryItemStatus::Unknown;
                    answer.size = size;
                }
                Ok(None) => answer.message = NOT_FOUND_MESSAGE.to_owned(),
                Err(e) => {
                    answer.status = QueryResponseStatus::Error;
                    answer.message = e;
                }
            },
            Ok(Located::Nowhere) => answer.message = NOT_FOUND_MESSAGE.to_owned(),
            Err(e) => {
                answer.status = QueryResponseStatus::Error;
                answer.message = format!("failed to fetch piece to retrieve from: {e}");
            }
        }
        answer
    }

    /// Where the provider holds `payload`: in pieces (only `piece`, if named), or only in
    /// its blockstore.
    fn locate(&self, payload: &Cid, piece: Option<&Cid>) -> Result<Located, String> {
        if let Some(unsealer) = &self.inner.unsealer {
            match unsealer.pieces_for(payload, piece) {
                Ok(infos) => return Ok(Located::Pieces(infos)),
                Err(e) if e.is_not_found() => {
                    if piece.is_some() {
                        return Ok(Located::Nowhere);
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        match self.inner.blockstore.has(payload) {
            Ok(true) => Ok(Located::Blockstore),
            Ok(false) => Ok(Located::Nowhere),
            Err(e) => Err(format!("blockstore: {e}")),
        }
    }

    /// Makes the deal's payload readable from the blockstore: unseals and loads its piece
    /// unless the blockstore alone serves it.
    async fn unseal(&self, deal: &ProviderDeal) -> Result<(), String> {
        let proposal = &deal.state.proposal;
        let piece = proposal.params.piece_cid.as_ref();
        match (
            self.locate(&proposal.payload_cid, piece)?,
            &self.inner.unsealer,
        ) {
            (Located::Pieces(_), Some(unsealer)) => {
                let loaded = unsealer
                    .load(
                        &proposal.payload_cid,
                        piece,
                        Arc::clone(&self.inner.blockstore),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                tracing::debug!(
                    piece = %loaded.piece_cid,
                    blocks = loaded.blocks,
                    unsealed = loaded.unsealed,
                    "payload ready"
                );
                Ok(())
            }
            (Located::Pieces(_), None) | (Located::Blockstore, _) => Ok(()),
            (Located::Nowhere, _) => Err(NOT_FOUND_MESSAGE.to_owned()),
        }
    }

    /// The total block bytes of the whole DAG under `root`, if the root is here.
    fn dag_size(&self, root: &Cid) -> Result<Option<u64>, String> {
        if let Some(size) = lock(&self.inner.sizes).get(root) {
            return Ok(Some(*size));
        }
        if !self.inner.blockstore.has(root).map_err(|e| e.to_string())? {
            return Ok(None);
        }
        let selector = DagSelector::explore_all_recursively();
        let reader = BlockReader::new(Arc::clone(&self.inner.blockstore), *root, &selector)
            .map_err(|e| e.to_string())?;
        let mut size = 0u64;
        for block in reader {
            match block {
                Ok(block) => size += block.data.len() as u64,
                Err(e) => return Err(format!("reading the DAG: {e}")),
            }
        }
        let mut sizes = lock(&self.inner.sizes);
        if sizes.len() >= self.inner.config.size_cache {
            sizes.clear();
        }
        sizes.insert(*root, size);
        Ok(Some(size))
    }

    /// Marks the deal as not attached to a stream and starts its resume window. With
    /// `Some(generation)`, only if that attachment still owns the deal.
    ///
    /// The map entry becomes a token (no task); the timer fires only if the same token is
    /// still there when the window ends, so any attach or later detach cancels it.
    fn detach(&self, key: &DealKey, generation: Option<u64>) {
        let token = {
            let mut attached = lock(&self.inner.attached);
            match (attached.get(key), generation) {
                (Some(a), Some(g)) if a.generation != g => return,
                (None, Some(_)) => return,
                // A running task owns the deal; it detaches itself when its stream ends.
                (Some(a), None) if a.task.is_some() => return,
                _ => {}
            }
            let token = self.next_generation();
            attached.insert(
                key.clone(),
                Attached {
                    generation: token,
                    task: None,
                },
            );
            token
        };
        let this = self.clone();
        let key = key.clone();
        let window = self.inner.config.resume_window;
        tokio::spawn(async move {
            tokio::time::sleep(window).await;
            {
                let mut attached = lock(&this.inner.attached);
                if attached
                    .get(&key)
                    .is_none_or(|a| a.generation != token || a.task.is_some())
                {
                    return;
                }
                attached.remove(&key);
            }
            if let Ok(Some(deal)) = this.inner.deals.get(&key)
                && !deal.status().is_terminal()
            {
                let event = Event::DataTransferError(format!(
                    "the client did not resume the deal within {window:?}"
                ));
                if let Err(e) = this.inner.deals.send(&key, event).await {
                    tracing::warn!(error = %e, "could not end a deal nobody resumed");
                }
            }
        });
    }

    fn next_generation(&self) -> u64 {
        let mut g = lock(&self.inner.generation);
        *g += 1;
        *g
    }

    /// Stops the task driving `key` on an older stream, and waits until it is gone.
    async fn take_over(&self, key: &DealKey) {
        let old = lock(&self.inner.attached).remove(key).and_then(|a| a.task);
        if let Some(task) = old {
            task.abort();
            // Err(cancelled) is the expected outcome; either way the task is gone.
            let _ = task.await;
        }
    }

    /// Serves one inbound deal stream: a new deal or a resumed one.
    async fn handle_stream(&self, mut stream: DealStream) {
        let proposal = match stream.read_proposal().await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(peer = %stream.peer(), error = %e, "no deal proposal");
                return;
            }
        };
        let key: DealKey = (stream.peer().to_bytes(), proposal.id.0);
        tracing::debug!(deal = proposal.id.0, resume = ?proposal.resume, "deal proposal");
        let existing = match self.inner.deals.get(&key) {
            Ok(d) => d,
            Err(e) => {
                let mut r = response(proposal.id, DealStatus::Errored);
                r.message = format!("provider storage: {e}");
                refuse_stream(stream, &r).await;
                return;
            }
        };
        let first = match existing {
            None if proposal.resume.is_some_and(|r| r.blocks > 0) => {
                let mut r = response(proposal.id, DealStatus::Errored);
                r.message = "unknown deal to resume".to_owned();
                refuse_stream(stream, &r).await;
                return;
            }
            None => match self.begin(&key, &proposal, stream.peer()).await {
                Ok(()) => None,
                Err(r) => {
                    if matches!(self.inner.deals.get(&key), Ok(Some(_))) {
                        // Begun but not moved on: give it a window like any detached deal.
                        self.detach(&key, None);
                    }
                    refuse_stream(stream, &r).await;
                    return;
                }
            },
            Some(deal) => match self.resume(&key, &deal, &proposal).await {
                Ok(Resumed::Continue(first)) => first,
                Ok(Resumed::Tail(from)) => {
                    self.serve_tail(&mut stream, &deal, from).await;
                    return;
                }
                Err(r) => {
                    refuse_stream(stream, &r).await;
                    return;
                }
            },
        };
        let this = self.clone();
        let key2 = key.clone();
        // Hold the map lock while spawning so the new task's entry exists before it can
        // finish and remove itself.
        let mut attached = lock(&self.inner.attached);
        let generation = self.next_generation();
        if let Some(old) = attached.remove(&key)
            && let Some(task) = old.task
        {
            task.abort();
        }
        let task = tokio::spawn(async move {
            let mut run = Run {
                provider: this.clone(),
                key: key2.clone(),
                stream,
                reader: None,
                pending: None,
            };
            let outcome = run.drive(first).await;
            let deal = this.inner.deals.get(&key2).ok().flatten();
            match deal {
                Some(deal) if !deal.status().is_terminal() => {
                    if let Err(e) = &outcome {
                        tracing::debug!(
                            reason = e.reason(),
                            "provider deal detached from its stream"
                        );
                    }
                    this.detach(&key2, Some(generation));
                }
                _ => {
                    let mut attached = lock(&this.inner.attached);
                    if attached
                        .get(&key2)
                        .is_some_and(|a| a.generation == generation)
                    {
                        attached.remove(&key2);
                    }
                }
            }
        });
        attached.insert(
            key,
            Attached {
                generation,
                task: Some(task),
            },
        );
    }

    /// Begins a new deal for a fresh proposal; `Err` is the response refusing it.
    async fn begin(
        &self,
        key: &DealKey,
        proposal: &DealProposal,
        peer: rm_network::libp2p::PeerId,
    ) -> Result<(), DealResponse> {
        let refuse = |status, message: String| {
            let mut r = response(proposal.id, status);
            r.message = message;
            r
        };
        if let Err(e) = proposal.params.validate() {
            return Err(refuse(DealStatus::Rejected, e.to_string()));
        }
        let state = ProviderDealState {
            proposal: DealProposal {
                resume: None,
                ..proposal.clone()
            },
            status: DealStatus::New,
            receiver: rm_network::to_rm_peer(&peer),
            total_sent: 0,
            blocks_sent: 0,
            funds_received: TokenAmount::zero(),
            message: String::new(),
            current_interval: proposal.params.payment_interval,
            piece_cid: proposal.params.piece_cid,
        };
        let deal = ProviderDeal {
            state,
            lane: None,
            received: Vec::new(),
            resumes: 0,
        };
        self.inner
            .deals
            .begin(key.clone(), deal)
            .await
            .map_err(|e| refuse(DealStatus::Errored, format!("provider storage: {e}")))?;
        self.inner
            .deals
            .send(key, Event::DealReceived)
            .await
            .map_err(|e| refuse(DealStatus::Errored, format!("provider storage: {e}")))?;
        Ok(())
    }

    /// Takes over an existing deal for a resumed proposal. `Err` is a response refusing
    /// the stream.
    async fn resume(
        &self,
        key: &DealKey,
        deal: &ProviderDeal,
        proposal: &DealProposal,
    ) -> Result<Resumed, DealResponse> {
        let id = proposal.id;
        let refuse = |message: String| {
            let mut r = response(id, DealStatus::Errored);
            r.message = message;
            r
        };
        let stored = &deal.state.proposal;
        if stored.payload_cid != proposal.payload_cid || stored.params != proposal.params {
            return Err(refuse(
                "the resumed proposal differs from the deal's".to_owned(),
            ));
        }
        let resume = proposal.resume.unwrap_or_default();
        if resume.blocks > deal.state.blocks_sent {
            return Err(refuse(format!(
                "the client claims {} blocks, {} were sent",
                resume.blocks, deal.state.blocks_sent
            )));
        }
        if deal.status().is_terminal() {
            if proposal.resume.is_none() && deal.status() == DealStatus::Completed {
                // A fresh proposal reusing the id of a completed deal: not a resume, so no
                // free copy of the data.
                return Err(refuse(format!(
                    "deal id {} was already used (ended {})",
                    id.0,
                    deal.status().short_name()
                )));
            }
            if deal.status() == DealStatus::Completed && resume.blocks < deal.state.blocks_sent {
                // Paid in full already; the client lost the last responses.
                return Ok(Resumed::Tail(resume.blocks));
            }
            let mut r = response(id, deal.status());
            r.message = deal.state.message.clone();
            return Err(r);
        }
        // The byte count comes from the DAG, not from the client: payment points depend
        // on it.
        let bytes = self
            .bytes_of_first(deal, resume.blocks)
            .await
            .map_err(|e| refuse(format!("cannot resume: {e}")))?;
        if bytes != resume.bytes {
            return Err(refuse(format!(
                "the client claims {} bytes in its first {} blocks; they hold {bytes}",
                resume.bytes, resume.blocks
            )));
        }
        // Stop whoever still drives this deal on an older stream, before anything changes;
        // then look again: the old task may have moved the deal on.
        self.take_over(key).await;
        let deal = match self.inner.deals.get(key) {
            Ok(Some(d)) if !d.status().is_terminal() => d,
            Ok(Some(d)) => {
                self.detach(key, None);
                let mut r = response(id, d.status());
                r.message = d.state.message.clone();
                return Err(r);
            }
            _ => {
                self.detach(key, None);
                return Err(refuse("cannot resume: the deal is gone".to_owned()));
            }
        };
        if resume.blocks > deal.state.blocks_sent {
            self.detach(key, None);
            return Err(refuse("the deal moved on; resume again".to_owned()));
        }
        let before = deal.status();
        let event = Event::Resumed {
            blocks: resume.blocks,
            bytes,
        };
        let snapshot = match self.inner.deals.send(key, event).await {
            Ok(s) => s,
            Err(e) => {
                self.detach(key, None);
                return Err(refuse(format!("cannot resume: {e}")));
            }
        };
        let deal = snapshot.state;
        Ok(Resumed::Continue(match before {
            DealStatus::New
            | DealStatus::WaitForAcceptance
            | DealStatus::Failing
            | DealStatus::Cancelling => None,
            DealStatus::FundsNeededUnseal => {
                let mut r = response(id, DealStatus::FundsNeededUnseal);
                r.payment_owed = (&deal.state.proposal.params.unseal_price
                    - &deal.state.funds_received)
                    .clamp_non_negative();
                Some(r)
            }
            // The stream starts with the acceptance again, so a client that never saw it
            // can go on; a client further along ignores it.
            _ => Some(response(id, DealStatus::Accepted)),
        }))
    }

    /// Bytes of block data in the first `blocks` blocks of the deal's traversal (read on
    /// the blocking pool: a resume late in a large DAG reads much of it).
    async fn bytes_of_first(&self, deal: &ProviderDeal, blocks: u64) -> Result<u64, String> {
        let selector = dag_selector(&deal.state.proposal.params)?;
        let store = Arc::clone(&self.inner.blockstore);
        let root = deal.state.proposal.payload_cid;
        let count = move || {
            let mut reader = BlockReader::new(store, root, &selector).map_err(|e| e.to_string())?;
            let mut bytes = 0u64;
            for _ in 0..blocks {
                match reader.next_block() {
                    Ok(Some(block)) => bytes += block.data.len() as u64,
                    Ok(None) => return Err("the DAG has fewer blocks".to_owned()),
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(bytes)
        };
        tokio::task::spawn_blocking(count)
            .await
            .map_err(|e| format!("counting bytes: {e}"))?
    }

    /// Sends the blocks after `from` of a completed (fully paid) deal, then `Completed`.
    async fn serve_tail(&self, stream: &mut DealStream, deal: &ProviderDeal, from: u64) {
        let id = deal.state.proposal.id;
        let reader = dag_selector(&deal.state.proposal.params).and_then(|selector| {
            BlockReader::resume(
                Arc::clone(&self.inner.blockstore),
                deal.state.proposal.payload_cid,
                &selector,
                from,
            )
            .map_err(|e| e.to_string())
        });
        let mut reader = match reader {
            Ok(r) => r,
            Err(e) => {
                let mut r = response(id, DealStatus::Errored);
                r.message = e;
                let _ = stream.write_response(&r).await;
                return;
            }
        };
        let max_bytes = self.inner.config.max_response_bytes;
        let max_blocks = self.inner.config.max_blocks_per_response.max(1);
        if stream
            .write_response(&response(id, DealStatus::Accepted))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let mut r = response(id, DealStatus::Ongoing);
            let mut bytes = 0;
            while r.blocks.len() < max_blocks && bytes < max_bytes {
                match reader.next_block() {
                    Ok(Some(block)) => {
                        bytes += block.data.len();
                        r.blocks.push(block);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        r.status = DealStatus::Errored;
                        r.message = e.to_string();
                        r.blocks.clear();
                        break;
                    }
                }
            }
            let last = reader.is_done() || r.status == DealStatus::Errored;
            if reader.is_done() {
                r.status = DealStatus::Completed;
            }
            if stream.write_response(&r).await.is_err() || last {
                let _ = stream.finish().await;
                return;
            }
        }
    }
}

/// go-fil-markets' answer when no piece holds the payload.
const NOT_FOUND_MESSAGE: &str =
    "piece info for cid not found (deal has not been added to a piece yet)";

/// Where a payload is held.
enum Located {
    /// In these pieces.
    Pieces(Vec<rm_unseal::PieceInfo>),
    /// In the blockstore only.
    Blockstore,
    /// Not here.
    Nowhere,
}

/// How a resumed proposal continues.
enum Resumed {
    /// Drive the deal, writing this response first.
    Continue(Option<DealResponse>),
    /// The deal is complete; send the blocks from this position.
    Tail(u64),
}

/// One deal driven on one stream.
struct Run<N> {
    provider: Provider<N>,
    key: DealKey,
    stream: DealStream,
    reader: Option<BlockReader<Arc<dyn Blockstore>>>,
    /// A client message that arrived while blocks were being sent, for the next read.
    pending: Option<ClientMessage>,
}

/// Why a run stopped without the deal being final.
#[derive(Debug)]
enum Detached {
    /// The stream failed.
    Stream(String),
    /// The deal machine is gone (provider stopping).
    Machine(String),
}

impl Detached {
    fn reason(&self) -> &str {
        match self {
            Detached::Stream(r) | Detached::Machine(r) => r,
        }
    }
}

type Step = Result<(), Detached>;

impl<N: RetrievalProviderNode> Run<N> {
    fn inner(&self) -> &Inner<N> {
        &self.provider.inner
    }

    async fn drive(&mut self, first: Option<DealResponse>) -> Step {
        if let Some(r) = first {
            self.write(&r).await?;
        }
        loop {
            let deal = match self.inner().deals.get(&self.key) {
                Ok(Some(d)) => d,
                Ok(None) => return Err(Detached::Machine("deal vanished".into())),
                Err(e) => return Err(Detached::Machine(e.to_string())),
            };
            if deal.status().is_terminal() {
                // Everything is written; a peer already gone changes nothing.
                let _ = self.stream.finish().await;
                return Ok(());
            }
            self.step(&deal).await?;
        }
    }

    async fn emit(&mut self, event: Event) -> Result<ProviderDeal, Detached> {
        match self.inner().deals.send(&self.key, event).await {
            Ok(snapshot) => Ok(snapshot.state),
            Err(rm_fsm::Error::Invalid(invalid)) => {
                tracing::warn!(%invalid, "provider deal refused an event");
                let fallback = Event::DataTransferError(invalid.to_string());
                self.inner()
                    .deals
                    .send(&self.key, fallback)
                    .await
                    .map(|s| s.state)
                    .map_err(|e| Detached::Machine(e.to_string()))
            }
            Err(e) => Err(Detached::Machine(e.to_string())),
        }
    }

    async fn write(&mut self, r: &DealResponse) -> Step {
        self.stream
            .write_response(r)
            .await
            .map_err(|e| Detached::Stream(e.to_string()))
    }

    fn id(&self) -> DealId {
        DealId(self.key.1)
    }

    async fn step(&mut self, deal: &ProviderDeal) -> Step {
        use DealStatus as D;
        match deal.status() {
            D::New => {
                self.emit(Event::DealReceived).await?;
                Ok(())
            }
            D::WaitForAcceptance => self.decide(deal).await,
            D::Accepted | D::Unsealed | D::Ongoing => self.send_blocks(deal).await,
            D::BlocksComplete => {
                let params = &deal.state.proposal.params;
                let owed = params.outstanding_balance(
                    &deal.state.funds_received,
                    deal.state.total_sent,
                    true,
                );
                if owed.is_positive() {
                    self.emit(Event::LastPaymentRequested).await?;
                    let mut r = response(self.id(), D::FundsNeededLastPayment);
                    r.payment_owed = owed;
                    self.write(&r).await
                } else {
                    self.complete().await
                }
            }
            D::FundsNeeded | D::FundsNeededLastPayment | D::FundsNeededUnseal => {
                self.receive_payment(deal).await
            }
            D::Unsealing => {
                let event = match self.provider.unseal(deal).await {
                    Ok(()) => Event::UnsealComplete,
                    Err(e) => Event::UnsealError(e),
                };
                self.emit(event).await?;
                Ok(())
            }
            D::Finalizing => self.complete().await,
            D::Cancelling => {
                self.emit(Event::CancelComplete).await?;
                Ok(())
            }
            D::Failing => {
                let mut r = response(self.id(), D::Errored);
                r.message = deal.state.message.clone();
                // The deal ends Errored whether or not the client hears why.
                if let Err(e) = self.stream.write_response(&r).await {
                    tracing::debug!(error = %e, "failure response not delivered");
                }
                self.emit(Event::CancelComplete).await?;
                Ok(())
            }
            other => {
                self.emit(Event::DataTransferError(format!(
                    "no provider action for status {}",
                    other.short_name()
                )))
                .await?;
                Ok(())
            }
        }
    }

    /// Records the deal `Completed`, then tells the client. In this order a client never
    /// learns of a completion the provider could lose in a crash; if the response is lost
    /// instead, the client resumes and is sent the rest of a completed deal (nothing, or
    /// the blocks it lacks) and `Completed` again.
    async fn complete(&mut self) -> Step {
        let deal = self.emit(Event::Complete).await?;
        if deal.status() != DealStatus::Completed {
            // The machine refused (and recorded an error instead): say nothing of success.
            return Ok(());
        }
        self.write(&response(self.id(), DealStatus::Completed))
            .await
    }

    async fn decide(&mut self, deal: &ProviderDeal) -> Step {
        let id = self.id();
        let proposal = &deal.state.proposal;
        let refuse = |status, message: String| {
            let mut r = response(id, status);
            r.message = message;
            r
        };
        let found = self
            .provider
            .locate(&proposal.payload_cid, proposal.params.piece_cid.as_ref());
        let (event, reply) = match found {
            Err(e) => (
                Event::DecisioningError(e.clone()),
                refuse(DealStatus::Errored, e),
            ),
            Ok(Located::Nowhere) => (
                Event::DealNotFound("not found".into()),
                refuse(DealStatus::DealNotFound, "not found".into()),
            ),
            Ok(Located::Pieces(_) | Located::Blockstore) => match self.check_terms(deal) {
                Err(reason) => (
                    Event::DealRejected(reason.clone()),
                    refuse(DealStatus::Rejected, reason),
                ),
                Ok(()) if proposal.params.unseal_price.is_positive() => {
                    let mut r = response(id, DealStatus::FundsNeededUnseal);
                    r.payment_owed = proposal.params.unseal_price.clone();
                    (Event::UnsealPaymentRequested, r)
                }
                Ok(()) => (Event::DealAccepted, response(id, DealStatus::Accepted)),
            },
        };
        self.emit(event).await?;
        self.write(&reply).await
    }

    /// The ask checks (go-fil-markets `CheckDealParams`), the selector, then the decider.
    fn check_terms(&self, deal: &ProviderDeal) -> Result<(), String> {
        let params = &deal.state.proposal.params;
        let ask = self.provider.ask();
        if params.price_per_byte < ask.price_per_byte {
            return Err("Price per byte too low".into());
        }
        if params.payment_interval > ask.payment_interval {
            return Err("Payment interval too large".into());
        }
        if params.payment_interval_increase > ask.payment_interval_increase {
            return Err("Payment interval increase too large".into());
        }
        if params.unseal_price < ask.unseal_price {
            return Err("Unseal price too small".into());
        }
        dag_selector(params)?;
        let decider = self
            .inner()
            .decider
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match decider {
            Some(decide) => decide(&deal.state),
            None => Ok(()),
        }
    }

    fn reader(
        &mut self,
        deal: &ProviderDeal,
    ) -> Result<&mut BlockReader<Arc<dyn Blockstore>>, String> {
        let position = deal.state.blocks_sent;
        if self
            .reader
            .as_ref()
            .is_some_and(|r| BlockReader::position(r) != position)
        {
            self.reader = None;
        }
        if self.reader.is_none() {
            let params = &deal.state.proposal.params;
            let selector = dag_selector(params)?;
            let reader = BlockReader::resume(
                Arc::clone(&self.inner().blockstore),
                deal.state.proposal.payload_cid,
                &selector,
                position,
            )
            .map_err(|e| format!("reading blocks: {e}"))?;
            self.reader = Some(reader);
        }
        self.reader.as_mut().ok_or_else(|| "no reader".to_owned())
    }

    async fn send_blocks(&mut self, deal: &ProviderDeal) -> Step {
        let params = deal.state.proposal.params.clone();
        let funds = deal.state.funds_received.clone();
        let point = params.next_payment_point(&funds);
        let mut sent = deal.state.total_sent;
        let max_bytes = self.inner().config.max_response_bytes;
        let max_blocks = self.inner().config.max_blocks_per_response.max(1);
        let reader = match self.reader(deal) {
            Ok(r) => r,
            Err(e) => {
                self.emit(Event::BlockErrored(e)).await?;
                return Ok(());
            }
        };
        if reader.is_done() {
            self.emit(Event::BlocksCompleted).await?;
            return Ok(());
        }
        if point.is_some_and(|p| sent >= p) {
            // A resumed deal can owe money before anything else is sent.
            self.emit(Event::PaymentRequested).await?;
            let mut r = response(self.id(), DealStatus::FundsNeeded);
            r.payment_owed = params.outstanding_balance(&funds, sent, false);
            return self.write(&r).await;
        }
        let mut blocks: Vec<Block> = Vec::new();
        let mut bytes = 0usize;
        let mut failure = None;
        while blocks.len() < max_blocks {
            match reader.next_block() {
                Ok(Some(block)) => {
                    bytes += block.data.len();
                    sent += block.data.len() as u64;
                    blocks.push(block);
                    if point.is_some_and(|p| sent >= p) || bytes >= max_bytes {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        let done = reader.is_done();
        let position = BlockReader::position(reader);
        if let Some(e) = failure {
            self.reader = None;
            self.emit(Event::BlockErrored(format!("reading blocks: {e}")))
                .await?;
            return Ok(());
        }
        self.emit(Event::BlocksSent {
            blocks: position,
            bytes: sent,
        })
        .await?;
        let mut r = response(self.id(), DealStatus::Ongoing);
        r.blocks = blocks;
        if done {
            self.emit(Event::BlocksCompleted).await?;
            let owed = params.outstanding_balance(&funds, sent, true);
            if owed.is_positive() {
                self.emit(Event::LastPaymentRequested).await?;
                r.status = DealStatus::FundsNeededLastPayment;
                r.payment_owed = owed;
            } else {
                // Nothing owed: complete once the last blocks are written.
                r.status = DealStatus::Completed;
                self.write(&r).await?;
                self.emit(Event::Complete).await?;
                return Ok(());
            }
        } else if point.is_some_and(|p| sent >= p) {
            self.emit(Event::PaymentRequested).await?;
            r.status = DealStatus::FundsNeeded;
            r.payment_owed = params.outstanding_balance(&funds, sent, false);
        }
        self.write(&r).await?;
        // A client that cancels while blocks flow is heard here, not only at the next
        // payment point (a free deal has none).
        match self.stream.try_read_client_message().await {
            Ok(Some(ClientMessage::Cancel(cancel))) => {
                self.emit(Event::ClientCancelled(cancel.reason)).await?;
                return Ok(());
            }
            Ok(Some(other)) => self.pending = Some(other),
            Ok(None) => {}
            Err(e) => return Err(Detached::Stream(e.to_string())),
        }
        if let Some(rate) = self.inner().config.max_bytes_per_second.filter(|r| *r > 0) {
            let pause = Duration::from_secs_f64(bytes as f64 / rate as f64);
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }

    /// Whether `(channel, lane)` already pays another deal.
    fn lane_owner(&self, channel: &rm_types::Address, lane: u64) -> bool {
        lock(&self.inner().lanes)
            .get(&(channel.clone(), lane))
            .is_some_and(|owner| owner != &self.key)
    }

    /// Binds `(channel, lane)` to this deal once a voucher on it was accepted; false if
    /// another deal got there first.
    fn bind_lane(&self, channel: &rm_types::Address, lane: u64) -> bool {
        let mut lanes = lock(&self.inner().lanes);
        match lanes.get(&(channel.clone(), lane)) {
            Some(other) => other == &self.key,
            None => {
                lanes.insert((channel.clone(), lane), self.key.clone());
                true
            }
        }
    }

    async fn receive_payment(&mut self, deal: &ProviderDeal) -> Step {
        let message = match self.pending.take() {
            Some(message) => message,
            None => {
                let timeout = self.inner().config.payment_timeout;
                let normal = self.stream.read_timeout();
                self.stream.set_read_timeout(timeout);
                let message = self.stream.read_client_message().await;
                self.stream.set_read_timeout(normal);
                message.map_err(|e| Detached::Stream(e.to_string()))?
            }
        };
        let payment = match message {
            ClientMessage::Cancel(cancel) => {
                self.emit(Event::ClientCancelled(cancel.reason)).await?;
                return Ok(());
            }
            ClientMessage::Payment(p) => *p,
        };
        let status = deal.status();
        let fail = |reason: String| Event::SaveVoucherFailed(reason);
        if payment.id != self.id() {
            self.emit(fail(format!(
                "payment for deal {} on this deal's stream",
                payment.id.0
            )))
            .await?;
            return Ok(());
        }
        let Some(voucher) = payment.payment_voucher else {
            self.emit(fail("payment without a voucher".into())).await?;
            return Ok(());
        };
        if let Some(lane) = &deal.lane
            && (lane.channel != payment.payment_channel || lane.lane != voucher.lane)
        {
            self.emit(fail("voucher on another lane than the deal's".into()))
                .await?;
            return Ok(());
        }
        if !voucher.merges.is_empty() {
            // A merge moves value between lanes; a lane's amount would no longer be what
            // this deal was paid.
            self.emit(fail("vouchers with merges are not accepted".into()))
                .await?;
            return Ok(());
        }
        if deal.lane.is_none() && self.lane_owner(&payment.payment_channel, voucher.lane) {
            self.emit(fail("the voucher's lane pays another deal".into()))
                .await?;
            return Ok(());
        }
        let params = &deal.state.proposal.params;
        let funds = &deal.state.funds_received;
        let owed_before = if status == DealStatus::FundsNeededUnseal {
            (&params.unseal_price - funds).clamp_non_negative()
        } else {
            params.outstanding_balance(
                funds,
                deal.state.total_sent,
                status == DealStatus::FundsNeededLastPayment,
            )
        };
        let node = &self.inner().node;
        let saved = async {
            let head = node.chain_head().await?;
            node.save_payment_voucher(&payment.payment_channel, &voucher, &owed_before, &head)
                .await
        }
        .await;
        let delta = match saved {
            Ok(delta) => delta,
            Err(e) => {
                self.emit(fail(e.to_string())).await?;
                return Ok(());
            }
        };
        let lane = PaymentLane {
            channel: payment.payment_channel.clone(),
            lane: voucher.lane,
        };
        if deal.lane.is_none() && !self.bind_lane(&lane.channel, lane.lane) {
            self.emit(fail("the voucher's lane pays another deal".into()))
                .await?;
            return Ok(());
        }
        // A lane pays one deal, so its cumulative amount is what this deal received. A
        // voucher saved before a crash comes back with a zero delta: on the deal's own,
        // already recorded lane the deal is then credited the amount above what it has.
        let received = if delta.is_positive() || deal.lane.is_none() {
            delta
        } else {
            (&voucher.amount - funds).clamp_non_negative()
        };
        let total = funds + &received;
        let owed = if status == DealStatus::FundsNeededUnseal {
            (&params.unseal_price - &total).clamp_non_negative()
        } else {
            params.outstanding_balance(
                &total,
                deal.state.total_sent,
                status == DealStatus::FundsNeededLastPayment,
            )
        };
        if owed.is_positive() {
            self.emit(Event::PartialPaymentReceived { received, lane })
                .await?;
            let mut r = response(self.id(), status);
            r.payment_owed = owed;
            self.write(&r).await
        } else {
            self.emit(Event::PaymentReceived { received, lane }).await?;
            Ok(())
        }
    }
}
