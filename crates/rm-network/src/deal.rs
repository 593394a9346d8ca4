//! The deal stream `/fil/retrieval/0.0.1`: one substream per deal, typed messages.

use std::{fmt, sync::Arc, time::Duration};

use futures::AsyncWriteExt;
use libp2p::{PeerId, Stream};
use rm_types::{ClientMessage, DealCancel, DealPayment, DealProposal, DealResponse, codec};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::broadcast;

use crate::idle::{self, Deadlines, TOTAL_PER_IDLE};
use crate::{
    Error,
    behaviour::Shared,
    framing::{FrameReader, Piece, encode_deal_response, write_message, write_pieces},
    limiter::Permit,
};

/// How long one whole message may take to read.
#[derive(Clone, Copy, Debug)]
enum Total {
    /// Ten read timeouts, from the call.
    PerIdle,
    /// This long from the call: a proposal is due as soon as the stream opens.
    FromCall(Duration),
    /// This long from the message's first byte: a client may rightly wait before paying
    /// (funding a channel takes a while), and the wait is bounded by the read timeout,
    /// which is the payment timeout there.
    FromFirstByte(Duration),
}

/// Which side of a deal a [`DealStream`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Opened the stream: writes the proposal and payments, reads responses.
    Client,
    /// Accepted the stream: reads the proposal and payments, writes responses.
    Provider,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Client => "client",
            Role::Provider => "provider",
        })
    }
}

/// One deal's substream, as typed messages (map encoding, go-cbor-util framing).
///
/// The client ([`crate::Network::open_deal_stream`]) calls [`DealStream::write_proposal`],
/// [`DealStream::read_response`] and [`DealStream::write_payment`]; the provider (given
/// the stream as [`crate::Event::Deal`]) calls [`DealStream::read_proposal`],
/// [`DealStream::write_response`] and [`DealStream::read_payment`]. Calling a method of
/// the other side is [`Error::WrongRole`].
///
/// A read fails when the peer makes no progress for the read timeout, or when one message
/// takes more than ten read timeouts in all; it holds at most the size cap in memory; a `DealResponse` must also respect the block limits. Any failure
/// caused by the peer (oversized, malformed, truncated, timed out) resets the stream and is
/// counted; later calls return [`Error::Reset`]. End of stream where a message would start
/// is [`Error::Closed`] and leaves this side able to write and close. Writes are bounded by the write timeout;
/// a response over the local limits is refused before anything is written (the stream
/// stays usable).
pub struct DealStream {
    peer: PeerId,
    role: Role,
    io: Option<Stream>,
    reader: FrameReader,
    head: Vec<u8>,
    shared: Arc<Shared>,
    read_timeout: Duration,
    /// Peers whose last connection closed (see `Shared::disconnected`).
    disconnected: broadcast::Receiver<PeerId>,
    _permit: Option<Permit>,
    /// The remote IP address of an inbound stream's connection.
    pub(crate) remote_ip: Option<std::net::IpAddr>,
}

impl fmt::Debug for DealStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DealStream")
            .field("peer", &self.peer)
            .field("role", &self.role)
            .field("open", &self.io.is_some())
            .finish()
    }
}

impl DealStream {
    pub(crate) fn new(
        peer: PeerId,
        role: Role,
        io: Stream,
        shared: Arc<Shared>,
        permit: Option<Permit>,
    ) -> Self {
        let read_timeout = shared.config.read_timeout;
        let disconnected = shared.disconnected.subscribe();
        Self {
            peer,
            role,
            io: Some(io),
            reader: FrameReader::new(),
            head: Vec::new(),
            shared,
            read_timeout,
            disconnected,
            _permit: permit,
            remote_ip: None,
        }
    }

    /// The remote IP address of an inbound deal stream's connection (what a provider
    /// counts per-address limits by); `None` for streams this side opened, and for
    /// transports without one.
    pub fn remote_ip(&self) -> Option<std::net::IpAddr> {
        self.remote_ip
    }

    /// The remote peer.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the stream is still usable (not reset or closed).
    pub fn is_open(&self) -> bool {
        self.io.is_some()
    }

    /// The current read timeout.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// Changes the read timeout for this stream, e.g. while a provider unseals before its
    /// next response.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.read_timeout = timeout;
    }

    fn check_role(&self, role: Role, op: &'static str) -> Result<(), Error> {
        if self.role == role {
            Ok(())
        } else {
            Err(Error::WrongRole {
                role: self.role,
                op,
            })
        }
    }

    /// Resets the stream after a peer-caused failure and counts it.
    fn fail(&mut self, error: Error) -> Error {
        tracing::debug!(peer = %self.peer, role = %self.role, %error, "resetting deal stream");
        self.shared.counters.record(&error);
        self.io = None;
        error
    }

    async fn read_item<T: DeserializeOwned>(
        &mut self,
        cap: usize,
        total: Total,
        what: &'static str,
    ) -> Result<T, Error> {
        let Some(io) = self.io.as_mut() else {
            return Err(Error::Reset);
        };
        let after = self.read_timeout;
        let mut io = match total {
            Total::PerIdle => Deadlines::with_total(io, after, after * TOTAL_PER_IDLE),
            Total::FromCall(total) => Deadlines::with_total(io, after, total),
            Total::FromFirstByte(total) => Deadlines::with_total_from_first_byte(io, after, total),
        };
        // A yamux stream on a closed connection may not see the close; the swarm's
        // disconnection notice ends the read at once.
        let read = tokio::select! {
            read = self.reader.next_item(&mut io, cap) => read,
            () = peer_gone(&mut self.disconnected, self.peer) => Err(Error::Io(
                std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection to the peer closed"),
            )),
        };
        let decoded = match read {
            Err(e) if idle::is_timeout(&e) => Err(Error::Timeout { what, after }),
            Err(e) => Err(e),
            Ok(len) => {
                // Block data in the message stays in the received buffer (no copy).
                codec::from_bytes(&self.reader.take(len)).map_err(Error::from_codec)
            }
        };
        decoded.map_err(|e| match e {
            // The peer finished writing: not a failure, and this side may still write.
            Error::Closed => e,
            e => self.fail(e),
        })
    }

    async fn write_encoded<T: Serialize>(
        &mut self,
        value: &T,
        what: &'static str,
    ) -> Result<(), Error> {
        let bytes = codec::to_vec(value).map_err(Error::Encode)?;
        let Some(io) = self.io.as_mut() else {
            return Err(Error::Reset);
        };
        let after = self.shared.config.write_timeout;
        match tokio::time::timeout(after, write_message(io, &bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.fail(e)),
            Err(_) => Err(self.fail(Error::Timeout { what, after })),
        }
    }

    /// Client: sends the deal proposal (first message on the stream).
    pub async fn write_proposal(&mut self, proposal: &DealProposal) -> Result<(), Error> {
        self.check_role(Role::Client, "write a proposal")?;
        self.write_encoded(proposal, "writing a deal proposal")
            .await
    }

    /// Client: reads the next `DealResponse`, checking the size cap, the block size and
    /// the block count.
    pub async fn read_response(&mut self) -> Result<DealResponse, Error> {
        self.check_role(Role::Client, "read a response")?;
        let cap = self.shared.config.max_message_size;
        let response: DealResponse = self
            .read_item(cap, Total::PerIdle, "reading a deal response")
            .await?;
        check_blocks(&response, &self.shared.config).map_err(|e| self.fail(e))?;
        Ok(response)
    }

    /// Client: sends a payment.
    pub async fn write_payment(&mut self, payment: &DealPayment) -> Result<(), Error> {
        self.check_role(Role::Client, "write a payment")?;
        self.write_encoded(payment, "writing a deal payment").await
    }

    /// Client: cancels the deal (an rm extension; the provider reads it where it would read
    /// a payment and ends the deal as cancelled).
    pub async fn write_cancel(&mut self, cancel: &DealCancel) -> Result<(), Error> {
        self.check_role(Role::Client, "write a cancellation")?;
        self.write_encoded(cancel, "writing a deal cancellation")
            .await
    }

    /// Provider: reads the client's proposal.
    pub async fn read_proposal(&mut self) -> Result<DealProposal, Error> {
        self.check_role(Role::Provider, "read a proposal")?;
        let cap = self.shared.config.max_proposal_size;
        let total = Total::FromCall(self.shared.config.proposal_timeout);
        self.read_item(cap, total, "reading a deal proposal").await
    }

    /// Provider: sends a response. The encoding is built once as CBOR headers around the
    /// blocks' data, which is written without being copied. A response over
    /// `max_message_size`, `max_block_size` or `max_blocks_per_response` is refused with
    /// a typed error before anything is written.
    pub async fn write_response(&mut self, response: &DealResponse) -> Result<(), Error> {
        self.check_role(Role::Provider, "write a response")?;
        let config = &self.shared.config;
        check_blocks(response, config)?;
        let mut head = std::mem::take(&mut self.head);
        let mut pieces: Vec<Piece<'_>> = Vec::with_capacity(2 * response.blocks.len() + 1);
        let len = encode_deal_response(response, &mut head, &mut pieces)?;
        if len > config.max_message_size {
            self.head = head;
            return Err(Error::TooLarge {
                what: "message",
                len: len as u64,
                limit: config.max_message_size as u64,
            });
        }
        let after = config.write_timeout;
        let result = match self.io.as_mut() {
            None => Err(Error::Reset),
            Some(io) => match write_pieces(&mut Deadlines::new(io, after), &head, &pieces).await {
                Ok(()) => Ok(()),
                Err(e) if idle::is_timeout(&e) => Err(self.fail(Error::Timeout {
                    what: "writing a deal response",
                    after,
                })),
                Err(e) => Err(self.fail(e)),
            },
        };
        drop(pieces);
        self.head = head;
        result
    }

    /// Provider: reads the client's next payment.
    pub async fn read_payment(&mut self) -> Result<DealPayment, Error> {
        self.check_role(Role::Provider, "read a payment")?;
        let cap = self.shared.config.max_control_message_size;
        self.read_item(
            cap,
            Total::FromFirstByte(self.shared.config.control_message_timeout),
            "reading a deal payment",
        )
        .await
    }

    /// Provider: reads the client's next message, a payment or a cancellation.
    pub async fn read_client_message(&mut self) -> Result<ClientMessage, Error> {
        self.check_role(Role::Provider, "read a client message")?;
        let cap = self.shared.config.max_control_message_size;
        let total = Total::FromFirstByte(self.shared.config.control_message_timeout);
        self.read_item(cap, total, "reading a client message").await
    }

    /// Provider: the client's next message if one has already arrived, without waiting (a
    /// cancel sent while the provider streams blocks). `Ok(None)` when nothing complete is
    /// there yet, or when the client has finished writing.
    pub async fn try_read_client_message(&mut self) -> Result<Option<ClientMessage>, Error> {
        use futures::FutureExt;
        self.check_role(Role::Provider, "read a client message")?;
        let cap = self.shared.config.max_control_message_size;
        // Reading is cancel-safe: bytes already read stay buffered for the next call.
        match self
            .read_item::<ClientMessage>(cap, Total::PerIdle, "reading a client message")
            .now_or_never()
        {
            None | Some(Err(Error::Closed)) => Ok(None),
            Some(result) => result.map(Some),
        }
    }

    /// Closes this side of the stream gracefully (the peer reads end of stream after the
    /// last message). Messages already received can no longer be read.
    pub async fn close(mut self) -> Result<(), Error> {
        self.finish().await
    }

    /// Like [`DealStream::close`] without giving up the value: later calls return
    /// [`Error::Reset`].
    pub async fn finish(&mut self) -> Result<(), Error> {
        let Some(mut io) = self.io.take() else {
            return Err(Error::Reset);
        };
        let after = self.shared.config.write_timeout;
        match tokio::time::timeout(after, io.close()).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(Error::Timeout {
                what: "closing a deal stream",
                after,
            }),
        }
    }

    /// Resets the stream: the peer's reads and writes fail at once.
    pub fn reset(mut self) {
        self.io = None;
    }
}

/// Resolves when `peer` has no connection left (never, if the network is gone).
async fn peer_gone(rx: &mut broadcast::Receiver<PeerId>, peer: PeerId) {
    loop {
        match rx.recv().await {
            Ok(p) if p == peer => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// Checks a response against the block limits.
fn check_blocks(response: &DealResponse, config: &crate::BehaviourConfig) -> Result<(), Error> {
    if response.blocks.len() > config.max_blocks_per_response {
        return Err(Error::TooManyBlocks {
            count: response.blocks.len(),
            limit: config.max_blocks_per_response,
        });
    }
    if let Some(block) = response
        .blocks
        .iter()
        .find(|b| b.data.len() > config.max_block_size)
    {
        return Err(Error::TooLarge {
            what: "block",
            len: block.data.len() as u64,
            limit: config.max_block_size as u64,
        });
    }
    Ok(())
}
