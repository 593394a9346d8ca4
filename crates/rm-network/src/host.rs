//! The host's swarm behaviour: the retrieval protocols ([`crate::Behaviour`]), identify,
//! ping, raw streams of custom protocols, an address book and the Kademlia DHT.

use std::{
    convert::Infallible,
    num::NonZeroUsize,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    identify,
    identity::PublicKey,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, behaviour::PeerAddresses, dummy,
    },
};

use crate::{Config, dht, ping};

/// The identify protocol version string (the one go-libp2p and rust-libp2p peers use).
const IDENTIFY_PROTOCOL_VERSION: &str = "ipfs/0.1.0";

/// Everything the host runs on each connection.
#[derive(libp2p::swarm::NetworkBehaviour)]
pub(crate) struct Host {
    // The limits come first: a connection they deny reaches no other behaviour.
    pub(crate) limits: libp2p::connection_limits::Behaviour,
    pub(crate) per_ip: crate::conn_limits::PerIp,
    pub(crate) memory: libp2p::memory_connection_limits::Behaviour,
    pub(crate) addresses: AddressBook,
    pub(crate) retrieval: crate::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) stream: libp2p_stream::Behaviour,
    pub(crate) kad: dht::Kad,
}

impl Host {
    pub(crate) fn new(public: PublicKey, config: &Config, retrieval: crate::Behaviour) -> Self {
        let local_peer_id = public.to_peer_id();
        let limits = libp2p::connection_limits::ConnectionLimits::default()
            .with_max_established_incoming(Some(clamp(config.max_connections)))
            .with_max_pending_incoming(Some(clamp(config.max_pending_connections)))
            .with_max_established_per_peer(Some(clamp(config.max_connections_per_peer)));
        Self {
            limits: libp2p::connection_limits::Behaviour::new(limits),
            per_ip: crate::conn_limits::PerIp::new(config.max_connections_per_ip),
            memory: libp2p::memory_connection_limits::Behaviour::with_max_bytes(
                config.max_memory_bytes,
            ),
            addresses: AddressBook::new(config.address_book_size),
            retrieval,
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), public)
                    .with_agent_version(config.agent_version.clone()),
            ),
            ping: ping::Behaviour::new(config.ping_interval, config.ping_timeout),
            stream: libp2p_stream::Behaviour::new(),
            kad: dht::behaviour(local_peer_id, config),
        }
    }
}

/// A configured count as libp2p's `u32` limits take it.
fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Addresses of peers we were told about, offered to the swarm whenever it dials a peer
/// by id (as libp2p-stream does when a stream is opened to a peer we are not connected
/// to). Least recently used peers are forgotten first; at most 10 addresses per peer.
/// Unlike identify's cache, an address is not dropped after one failed dial: a provider
/// that was down for a minute stays reachable.
pub(crate) struct AddressBook {
    peers: PeerAddresses,
}

impl AddressBook {
    fn new(size: usize) -> Self {
        Self {
            peers: PeerAddresses::new(NonZeroUsize::new(size).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    /// Remembers `addr` for `peer`; false when it was known already or names another peer.
    pub(crate) fn add(&mut self, peer: PeerId, addr: Multiaddr) -> bool {
        self.peers.add(peer, addr)
    }

    /// The addresses known for `peer`.
    pub(crate) fn get(&mut self, peer: &PeerId) -> Vec<Multiaddr> {
        self.peers.get(peer).collect()
    }
}

impl NetworkBehaviour for AddressBook {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        maybe_peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        Ok(maybe_peer.map(|peer| self.get(&peer)).unwrap_or_default())
    }

    fn on_swarm_event(&mut self, _: FromSwarm<'_>) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
