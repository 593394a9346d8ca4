//! The in-memory pair: a [`ClientDeal`] and a [`ProviderDeal`] wired through a simulated
//! stream with a fake clock, memory blockstores and a memory payment-channel ledger. No
//! sockets, no RocksDB, no tokio: the harness is both drivers, carries every action out
//! at once, and injects faults between them (quinn-proto's test `Pair` is the model).
//!
//! The stream is modelled as TCP gives it: in order, or broken. A "lost" message breaks
//! the stream from that message on; a delayed one delays the rest behind it. Duplicates,
//! wrong blocks and bad vouchers are a dishonest peer's doing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rm_blockio::blockstore::MemoryBlockstore;
use rm_blockio::unixfs::{Importer, Preset};
use rm_blockio::{BlockReader, Blockstore, Selector, SelectorVerifier};
use rm_client::{ClientAction, ClientDeal, ClientState, Outbound, VerifyError};
use rm_fsm::Snapshot;
use rm_paych::{Ledger, PaychNode, Wallet, ledger};
use rm_provider::{
    Finished, Located, ProviderAction, ProviderDeal, ProviderState, ReadBlocks, answer_finished,
};
use rm_types::{
    Address, Block, Cid, ClientMessage, DealId, DealProposal, DealResponse, Outcome, Params,
    RetrievalClientNode, RetrievalProviderNode, SignedVoucher, TokenAmount,
};

mod client_side;
mod invariants;
mod provider_side;

/// A deterministic random source (splitmix64).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// True with probability `per_mille` / 1000.
    pub(crate) fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.next() % 1000 < u64::from(per_mille)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// The terms and the DAG of one simulated deal.
#[derive(Debug, Clone)]
pub(crate) struct Terms {
    pub(crate) price: u64,
    pub(crate) interval: u64,
    pub(crate) increase: u64,
    pub(crate) unseal: u64,
    /// The budget as a fraction of the whole price, in per cent (100 = exactly enough).
    pub(crate) budget_percent: u64,
    pub(crate) data_len: usize,
    pub(crate) chunk: usize,
    pub(crate) max_links: usize,
    /// Only the root and its first link (ExploreFields Links/0/Hash).
    pub(crate) partial: bool,
}

/// What may go wrong, each per mille per step (or per message).
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    /// A message is lost: the stream breaks there.
    pub(crate) loss: u32,
    /// A message is delayed by up to `max_delay`.
    pub(crate) delay: u32,
    pub(crate) max_delay: Duration,
    /// The stream is cut (both ends see it break).
    pub(crate) cut: u32,
    /// The client process dies and restarts from its last persisted snapshot.
    pub(crate) crash_client: u32,
    /// The provider process dies, stays down up to `max_down`, restarts.
    pub(crate) crash_provider: u32,
    pub(crate) max_down: Duration,
    /// The user cancels (once).
    pub(crate) cancel: u32,
    /// A provider node call (locate, unseal, read, count, save a voucher) takes up to
    /// `max_delay` to answer, so messages (a cancel) arrive while it is in flight.
    pub(crate) slow_node: u32,
    /// A dishonest provider: a response's blocks are tampered with (wrong, extra, missing),
    /// the response is duplicated, or garbage is sent instead.
    pub(crate) lying_provider: u32,
    /// A dishonest client: a voucher is lower, replayed, on another lane, or sent twice, or
    /// garbage is sent instead.
    pub(crate) lying_client: u32,
    /// The client's verification of a response's blocks takes up to this long (zero: at
    /// once), so it reads the next response meanwhile, as the real driver does.
    pub(crate) max_verify: Duration,
}

impl Faults {
    pub(crate) fn dishonest(&self) -> bool {
        self.lying_provider > 0 || self.lying_client > 0
    }
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Default)]
pub(crate) struct Injected {
    pub(crate) loss: u64,
    pub(crate) delay: u64,
    pub(crate) cut: u64,
    pub(crate) crash_client: u64,
    pub(crate) crash_provider: u64,
    pub(crate) cancel: u64,
    pub(crate) provider_lies: u64,
    pub(crate) client_lies: u64,
    pub(crate) slow_node: u64,
}

impl Injected {
    pub(crate) fn add(&mut self, other: &Injected) {
        self.loss += other.loss;
        self.delay += other.delay;
        self.cut += other.cut;
        self.crash_client += other.crash_client;
        self.crash_provider += other.crash_provider;
        self.cancel += other.cancel;
        self.provider_lies += other.provider_lies;
        self.client_lies += other.client_lies;
        self.slow_node += other.slow_node;
    }
}

#[allow(clippy::large_enum_variant)] // test-only queue item; sizes do not matter here
enum ToProvider {
    Open(DealProposal),
    Message(ClientMessage),
    /// Bytes that are no valid message (what a framing or decoding error looks like).
    Garbage,
    End,
}

enum ToClient {
    Response(DealResponse),
    /// Bytes that are no valid response.
    Garbage,
    End,
}

/// The answer to a provider node call, delivered later.
enum Work {
    Located(Result<Located, String>),
    Decided(Result<(), String>),
    Unsealed(Result<(), String>),
    Read(Result<ReadBlocks, String>),
    Counted(Result<u64, String>),
    Saved(Result<TokenAmount, rm_types::NodeError>),
}

/// One direction of one stream: messages with their delivery time, in order.
struct Pipe<T> {
    queue: VecDeque<(Instant, T)>,
}

impl<T> Pipe<T> {
    fn new() -> Self {
        Pipe {
            queue: VecDeque::new(),
        }
    }

    fn push(&mut self, at: Instant, item: T) {
        // In order: nothing overtakes what was sent before.
        let at = self.queue.back().map_or(at, |(last, _)| at.max(*last));
        self.queue.push_back((at, item));
    }
}

/// A stream: its number, and what is in flight each way.
struct Stream {
    id: u64,
    to_provider: Pipe<ToProvider>,
    to_client: Pipe<ToClient>,
    /// Whether each side still has it open.
    client_open: bool,
    provider_open: bool,
}

pub(crate) struct Outcomes {
    pub(crate) client: Outcome,
    /// Why the client's deal ended as it did (empty when it completed).
    pub(crate) client_message: String,
    /// The client's resumes the provider counted.
    pub(crate) resumes: u64,
    /// Streams the client opened.
    pub(crate) streams: u64,
    pub(crate) provider: Outcome,
    pub(crate) steps: u64,
    pub(crate) injected: Injected,
    /// Snapshots the client and the provider wrote (their `Persist` actions).
    pub(crate) writes: [u64; 2],
    /// Times the provider stopped for payment before the last block (`FundsNeeded`).
    pub(crate) stops: u64,
}

pub(crate) struct Sim {
    rng: Rng,
    base: Instant,
    now: Instant,
    faults: Faults,
    pub(crate) injected: Injected,
    params: Params,
    root: Cid,
    selector: Selector,
    /// Bytes and blocks of the selected part of the DAG.
    total_bytes: u64,
    max_block: u64,
    ledger: Arc<Ledger>,
    client_wallet: Arc<Wallet>,
    client_addr: Address,
    client_node: PaychNode,
    provider_node: PaychNode,
    provider_store: MemoryBlockstore,
    client_store: MemoryBlockstore,
    id: DealId,
    client: Option<ClientDeal>,
    client_disk: Snapshot<ClientState>,
    client_config: rm_client::DealConfig,
    verifier: Option<SelectorVerifier>,
    provider: Option<ProviderDeal>,
    provider_disk: Option<Snapshot<ProviderState>>,
    provider_config: rm_provider::DealConfig,
    provider_down_until: Option<Instant>,
    /// Provider node calls answered later (`Faults::slow_node`), in order.
    provider_work: VecDeque<(Instant, Work)>,
    /// How long an unseal takes (zero: answered at once).
    unseal_time: Duration,
    /// Client verifications answered later (`Faults::max_verify`), in order.
    client_work: VecDeque<(Instant, Result<bool, VerifyError>)>,
    streams: Vec<Stream>,
    next_stream: u64,
    client_stream: Option<u64>,
    provider_stream: Option<u64>,
    /// Every voucher the client sent, for replays.
    sent_vouchers: Vec<(Address, SignedVoucher)>,
    cancelled: bool,
    client_outcome: Option<Outcome>,
    provider_outcome: Option<Outcome>,
    /// Snapshots the client and the provider wrote.
    writes: [u64; 2],
    /// `FundsNeeded` responses the provider sent.
    stops: u64,
}

fn ready<T>(f: impl Future<Output = T>) -> T {
    f.now_or_never().expect("the local ledger answers at once")
}

fn partial_selector() -> rm_types::Ipld {
    use rm_types::Ipld;
    let map = |k: &str, v: Ipld| Ipld::Map([(k.to_owned(), v)].into_iter().collect());
    let fields = |name: &str, next: Ipld| map("f", map("f>", map(name, next)));
    let matcher = map(".", Ipld::Map(Default::default()));
    let index = map(
        "i",
        Ipld::Map(
            [
                ("i".to_owned(), Ipld::Integer(0)),
                (">".to_owned(), fields("Hash", matcher)),
            ]
            .into_iter()
            .collect(),
        ),
    );
    fields("Links", index)
}

impl Sim {
    pub(crate) fn new(seed: u64, terms: &Terms, faults: Faults) -> Sim {
        let mut rng = Rng::new(seed);
        let base = Instant::now();
        // The DAG.
        let provider_store = MemoryBlockstore::new();
        let data: Vec<u8> = (0..terms.data_len).map(|_| rng.next() as u8).collect();
        let preset = Preset::GO_FIL_MARKETS
            .with_chunk_size(terms.chunk)
            .with_max_links(terms.max_links);
        let root = Importer::import_bytes(&provider_store, preset, &data)
            .expect("import")
            .root;
        let mut params = Params::new(
            TokenAmount::from_atto(terms.price),
            terms.interval,
            terms.increase,
        );
        params.unseal_price = TokenAmount::from_atto(terms.unseal);
        if terms.partial {
            params.selector = Some(partial_selector());
        }
        let selector_bytes = rm_types::codec::to_vec(&params.selector_or_all()).unwrap();
        let selector = Selector::from_dag_cbor(&selector_bytes).unwrap();
        let mut total_bytes = 0;
        let mut max_block = 0;
        for block in BlockReader::new(&provider_store, root, &selector).unwrap() {
            let len = block.unwrap().data.len() as u64;
            total_bytes += len;
            max_block = max_block.max(len);
        }
        let whole = u128::from(terms.price) * u128::from(total_bytes) + u128::from(terms.unseal);
        let budget = (whole * u128::from(terms.budget_percent) / 100).max(1);
        let total_funds = TokenAmount::from_atto(budget);
        // The payment channel world: one ledger both sides see, as two processes would
        // see one chain.
        let ledger = Arc::new(Ledger::open(rm_store::Keyspace::memory(
            ledger::DEFAULT_KEYSPACE,
        )));
        let client_wallet = Arc::new(Wallet::in_memory());
        let client_addr = client_wallet.new_key().unwrap();
        let provider_wallet = Arc::new(Wallet::in_memory());
        let provider_addr = provider_wallet.new_key().unwrap();
        let client_node = PaychNode::new(Arc::clone(&ledger), Arc::clone(&client_wallet));
        let provider_node = PaychNode::new(Arc::clone(&ledger), provider_wallet);
        let id = DealId(rng.below(1000));
        let state = ClientState::new(
            DealProposal::new(root, id, params.clone()),
            rm_types::PeerId(vec![1, 2, 3]),
            Vec::new(),
            client_addr.clone(),
            provider_addr,
            total_funds.clone(),
        );
        // Progress written with every response, every few responses, or (the default) only
        // with the events that are written anyway: a crash then resumes from further back.
        let progress_write_bytes = [0, 20_000, 16 << 20][(seed % 3) as usize];
        let mut client_config = client_config();
        client_config.progress_write_bytes = progress_write_bytes;
        let mut provider_config = provider_config();
        provider_config.progress_write_bytes = progress_write_bytes;
        // Payment asked for early in every interval, in long ones, or never; and a client
        // that pays such requests at once, or one that waits for the stop (as rm clients
        // before early requests did).
        provider_config.ask_early_from = [None, Some(0), Some(20_000)][(seed / 3 % 3) as usize];
        client_config.pay_early = !(seed / 9).is_multiple_of(3);
        let client = ClientDeal::new(id, state.clone(), base, client_config.clone());
        Sim {
            rng,
            base,
            now: base,
            faults,
            injected: Injected::default(),
            params,
            root,
            selector,
            total_bytes,
            max_block,
            ledger,
            client_wallet,
            client_addr,
            client_node,
            provider_node,
            provider_store,
            client_store: MemoryBlockstore::new(),
            id,
            client: Some(client),
            client_disk: Snapshot { seq: 0, state },
            client_config,
            verifier: None,
            provider: None,
            provider_disk: None,
            provider_config,
            provider_down_until: None,
            provider_work: VecDeque::new(),
            client_work: VecDeque::new(),
            unseal_time: Duration::ZERO,
            streams: Vec::new(),
            next_stream: 0,
            client_stream: None,
            provider_stream: None,
            sent_vouchers: Vec::new(),
            cancelled: false,
            client_outcome: None,
            provider_outcome: None,
            writes: [0; 2],
            stops: 0,
        }
    }

    /// Every unseal takes `time` (a sealed sector takes hours).
    pub(crate) fn with_unseal_time(mut self, time: Duration) -> Self {
        self.unseal_time = time;
        self
    }

    /// Changes either side's deal settings (before the run).
    pub(crate) fn configure(
        mut self,
        client: impl FnOnce(&mut rm_client::DealConfig),
        provider: impl FnOnce(&mut rm_provider::DealConfig),
    ) -> Self {
        client(&mut self.client_config);
        provider(&mut self.provider_config);
        let state = self.client_disk.state.clone();
        self.client = Some(ClientDeal::new(
            self.id,
            state,
            self.now,
            self.client_config.clone(),
        ));
        self
    }

    fn stream(&mut self, id: u64) -> Option<&mut Stream> {
        self.streams.iter_mut().find(|s| s.id == id)
    }

    fn latency(&mut self) -> Duration {
        let base = Duration::from_micros(100 + self.rng.below(900));
        if self.rng.chance(self.faults.delay) {
            self.injected.delay += 1;
            let extra = self.rng.below(self.faults.max_delay.as_millis() as u64 + 1);
            base + Duration::from_millis(extra)
        } else {
            base
        }
    }

    fn send_to_provider(&mut self, item: ToProvider) {
        let Some(id) = self.client_stream else { return };
        let at = self.now + self.latency();
        if let Some(s) = self.stream(id) {
            s.to_provider.push(at, item);
        }
    }

    fn send_to_client(&mut self, item: ToClient) {
        let Some(id) = self.provider_stream else {
            return;
        };
        let at = self.now + self.latency();
        if let Some(s) = self.stream(id) {
            s.to_client.push(at, item);
        }
    }

    /// Breaks stream `id`: what is in flight is lost, and both ends see it end.
    fn trace(&self, what: &str) {
        if std::env::var_os("PAIR_TRACE").is_some() {
            eprintln!(
                "{} -- {what}",
                self.now.duration_since(self.base).as_millis()
            );
        }
    }

    fn cut(&mut self, id: u64) {
        self.trace(&format!("stream {id} cut"));
        let now = self.now;
        if let Some(s) = self.stream(id) {
            s.to_provider.queue.clear();
            s.to_client.queue.clear();
            s.to_provider.push(now, ToProvider::End);
            s.to_client.push(now, ToClient::End);
        }
    }

    // ---- the network and the clock ----

    /// Delivers one message that is due and may be read; true if one was.
    fn deliver(&mut self) -> bool {
        let now = self.now;
        for i in 0..self.streams.len() {
            let id = self.streams[i].id;
            // To the provider.
            let due = self.streams[i]
                .to_provider
                .queue
                .front()
                .is_some_and(|(at, _)| *at <= now);
            if due && self.provider_down_until.is_none() {
                let is_open = matches!(
                    self.streams[i].to_provider.queue.front(),
                    Some((_, ToProvider::Open(_)))
                );
                let attached = self.provider_stream == Some(id);
                let readable = is_open
                    || (attached
                        && self
                            .provider
                            .as_ref()
                            .is_some_and(|p| p.wants_message() || p.is_finished()));
                if readable || (!attached && !is_open) {
                    let (_, item) = self.streams[i].to_provider.queue.pop_front().unwrap();
                    if self.rng.chance(self.faults.loss) {
                        self.injected.loss += 1;
                        self.cut(id);
                        return true;
                    }
                    match item {
                        ToProvider::Open(p) => self.open(id, p),
                        ToProvider::Message(m) if attached => {
                            if let Some(p) = self.provider.as_mut() {
                                p.handle_message(now, m);
                            }
                        }
                        ToProvider::Garbage if attached => {
                            self.provider_stream = None;
                            if let Some(p) = self.provider.as_mut() {
                                p.handle_bad_message(now, "not a client message");
                            }
                            // The receiving side resets the stream.
                            self.cut(id);
                        }
                        ToProvider::End if attached => {
                            self.provider_stream = None;
                            if let Some(p) = self.provider.as_mut() {
                                p.handle_stream_lost(now);
                            }
                        }
                        _ => {}
                    }
                    return true;
                }
            }
            // To the client.
            let due = self.streams[i]
                .to_client
                .queue
                .front()
                .is_some_and(|(at, _)| *at <= now);
            if due {
                let attached = self.client_stream == Some(id);
                let readable = !attached
                    || self
                        .client
                        .as_ref()
                        .is_some_and(|c| c.wants_message() || c.is_finished());
                if readable {
                    let (_, item) = self.streams[i].to_client.queue.pop_front().unwrap();
                    if attached && self.rng.chance(self.faults.loss) {
                        self.injected.loss += 1;
                        self.cut(id);
                        return true;
                    }
                    match item {
                        ToClient::Response(r) if attached => {
                            if let Some(c) = self.client.as_mut() {
                                c.handle_response(now, r);
                            }
                        }
                        ToClient::Garbage if attached => {
                            self.client_stream = None;
                            if let Some(c) = self.client.as_mut() {
                                c.handle_bad_message(now, "not a deal response");
                            }
                            self.cut(id);
                        }
                        ToClient::End if attached => {
                            self.client_stream = None;
                            if let Some(c) = self.client.as_mut() {
                                c.handle_stream_lost(now, "the provider closed the stream");
                            }
                        }
                        _ => {}
                    }
                    return true;
                }
            }
        }
        // Streams nobody holds any more and nothing is in flight on: forget them.
        self.streams.retain(|s| {
            Some(s.id) == self.client_stream
                || Some(s.id) == self.provider_stream
                || !s.to_provider.queue.is_empty()
                || !s.to_client.queue.is_empty()
        });
        false
    }

    /// The next instant something is due: a message, a timer, a restart.
    fn next_event(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for s in &self.streams {
            // Only what can be delivered: nothing reaches a provider that is down, and a side
            // reads its stream only when it wants to.
            if let Some((at, item)) = s.to_provider.queue.front() {
                let attached = self.provider_stream == Some(s.id);
                let open = matches!(item, ToProvider::Open(_));
                let reads = self
                    .provider
                    .as_ref()
                    .is_some_and(|p| p.wants_message() || p.is_finished());
                if self.provider_down_until.is_none() && (open || !attached || reads) {
                    consider(*at);
                }
            }
            if let Some((at, _)) = s.to_client.queue.front() {
                let attached = self.client_stream == Some(s.id);
                let reads = self
                    .client
                    .as_ref()
                    .is_some_and(|c| c.wants_message() || c.is_finished());
                if !attached || reads {
                    consider(*at);
                }
            }
        }
        if let Some(t) = self.client.as_ref().and_then(ClientDeal::poll_timeout) {
            consider(t);
        }
        if let Some(t) = self.provider.as_ref().and_then(ProviderDeal::poll_timeout) {
            consider(t);
        }
        if let Some(t) = self.provider_down_until {
            consider(t);
        }
        if let Some((t, _)) = self.provider_work.front() {
            consider(*t);
        }
        if let Some((t, _)) = self.client_work.front() {
            consider(*t);
        }
        next
    }

    fn inject(&mut self) {
        let f = self.faults.clone();
        if self.rng.chance(f.cut)
            && let Some(id) = self.client_stream.or(self.provider_stream)
        {
            self.injected.cut += 1;
            self.cut(id);
        }
        if self.client_outcome.is_none() && self.rng.chance(f.crash_client) {
            self.crash_client();
        }
        if self.provider.is_some()
            && self.provider_outcome.is_none()
            && self.rng.chance(f.crash_provider)
        {
            self.crash_provider();
        }
        // The user tops up a deal that ran out of funds.
        if self
            .client
            .as_ref()
            .is_some_and(|c| c.state().status == rm_client::ClientStatus::InsufficientFunds)
        {
            let state = self.client_mut().state().clone();
            let amount = &state.voucher_shortfall + &TokenAmount::from_atto(1u64);
            let head = ready(RetrievalClientNode::chain_head(&self.client_node)).unwrap();
            let setup = ready(self.client_node.get_or_create_payment_channel(
                &state.client_wallet,
                &state.miner_wallet,
                &amount,
                &head,
            ))
            .expect("the local ledger adds funds");
            let now = self.now;
            self.client_mut()
                .add_funds(now, amount, setup)
                .expect("a deal in InsufficientFunds takes funds");
        }
        if !self.cancelled && self.client_outcome.is_none() && self.rng.chance(f.cancel) {
            self.cancelled = true;
            self.injected.cancel += 1;
            let now = self.now;
            self.client_mut().cancel(now, "changed my mind");
        }
    }

    /// Runs until both sides have ended (or `max_steps`); checks the invariants after every
    /// step.
    pub(crate) fn run(mut self, max_steps: u64) -> Result<Outcomes, String> {
        let mut steps = 0;
        while self.client_outcome.is_none() || self.provider_outcome.is_none() {
            steps += 1;
            if steps > max_steps {
                return Err(format!(
                    "no end after {max_steps} steps: client {:?} ({:?}), provider {:?}",
                    self.client.as_ref().map(|c| c.state().status),
                    self.client_outcome,
                    self.provider.as_ref().map(|p| p.state().status),
                ));
            }
            self.inject();
            let moved = self.run_client()
                | self.run_provider()
                | self.finish_work()
                | self.finish_verify()
                | self.deliver();
            self.check()?;
            if moved {
                continue;
            }
            if self.provider_down_until.is_some_and(|t| t <= self.now) {
                self.restart_provider();
                continue;
            }
            match self.next_event() {
                Some(t) => {
                    self.now = self.now.max(t);
                    if let Some(c) = self.client.as_mut() {
                        c.handle_timeout(self.now);
                    }
                    if let Some(p) = self.provider.as_mut() {
                        p.handle_timeout(self.now);
                    }
                }
                None if self.provider.is_none() && self.provider_outcome.is_none() => {
                    // The provider never heard of the deal and the client gave up.
                    self.provider_outcome = self.client_outcome;
                }
                None => {
                    return Err(format!(
                        "stuck: client {:?}, provider {:?}",
                        self.client.as_ref().map(|c| c.state().status),
                        self.provider.as_ref().map(|p| p.state().status),
                    ));
                }
            }
        }
        self.check_end()?;
        let client = self
            .client
            .as_ref()
            .map_or(&self.client_disk.state, |c| c.state());
        let resumes = self
            .provider
            .as_ref()
            .map(|p| p.state())
            .or(self.provider_disk.as_ref().map(|s| &s.state))
            .map_or(0, |s| s.resumes);
        Ok(Outcomes {
            client: self.client_outcome.unwrap(),
            client_message: client.message(),
            resumes,
            streams: self.next_stream,
            provider: self.provider_outcome.unwrap(),
            steps,
            injected: self.injected.clone(),
            writes: self.writes,
            stops: self.stops,
        })
    }
}

fn response(id: DealId, status: rm_types::DealStatus) -> DealResponse {
    DealResponse {
        status,
        id,
        payment_owed: TokenAmount::zero(),
        message: String::new(),
        blocks: Vec::new(),
    }
}

/// The provider's ask: anything the generated terms may ask for.
fn ask() -> rm_types::Ask {
    rm_types::Ask {
        price_per_byte: TokenAmount::zero(),
        unseal_price: TokenAmount::zero(),
        payment_interval: u64::MAX,
        payment_interval_increase: u64::MAX,
    }
}

/// Deadlines short enough for simulated time, a reconnect budget longer than any outage
/// the faults make.
fn client_config() -> rm_client::DealConfig {
    let mut c = rm_client::DealConfig::default();
    c.max_reconnects = 30;
    c.reconnect_backoff = Duration::from_millis(50);
    c.max_backoff = Duration::from_secs(1);
    c.read_timeout = Duration::from_secs(5);
    c.progress_timeout = Duration::from_secs(120);
    // Longer than the provider's resume window: a cancel the provider never hears of
    // still ends both sides the same way.
    c.cancel_delivery = Duration::from_secs(120);
    c
}

fn provider_config() -> rm_provider::DealConfig {
    let mut c = rm_provider::DealConfig::default();
    c.max_response_bytes = 8 << 10;
    c.max_blocks_per_response = 8;
    c.payment_timeout = Duration::from_secs(60);
    c.resume_window = Duration::from_secs(60);
    // Under the client's 5 s read deadline, as the defaults (10 s, 30 s) are.
    c.unsealing_interval = Duration::from_secs(2);
    c
}
