//! [`Behaviour`]: the retrieval protocols as a libp2p `NetworkBehaviour`, for any `Swarm`.
//!
//! A program with a swarm of its own adds [`Behaviour`] next to its other behaviours (it
//! composes with `#[derive(NetworkBehaviour)]` like `libp2p::ping::Behaviour`), takes the
//! [`Event`]s it reports (inbound queries to answer, inbound deal streams to serve) from
//! its swarm's event loop, and opens outbound queries and deal streams with a cloneable
//! [`Control`]. [`crate::Network`] is this behaviour in a ready-made host.
//!
//! Admission happens in the connection handler, before anything reaches the program:
//! an inbound query or deal stream takes a permit of its kind (at most
//! [`Config::max_inbound_queries_per_peer`] and [`Config::max_inbound_queries`] queries,
//! [`Config::max_inbound_deals_per_peer`] and [`Config::max_inbound_deals`] deal streams,
//! held until the stream ends). A query over its limits is refused with a clean close (the
//! client reads end of stream where the answer would be: [`crate::Error::QueryRefused`])
//! and counted as `queries_refused`; a deal stream over its limits is reset and counted as
//! `rejected_streams`. The handler reads each admitted query (bounded by
//! [`Config::read_timeout`] and [`Config::max_query_size`]) before the program hears of
//! it, then writes the program's answer.
//!
//! Requires a tokio runtime (the swarm built with `SwarmBuilder::with_tokio`): handlers use
//! tokio's timers.

use std::{
    collections::{HashMap, VecDeque},
    num::NonZeroUsize,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use libp2p::{
    Multiaddr, PeerId, Stream, StreamProtocol,
    core::{Endpoint, transport::PortUse},
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, DialError, DialFailure, FromSwarm,
        NetworkBehaviour, NotifyHandler, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
        behaviour::{ConnectionEstablished, PeerAddresses},
        dial_opts::{DialOpts, PeerCondition},
    },
};
use rm_types::{Query, QueryResponse, protocol::DEAL_PROTOCOL};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    DealStream, Error, Metrics,
    deal::Role,
    handler::{Admitted, OpenError, OpenRequest},
    limiter::Limiter,
    metrics::{Counters, bump},
    query::{self, QueryProtocol, QueryRequest},
};

pub use crate::handler::{Handler, HandlerIn, HandlerOut, Upgrade};

/// 1 MiB.
const MIB: usize = 1 << 20;

/// Stream-open requests of [`Control`]s queued for the behaviour.
const OPEN_QUEUE: usize = 64;

/// Stream-open requests waiting for a connection to one peer.
const MAX_WAITING_PER_PEER: usize = 64;

/// Peers with stream-open requests waiting for a connection.
const MAX_WAITING_PEERS: usize = 1024;

/// Peers whose addresses the behaviour remembers (least recently used forgotten first).
const ADDRESS_BOOK_PEERS: usize = 1024;

/// How many disconnections a slow deal stream may miss before it is told it lagged.
const DISCONNECT_BUFFER: usize = 256;

/// Settings of a [`Behaviour`]: which protocols it serves and tries, message and block
/// caps, inbound limits and timeouts. Every field has a documented default.
///
/// ```
/// use std::time::Duration;
/// use rm_network::{BehaviourConfig, QueryProtocol};
///
/// let config = BehaviourConfig::default()
///     .with_serve_query_protocols([QueryProtocol::V1])
///     .with_read_timeout(Duration::from_secs(5));
/// assert_eq!(config.max_inbound_queries_per_peer, 32);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Query protocol versions answered. Default: `[V1, V0]` (both).
    pub serve_query_protocols: Vec<QueryProtocol>,
    /// Query protocol versions tried, in order, by [`Control::query`]. Default: `[V1, V0]`.
    pub query_protocols: Vec<QueryProtocol>,
    /// Whether inbound deal streams are accepted. Default: `true`.
    pub serve_deals: bool,
    /// Largest `DealResponse` accepted or sent, in bytes of DAG-CBOR. Default: 8 MiB.
    pub max_message_size: usize,
    /// Largest `QueryResponse` and `DealPayment` (and deal-stream control message).
    /// Default: 256 KiB.
    pub max_control_message_size: usize,
    /// Largest inbound `Query`. Default: 8 KiB (a query is two CIDs; go-fil-markets caps
    /// an identity payload CID at 2 KiB). Small, because every query in progress may hold
    /// this much.
    pub max_query_size: usize,
    /// Largest `DealProposal`. Default: 16 KiB.
    pub max_proposal_size: usize,
    /// Largest block data in a `DealResponse`. Default: 2 MiB.
    pub max_block_size: usize,
    /// Most blocks in one `DealResponse`. Default: 8192.
    pub max_blocks_per_response: usize,
    /// Most inbound deal streams open at once from one peer. Default: 8.
    pub max_inbound_deals_per_peer: usize,
    /// Most inbound deal streams open at once in total. Default: 128.
    pub max_inbound_deals: usize,
    /// Most inbound deal streams open at once from the peers of one IP address (peer ids
    /// cost nothing; with this, holding every slot takes four addresses). Default: 32.
    pub max_inbound_deals_per_ip: usize,
    /// Most inbound queries in progress at once from one peer. Default: 32.
    pub max_inbound_queries_per_peer: usize,
    /// Most inbound queries in progress at once from the peers of one IP address.
    /// Default: 256 (half the total).
    pub max_inbound_queries_per_ip: usize,
    /// Most inbound queries in progress at once in total. Default: 512.
    pub max_inbound_queries: usize,
    /// Inbound queries and deal streams admitted but not yet taken by the program (events
    /// waiting in the behaviour); beyond this a new one is refused. Default: 64.
    pub inbound_queue: usize,
    /// Deal stream: longest a read may go without progress (one message may take ten
    /// times this in all). Query: the whole message. Default: 30 s.
    pub read_timeout: Duration,
    /// Longest a write may go without progress (a `DealResponse` may take ten times this
    /// in all). Default: 30 s.
    pub write_timeout: Duration,
    /// Longest time to open a stream, including a dial if not connected. Default: 10 s.
    pub open_timeout: Duration,
    /// How long the program has to answer an inbound query. Default: 10 s.
    pub handler_timeout: Duration,
    /// Longest a provider waits for a whole `DealProposal` from the moment the stream is
    /// read (a proposal is a few hundred bytes; a peer trickling one cannot hold a deal
    /// slot for long). Default: 20 s.
    pub proposal_timeout: Duration,
    /// Longest one whole control message (a payment, a cancel) may take from its first
    /// byte. Default: 60 s.
    pub control_message_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            serve_query_protocols: vec![QueryProtocol::V1, QueryProtocol::V0],
            query_protocols: vec![QueryProtocol::V1, QueryProtocol::V0],
            serve_deals: true,
            max_message_size: 8 * MIB,
            max_control_message_size: 256 * 1024,
            max_query_size: 8 * 1024,
            max_proposal_size: 16 * 1024,
            max_block_size: 2 * MIB,
            max_blocks_per_response: 8192,
            max_inbound_deals_per_peer: 8,
            max_inbound_deals: 128,
            max_inbound_deals_per_ip: 32,
            max_inbound_queries_per_peer: 32,
            max_inbound_queries_per_ip: 256,
            max_inbound_queries: 512,
            inbound_queue: 64,
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            open_timeout: Duration::from_secs(10),
            handler_timeout: Duration::from_secs(10),
            proposal_timeout: Duration::from_secs(20),
            control_message_timeout: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Sets the query versions answered.
    pub fn with_serve_query_protocols(
        mut self,
        protocols: impl IntoIterator<Item = QueryProtocol>,
    ) -> Self {
        self.serve_query_protocols = protocols.into_iter().collect();
        self
    }

    /// Sets the query versions tried, in order.
    pub fn with_query_protocols(
        mut self,
        protocols: impl IntoIterator<Item = QueryProtocol>,
    ) -> Self {
        self.query_protocols = protocols.into_iter().collect();
        self
    }

    /// Sets [`Config::serve_deals`].
    pub fn with_serve_deals(mut self, serve: bool) -> Self {
        self.serve_deals = serve;
        self
    }

    /// Sets [`Config::read_timeout`].
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The protocols accepted inbound, in the order they are offered.
    fn inbound_protocols(&self) -> Vec<StreamProtocol> {
        let mut protocols = Vec::new();
        for protocol in &self.serve_query_protocols {
            let protocol = protocol.stream_protocol();
            if !protocols.contains(&protocol) {
                protocols.push(protocol);
            }
        }
        if self.serve_deals {
            protocols.push(StreamProtocol::new(DEAL_PROTOCOL));
        }
        protocols
    }
}

/// What the behaviour reports: inbound work for the program. [`crate::Network`] hands the
/// same events to its delegate ([`crate::Network::set_delegate`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A peer asks a query; answer with [`QueryRequest::respond`] within
    /// [`Config::handler_timeout`]. Dropping it closes the stream without an answer.
    Query(QueryRequest),
    /// A peer opened a deal stream; this side is the provider. Dropping it resets the
    /// stream.
    Deal(DealStream),
}

/// State shared by the behaviour, its handlers, its controls and every stream.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) counters: Arc<Counters>,
    pub(crate) query_limiter: Arc<Limiter>,
    pub(crate) deal_limiter: Arc<Limiter>,
    /// Peers whose last connection closed; deal streams watch it so a read on a dead
    /// connection fails at once instead of at its timeout.
    pub(crate) disconnected: broadcast::Sender<PeerId>,
}

/// The retrieval protocols as a `NetworkBehaviour`: serves the query protocols and the
/// deal stream inbound (as [`Event`]s), and opens them outbound for its [`Control`]s.
///
/// ```
/// use rm_network::{Behaviour, BehaviourConfig, libp2p};
///
/// #[derive(libp2p::swarm::NetworkBehaviour)]
/// struct MyBehaviour {
///     retrieval: Behaviour,
///     ping: libp2p::ping::Behaviour,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let retrieval = Behaviour::new(BehaviourConfig::default());
/// let control = retrieval.control(); // opens queries and deal streams from async code
/// let behaviour = MyBehaviour { retrieval, ping: libp2p::ping::Behaviour::default() };
/// # let _ = (control, behaviour);
/// # }
/// ```
pub struct Behaviour {
    shared: Arc<Shared>,
    protocols: Vec<StreamProtocol>,
    requests: mpsc::Receiver<OpenRequest>,
    sender: mpsc::Sender<OpenRequest>,
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    /// The remote IP address of each inbound connection, handed to its deal streams.
    remote_ips: HashMap<ConnectionId, std::net::IpAddr>,
    /// Addresses given with `Swarm::add_peer_address`, offered when the swarm dials.
    addresses: PeerAddresses,
    /// Open requests for peers not connected, waiting for a dial.
    waiting: HashMap<PeerId, Vec<OpenRequest>>,
    /// Events for the swarm, at most `inbound_queue` inbound ones.
    events: VecDeque<ToSwarm<Event, HandlerIn>>,
    /// Inbound events in `events`.
    inbound_events: usize,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Behaviour")
            .field("protocols", &self.protocols)
            .field("connected_peers", &self.connections.len())
            .finish()
    }
}

impl Behaviour {
    /// A behaviour with `config`.
    pub fn new(config: Config) -> Self {
        let (sender, requests) = mpsc::channel(OPEN_QUEUE);
        let shared = Arc::new(Shared {
            deal_limiter: Limiter::new(
                config.max_inbound_deals,
                config.max_inbound_deals_per_peer,
                config.max_inbound_deals_per_ip,
            ),
            query_limiter: Limiter::new(
                config.max_inbound_queries,
                config.max_inbound_queries_per_peer,
                config.max_inbound_queries_per_ip,
            ),
            counters: Arc::new(Counters::default()),
            disconnected: broadcast::channel(DISCONNECT_BUFFER).0,
            config,
        });
        Self {
            protocols: shared.config.inbound_protocols(),
            shared,
            requests,
            sender,
            connections: HashMap::new(),
            remote_ips: HashMap::new(),
            addresses: PeerAddresses::new(
                NonZeroUsize::new(ADDRESS_BOOK_PEERS).unwrap_or(NonZeroUsize::MIN),
            ),
            waiting: HashMap::new(),
            events: VecDeque::new(),
            inbound_events: 0,
        }
    }

    /// A handle that opens queries and deal streams through this behaviour. A peer that is
    /// not connected is dialed by id, with the addresses the swarm's behaviours know for it
    /// (this one remembers those given with `Swarm::add_peer_address`).
    pub fn control(&self) -> Control {
        Control {
            requests: self.sender.clone(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A snapshot of the counters (refusals, timeouts, queries answered, ...).
    pub fn metrics(&self) -> Metrics {
        self.shared.counters.snapshot()
    }

    fn handler(&self, peer: PeerId, ip: Option<std::net::IpAddr>) -> Handler {
        Handler::new(peer, ip, Arc::clone(&self.shared), self.protocols.clone())
    }

    /// Routes an open request to a connection, or queues it and asks for a dial.
    fn route(&mut self, request: OpenRequest) {
        if request.reply.is_closed() {
            return;
        }
        let peer = request.peer;
        if let Some(connection) = self.connections.get(&peer).and_then(|c| c.first()) {
            self.events.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(*connection),
                event: HandlerIn(request),
            });
            return;
        }
        if !self.waiting.contains_key(&peer) && self.waiting.len() >= MAX_WAITING_PEERS {
            self.waiting
                .retain(|_, w| w.iter().any(|r| !r.reply.is_closed()));
        }
        if !self.waiting.contains_key(&peer) && self.waiting.len() >= MAX_WAITING_PEERS {
            request.fail(OpenError::Other("too many peers being dialed".into()));
            return;
        }
        let waiting = self.waiting.entry(peer).or_default();
        waiting.retain(|r| !r.reply.is_closed());
        if waiting.len() >= MAX_WAITING_PER_PEER {
            request.fail(OpenError::Other(
                "too many streams waiting for a dial".into(),
            ));
            return;
        }
        let first = waiting.is_empty();
        waiting.push(request);
        if first {
            self.events.push_back(ToSwarm::Dial {
                opts: DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .allocate_new_port()
                    .build(),
            });
        }
    }

    /// Turns what a handler admitted into an event for the program, unless too many wait.
    fn admit(&mut self, connection: ConnectionId, HandlerOut(event): HandlerOut) {
        if self.inbound_events >= self.shared.config.inbound_queue.max(1) {
            // Dropping the request closes the query without an answer; dropping the
            // deal stream resets it.
            match event {
                Admitted::Query(request) => {
                    tracing::debug!(peer = %request.peer, "inbound queue full; refusing the query");
                    bump(&self.shared.counters.queries_refused);
                }
                Admitted::Deal(peer, _, _) => {
                    tracing::debug!(%peer, "inbound queue full; resetting the deal stream");
                    bump(&self.shared.counters.rejected_streams);
                }
            }
            return;
        }
        let event = match event {
            Admitted::Query(request) => Event::Query(request),
            Admitted::Deal(peer, stream, permit) => {
                bump(&self.shared.counters.deal_streams_accepted);
                let mut deal = DealStream::new(
                    peer,
                    Role::Provider,
                    stream,
                    Arc::clone(&self.shared),
                    Some(permit),
                );
                deal.remote_ip = self.remote_ips.get(&connection).copied();
                Event::Deal(deal)
            }
        };
        self.inbound_events += 1;
        self.events.push_back(ToSwarm::GenerateEvent(event));
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let ip = crate::conn_limits::ip_of(remote);
        if let Some(ip) = ip {
            self.remote_ips.insert(connection, ip);
        }
        Ok(self.handler(peer, ip))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer, None))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        Ok(peer
            .map(|peer| self.addresses.get(&peer).collect())
            .unwrap_or_default())
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::NewExternalAddrOfPeer(new) => {
                self.addresses.add(new.peer_id, new.addr.clone());
            }
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            }) => {
                self.connections
                    .entry(peer_id)
                    .or_default()
                    .push(connection_id);
                for request in self.waiting.remove(&peer_id).unwrap_or_default() {
                    self.route(request);
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                remaining_established,
                ..
            }) => {
                self.remote_ips.remove(&connection_id);
                if let Some(connections) = self.connections.get_mut(&peer_id) {
                    connections.retain(|c| *c != connection_id);
                    if connections.is_empty() {
                        self.connections.remove(&peer_id);
                    }
                }
                if remaining_established == 0 {
                    // No receiver (no deal stream) is fine.
                    let _ = self.shared.disconnected.send(peer_id);
                }
            }
            FromSwarm::DialFailure(DialFailure {
                peer_id: Some(peer),
                error,
                ..
            }) => {
                // Another dial to the peer is under way: its outcome decides.
                if matches!(error, DialError::DialPeerConditionFalse(_))
                    || self.connections.contains_key(&peer)
                {
                    return;
                }
                let reason = error.to_string();
                for request in self.waiting.remove(&peer).unwrap_or_default() {
                    request.fail(OpenError::Other(format!("dial failed: {reason}")));
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.admit(connection, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                if matches!(event, ToSwarm::GenerateEvent(_)) {
                    self.inbound_events -= 1;
                }
                return Poll::Ready(event);
            }
            match self.requests.poll_recv(cx) {
                Poll::Ready(Some(request)) => self.route(request),
                // The behaviour holds a sender itself: never closed.
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Opens queries and deal streams through a [`Behaviour`] from async code; cheap to clone.
/// Each call is bounded by [`Config::open_timeout`] (queueing, dialing, negotiating) and
/// then by the read and write timeouts.
#[derive(Clone)]
pub struct Control {
    requests: mpsc::Sender<OpenRequest>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

impl Control {
    /// The behaviour's configuration.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A snapshot of the behaviour's counters.
    pub fn metrics(&self) -> Metrics {
        self.shared.counters.snapshot()
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Opens a stream for `protocol` to `peer`, dialing it if not connected.
    pub(crate) async fn open(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
    ) -> Result<Stream, Error> {
        let after = self.shared.config.open_timeout;
        let (reply, answer) = oneshot::channel();
        let request = OpenRequest {
            peer,
            protocol: protocol.clone(),
            reply,
        };
        let opened = tokio::time::timeout(after, async {
            self.requests
                .send(request)
                .await
                .map_err(|_| Error::Shutdown)?;
            answer.await.map_err(|_| Error::Shutdown)
        })
        .await;
        match opened {
            Ok(Ok(Ok(stream))) => Ok(stream),
            Ok(Ok(Err(OpenError::Unsupported))) => Err(Error::UnsupportedProtocol {
                peer,
                protocols: vec![protocol.to_string()],
            }),
            Ok(Ok(Err(OpenError::Other(reason)))) => Err(Error::OpenStream { peer, reason }),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                bump(&self.shared.counters.timeouts);
                Err(Error::Timeout {
                    what: "opening a stream",
                    after,
                })
            }
        }
    }

    /// Asks `peer` a query, trying the versions of [`Config::query_protocols`] in order.
    pub async fn query(&self, peer: PeerId, query: &Query) -> Result<QueryResponse, Error> {
        let protocols = self.shared.config.query_protocols.clone();
        self.query_via(peer, query, &protocols)
            .await
            .map(|(response, _)| response)
    }

    /// Asks `peer` a query, trying `protocols` in order: a version the peer does not
    /// support is skipped; any other failure ends the attempt. Returns the answer and the
    /// version that carried it. A provider that closes the stream without an answer (over
    /// its limits, or unable to answer) gives [`Error::QueryRefused`].
    pub async fn query_via(
        &self,
        peer: PeerId,
        query: &Query,
        protocols: &[QueryProtocol],
    ) -> Result<(QueryResponse, QueryProtocol), Error> {
        let mut tried = Vec::new();
        for (i, &protocol) in protocols.iter().enumerate() {
            match self.open(peer, protocol.stream_protocol()).await {
                Ok(stream) => {
                    if i > 0 {
                        bump(&self.shared.counters.query_fallbacks);
                    }
                    let response =
                        query::exchange(&self.shared, peer, stream, query, protocol).await?;
                    return Ok((response, protocol));
                }
                Err(Error::UnsupportedProtocol { .. }) => {
                    tracing::debug!(%peer, %protocol, "peer does not support this query version");
                    tried.push(protocol.id().to_owned());
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::UnsupportedProtocol {
            peer,
            protocols: tried,
        })
    }

    /// Opens a deal stream to `peer`; this side is the client.
    pub async fn open_deal_stream(&self, peer: PeerId) -> Result<DealStream, Error> {
        let stream = self.open(peer, StreamProtocol::new(DEAL_PROTOCOL)).await?;
        bump(&self.shared.counters.deal_streams_opened);
        Ok(DealStream::new(
            peer,
            Role::Client,
            stream,
            Arc::clone(&self.shared),
            None,
        ))
    }
}
