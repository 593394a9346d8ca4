//! The per-connection half of [`crate::Behaviour`]: admits inbound query and deal streams
//! within the limits, serves admitted queries, refuses the rest, and opens outbound
//! streams for [`crate::Control`]s.
//!
//! The handler negotiates the retrieval protocols itself rather than through
//! `libp2p-stream`, which hands inbound streams over a channel with room for one and drops
//! the rest silently (12 clients querying together lost some on every run).

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::{Ready, ready},
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::{
    AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered,
};
use libp2p::{
    PeerId, Stream, StreamProtocol,
    core::{InboundUpgrade, UpgradeInfo, upgrade::ReadyUpgrade},
    swarm::{
        ConnectionHandler, ConnectionHandlerEvent, StreamUpgradeError, SubstreamProtocol,
        handler::{
            ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
        },
    },
};
use rm_types::QueryResponse;
use tokio::sync::oneshot;

use crate::{
    behaviour::Shared,
    limiter::{Permit, Refused},
    metrics::bump,
    query::{self, QueryProtocol, QueryRequest},
};

/// Refused queries whose clean close is in progress on one connection; beyond this a
/// refused query is reset instead. As many as yamux lets a peer open at once on one
/// connection (its default `max_num_streams`), so in practice every refusal is clean; each
/// costs a stream and a few hundred bytes for at most [`REFUSAL_DRAIN`].
const MAX_REFUSALS_PER_CONNECTION: usize = 512;

/// Longest a refused query's stream is kept to close it cleanly.
const REFUSAL_DRAIN: Duration = Duration::from_secs(5);

/// Outbound stream requests queued on one connection.
const MAX_PENDING_OPENS: usize = 256;

/// Why an outbound stream could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The peer does not speak the protocol.
    Unsupported,
    /// Anything else (dial failure, negotiation timeout, connection lost).
    Other(String),
}

/// A request of a [`crate::Control`] to open a stream.
#[derive(Debug)]
pub(crate) struct OpenRequest {
    pub(crate) peer: PeerId,
    pub(crate) protocol: StreamProtocol,
    pub(crate) reply: oneshot::Sender<Result<Stream, OpenError>>,
}

impl OpenRequest {
    pub(crate) fn fail(self, error: OpenError) {
        let _ = self.reply.send(Err(error));
    }
}

/// What [`crate::Behaviour`] tells a [`Handler`]: open an outbound stream. Opaque.
#[derive(Debug)]
pub struct HandlerIn(pub(crate) OpenRequest);

/// What a [`Handler`] tells [`crate::Behaviour`]: admitted inbound work. Opaque.
#[derive(Debug)]
pub struct HandlerOut(pub(crate) Admitted);

/// Admitted inbound work.
#[derive(Debug)]
pub(crate) enum Admitted {
    /// A query, read and decoded; its stream waits for the answer.
    Query(QueryRequest),
    /// A deal stream with its permit.
    Deal(PeerId, Stream, Permit),
}

/// What a task of the handler ends with.
enum Step {
    /// A query was read: ask the program.
    Read(Box<ReadQuery>),
    /// Nothing more to do.
    Done,
    /// A refusal finished.
    Refused,
}

/// A query read from its stream, waiting to be answered.
struct ReadQuery {
    query: rm_types::Query,
    protocol: QueryProtocol,
    stream: Stream,
    permit: Permit,
}

/// The connection handler of [`crate::Behaviour`].
pub struct Handler {
    peer: PeerId,
    /// The remote IP address of an inbound connection (what per-IP limits count by).
    ip: Option<std::net::IpAddr>,
    shared: Arc<Shared>,
    protocols: Vec<StreamProtocol>,
    /// Outbound streams to request.
    opens: VecDeque<OpenRequest>,
    /// Admitted inbound work for the behaviour (each holds a permit, so the queue is
    /// bounded by the limits).
    out: VecDeque<Admitted>,
    /// Queries being read or answered, and refusals being closed.
    tasks: FuturesUnordered<BoxFuture<'static, Step>>,
    refusals: usize,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("peer", &self.peer)
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Handler {
    pub(crate) fn new(
        peer: PeerId,
        ip: Option<std::net::IpAddr>,
        shared: Arc<Shared>,
        protocols: Vec<StreamProtocol>,
    ) -> Self {
        Self {
            peer,
            ip,
            shared,
            protocols,
            opens: VecDeque::new(),
            out: VecDeque::new(),
            tasks: FuturesUnordered::new(),
            refusals: 0,
        }
    }

    fn on_inbound(&mut self, stream: Stream, protocol: StreamProtocol) {
        let peer = self.peer;
        let counters = &self.shared.counters;
        if let Some(query) = QueryProtocol::ALL
            .into_iter()
            .find(|q| q.id() == protocol.as_ref())
        {
            match self.shared.query_limiter.acquire(peer, self.ip) {
                Ok(permit) => self.tasks.push(
                    read_query(Arc::clone(&self.shared), peer, stream, query, permit).boxed(),
                ),
                Err(limit) => {
                    tracing::debug!(%peer, %protocol, "too many queries; refusing");
                    bump(&counters.queries_refused);
                    bump(match limit {
                        Refused::PerPeer => &counters.queries_refused_per_peer,
                        Refused::PerIp => &counters.queries_refused_per_ip,
                        Refused::Total => &counters.queries_refused_total,
                    });
                    if self.refusals < MAX_REFUSALS_PER_CONNECTION {
                        self.refusals += 1;
                        let cap = self.shared.config.max_query_size;
                        self.tasks.push(refuse(stream, cap).boxed());
                    }
                    // else: dropping the stream resets it.
                }
            }
            return;
        }
        match self.shared.deal_limiter.acquire(peer, self.ip) {
            Ok(permit) => self.out.push_back(Admitted::Deal(peer, stream, permit)),
            Err(limit) => {
                // Dropping the stream resets it.
                tracing::debug!(%peer, "too many deal streams; resetting the stream");
                bump(&counters.rejected_streams);
                bump(match limit {
                    Refused::PerPeer => &counters.rejected_streams_per_peer,
                    Refused::PerIp => &counters.rejected_streams_per_ip,
                    Refused::Total => &counters.rejected_streams_total,
                });
            }
        }
    }

    fn on_step(&mut self, step: Step) {
        match step {
            Step::Read(read) => {
                let ReadQuery {
                    query,
                    protocol,
                    stream,
                    permit,
                } = *read;
                let (responder, answer) = oneshot::channel();
                self.out.push_back(Admitted::Query(QueryRequest::new(
                    self.peer, query, protocol, responder,
                )));
                self.tasks.push(
                    write_answer(
                        Arc::clone(&self.shared),
                        self.peer,
                        stream,
                        protocol,
                        answer,
                        permit,
                    )
                    .boxed(),
                );
            }
            Step::Refused => self.refusals -= 1,
            Step::Done => {}
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = HandlerIn;
    type ToBehaviour = HandlerOut;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = HandlerIn;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(Upgrade(self.protocols.clone()), ())
    }

    fn connection_keep_alive(&self) -> bool {
        !self.opens.is_empty() || !self.out.is_empty()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        while let Poll::Ready(Some(step)) = self.tasks.poll_next_unpin(cx) {
            self.on_step(step);
        }
        if let Some(out) = self.out.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(HandlerOut(out)));
        }
        while let Some(request) = self.opens.pop_front() {
            if request.reply.is_closed() {
                continue;
            }
            let upgrade = ReadyUpgrade::new(request.protocol.clone());
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(upgrade, HandlerIn(request))
                    .with_timeout(self.shared.config.open_timeout),
            });
        }
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, event: HandlerIn) {
        match event {
            HandlerIn(request) => {
                if self.opens.len() >= MAX_PENDING_OPENS {
                    request.fail(OpenError::Other("too many streams being opened".into()));
                } else {
                    self.opens.push_back(request);
                }
            }
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            '_,
            Self::InboundProtocol,
            Self::OutboundProtocol,
            (),
            Self::OutboundOpenInfo,
        >,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, protocol),
                ..
            }) => self.on_inbound(stream, protocol),
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: stream,
                info: HandlerIn(request),
            }) => {
                // A caller that gave up drops the stream, which resets it.
                let _ = request.reply.send(Ok(stream));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError {
                info: HandlerIn(request),
                error,
            }) => {
                let error = match error {
                    StreamUpgradeError::NegotiationFailed => OpenError::Unsupported,
                    StreamUpgradeError::Timeout => {
                        OpenError::Other("protocol negotiation timed out".into())
                    }
                    StreamUpgradeError::Io(e) => OpenError::Other(e.to_string()),
                    StreamUpgradeError::Apply(e) => match e {},
                };
                request.fail(error);
            }
            _ => {}
        }
    }
}

/// Reads one query within the read timeout and the query size cap. A bad query resets
/// the stream and is counted.
async fn read_query(
    shared: Arc<Shared>,
    peer: PeerId,
    mut stream: Stream,
    protocol: QueryProtocol,
    permit: Permit,
) -> Step {
    let config = &shared.config;
    match query::read_query(
        &mut stream,
        protocol,
        config.max_query_size,
        config.read_timeout,
    )
    .await
    {
        Ok(query) => Step::Read(Box::new(ReadQuery {
            query,
            protocol,
            stream,
            permit,
        })),
        Err(e) => {
            tracing::debug!(%peer, %protocol, error = %e, "bad inbound query; resetting the stream");
            shared.counters.record(&e);
            Step::Done
        }
    }
}

/// Waits for the program's answer and writes it; without one, closes the stream without
/// an answer (what go-fil-markets does when it cannot answer).
async fn write_answer(
    shared: Arc<Shared>,
    peer: PeerId,
    mut stream: Stream,
    protocol: QueryProtocol,
    answer: oneshot::Receiver<QueryResponse>,
    _permit: Permit,
) -> Step {
    let config = &shared.config;
    let response = match tokio::time::timeout(config.handler_timeout, answer).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => {
            let _ = tokio::time::timeout(config.write_timeout, stream.close()).await;
            return Step::Done;
        }
        Err(_) => {
            bump(&shared.counters.timeouts);
            tracing::debug!(%peer, "the query was not answered in time");
            return Step::Done;
        }
    };
    match query::write_response(&mut stream, protocol, &response, config.write_timeout).await {
        Ok(()) => bump(&shared.counters.queries_answered),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "writing a query response failed");
            shared.counters.record(&e);
        }
    }
    Step::Done
}

/// Refuses a query cleanly: closes this side at once, then discards what the client
/// sends (at most `cap` bytes, for at most [`REFUSAL_DRAIN`]) until it closes its side, so
/// the stream ends without a reset and the client reads end of stream, not an error.
async fn refuse(mut stream: Stream, cap: usize) -> Step {
    let _ = tokio::time::timeout(REFUSAL_DRAIN, async {
        stream.close().await?;
        let mut buf = [0u8; 256];
        let mut seen = 0;
        loop {
            let n = stream.read(&mut buf).await?;
            seen += n;
            if n == 0 || seen > cap {
                return Ok::<_, std::io::Error>(());
            }
        }
    })
    .await;
    Step::Refused
}

/// The inbound upgrade of a [`Handler`]: negotiates any of the retrieval protocols it
/// serves and yields the stream with the chosen one.
#[derive(Debug)]
pub struct Upgrade(Vec<StreamProtocol>);

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
