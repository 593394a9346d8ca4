//! Admission over 127.0.0.1: queries have limits of their own, separate from deal
//! streams; the defaults hold 200 queries from 20 peers in progress at once; a query over
//! a limit is refused with a clean close that the client tells from a failure, and the
//! refusal is counted. Deal streams from several peer ids at one address share that
//! address's slots.

use std::{future::Future, time::Duration};

use rm_network::{Config, Error, Event, Network, QueryRequest, keys, libp2p::Multiaddr};
use rm_types::{Query, QueryItemStatus, QueryResponse, QueryResponseStatus, TokenAmount};
use tokio::sync::mpsc;

/// Upper bound for any single step of a test.
const STEP: Duration = Duration::from_secs(30);

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
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

async fn introduce(client: &Network, provider: &Network) {
    let addr = within(provider.listen_addrs()).await.unwrap().remove(0);
    within(client.add_address(provider.local_peer_id(), addr))
        .await
        .unwrap();
    within(client.dial(provider.local_peer_id(), vec![]))
        .await
        .unwrap();
}

fn payload() -> rm_types::Cid {
    "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb"
        .parse()
        .unwrap()
}

fn answer() -> QueryResponse {
    QueryResponse {
        status: QueryResponseStatus::Available,
        piece_cid_found: QueryItemStatus::Available,
        size: 19_000,
        payment_address: "f01000".parse().unwrap(),
        min_price_per_byte: TokenAmount::from_atto(1000u64),
        max_payment_interval: 1 << 20,
        max_payment_interval_increase: 1 << 20,
        message: String::new(),
        unseal_price: TokenAmount::zero(),
    }
}

/// A delegate that hands queries to the test instead of answering them, so the test
/// decides how many are in progress at once; deal streams go to their own channel.
struct Held {
    queries: mpsc::Receiver<QueryRequest>,
    deals: mpsc::Receiver<rm_network::DealStream>,
}

fn hold(net: &Network) -> Held {
    let (tx, mut events) = mpsc::channel(1024);
    net.set_delegate(tx);
    let (queries_tx, queries) = mpsc::channel(1024);
    let (deals_tx, deals) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Query(q) => {
                    let _ = queries_tx.send(q).await;
                }
                Event::Deal(d) => {
                    let _ = deals_tx.send(d).await;
                }
                _ => {}
            }
        }
    });
    Held { queries, deals }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_queries_from_twenty_peers_are_in_progress_at_once_and_all_answered() {
    // On loopback the twenty peers share one address: its default per-IP limit (256)
    // holds their 200 queries.
    let provider = host(Config::default()).await;
    let mut held = hold(&provider);
    let peer = provider.local_peer_id();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let client = host(Config::default()).await;
        introduce(&client, &provider).await;
        clients.push(client);
    }
    let query = Query::new(payload());
    let asked = futures::future::join_all(
        clients
            .iter()
            .flat_map(|c| (0..10).map(|_| c.query(peer, &query))),
    );
    // Every query reaches the delegate before any is answered: 200 in progress at once.
    let answering = async {
        let mut requests = Vec::new();
        while requests.len() < 200 {
            requests.push(within(held.queries.recv()).await.unwrap());
        }
        for request in requests {
            request.respond(answer()).unwrap();
        }
    };
    let (answers, ()) = within(async { tokio::join!(asked, answering) }).await;
    let answered = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(answered, 200, "{:?}", answers.iter().find(|a| a.is_err()));
    let m = provider.metrics();
    assert_eq!((m.queries_answered, m.queries_refused), (200, 0));
    for c in clients {
        c.shutdown().await;
    }
    provider.shutdown().await;
}

#[tokio::test]
async fn a_query_over_its_limit_is_refused_cleanly_and_deal_streams_keep_their_own() {
    let mut config = Config::default();
    config.max_inbound_queries_per_peer = 2;
    config.max_inbound_deals_per_peer = 1;
    let provider = host(config).await;
    let mut held = hold(&provider);
    let client = host(Config::default()).await;
    introduce(&client, &provider).await;
    let peer = provider.local_peer_id();
    let query = Query::new(payload());

    // Two queries in progress: the limit.
    let first = tokio::spawn({
        let client = client.clone();
        let query = query.clone();
        async move { client.query(peer, &query).await }
    });
    let second = tokio::spawn({
        let client = client.clone();
        let query = query.clone();
        async move { client.query(peer, &query).await }
    });
    let r1 = within(held.queries.recv()).await.unwrap();
    let r2 = within(held.queries.recv()).await.unwrap();

    // A third is refused at once with a clean close: not an I/O error, not a timeout.
    let refused = within(client.query(peer, &query)).await;
    assert!(
        matches!(refused, Err(Error::QueryRefused { peer: p }) if p == peer),
        "{refused:?}"
    );
    assert_eq!(provider.metrics().queries_refused, 1);
    // Counted under the limit that refused it.
    let m = provider.metrics();
    assert_eq!(
        (m.queries_refused_per_peer, m.queries_refused_total),
        (1, 0)
    );
    let m = client.metrics();
    assert_eq!((m.timeouts, m.truncated, m.malformed), (0, 0, 0));

    // Deal streams have limits of their own: one is admitted while queries are full.
    let mut deal = within(client.open_deal_stream(peer)).await.unwrap();
    within(deal.write_proposal(&rm_types::DealProposal::new(
        payload(),
        rm_types::DealId(1),
        rm_types::Params::new(TokenAmount::zero(), 0, 0),
    )))
    .await
    .unwrap();
    let mut served = within(held.deals.recv()).await.unwrap();
    assert_eq!(within(served.read_proposal()).await.unwrap().id.0, 1);

    // The held queries are still answered; then the slots are free again.
    r1.respond(answer()).unwrap();
    r2.respond(answer()).unwrap();
    assert_eq!(within(first).await.unwrap().unwrap(), answer());
    assert_eq!(within(second).await.unwrap().unwrap(), answer());
    let again = tokio::spawn({
        let client = client.clone();
        async move { client.query(peer, &query).await }
    });
    within(held.queries.recv())
        .await
        .unwrap()
        .respond(answer())
        .unwrap();
    assert_eq!(within(again).await.unwrap().unwrap(), answer());
    let m = provider.metrics();
    assert_eq!(
        (m.queries_answered, m.queries_refused, m.rejected_streams),
        (3, 1, 0)
    );
    client.shutdown().await;
    provider.shutdown().await;
}

/// Fresh peer ids cost nothing: two client hosts on one address (127.0.0.1) share its
/// `max_inbound_deals_per_ip` slots, so a third stream is reset whichever peer opens it.
#[tokio::test]
async fn fresh_peer_ids_from_one_address_share_its_deal_slots() {
    let mut config = Config::default();
    config.max_inbound_deals_per_ip = 2;
    let provider = host(config).await;
    let mut held = hold(&provider);
    let (a, b) = (host(Config::default()).await, host(Config::default()).await);
    introduce(&a, &provider).await;
    introduce(&b, &provider).await;
    let peer = provider.local_peer_id();
    let proposal = |id| {
        rm_types::DealProposal::new(
            payload(),
            rm_types::DealId(id),
            rm_types::Params::new(TokenAmount::zero(), 0, 0),
        )
    };

    let mut served = Vec::new();
    for (id, client) in [(1, &a), (2, &b)] {
        let mut s = within(client.open_deal_stream(peer)).await.unwrap();
        within(s.write_proposal(&proposal(id))).await.unwrap();
        served.push((s, within(held.deals.recv()).await.unwrap()));
    }
    // Each peer holds one stream, far under its own limit of 8; the address holds two.
    let mut third = within(b.open_deal_stream(peer)).await.unwrap();
    let _ = within(third.write_proposal(&proposal(3))).await;
    assert!(within(third.read_response()).await.is_err());
    for _ in 0..300 {
        if provider.metrics().rejected_streams_per_ip == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let m = provider.metrics();
    assert_eq!(
        (
            m.rejected_streams_per_ip,
            m.rejected_streams_per_peer,
            m.rejected_streams_total
        ),
        (1, 0, 0)
    );
    // A slot given back is the address's again.
    served.pop();
    let mut fourth = within(a.open_deal_stream(peer)).await.unwrap();
    within(fourth.write_proposal(&proposal(4))).await.unwrap();
    let mut p = within(held.deals.recv()).await.unwrap();
    assert_eq!(within(p.read_proposal()).await.unwrap().id.0, 4);
    for net in [a, b, provider] {
        net.shutdown().await;
    }
}
