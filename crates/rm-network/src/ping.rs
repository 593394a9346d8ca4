//! The ping protocol (`/ipfs/ping/1.0.0`) as the host runs it: inbound pings are always
//! answered, outbound pings are optional.
//!
//! `libp2p-ping` stops answering a peer's pings once that peer refused ours: its handler
//! goes inactive on the connection, inbound included. A js-libp2p client without the ping
//! service still pings (its connection monitor does, every 10 s) and closes the connection
//! when the pings go unanswered, so every rm stream on it died about 15 s after connecting.
//! Here the two directions are independent: a peer that does not speak ping is simply not
//! pinged again on that connection, and its own pings are answered as long as it sends
//! them. Failed or unsupported pings never close a connection, and ping streams never keep
//! one alive.

use std::{
    convert::Infallible,
    io,
    task::{Context, Poll},
    time::Duration,
};

use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, future::BoxFuture};
use libp2p::{
    Multiaddr, PeerId, Stream, StreamProtocol,
    core::{Endpoint, transport::PortUse, upgrade::ReadyUpgrade},
    swarm::{
        ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
        NetworkBehaviour, StreamUpgradeError, SubstreamProtocol, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
        handler::{
            ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
        },
    },
};

/// The ping protocol id.
pub(crate) const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");

/// Bytes in one ping.
const PING_SIZE: usize = 32;

/// Pings every connection every `interval` (when `Some`) and answers inbound pings.
pub(crate) struct Behaviour {
    interval: Option<Duration>,
    timeout: Duration,
}

impl Behaviour {
    /// `interval: None` only answers.
    pub(crate) fn new(interval: Option<Duration>, timeout: Duration) -> Self {
        Self { interval, timeout }
    }

    fn handler(&self) -> Handler {
        Handler {
            interval: self.interval,
            timeout: self.timeout,
            next: self.interval.map(|i| Box::pin(tokio::time::sleep(i))),
            outbound: Outbound::Idle,
            inbound: None,
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler())
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

/// Where the outbound side of a connection is.
enum Outbound {
    /// Waiting for the next ping time.
    Idle,
    /// A stream was requested.
    Opening,
    /// A ping is in flight.
    Pinging(BoxFuture<'static, io::Result<Stream>>),
    /// The peer does not speak ping: never ping it again on this connection.
    Unsupported,
}

/// The per-connection half of [`Behaviour`].
pub(crate) struct Handler {
    interval: Option<Duration>,
    timeout: Duration,
    next: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    outbound: Outbound,
    /// The inbound ping stream being answered (a new one replaces it, as in libp2p-ping).
    inbound: Option<BoxFuture<'static, io::Result<()>>>,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Infallible;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ())
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        // Answer inbound pings whatever happens to ours.
        if let Some(pong) = self.inbound.as_mut()
            && let Poll::Ready(result) = pong.poll_unpin(cx)
        {
            if let Err(e) = result {
                tracing::trace!(error = %e, "inbound ping stream ended");
            }
            self.inbound = None;
        }
        if let Outbound::Pinging(ping) = &mut self.outbound
            && let Poll::Ready(result) = ping.poll_unpin(cx)
        {
            if let Err(e) = result {
                tracing::debug!(error = %e, "ping failed");
            }
            // Each ping on a fresh stream, as js-libp2p's monitor does.
            self.outbound = Outbound::Idle;
        }
        if matches!(self.outbound, Outbound::Idle)
            && let (Some(interval), Some(next)) = (self.interval, self.next.as_mut())
            && next.as_mut().poll(cx).is_ready()
        {
            next.as_mut().reset(tokio::time::Instant::now() + interval);
            self.outbound = Outbound::Opening;
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ())
                    .with_timeout(self.timeout),
            });
        }
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: Infallible) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<'_, Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: mut stream,
                ..
            }) => {
                stream.ignore_for_keep_alive();
                self.inbound = Some(answer(stream).boxed());
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: mut stream,
                ..
            }) => {
                stream.ignore_for_keep_alive();
                let timeout = self.timeout;
                self.outbound = Outbound::Pinging(
                    async move {
                        tokio::time::timeout(timeout, ping(stream))
                            .await
                            .unwrap_or_else(|_| {
                                Err(io::Error::new(io::ErrorKind::TimedOut, "ping timed out"))
                            })
                    }
                    .boxed(),
                );
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => {
                self.outbound = match error {
                    StreamUpgradeError::NegotiationFailed => {
                        tracing::debug!("peer does not speak ping; no more pings to it");
                        Outbound::Unsupported
                    }
                    _ => Outbound::Idle,
                };
            }
            _ => {}
        }
    }
}

/// Sends one ping and checks the echo.
async fn ping(mut stream: Stream) -> io::Result<Stream> {
    let payload: [u8; PING_SIZE] = rand::random();
    stream.write_all(&payload).await?;
    stream.flush().await?;
    let mut echo = [0u8; PING_SIZE];
    stream.read_exact(&mut echo).await?;
    if echo != payload {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "ping payload mismatch",
        ));
    }
    stream.close().await?;
    Ok(stream)
}

/// Echoes pings on one inbound stream until the peer closes it.
async fn answer(mut stream: Stream) -> io::Result<()> {
    let mut payload = [0u8; PING_SIZE];
    loop {
        match stream.read_exact(&mut payload).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return stream.close().await;
            }
            Err(e) => return Err(e),
        }
        stream.write_all(&payload).await?;
        stream.flush().await?;
    }
}
