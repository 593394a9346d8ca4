//! [`Network`]: the host, its swarm task and its cloneable handle.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use cid::Cid;
use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Stream, StreamProtocol, SwarmBuilder,
    core::transport::ListenerId,
    identify,
    identity::Keypair,
    noise,
    swarm::{
        ConnectionId, DialError, Swarm, SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
    tcp, yamux,
};
use libp2p_stream::{IncomingStreams, OpenStreamError};
use rm_types::{Query, QueryResponse};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Config, Control, DealStream, Error, Event, Metrics,
    behaviour::{Behaviour, Shared},
    dht::{self, Dht},
    host::{Host, HostEvent},
    metrics::bump,
    query::QueryProtocol,
};

/// Commands queued to the swarm task.
const COMMAND_BUFFER: usize = 64;

/// How long [`Network::new`] waits for its listeners to report addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where inbound events go: the delegate's channel, if one is set.
type Delegate = Arc<RwLock<Option<mpsc::Sender<Event>>>>;

/// Hands an inbound event to the delegate: at once when its channel has room, else from
/// a task that waits at most `after` for room (one task per waiting event; every event
/// holds a permit of the behaviour's limits, so they are bounded). An event nobody takes
/// is dropped (a query closes without an answer, a deal stream is reset) and counted.
fn deliver(delegate: &Delegate, shared: &Arc<Shared>, event: Event, after: Duration) {
    let sender = delegate.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(sender) = sender else {
        refused(shared, &event);
        return;
    };
    match sender.try_send(event) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Closed(event)) => refused(shared, &event),
        Err(mpsc::error::TrySendError::Full(event)) => {
            let shared = Arc::clone(shared);
            tokio::spawn(async move {
                let is_deal = matches!(event, Event::Deal(_));
                match tokio::time::timeout(after, sender.send(event)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(mpsc::error::SendError(event))) => refused(&shared, &event),
                    Err(_) => {
                        // The event was dropped with the timed-out send.
                        let counters = &shared.counters;
                        bump(if is_deal {
                            &counters.rejected_streams
                        } else {
                            &counters.queries_refused
                        });
                    }
                }
            });
        }
    }
}

fn refused(shared: &Shared, event: &Event) {
    match event {
        Event::Query(request) => {
            tracing::debug!(peer = %request.peer, "no delegate took the query; closing it without an answer");
            bump(&shared.counters.queries_refused);
        }
        Event::Deal(stream) => {
            tracing::debug!(peer = %stream.peer(), "no delegate took the deal stream; resetting it");
            bump(&shared.counters.rejected_streams);
        }
    }
}

/// Requests to the swarm task.
#[derive(Debug)]
enum Command {
    Dial {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    AddAddress {
        peer: PeerId,
        addr: Multiaddr,
        reply: oneshot::Sender<()>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    AddExternalAddress {
        addr: Multiaddr,
        reply: oneshot::Sender<()>,
    },
    KnownAddresses {
        peer: PeerId,
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    ConnectedPeers {
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    Dht(dht::Command),
    Shutdown,
}

/// How often the swarm task looks for DHT callers that gave up and lookups whose dials
/// take too long.
const DHT_TICK: Duration = Duration::from_secs(1);

/// A libp2p host speaking the retrieval protocols, and a cheap, cloneable handle to it.
///
/// The swarm (TCP + noise + yamux; the retrieval protocols as [`crate::Behaviour`];
/// identify, ping, raw streams, the DHT) runs in its own tokio task; the handle talks to it
/// over a bounded channel. The task stops when [`Network::shutdown`] is called or the last
/// handle is dropped.
#[derive(Clone, Debug)]
pub struct Network {
    inner: Arc<Inner>,
}

struct Inner {
    local_peer_id: PeerId,
    config: Config,
    commands: mpsc::Sender<Command>,
    /// Queries and deal streams (the retrieval behaviour).
    control: Control,
    /// Raw streams of custom protocols (libp2p-stream).
    streams: libp2p_stream::Control,
    delegate: Delegate,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("local_peer_id", &self.local_peer_id)
            .finish()
    }
}

impl Network {
    /// Starts a host with the identity `keypair` (see [`crate::keys`] to keep one in a
    /// file) and waits until every listen address is bound. Must be called inside a tokio
    /// runtime.
    pub async fn new(keypair: Keypair, config: Config) -> Result<Self, Error> {
        let local_peer_id = keypair.public().to_peer_id();
        let retrieval = Behaviour::new(config.behaviour());
        let control = retrieval.control();
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| Error::Transport(e.to_string()))?
            .with_behaviour(|key| Host::new(key.public(), &config, retrieval))
            .map_err(|e| Error::Transport(e.to_string()))?
            .with_swarm_config(|c| {
                c.with_idle_connection_timeout(config.idle_timeout)
                    .with_max_negotiating_inbound_streams(config.max_negotiating_inbound_streams)
            })
            .build();

        listen(&mut swarm, &config.listen_addrs).await?;
        // What a listening host puts in its provider records (kad sends its external
        // addresses along with each record it announces).
        for addr in swarm.listeners().cloned().collect::<Vec<_>>() {
            swarm.add_external_address(addr);
        }
        let dht = Dht::new(&config);

        let streams = swarm.behaviour().stream.new_control();
        let delegate = Delegate::default();
        let (commands, receiver) = mpsc::channel(COMMAND_BUFFER);
        tokio::spawn(run(
            swarm,
            receiver,
            dht,
            Arc::clone(&delegate),
            Arc::clone(control.shared()),
            config.handler_timeout,
        ));
        tracing::debug!(%local_peer_id, "network started");
        Ok(Self {
            inner: Arc::new(Inner {
                local_peer_id,
                config,
                commands,
                control,
                streams,
                delegate,
            }),
        })
    }

    /// This host's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.inner.local_peer_id
    }

    /// The configuration the host runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// A snapshot of the counters (refusals, timeouts, queries served, ...).
    pub fn metrics(&self) -> Metrics {
        self.inner.control.metrics()
    }

    /// The retrieval behaviour's control: queries and deal streams, as
    /// [`Network::query`] and [`Network::open_deal_stream`].
    pub fn control(&self) -> &Control {
        &self.inner.control
    }

    /// Routes inbound queries and deal streams to `delegate` (replacing an earlier one).
    /// Without a delegate, inbound queries are closed without an answer (counted as
    /// `queries_refused`) and deal streams are reset (counted as `rejected_streams`). The
    /// channel's capacity is the delegate's queue: when it stays full for the handler
    /// timeout, further ones are refused the same way.
    pub fn set_delegate(&self, delegate: mpsc::Sender<Event>) {
        *self
            .inner
            .delegate
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(delegate);
    }

    /// Stops routing inbound streams to the delegate.
    pub fn clear_delegate(&self) {
        *self
            .inner
            .delegate
            .write()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }

    async fn command<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(make(tx))
            .await
            .map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)
    }

    /// The addresses the host listens on (with port numbers resolved).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, Error> {
        self.command(|reply| Command::ListenAddrs { reply }).await
    }

    /// Announces `addr` as an address of this host: identify sends it to every peer and
    /// DHT provider records carry it (e.g. `/ip4/…/tcp/8080/http`, where this node also
    /// serves HTTP retrievals). Returns once the swarm has it.
    pub async fn add_external_address(&self, addr: Multiaddr) -> Result<(), Error> {
        self.command(|reply| Command::AddExternalAddress { addr, reply })
            .await
    }

    /// The addresses this host knows for `peer` (dialled, given, or announced by the peer
    /// through identify), in no particular order.
    pub async fn known_addresses(&self, peer: PeerId) -> Result<Vec<Multiaddr>, Error> {
        self.command(|reply| Command::KnownAddresses { peer, reply })
            .await
    }

    /// Remembers an address of `peer`, used whenever a stream is opened to it while not
    /// connected. Returns once the address is recorded.
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), Error> {
        self.command(|reply| Command::AddAddress { peer, addr, reply })
            .await
    }

    /// Connects to `peer` (at `addrs` and any remembered address) and waits until the
    /// connection is up. Returns at once when already connected.
    pub async fn dial(&self, peer: PeerId, addrs: Vec<Multiaddr>) -> Result<(), Error> {
        let after = self.config().open_timeout;
        let dial = self.command(|reply| Command::Dial { peer, addrs, reply });
        match tokio::time::timeout(after, dial).await {
            Ok(result) => result?,
            Err(_) => Err(Error::Timeout {
                what: "dialing",
                after,
            }),
        }
    }

    /// Peers with at least one open connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, Error> {
        self.command(|reply| Command::ConnectedPeers { reply })
            .await
    }

    /// Whether there is an open connection to `peer`.
    pub async fn is_connected(&self, peer: PeerId) -> Result<bool, Error> {
        Ok(self.connected_peers().await?.contains(&peer))
    }

    /// Closes every connection to `peer`, even with streams open. Returns whether there
    /// was one.
    pub async fn disconnect(&self, peer: PeerId) -> Result<bool, Error> {
        self.command(|reply| Command::Disconnect { peer, reply })
            .await
    }

    /// Sends a DHT command and waits for its reply, at most `after`.
    async fn dht<T>(
        &self,
        what: &'static str,
        after: Duration,
        make: impl FnOnce(oneshot::Sender<T>) -> dht::Command,
    ) -> Result<T, Error> {
        let command = self.command(|reply| Command::Dht(make(reply)));
        match tokio::time::timeout(after, command).await {
            Ok(result) => result,
            Err(_) => {
                bump(&self.inner.control.shared().counters.timeouts);
                Err(Error::Timeout { what, after })
            }
        }
    }

    /// The longest a DHT call waits: the query timeout, plus the open timeout for the
    /// dials that follow a lookup.
    fn dht_deadline(&self) -> Duration {
        self.config().dht_query_timeout + self.config().open_timeout
    }

    /// Adds a DHT peer (a bootstrap node, say) to the routing table and the address book.
    pub async fn add_dht_peer(&self, peer: PeerId, addr: Multiaddr) -> Result<(), Error> {
        self.command(|reply| Command::Dht(dht::Command::AddPeer { peer, addr, reply }))
            .await
    }

    /// Joins the DHT through the peers known so far ([`Network::add_dht_peer`], peers
    /// identified on a connection): looks up this host's own id and refreshes the routing
    /// table's buckets. Returns when done; [`Error::Dht`] when no peer is known. Kad also
    /// bootstraps by itself every 5 minutes and when its routing table gains a peer.
    pub async fn bootstrap(&self) -> Result<(), Error> {
        let after = self.dht_deadline();
        self.dht("DHT bootstrap", after, |reply| dht::Command::Bootstrap {
            reply,
        })
        .await?
    }

    /// Announces on the DHT that this host provides `payload`: stores a provider record
    /// under [`crate::record_key`] locally and on the peers closest to the key, and returns
    /// when they have been asked (with no DHT peers, at once). Records expire after
    /// [`Config::dht_provider_record_ttl`] on the peers that hold them: announce again
    /// before that (rm-discovery's announcer does).
    pub async fn start_providing(&self, payload: &Cid) -> Result<(), Error> {
        let key = dht::record_key(payload);
        let after = self.dht_deadline();
        self.dht("announcing a provider record", after, |reply| {
            dht::Command::StartProviding { key, reply }
        })
        .await?
    }

    /// Stops announcing `payload` (a local operation: peers keep the record until it
    /// expires).
    pub async fn stop_providing(&self, payload: &Cid) -> Result<(), Error> {
        let key = dht::record_key(payload);
        self.command(|reply| Command::Dht(dht::Command::StopProviding { key, reply }))
            .await
    }

    /// Looks up providers of `payload` on the DHT: at most `limit` (and at most
    /// [`Config::dht_max_providers_per_key`]), never this host, each with the addresses
    /// known for it (from its provider record, the routing table, identify, or the
    /// connection the lookup opened to it; empty when none worked). Those addresses are
    /// also in the address book, so a stream can be opened to the provider by id. A
    /// lookup that times out ([`Config::dht_query_timeout`]) returns what it found.
    pub async fn get_providers(
        &self,
        payload: &Cid,
        limit: usize,
    ) -> Result<Vec<(PeerId, Vec<Multiaddr>)>, Error> {
        let key = dht::record_key(payload);
        let after = self.dht_deadline();
        self.dht("looking up providers", after, |reply| {
            dht::Command::GetProviders { key, limit, reply }
        })
        .await?
    }

    /// The providers of `payload` whose records this host stores (its own included).
    /// For diagnostics and tests.
    pub async fn stored_providers(&self, payload: &Cid) -> Result<Vec<PeerId>, Error> {
        let key = dht::record_key(payload);
        self.command(|reply| Command::Dht(dht::Command::StoredProviders { key, reply }))
            .await
    }

    /// The peers in the DHT routing table.
    pub async fn dht_peers(&self) -> Result<Vec<PeerId>, Error> {
        self.command(|reply| Command::Dht(dht::Command::RoutingTable { reply }))
            .await
    }

    /// Stops the swarm task (closing all connections) and drops the delegate. Other
    /// handles then return [`Error::Shutdown`].
    pub async fn shutdown(&self) {
        self.clear_delegate();
        if self.inner.commands.send(Command::Shutdown).await.is_ok() {
            self.inner.commands.closed().await;
        }
    }

    /// Opens a raw libp2p stream for `protocol` to `peer`, dialing it if needed (bounded
    /// by [`Config::open_timeout`]). For custom protocols and tests; the retrieval
    /// protocols have typed methods.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        protocol: StreamProtocol,
    ) -> Result<Stream, Error> {
        if self.inner.commands.is_closed() {
            return Err(Error::Shutdown);
        }
        let mut control = self.inner.streams.clone();
        let after = self.config().open_timeout;
        match tokio::time::timeout(after, control.open_stream(peer, protocol.clone())).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(OpenStreamError::UnsupportedProtocol(_))) => Err(Error::UnsupportedProtocol {
                peer,
                protocols: vec![protocol.to_string()],
            }),
            Ok(Err(e)) => Err(Error::OpenStream {
                peer,
                reason: e.to_string(),
            }),
            Err(_) => {
                bump(&self.inner.control.shared().counters.timeouts);
                Err(Error::Timeout {
                    what: "opening a stream",
                    after,
                })
            }
        }
    }

    /// Accepts raw inbound streams for a custom `protocol` (through `libp2p-stream`). The
    /// returned stream of `(peer, stream)` must be polled promptly: it holds one stream at
    /// a time, and libp2p-stream drops inbound streams that find it occupied.
    pub fn accept(&self, protocol: StreamProtocol) -> Result<IncomingStreams, Error> {
        self.inner
            .streams
            .clone()
            .accept(protocol.clone())
            .map_err(|_| Error::AlreadyRegistered(protocol.to_string()))
    }

    /// Asks `peer` a query, trying the versions of [`Config::query_protocols`] in order.
    /// A provider that closes the stream without an answer gives [`Error::QueryRefused`].
    pub async fn query(&self, peer: PeerId, query: &Query) -> Result<QueryResponse, Error> {
        self.inner.control.query(peer, query).await
    }

    /// Asks `peer` a query, trying `protocols` in order: a version the peer does not
    /// support is skipped; any other failure ends the attempt. Returns the answer and the
    /// version that carried it.
    pub async fn query_via(
        &self,
        peer: PeerId,
        query: &Query,
        protocols: &[QueryProtocol],
    ) -> Result<(QueryResponse, QueryProtocol), Error> {
        self.inner.control.query_via(peer, query, protocols).await
    }

    /// Opens a deal stream to `peer`; this side is the client.
    pub async fn open_deal_stream(&self, peer: PeerId) -> Result<DealStream, Error> {
        if self.inner.commands.is_closed() {
            return Err(Error::Shutdown);
        }
        self.inner.control.open_deal_stream(peer).await
    }
}

/// Binds every listen address and waits until each reports its first address.
async fn listen(swarm: &mut Swarm<Host>, addrs: &[Multiaddr]) -> Result<(), Error> {
    let mut pending: HashMap<ListenerId, Multiaddr> = HashMap::new();
    for addr in addrs {
        let id = swarm.listen_on(addr.clone()).map_err(|e| Error::Listen {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
        pending.insert(id, addr.clone());
    }
    let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
    while !pending.is_empty() {
        let Ok(event) = tokio::time::timeout_at(deadline, swarm.select_next_some()).await else {
            let addr = pending
                .into_values()
                .next()
                .unwrap_or_else(Multiaddr::empty);
            return Err(Error::Listen {
                addr,
                reason: "no address reported in time".into(),
            });
        };
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                pending.remove(&listener_id);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(addr) = pending.remove(&listener_id) {
                    return Err(Error::Listen {
                        addr,
                        reason: format!("listener closed: {reason:?}"),
                    });
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                if let Some(addr) = pending.remove(&listener_id) {
                    return Err(Error::Listen {
                        addr,
                        reason: error.to_string(),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Dials in progress: the peer and who waits for the outcome.
type Dials = HashMap<ConnectionId, (PeerId, oneshot::Sender<Result<(), Error>>)>;

/// The swarm task.
async fn run(
    mut swarm: Swarm<Host>,
    mut commands: mpsc::Receiver<Command>,
    mut dht: Dht,
    delegate: Delegate,
    shared: Arc<Shared>,
    handler_timeout: Duration,
) {
    let mut dials = Dials::new();
    let mut tick = tokio::time::interval(DHT_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None | Some(Command::Shutdown) => break,
                Some(Command::Dht(command)) => dht.on_command(&mut swarm, command),
                Some(command) => on_command(&mut swarm, command, &mut dials),
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(HostEvent::Retrieval(event)) => {
                    deliver(&delegate, &shared, event, handler_timeout);
                }
                event => on_event(&mut swarm, event, &mut dials, &mut dht),
            },
            _ = tick.tick() => dht.on_tick(&mut swarm),
        }
    }
    drop(swarm);
    drop(commands);
    tracing::debug!("network stopped");
}

fn on_command(swarm: &mut Swarm<Host>, command: Command, dials: &mut Dials) {
    match command {
        Command::Dial { peer, addrs, reply } => {
            for addr in &addrs {
                swarm.behaviour_mut().addresses.add(peer, addr.clone());
            }
            // Each dial from a port of its own: dialling from the listen port (libp2p's
            // default, for hole punching, which rm does not do) makes two dials to one
            // address collide ("Address already in use").
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::Disconnected)
                .addresses(addrs)
                .extend_addresses_through_behaviour()
                .allocate_new_port()
                .build();
            let id = opts.connection_id();
            match swarm.dial(opts) {
                Ok(()) => {
                    dials.insert(id, (peer, reply));
                }
                Err(DialError::DialPeerConditionFalse(_)) => {
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    let _ = reply.send(Err(Error::Dial {
                        peer,
                        reason: e.to_string(),
                    }));
                }
            }
        }
        Command::AddAddress { peer, addr, reply } => {
            swarm.behaviour_mut().addresses.add(peer, addr);
            let _ = reply.send(());
        }
        Command::AddExternalAddress { addr, reply } => {
            swarm.add_external_address(addr);
            let _ = reply.send(());
        }
        Command::KnownAddresses { peer, reply } => {
            let _ = reply.send(swarm.behaviour_mut().addresses.get(&peer));
        }
        Command::ListenAddrs { reply } => {
            let _ = reply.send(swarm.listeners().cloned().collect());
        }
        Command::ConnectedPeers { reply } => {
            let _ = reply.send(swarm.connected_peers().copied().collect());
        }
        Command::Disconnect { peer, reply } => {
            let _ = reply.send(swarm.disconnect_peer_id(peer).is_ok());
        }
        Command::Dht(_) | Command::Shutdown => {}
    }
}

fn on_event(
    swarm: &mut Swarm<Host>,
    event: SwarmEvent<HostEvent>,
    dials: &mut Dials,
    dht: &mut Dht,
) {
    match event {
        SwarmEvent::ConnectionEstablished {
            peer_id,
            connection_id,
            endpoint,
            ..
        } => {
            tracing::debug!(peer = %peer_id, "connected");
            if let Some((_, reply)) = dials.remove(&connection_id) {
                let _ = reply.send(Ok(()));
            }
            dht.on_connected(swarm, peer_id, &endpoint);
        }
        SwarmEvent::OutgoingConnectionError {
            connection_id,
            peer_id,
            error,
        } => {
            tracing::debug!(peer = ?peer_id, %error, "outgoing connection failed");
            if let Some((peer, reply)) = dials.remove(&connection_id) {
                let _ = reply.send(Err(Error::Dial {
                    peer,
                    reason: error.to_string(),
                }));
            }
            if let Some(peer) = peer_id {
                dht.dial_ended(swarm, peer);
            }
        }
        SwarmEvent::NewListenAddr { address, .. } => swarm.add_external_address(address),
        SwarmEvent::ExpiredListenAddr { address, .. } => {
            swarm.remove_external_address(&address);
        }
        SwarmEvent::Behaviour(HostEvent::Kad(event)) => dht.on_kad_event(swarm, event),
        SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
            tracing::debug!(peer = %peer_id, ?cause, "connection closed");
        }
        SwarmEvent::Behaviour(HostEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) => {
            tracing::debug!(peer = %peer_id, agent = %info.agent_version, "identified");
            dht.on_identified(swarm, peer_id, &info);
        }
        _ => {}
    }
}
