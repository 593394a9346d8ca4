//! The query protocols: `/fil/retrieval/qry/1.0.0` (map encoding) and
//! `/fil/retrieval/qry/0.0.1` (tuple encoding). One `Query`, one `QueryResponse`, close.

use std::{fmt, time::Duration};

use futures::AsyncWriteExt;
use libp2p::{PeerId, Stream, StreamProtocol};
use rm_types::{Query, QueryResponse, codec, protocol, tuple};
use tokio::sync::oneshot;

use crate::{
    Error,
    behaviour::Shared,
    framing::{FrameReader, write_message},
};

/// A version of the query protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryProtocol {
    /// `/fil/retrieval/qry/1.0.0`: map encoding (go-fil-markets v1).
    V1,
    /// `/fil/retrieval/qry/0.0.1`: tuple encoding (go-fil-markets' first query protocol, January 2020).
    V0,
}

impl fmt::Display for QueryProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl QueryProtocol {
    /// Both versions, newest first.
    pub const ALL: [QueryProtocol; 2] = [QueryProtocol::V1, QueryProtocol::V0];

    /// The protocol id.
    pub fn id(self) -> &'static str {
        match self {
            QueryProtocol::V1 => protocol::QUERY_PROTOCOL_V1,
            QueryProtocol::V0 => protocol::QUERY_PROTOCOL_V0,
        }
    }

    /// The protocol id as a libp2p [`StreamProtocol`].
    pub fn stream_protocol(self) -> StreamProtocol {
        StreamProtocol::new(self.id())
    }

    /// Encodes a query in this version's encoding.
    pub fn encode_query(self, query: &Query) -> Result<Vec<u8>, Error> {
        match self {
            QueryProtocol::V1 => codec::to_vec(query),
            QueryProtocol::V0 => tuple::to_vec(query),
        }
        .map_err(Error::Encode)
    }

    /// Decodes a query in this version's encoding.
    pub fn decode_query(self, bytes: &[u8]) -> Result<Query, Error> {
        match self {
            QueryProtocol::V1 => codec::from_slice(bytes),
            QueryProtocol::V0 => tuple::from_slice(bytes),
        }
        .map_err(Error::from_codec)
    }

    /// Encodes a response in this version's encoding.
    pub fn encode_response(self, response: &QueryResponse) -> Result<Vec<u8>, Error> {
        match self {
            QueryProtocol::V1 => codec::to_vec(response),
            QueryProtocol::V0 => tuple::to_vec(response),
        }
        .map_err(Error::Encode)
    }

    /// Decodes a response in this version's encoding.
    pub fn decode_response(self, bytes: &[u8]) -> Result<QueryResponse, Error> {
        match self {
            QueryProtocol::V1 => codec::from_slice(bytes),
            QueryProtocol::V0 => tuple::from_slice(bytes),
        }
        .map_err(Error::from_codec)
    }
}

/// An inbound query, reported as [`crate::Event::Query`]. Answer it with
/// [`QueryRequest::respond`]; dropping it closes the stream without an answer (what
/// go-fil-markets does when it cannot answer at all).
#[derive(Debug)]
pub struct QueryRequest {
    /// Who asks.
    pub peer: PeerId,
    /// The query.
    pub query: Query,
    /// The version it came on; the answer goes back in the same encoding.
    pub protocol: QueryProtocol,
    responder: oneshot::Sender<QueryResponse>,
}

impl QueryRequest {
    pub(crate) fn new(
        peer: PeerId,
        query: Query,
        protocol: QueryProtocol,
        responder: oneshot::Sender<QueryResponse>,
    ) -> Self {
        Self {
            peer,
            query,
            protocol,
            responder,
        }
    }

    /// Sends the answer. Fails with [`Error::Closed`] when the stream was already given
    /// up, e.g. after the handler timeout ([`crate::BehaviourConfig::handler_timeout`]).
    pub fn respond(self, response: QueryResponse) -> Result<(), Error> {
        self.responder.send(response).map_err(|_| Error::Closed)
    }
}

async fn timed<T>(
    what: &'static str,
    after: Duration,
    f: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(after, f)
        .await
        .unwrap_or(Err(Error::Timeout { what, after }))
}

/// Client side: writes `query`, half-closes, reads one response. End of stream where the
/// response would start is [`Error::QueryRefused`].
pub(crate) async fn exchange(
    shared: &Shared,
    peer: PeerId,
    mut stream: Stream,
    query: &Query,
    protocol: QueryProtocol,
) -> Result<QueryResponse, Error> {
    let config = &shared.config;
    let bytes = protocol.encode_query(query)?;
    let result = async {
        timed("writing a query", config.write_timeout, async {
            write_message(&mut stream, &bytes).await?;
            stream.close().await?;
            Ok(())
        })
        .await?;
        let mut reader = FrameReader::new();
        let len = timed(
            "reading a query response",
            config.read_timeout,
            reader.next_item(&mut stream, config.max_control_message_size),
        )
        .await
        .map_err(|e| match e {
            Error::Closed => Error::QueryRefused { peer },
            e => e,
        })?;
        protocol.decode_response(reader.item(len))
    }
    .await;
    if let Err(e) = &result {
        shared.counters.record(e);
    }
    // Dropping the stream resets it if the exchange failed half way; after a complete
    // exchange both sides have closed and nothing more is sent.
    result
}

/// Provider side: reads one query of at most `cap` bytes within `after`. The provider
/// does not wait for the client's half-close: Go clients do not send it.
pub(crate) async fn read_query(
    stream: &mut Stream,
    protocol: QueryProtocol,
    cap: usize,
    after: Duration,
) -> Result<Query, Error> {
    let mut reader = FrameReader::new();
    timed("reading a query", after, async {
        let len = reader.next_item(stream, cap).await?;
        protocol.decode_query(reader.item(len))
    })
    .await
}

/// Provider side: writes the answer in the query's encoding and closes the stream.
pub(crate) async fn write_response(
    stream: &mut Stream,
    protocol: QueryProtocol,
    response: &QueryResponse,
    after: Duration,
) -> Result<(), Error> {
    let bytes = protocol.encode_response(response)?;
    timed("writing a query response", after, async {
        write_message(stream, &bytes).await?;
        stream.close().await?;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use rm_types::{QueryItemStatus, QueryResponseStatus, TokenAmount};

    use super::*;

    fn sample() -> (Query, QueryResponse) {
        let cid = "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb"
            .parse()
            .unwrap();
        let response = QueryResponse {
            status: QueryResponseStatus::Available,
            piece_cid_found: QueryItemStatus::Available,
            size: 64,
            payment_address: "t2i4llai5x72clnz643iydyplvjmni74x4vyme7ny".parse().unwrap(),
            min_price_per_byte: TokenAmount::from_atto(22u64),
            max_payment_interval: 999,
            max_payment_interval_increase: 100,
            message: "message".into(),
            unseal_price: TokenAmount::from_atto(33u64),
        };
        (Query::new(cid), response)
    }

    #[test]
    fn versions_use_their_encodings() {
        let (query, response) = sample();
        let v1 = QueryProtocol::V1.encode_query(&query).unwrap();
        let v0 = QueryProtocol::V0.encode_query(&query).unwrap();
        assert_eq!(v1[0], 0xa2, "map of two keys");
        assert_eq!(v0[0], 0x82, "tuple of two fields");
        assert_eq!(QueryProtocol::V1.decode_query(&v1).unwrap(), query);
        assert_eq!(QueryProtocol::V0.decode_query(&v0).unwrap(), query);
        assert!(QueryProtocol::V1.decode_query(&v0).is_err());
        assert!(QueryProtocol::V0.decode_query(&v1).is_err());
        // The tuple response is byte-identical to go-fil-markets' (its golden bytes, as
        // cpp-filecoin's tests copied them).
        let golden = "890000184055024716b023b7fe84b6e7dcda303c3d754b1a8ff2fc4200161903e71864676d657373616765420021";
        assert_eq!(
            hex::encode(QueryProtocol::V0.encode_response(&response).unwrap()),
            golden
        );
        let v1 = QueryProtocol::V1.encode_response(&response).unwrap();
        assert_eq!(QueryProtocol::V1.decode_response(&v1).unwrap(), response);
    }

    #[test]
    fn protocol_ids() {
        assert_eq!(QueryProtocol::V1.id(), "/fil/retrieval/qry/1.0.0");
        assert_eq!(QueryProtocol::V0.id(), "/fil/retrieval/qry/0.0.1");
        assert_eq!(QueryProtocol::V1.to_string(), QueryProtocol::V1.id());
        assert_eq!(QueryProtocol::ALL, [QueryProtocol::V1, QueryProtocol::V0]);
    }
}
