//! rm-network over 127.0.0.1: queries on both versions, golden bytes on raw streams,
//! hostile and stalled peers, the deal stream and its limits.
//!
//! Every await is bounded by `within` (or a shorter configured timeout), so nothing hangs.

use std::{future::Future, time::Duration};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use rm_network::{
    Config, DealStream, Error, Event, Network, QueryProtocol, Role, keys,
    libp2p::{Multiaddr, PeerId, Stream},
};
use rm_types::{
    Block, DealId, DealPayment, DealProposal, DealResponse, DealStatus, Query, QueryItemStatus,
    QueryResponse, QueryResponseStatus, TokenAmount, codec,
};
use tokio::sync::mpsc;

/// Upper bound for any single step of a test.
const STEP: Duration = Duration::from_secs(20);
/// A short timeout for the tests that make a peer stall.
const SHORT: Duration = Duration::from_millis(300);

const CID_HEX: &str = "0012204bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a";
/// Reference §2.9: Query, map encoding (qry/1.0.0), from go-fil-markets.
const GOLDEN_QUERY_MAP: &str = "a26a5061796c6f6164434944d82a58230012204bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a6b5175657279506172616d73a1685069656365434944f6";
/// Reference §2.9: Query, tuple encoding (qry/0.0.1).
const GOLDEN_QUERY_TUPLE: &str =
    "82d82a58230012204bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a81f6";
/// Reference §2.9: QueryResponse, map encoding (Go struct order).
const GOLDEN_RESPONSE_MAP: &str = "a966537461747573006d5069656365434944466f756e64006453697a6518406e5061796d656e744164647265737355024716b023b7fe84b6e7dcda303c3d754b1a8ff2fc6f4d696e507269636550657242797465420016724d61785061796d656e74496e74657276616c1903e7781a4d61785061796d656e74496e74657276616c496e6372656173651864674d657373616765676d6573736167656b556e7365616c5072696365420021";
/// Reference §2.9: QueryResponse, tuple encoding.
const GOLDEN_RESPONSE_TUPLE: &str =
    "890000184055024716b023b7fe84b6e7dcda303c3d754b1a8ff2fc4200161903e71864676d657373616765420021";

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

/// Polls `check` until it holds (bounded).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never happened: {what}");
}

fn loopback() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0".parse().unwrap()
}

async fn host(config: Config) -> Network {
    within(Network::new(
        keys::generate(),
        config.with_listen_addrs([loopback()]),
    ))
    .await
    .unwrap()
}

/// Tells `client` where `provider` listens.
async fn introduce(client: &Network, provider: &Network) {
    let addr = within(provider.listen_addrs()).await.unwrap().remove(0);
    within(client.add_address(provider.local_peer_id(), addr))
        .await
        .unwrap();
}

fn golden_cid() -> cid::Cid {
    "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb"
        .parse()
        .unwrap()
}

fn golden_response() -> QueryResponse {
    QueryResponse {
        status: QueryResponseStatus::Available,
        piece_cid_found: QueryItemStatus::Available,
        size: 64,
        payment_address: "t2i4llai5x72clnz643iydyplvjmni74x4vyme7ny".parse().unwrap(),
        min_price_per_byte: TokenAmount::from_atto(22u64),
        max_payment_interval: 999,
        max_payment_interval_increase: 100,
        message: "message".into(),
        unseal_price: TokenAmount::from_atto(33u64),
    }
}

fn response_with_message(message: &str) -> QueryResponse {
    QueryResponse {
        message: message.into(),
        ..golden_response()
    }
}

/// What a test delegate saw.
struct Seen {
    queries: mpsc::Receiver<(PeerId, Query, QueryProtocol)>,
    deals: mpsc::Receiver<DealStream>,
}

/// Installs a delegate that answers every query with `answer` and passes deal streams on.
fn delegate(net: &Network, answer: QueryResponse) -> Seen {
    let (tx, mut events) = mpsc::channel(8);
    net.set_delegate(tx);
    let (queries_tx, queries) = mpsc::channel(64);
    let (deals_tx, deals) = mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Query(request) => {
                    let _ = queries_tx.try_send((
                        request.peer,
                        request.query.clone(),
                        request.protocol,
                    ));
                    let _ = request.respond(answer.clone());
                }
                Event::Deal(stream) => {
                    let _ = deals_tx.try_send(stream);
                }
                _ => {}
            }
        }
    });
    Seen { queries, deals }
}

fn proposal() -> DealProposal {
    // Reference §2.9 DealProposal (map): the CID, ID 12, explore-all, price 12, interval 222,
    // increase 33, unseal price 23.
    let hex = format!(
        "a36a5061796c6f6164434944d82a5823{CID_HEX}6249440c66506172616d73a66853656c6563746f72a16152a2616ca1646e6f6e65a0623a3ea16161a1613ea16140a0685069656365434944d82a5823{CID_HEX}6c50726963655065724279746542000c6f5061796d656e74496e74657276616c18de775061796d656e74496e74657276616c496e63726561736518216b556e7365616c5072696365420017"
    );
    codec::from_slice(&hex::decode(hex).unwrap()).unwrap()
}

fn payment() -> DealPayment {
    // Reference §2.9 DealPayment (map).
    let hex = "a36249440c6e5061796d656e744368616e6e656c55024716b023b7fe84b6e7dcda303c3d754b1a8ff2fc6e5061796d656e74566f75636865728b55024716b023b7fe84b6e7dcda303c3d754b1a8ff2fc186418c8421234f6182a0142001619014d80f6";
    codec::from_slice(&hex::decode(hex).unwrap()).unwrap()
}

fn block(len: usize, seed: u8) -> Block {
    Block {
        prefix: vec![0x01, 0x55, 0x12, 0x20],
        data: (0..len).map(|i| seed.wrapping_add(i as u8)).collect(),
    }
}

fn deal_response(status: DealStatus, owed: u64, blocks: Vec<Block>) -> DealResponse {
    DealResponse {
        status,
        id: DealId(12),
        payment_owed: TokenAmount::from_atto(owed),
        message: String::new(),
        blocks,
    }
}

/// Writes `bytes` on a raw stream of `protocol`, optionally half-closes, and reads what
/// comes back until the provider closes or resets the stream.
async fn raw_exchange(
    client: &Network,
    provider: PeerId,
    protocol: QueryProtocol,
    bytes: &[u8],
    close: bool,
) -> Vec<u8> {
    let mut stream = within(client.open_stream(provider, protocol.stream_protocol()))
        .await
        .unwrap();
    // The provider may reset before everything is written; that is part of the test.
    let _ = within(stream.write_all(bytes)).await;
    let _ = within(stream.flush()).await;
    if close {
        let _ = within(stream.close()).await;
    }
    let mut answer = Vec::new();
    let _ = within(stream.read_to_end(&mut answer)).await;
    answer
}

#[tokio::test]
async fn two_hosts_query_each_other_on_both_versions() {
    let a = host(Config::default()).await;
    let b = host(Config::default()).await;
    let mut seen_a = delegate(&a, response_with_message("from a"));
    let mut seen_b = delegate(&b, response_with_message("from b"));
    introduce(&a, &b).await;
    introduce(&b, &a).await;
    let query = Query::new(golden_cid());
    for protocol in QueryProtocol::ALL {
        let (answer, used) = within(a.query_via(b.local_peer_id(), &query, &[protocol]))
            .await
            .unwrap();
        assert_eq!((answer.message.as_str(), used), ("from b", protocol));
        let (peer, got, on) = within(seen_b.queries.recv()).await.unwrap();
        assert_eq!(
            (peer, got, on),
            (a.local_peer_id(), query.clone(), protocol)
        );

        let (answer, used) = within(b.query_via(a.local_peer_id(), &query, &[protocol]))
            .await
            .unwrap();
        assert_eq!((answer.message.as_str(), used), ("from a", protocol));
        let (peer, _, on) = within(seen_a.queries.recv()).await.unwrap();
        assert_eq!((peer, on), (b.local_peer_id(), protocol));
    }
    // The default order tries 1.0.0 first.
    assert_eq!(
        within(a.query(b.local_peer_id(), &query)).await.unwrap(),
        response_with_message("from b")
    );
    assert_eq!(
        within(seen_b.queries.recv()).await.unwrap().2,
        QueryProtocol::V1
    );
    assert_eq!(b.metrics().queries_answered, 3);
    assert_eq!(a.metrics().query_fallbacks, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_v1_only_and_a_v0_only_host_still_talk() {
    let v1 = host(Config::default().with_serve_query_protocols([QueryProtocol::V1])).await;
    let v0 = host(Config::default().with_serve_query_protocols([QueryProtocol::V0])).await;
    let mut seen_v1 = delegate(&v1, response_with_message("v1 side"));
    let mut seen_v0 = delegate(&v0, response_with_message("v0 side"));
    introduce(&v1, &v0).await;
    introduce(&v0, &v1).await;
    let query = Query::new(golden_cid());

    // Tries 1.0.0, the peer lacks it, falls back to 0.0.1.
    let answer = within(v1.query(v0.local_peer_id(), &query)).await.unwrap();
    assert_eq!(answer.message, "v0 side");
    assert_eq!(
        within(seen_v0.queries.recv()).await.unwrap().2,
        QueryProtocol::V0
    );
    assert_eq!(v1.metrics().query_fallbacks, 1);

    // The other way 1.0.0 is there.
    let (answer, used) = within(v0.query_via(v1.local_peer_id(), &query, &QueryProtocol::ALL))
        .await
        .unwrap();
    assert_eq!(
        (answer.message.as_str(), used),
        ("v1 side", QueryProtocol::V1)
    );
    assert_eq!(
        within(seen_v1.queries.recv()).await.unwrap().2,
        QueryProtocol::V1
    );

    // A client restricted to 1.0.0 gets a typed error from the 0.0.1-only side.
    let err = within(v1.query_via(v0.local_peer_id(), &query, &[QueryProtocol::V1]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedProtocol { protocols, .. } if protocols == &["/fil/retrieval/qry/1.0.0"]),
        "{err}"
    );
    v1.shutdown().await;
    v0.shutdown().await;
}

#[tokio::test]
async fn golden_query_bytes_on_a_raw_stream_reach_the_delegate() {
    let provider = host(Config::default()).await;
    let mut seen = delegate(&provider, golden_response());
    let client = host(Config::default()).await;
    introduce(&client, &provider).await;
    let provider_id = provider.local_peer_id();

    // 1.0.0: the Go map bytes in, a map answer out with the same fields.
    let answer = raw_exchange(
        &client,
        provider_id,
        QueryProtocol::V1,
        &hex::decode(GOLDEN_QUERY_MAP).unwrap(),
        true,
    )
    .await;
    let (peer, query, protocol) = within(seen.queries.recv()).await.unwrap();
    assert_eq!(
        (peer, protocol),
        (client.local_peer_id(), QueryProtocol::V1)
    );
    assert_eq!(query.payload_cid, golden_cid());
    assert_eq!(query.params.piece_cid, None);
    let decoded: QueryResponse = codec::from_slice(&answer).unwrap();
    assert_eq!(decoded, golden_response());
    let go: QueryResponse = codec::from_slice(&hex::decode(GOLDEN_RESPONSE_MAP).unwrap()).unwrap();
    assert_eq!(decoded, go);
    assert_eq!(answer[0], 0xa9, "nine keys");

    // 0.0.1: the Go tuple bytes in, byte-identical tuple bytes out.
    let answer = raw_exchange(
        &client,
        provider_id,
        QueryProtocol::V0,
        &hex::decode(GOLDEN_QUERY_TUPLE).unwrap(),
        true,
    )
    .await;
    let (_, query, protocol) = within(seen.queries.recv()).await.unwrap();
    assert_eq!(
        (query.payload_cid, protocol),
        (golden_cid(), QueryProtocol::V0)
    );
    assert_eq!(hex::encode(&answer), GOLDEN_RESPONSE_TUPLE);

    // Without half-closing: the provider reads exactly one item and answers anyway.
    let mut stream = within(client.open_stream(provider_id, QueryProtocol::V1.stream_protocol()))
        .await
        .unwrap();
    within(stream.write_all(&hex::decode(GOLDEN_QUERY_MAP).unwrap()))
        .await
        .unwrap();
    within(stream.flush()).await.unwrap();
    let mut answer = Vec::new();
    within(stream.read_to_end(&mut answer)).await.unwrap();
    assert_eq!(
        codec::from_slice::<QueryResponse>(&answer).unwrap(),
        golden_response()
    );
    assert_eq!(provider.metrics().queries_answered, 3);
    client.shutdown().await;
    provider.shutdown().await;
}

#[tokio::test]
async fn oversized_garbage_and_truncated_queries_are_rejected() {
    let provider = host(Config::default()).await;
    let mut seen = delegate(&provider, golden_response());
    let client = host(Config::default()).await;
    introduce(&client, &provider).await;
    let id = provider.local_peer_id();
    let cap = provider.config().max_control_message_size;

    // A byte string announcing 2 GiB: rejected from its header.
    let answer = raw_exchange(
        &client,
        id,
        QueryProtocol::V1,
        &[0x5a, 0x7f, 0xff, 0xff, 0xff],
        false,
    )
    .await;
    assert!(answer.is_empty());
    eventually("oversized counted", || provider.metrics().oversized == 1).await;

    // Real bytes past the cap: an array of 65,536 five-byte integers (320 KiB > 256 KiB).
    let mut big = vec![0x9a, 0x00, 0x01, 0x00, 0x00];
    while big.len() < cap + 64 * 1024 {
        big.extend_from_slice(&[0x1a, 0x01, 0x02, 0x03, 0x04]);
    }
    let answer = raw_exchange(&client, id, QueryProtocol::V1, &big, false).await;
    assert!(answer.is_empty());
    eventually("second oversized counted", || {
        provider.metrics().oversized == 2
    })
    .await;

    // Not DAG-CBOR (indefinite lengths and breaks), then well-formed CBOR of the wrong shape.
    let answer = raw_exchange(&client, id, QueryProtocol::V1, &[0xff; 16], true).await;
    assert!(answer.is_empty());
    eventually("garbage counted", || provider.metrics().malformed == 1).await;
    let answer = raw_exchange(
        &client,
        id,
        QueryProtocol::V0,
        &codec::to_vec(&42u64).unwrap(),
        true,
    )
    .await;
    assert!(answer.is_empty());
    eventually("wrong shape counted", || provider.metrics().malformed == 2).await;

    // The first 20 bytes of a real query, then end of stream.
    let golden = hex::decode(GOLDEN_QUERY_MAP).unwrap();
    let answer = raw_exchange(&client, id, QueryProtocol::V1, &golden[..20], true).await;
    assert!(answer.is_empty());
    eventually("truncation counted", || provider.metrics().truncated == 1).await;

    // None of it reached the delegate, and the provider still serves.
    assert!(seen.queries.try_recv().is_err());
    assert_eq!(
        within(client.query(id, &Query::new(golden_cid())))
            .await
            .unwrap(),
        golden_response()
    );
    client.shutdown().await;
    provider.shutdown().await;
}

#[tokio::test]
async fn a_peer_that_stops_mid_message_times_out() {
    let provider = host(Config::default().with_read_timeout(SHORT)).await;
    let mut seen = delegate(&provider, golden_response());
    let client = host(Config::default()).await;
    introduce(&client, &provider).await;

    let golden = hex::decode(GOLDEN_QUERY_MAP).unwrap();
    let mut stream = within(client.open_stream(
        provider.local_peer_id(),
        QueryProtocol::V1.stream_protocol(),
    ))
    .await
    .unwrap();
    within(stream.write_all(&golden[..30])).await.unwrap();
    within(stream.flush()).await.unwrap();
    // No more bytes and no close: the provider gives up after its read timeout and resets.
    let mut answer = Vec::new();
    let _ = within(stream.read_to_end(&mut answer)).await;
    assert!(answer.is_empty());
    eventually("timeout counted", || provider.metrics().timeouts == 1).await;
    assert!(seen.queries.try_recv().is_err());

    // A deal stream whose client never sends its proposal.
    let _client_side = within(client.open_deal_stream(provider.local_peer_id()))
        .await
        .unwrap();
    let mut deal = within(seen.deals.recv()).await.unwrap();
    let err = within(deal.read_proposal()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(!deal.is_open());
    assert!(matches!(
        within(deal.read_proposal()).await,
        Err(Error::Reset)
    ));
    assert_eq!(provider.metrics().timeouts, 2);
    client.shutdown().await;
    provider.shutdown().await;
}

/// A host whose query protocol is served by test code on raw streams.
async fn raw_query_provider(reply: Vec<u8>, hold: bool) -> Network {
    let net = host(Config::default().with_serve_query_protocols([])).await;
    let mut incoming = net.accept(QueryProtocol::V1.stream_protocol()).unwrap();
    tokio::spawn(async move {
        let mut held: Vec<Stream> = Vec::new();
        while let Some((_, mut stream)) = incoming.next().await {
            let mut buf = [0u8; 64];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(&reply).await;
            let _ = stream.flush().await;
            if hold {
                held.push(stream);
            } else {
                let _ = stream.close().await;
            }
        }
    });
    net
}

#[tokio::test]
async fn the_client_rejects_stalled_and_bad_answers() {
    let golden = hex::decode(GOLDEN_RESPONSE_MAP).unwrap();
    let query = Query::new(golden_cid());
    let client = host(
        Config::default()
            .with_read_timeout(SHORT)
            .with_query_protocols([QueryProtocol::V1]),
    )
    .await;

    // Half an answer, then silence.
    let stalled = raw_query_provider(golden[..40].to_vec(), true).await;
    introduce(&client, &stalled).await;
    let err = within(client.query(stalled.local_peer_id(), &query))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(client.metrics().timeouts, 1);

    // Half an answer, then end of stream.
    let truncated = raw_query_provider(golden[..40].to_vec(), false).await;
    introduce(&client, &truncated).await;
    let err = within(client.query(truncated.local_peer_id(), &query))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Truncated { received: 40 }), "{err}");

    // Garbage.
    let garbage = raw_query_provider(vec![0x9f, 0xff], false).await;
    introduce(&client, &garbage).await;
    let err = within(client.query(garbage.local_peer_id(), &query))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err}");

    // The Go bytes themselves are a valid answer.
    let go = raw_query_provider(golden.clone(), false).await;
    introduce(&client, &go).await;
    assert_eq!(
        within(client.query(go.local_peer_id(), &query))
            .await
            .unwrap(),
        golden_response()
    );
    for net in [client, stalled, truncated, garbage, go] {
        net.shutdown().await;
    }
}

#[tokio::test]
async fn deal_stream_round_trip() {
    let provider = host(Config::default()).await;
    let mut seen = delegate(&provider, golden_response());
    let client = host(Config::default()).await;
    introduce(&client, &provider).await;

    let mut c = within(client.open_deal_stream(provider.local_peer_id()))
        .await
        .unwrap();
    assert_eq!(c.role(), Role::Client);
    within(c.write_proposal(&proposal())).await.unwrap();

    let mut p = within(seen.deals.recv()).await.unwrap();
    assert_eq!(
        (p.role(), p.peer()),
        (Role::Provider, client.local_peer_id())
    );
    assert_eq!(within(p.read_proposal()).await.unwrap(), proposal());

    let accepted = deal_response(DealStatus::Accepted, 0, vec![]);
    let blocks = vec![
        block(1 << 20, 1),
        block(3000, 2),
        block(0, 3),
        block(2 << 20, 4),
    ];
    let funds_needed = deal_response(DealStatus::FundsNeeded, 1000, blocks);
    let completed = deal_response(DealStatus::Completed, 0, vec![]);
    // Flow control: a 3 MiB response is written while the client reads it.
    let (written, read) = within(async {
        tokio::join!(
            async {
                p.write_response(&accepted).await?;
                p.write_response(&funds_needed).await
            },
            async { Ok::<_, Error>((c.read_response().await?, c.read_response().await?)) }
        )
    })
    .await;
    written.unwrap();
    assert_eq!(read.unwrap(), (accepted, funds_needed));

    within(c.write_payment(&payment())).await.unwrap();
    assert_eq!(within(p.read_payment()).await.unwrap(), payment());
    within(p.write_response(&completed)).await.unwrap();
    assert_eq!(within(c.read_response()).await.unwrap(), completed);

    // Graceful end: the client reads end of stream where a message would be.
    within(p.close()).await.unwrap();
    assert!(matches!(
        within(c.read_response()).await,
        Err(Error::Closed)
    ));
    within(c.close()).await.unwrap();
    assert_eq!(provider.metrics().deal_streams_accepted, 1);
    assert_eq!(client.metrics().deal_streams_opened, 1);
    let m = client.metrics();
    assert_eq!(
        (m.oversized, m.malformed, m.truncated, m.timeouts),
        (0, 0, 0, 0)
    );
    client.shutdown().await;
    provider.shutdown().await;
}

#[tokio::test]
async fn deal_stream_methods_check_the_role() {
    let provider = host(Config::default()).await;
    let mut seen = delegate(&provider, golden_response());
    let client = host(Config::default()).await;
    introduce(&client, &provider).await;
    let mut c = within(client.open_deal_stream(provider.local_peer_id()))
        .await
        .unwrap();
    assert!(matches!(
        within(c.read_proposal()).await,
        Err(Error::WrongRole {
            role: Role::Client,
            ..
        })
    ));
    assert!(matches!(
        within(c.write_response(&deal_response(DealStatus::Accepted, 0, vec![]))).await,
        Err(Error::WrongRole { .. })
    ));
    assert!(c.is_open(), "a local mistake does not reset the stream");
    within(c.write_proposal(&proposal())).await.unwrap();
    let mut p = within(seen.deals.recv()).await.unwrap();
    assert!(matches!(
        within(p.read_response()).await,
        Err(Error::WrongRole {
            role: Role::Provider,
            ..
        })
    ));
    assert!(matches!(
        within(p.write_payment(&payment())).await,
        Err(Error::WrongRole { .. })
    ));
    assert_eq!(within(p.read_proposal()).await.unwrap(), proposal());
    client.shutdown().await;
    provider.shutdown().await;
}

#[tokio::test]
async fn deal_responses_over_the_limits_are_rejected_and_counted() {
    // The provider allows more than the client does, so the client's checks are exercised.
    let mut generous = Config::default();
    generous.max_block_size = 4 << 20;
    generous.max_message_size = 16 << 20;
    generous.max_blocks_per_response = 100;
    let provider = host(generous).await;
    let mut seen = delegate(&provider, golden_response());
    let mut strict = Config::default();
    strict.max_blocks_per_response = 2;
    strict.max_message_size = 3 << 20;
    let client = host(strict).await;
    introduce(&client, &provider).await;
    let peer = provider.local_peer_id();

    let cases = [
        (
            deal_response(DealStatus::Ongoing, 0, vec![block(2 << 20 | 1, 0)]),
            "block",
        ),
        (
            deal_response(
                DealStatus::Ongoing,
                0,
                vec![block(10, 0), block(10, 1), block(10, 2)],
            ),
            "count",
        ),
        (
            deal_response(
                DealStatus::Ongoing,
                0,
                vec![block(2 << 20, 0), block(1 << 20, 1)],
            ),
            "message",
        ),
    ];
    for (response, what) in cases {
        let mut c = within(client.open_deal_stream(peer)).await.unwrap();
        within(c.write_proposal(&proposal())).await.unwrap();
        let mut p = within(seen.deals.recv()).await.unwrap();
        within(p.read_proposal()).await.unwrap();
        // The client gives up part way through the large ones, so the write may fail.
        let (_, read) =
            within(async { tokio::join!(p.write_response(&response), c.read_response()) }).await;
        let err = read.unwrap_err();
        match what {
            "block" => assert!(
                matches!(err, Error::TooLarge { what: "block", .. }),
                "{err}"
            ),
            "count" => assert!(
                matches!(err, Error::TooManyBlocks { count: 3, limit: 2 }),
                "{err}"
            ),
            _ => assert!(
                matches!(
                    err,
                    Error::TooLarge {
                        what: "message",
                        ..
                    }
                ),
                "{err}"
            ),
        }
        assert!(!c.is_open(), "the stream is reset");
        // The provider sees the reset as end of stream.
        assert!(within(p.read_payment()).await.is_err());
    }
    let m = client.metrics();
    assert_eq!((m.oversized, m.too_many_blocks), (2, 1));

    // A provider with default limits refuses to send an over-limit response, and the
    // stream stays usable.
    let strict_provider = host(Config::default()).await;
    let mut seen = delegate(&strict_provider, golden_response());
    introduce(&client, &strict_provider).await;
    let mut c = within(client.open_deal_stream(strict_provider.local_peer_id()))
        .await
        .unwrap();
    within(c.write_proposal(&proposal())).await.unwrap();
    let mut p = within(seen.deals.recv()).await.unwrap();
    within(p.read_proposal()).await.unwrap();
    let too_big = deal_response(DealStatus::Ongoing, 0, vec![block(3 << 20, 0)]);
    assert!(matches!(
        within(p.write_response(&too_big)).await,
        Err(Error::TooLarge { what: "block", .. })
    ));
    assert!(p.is_open());
    let fine = deal_response(DealStatus::Ongoing, 0, vec![block(1000, 0)]);
    within(p.write_response(&fine)).await.unwrap();
    assert_eq!(within(c.read_response()).await.unwrap(), fine);
    for net in [client, provider, strict_provider] {
        net.shutdown().await;
    }
}

#[tokio::test]
async fn inbound_deal_streams_over_the_limit_are_reset() {
    let mut config = Config::default();
    config.max_inbound_deals_per_peer = 1;
    let provider = host(config).await;
    let mut seen = delegate(&provider, golden_response());
    let client = host(Config::default()).await;
    introduce(&client, &provider).await;
    let peer = provider.local_peer_id();

    let mut first = within(client.open_deal_stream(peer)).await.unwrap();
    within(first.write_proposal(&proposal())).await.unwrap();
    let held = within(seen.deals.recv()).await.unwrap();

    // A second stream from the same peer is reset on arrival.
    let mut second = within(client.open_deal_stream(peer)).await.unwrap();
    let _ = within(second.write_proposal(&proposal())).await;
    assert!(within(second.read_response()).await.is_err());
    eventually("rejection counted", || {
        provider.metrics().rejected_streams == 1
    })
    .await;
    assert!(seen.deals.try_recv().is_err());

    // Releasing the first frees the slot.
    drop(held);
    let mut third = within(client.open_deal_stream(peer)).await.unwrap();
    within(third.write_proposal(&proposal())).await.unwrap();
    let mut p = within(seen.deals.recv()).await.unwrap();
    assert_eq!(within(p.read_proposal()).await.unwrap(), proposal());
    assert_eq!(provider.metrics().rejected_streams, 1);
    let m = provider.metrics();
    assert_eq!(
        (m.rejected_streams_per_peer, m.rejected_streams_total),
        (1, 0)
    );
    client.shutdown().await;
    provider.shutdown().await;
}

#[tokio::test]
async fn without_a_delegate_queries_are_refused_and_deal_streams_reset() {
    let provider = host(Config::default()).await;
    let client = host(Config::default()).await;
    introduce(&client, &provider).await;
    let peer = provider.local_peer_id();
    // A query nobody answers ends cleanly, without an answer: a refusal, not a failure.
    let refused = within(client.query(peer, &Query::new(golden_cid()))).await;
    assert!(
        matches!(refused, Err(Error::QueryRefused { peer: p }) if p == peer),
        "{refused:?}"
    );
    let mut c = within(client.open_deal_stream(peer)).await.unwrap();
    let _ = within(c.write_proposal(&proposal())).await;
    assert!(within(c.read_response()).await.is_err());
    eventually("both refusals counted", || {
        let m = provider.metrics();
        (m.queries_refused, m.rejected_streams) == (1, 1)
    })
    .await;

    // A delegate installed later gets the next ones.
    let _seen = delegate(&provider, golden_response());
    assert_eq!(
        within(client.query(peer, &Query::new(golden_cid())))
            .await
            .unwrap(),
        golden_response()
    );
    client.shutdown().await;
    provider.shutdown().await;
}

#[tokio::test]
async fn an_open_deal_stream_outlives_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let provider = host(Config::default().with_idle_timeout(idle)).await;
    let mut seen = delegate(&provider, golden_response());
    let client = host(Config::default().with_idle_timeout(idle)).await;
    introduce(&client, &provider).await;
    let peer = provider.local_peer_id();

    let mut c = within(client.open_deal_stream(peer)).await.unwrap();
    within(c.write_proposal(&proposal())).await.unwrap();
    let mut p = within(seen.deals.recv()).await.unwrap();
    within(p.read_proposal()).await.unwrap();
    // Quiet for several idle timeouts while the stream is open.
    tokio::time::sleep(idle * 5).await;
    assert!(within(client.is_connected(peer)).await.unwrap());
    let response = deal_response(DealStatus::Ongoing, 0, vec![block(100, 1)]);
    within(p.write_response(&response)).await.unwrap();
    assert_eq!(within(c.read_response()).await.unwrap(), response);

    // Once the streams are gone the idle connection is closed.
    within(c.close()).await.unwrap();
    drop(p);
    let mut closed = false;
    for _ in 0..100 {
        if !within(client.is_connected(peer)).await.unwrap() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "idle connection was not closed");
    client.shutdown().await;
    provider.shutdown().await;
}

#[tokio::test]
async fn dial_listen_addrs_and_shutdown() {
    let provider = host(Config::default()).await;
    let client = within(Network::new(keys::generate(), Config::default()))
        .await
        .unwrap();
    assert!(
        within(client.listen_addrs()).await.unwrap().is_empty(),
        "a client-only host listens nowhere"
    );
    let addrs = within(provider.listen_addrs()).await.unwrap();
    assert!(
        addrs
            .iter()
            .all(|a| a.to_string().starts_with("/ip4/127.0.0.1/tcp/"))
    );
    within(client.dial(provider.local_peer_id(), addrs.clone()))
        .await
        .unwrap();
    assert!(
        within(client.is_connected(provider.local_peer_id()))
            .await
            .unwrap()
    );
    // Dialing again while connected returns at once.
    within(client.dial(provider.local_peer_id(), vec![]))
        .await
        .unwrap();
    assert!(
        within(client.disconnect(provider.local_peer_id()))
            .await
            .unwrap()
    );

    // A peer with no known address cannot be reached.
    let stranger = keys::generate().public().to_peer_id();
    assert!(
        within(client.query(stranger, &Query::new(golden_cid())))
            .await
            .is_err()
    );

    let bad = Network::new(
        keys::generate(),
        Config::default().with_listen_addrs(["/ip4/127.0.0.1/udp/0".parse().unwrap()]),
    )
    .await;
    assert!(matches!(bad, Err(Error::Listen { .. })));

    provider.shutdown().await;
    assert!(matches!(
        within(provider.listen_addrs()).await,
        Err(Error::Shutdown)
    ));
    assert!(matches!(
        within(provider.open_deal_stream(client.local_peer_id())).await,
        Err(Error::Shutdown)
    ));
    client.shutdown().await;
}

#[tokio::test]
async fn a_persistent_key_gives_a_stable_peer_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peer.key");
    let first = within(Network::new(
        keys::load_or_generate(&path).unwrap(),
        Config::default(),
    ))
    .await
    .unwrap();
    let id = first.local_peer_id();
    first.shutdown().await;
    let second = within(Network::new(keys::load(&path).unwrap(), Config::default()))
        .await
        .unwrap();
    assert_eq!(second.local_peer_id(), id);
    assert_eq!(
        rm_network::from_rm_peer(&rm_network::to_rm_peer(&id)).unwrap(),
        id
    );
    second.shutdown().await;
}

#[tokio::test]
async fn concurrent_deal_streams_all_arrive() {
    let provider = host(Config::default()).await;
    let mut seen = delegate(&provider, golden_response());
    let client = host(Config::default()).await;
    introduce(&client, &provider).await;
    let peer = provider.local_peer_id();
    within(client.dial(peer, vec![])).await.unwrap();
    let opened = within(futures::future::join_all(
        (0..8).map(|_| client.open_deal_stream(peer)),
    ))
    .await;
    let mut streams: Vec<DealStream> = opened.into_iter().map(Result::unwrap).collect();
    for s in &mut streams {
        within(s.write_proposal(&proposal())).await.unwrap();
    }
    for _ in 0..8 {
        let mut p = within(seen.deals.recv()).await.unwrap();
        assert_eq!(within(p.read_proposal()).await.unwrap(), proposal());
    }
    assert_eq!(provider.metrics().rejected_streams, 0);
    client.shutdown().await;
    provider.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_at_once_are_all_served() {
    let provider = host(Config::default()).await;
    let mut seen = delegate(&provider, golden_response());
    let peer = provider.local_peer_id();
    let mut clients = Vec::new();
    for _ in 0..16 {
        let client = host(Config::default()).await;
        introduce(&client, &provider).await;
        within(client.dial(peer, vec![])).await.unwrap();
        clients.push(client);
    }
    let query = Query::new(golden_cid());
    let answers = within(futures::future::join_all(
        clients.iter().map(|c| c.query(peer, &query)),
    ))
    .await;
    assert!(answers.into_iter().all(|a| a.unwrap() == golden_response()));
    let opened = within(futures::future::join_all(
        clients.iter().map(|c| c.open_deal_stream(peer)),
    ))
    .await;
    let mut streams: Vec<DealStream> = opened.into_iter().map(Result::unwrap).collect();
    for s in &mut streams {
        within(s.write_proposal(&proposal())).await.unwrap();
    }
    for _ in 0..clients.len() {
        let mut p = within(seen.deals.recv()).await.unwrap();
        assert_eq!(within(p.read_proposal()).await.unwrap(), proposal());
    }
    assert_eq!(provider.metrics().rejected_streams, 0);
    for c in clients {
        c.shutdown().await;
    }
    provider.shutdown().await;
}
