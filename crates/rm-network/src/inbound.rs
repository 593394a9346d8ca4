//! Inbound streams of the retrieval protocols, queued for the dispatcher.
//!
//! `libp2p-stream` hands inbound streams over a channel with room for exactly one: a
//! stream that arrives while the previous one is still in it is dropped, silently. Each
//! connection runs in its own task, so a provider that many clients reach at once loses
//! streams that way however fast it accepts (measured: 12 clients querying together lost
//! some on every run). This small behaviour negotiates the query and deal protocols itself
//! and queues each stream in a bounded channel of `Config::inbound_queue` entries; beyond
//! that a stream is reset and counted as rejected. Outbound streams and custom protocols
//! still go through `libp2p-stream`.

use std::{
    convert::Infallible,
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId, Stream, StreamProtocol,
    core::{Endpoint, InboundUpgrade, UpgradeInfo, transport::PortUse, upgrade::DeniedUpgrade},
    swarm::{
        ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
        NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
        handler::{ConnectionEvent, FullyNegotiatedInbound},
    },
};
use tokio::sync::mpsc;

use crate::metrics::{Counters, bump};

/// A negotiated inbound stream: who opened it, for which protocol.
pub(crate) type InboundStream = (PeerId, StreamProtocol, Stream);

/// Accepts inbound streams for a fixed set of protocols on every connection.
pub(crate) struct Inbound {
    protocols: Vec<StreamProtocol>,
    queue: mpsc::Sender<InboundStream>,
    counters: Arc<Counters>,
}

impl Inbound {
    pub(crate) fn new(
        protocols: Vec<StreamProtocol>,
        queue: mpsc::Sender<InboundStream>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            protocols,
            queue,
            counters,
        }
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler {
            peer,
            protocols: self.protocols.clone(),
            queue: self.queue.clone(),
            counters: Arc::clone(&self.counters),
        }
    }
}

impl NetworkBehaviour for Inbound {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
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

/// The per-connection half of [`Inbound`].
pub(crate) struct Handler {
    peer: PeerId,
    protocols: Vec<StreamProtocol>,
    queue: mpsc::Sender<InboundStream>,
    counters: Arc<Counters>,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(Upgrade(self.protocols.clone()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<'_, Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: (stream, protocol),
            ..
        }) = event
            && let Err(e) = self.queue.try_send((self.peer, protocol, stream))
        {
            // Dropping the stream resets it.
            let (peer, protocol, _) = e.into_inner();
            tracing::debug!(%peer, %protocol, "inbound queue full; resetting the stream");
            bump(&self.counters.rejected_streams);
        }
    }
}

/// Negotiates any of a set of protocols and yields the stream with the chosen one.
pub(crate) struct Upgrade(Vec<StreamProtocol>);

impl UpgradeInfo for Upgrade {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.0.clone().into_iter()
    }
}

impl InboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, StreamProtocol);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, stream: Stream, protocol: Self::Info) -> Self::Future {
        ready(Ok((stream, protocol)))
    }
}
