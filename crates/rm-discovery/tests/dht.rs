//! Discovery over a real Kademlia DHT on 127.0.0.1: announcing, resolving from a node that
//! only knows a bootstrap peer, re-announcing, restarts, and the resolver's timeout,
//! deduplication and bounds.
//!
//! Every wait is bounded (`within`, or a loop over announcer rounds with a cap).

use std::{future::Future, sync::Arc, time::Duration};

use rm_discovery::{
    Announcer, AnnouncerConfig, AnnouncerStats, Registry, Resolver, ResolverConfig, Source,
    announcer, registry,
};
use rm_network::{
    Config, Event, Network, keys,
    libp2p::{Multiaddr, PeerId},
};
use rm_store::Keyspace;
use rm_types::{
    Address, Cid, PeerResolver, Query, QueryItemStatus, QueryResponse, QueryResponseStatus,
    RetrievalPeer, TokenAmount,
};
use tokio::sync::watch;

/// Upper bound for any single step of a test.
const STEP: Duration = Duration::from_secs(30);

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

fn payload() -> Cid {
    "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb"
        .parse()
        .unwrap()
}

/// The payment address every test provider answers with.
fn payment_address() -> Address {
    Address::new_id(4242)
}

fn config() -> Config {
    Config::default()
        .with_listen_addrs(["/ip4/127.0.0.1/tcp/0".parse().unwrap()])
        .with_dht_query_timeout(Duration::from_secs(10))
}

async fn host() -> Network {
    within(Network::new(keys::generate(), config()))
        .await
        .unwrap()
}

/// Makes `host` know only `bootstrap` and joins the DHT through it.
async fn join(host: &Network, bootstrap: &Network) {
    let addr = bootstrap.listen_addrs().await.unwrap().remove(0);
    host.add_dht_peer(bootstrap.local_peer_id(), addr)
        .await
        .unwrap();
    within(host.bootstrap()).await.unwrap();
}

/// A bootstrap node and `n` nodes that joined through it.
async fn dht(n: usize) -> (Network, Vec<Network>) {
    let bootstrap = host().await;
    let mut nodes = Vec::new();
    for _ in 0..n {
        let node = host().await;
        join(&node, &bootstrap).await;
        nodes.push(node);
    }
    (bootstrap, nodes)
}

/// Answers queries: `payload()` is available (19,000 bytes), anything else is not.
fn serve_queries(network: &Network) {
    let (delegate, mut events) = tokio::sync::mpsc::channel(16);
    network.set_delegate(delegate);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Query(request) = event {
                let have = request.query.payload_cid.hash() == payload().hash();
                let _ = request.respond(QueryResponse {
                    status: if have {
                        QueryResponseStatus::Available
                    } else {
                        QueryResponseStatus::Unavailable
                    },
                    piece_cid_found: QueryItemStatus::Available,
                    size: if have { 19_000 } else { 0 },
                    payment_address: payment_address(),
                    min_price_per_byte: TokenAmount::from_atto(1000u64),
                    max_payment_interval: 10_000,
                    max_payment_interval_increase: 1_000,
                    message: String::new(),
                    unseal_price: TokenAmount::zero(),
                });
            }
        }
    });
}

/// A provided set in memory (what these tests check is the announcing, not the storage).
fn set() -> Keyspace {
    Keyspace::memory(announcer::DEFAULT_KEYSPACE)
}

fn announcer(network: &Network, set: &Keyspace, interval: Duration) -> Announcer {
    Announcer::open(
        network.clone(),
        set.clone(),
        AnnouncerConfig::default().with_reannounce_interval(interval),
    )
    .unwrap()
}

/// Waits until the announcer's stats satisfy `done`.
async fn wait_stats(
    stats: &mut watch::Receiver<AnnouncerStats>,
    done: impl FnMut(&AnnouncerStats) -> bool,
) -> AnnouncerStats {
    *within(stats.wait_for(done)).await.unwrap()
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn five_nodes_a_provider_is_found_by_a_node_that_only_knows_the_bootstrap_peer() {
    // bootstrap + 4 nodes; the provider and the client both joined through the
    // bootstrap node only.
    let (bootstrap, nodes) = dht(4).await;
    let provider = &nodes[1];
    let client = &nodes[3];
    serve_queries(provider);
    let pdb = set();
    let announcer = announcer(provider, &pdb, HOUR);
    let mut stats = announcer.subscribe();
    announcer.provide(&payload()).unwrap();
    wait_stats(&mut stats, |s| s.announced >= 1).await;

    // find: the provider with addresses to dial. ADD_PROVIDER is fire-and-forget, so the
    // first lookups may run before the records are stored: a few tries, bounded.
    let resolver = Resolver::new(ResolverConfig::default()).with_network(client.clone());
    let mut found = Vec::new();
    for _ in 0..20 {
        found = within(resolver.find(&payload())).await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].peer_id, provider.local_peer_id());
    assert_eq!(found[0].source, Source::Dht);
    assert!(found[0].record.is_none());
    assert!(!found[0].addrs.is_empty());

    // The same record answers a lookup by CIDv1.
    let v1 = Cid::new_v1(0x70, *payload().hash());
    assert_eq!(within(resolver.find(&v1)).await.len(), 1);

    // As a PeerResolver: the provider was queried for its address.
    let peers = within(resolver.get_peers(&payload())).await.unwrap();
    assert_eq!(
        peers,
        vec![RetrievalPeer {
            address: payment_address(),
            id: rm_network::to_rm_peer(&provider.local_peer_id()),
            piece_cid: None,
        }]
    );

    // The client dials it by id and gets a real answer.
    let answer = within(client.query(provider.local_peer_id(), &Query::new(payload())))
        .await
        .unwrap();
    assert_eq!(answer.status, QueryResponseStatus::Available);
    assert_eq!(answer.size, 19_000);

    // Nobody provides another payload.
    let unknown: Cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
        .parse()
        .unwrap();
    assert!(within(resolver.find(&unknown)).await.is_empty());
    assert!(
        within(resolver.get_peers(&unknown))
            .await
            .unwrap()
            .is_empty()
    );

    for node in nodes.iter().chain([&bootstrap]) {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_that_joins_later_receives_the_record_from_a_reannounce() {
    let (bootstrap, nodes) = dht(2).await;
    let provider = &nodes[0];
    let pdb = set();
    let announcer = announcer(provider, &pdb, Duration::from_millis(200));
    let mut stats = announcer.subscribe();
    announcer.provide(&payload()).unwrap();
    wait_stats(&mut stats, |s| s.announced >= 1).await;

    // A node that joins now (through the bootstrap node) can only get the provider's
    // record from a later announce: records are put by the provider, never copied.
    let late = host().await;
    join(&late, &bootstrap).await;
    let mut stored = false;
    for _ in 0..50 {
        let rounds = stats.borrow().rounds;
        wait_stats(&mut stats, |s| s.rounds > rounds).await;
        if late
            .stored_providers(&payload())
            .await
            .unwrap()
            .contains(&provider.local_peer_id())
        {
            stored = true;
            break;
        }
    }
    assert!(stored, "no re-announce reached the late node");
    assert_eq!(stats.borrow().failed, 0);

    for node in nodes.iter().chain([&bootstrap, &late]) {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn provided_payloads_are_announced_again_at_start() {
    let (bootstrap, nodes) = dht(1).await;
    let pdb = set();
    {
        // Provided while offline: a lonely host.
        let lonely = host().await;
        let first = announcer(&lonely, &pdb, HOUR);
        first.provide(&payload()).unwrap();
        // Idempotent, and CIDv1 of the same multihash is the same entry.
        first
            .provide(&Cid::new_v1(0x70, *payload().hash()))
            .unwrap();
        assert_eq!(first.len(), 1);
        lonely.shutdown().await;
    }
    // "Restarted" on a host that is in the DHT: the round at start announces it.
    let provider = &nodes[0];
    let second = announcer(provider, &pdb, HOUR);
    assert_eq!(second.provided().unwrap(), vec![payload()]);
    assert!(
        second
            .is_provided(&Cid::new_v1(0x55, *payload().hash()))
            .unwrap()
    );
    let mut stats = second.subscribe();
    let done = wait_stats(&mut stats, |s| s.rounds >= 1).await;
    assert_eq!((done.announced, done.failed), (1, 0));
    let mut stored = false;
    for _ in 0..200 {
        let providers = bootstrap.stored_providers(&payload()).await.unwrap();
        if providers.contains(&provider.local_peer_id()) {
            stored = true;
            break;
        }
        // ADD_PROVIDER is fire-and-forget: no event to await on the receiving side.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(stored, "the bootstrap node never got the record");

    // Unproviding removes it from the set and from the host's own store.
    assert!(second.unprovide(&payload()).await.unwrap());
    assert!(second.is_empty());
    assert!(
        !provider
            .stored_providers(&payload())
            .await
            .unwrap()
            .contains(&provider.local_peer_id())
    );
    for node in nodes.iter().chain([&bootstrap]) {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn the_announcer_rejects_bad_settings_and_caps_the_set() {
    let lonely = host().await;
    let pdb = set();
    for interval in [Duration::ZERO, lonely.config().dht_provider_record_ttl] {
        assert!(matches!(
            Announcer::open(
                lonely.clone(),
                pdb.clone(),
                AnnouncerConfig::default().with_reannounce_interval(interval),
            ),
            Err(rm_discovery::Error::InvalidConfig(_))
        ));
    }
    let mut config = AnnouncerConfig::default();
    config.max_provided = 1;
    let capped = Announcer::open(lonely.clone(), pdb, config).unwrap();
    capped.provide(&payload()).unwrap();
    let other: Cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
        .parse()
        .unwrap();
    assert!(matches!(
        capped.provide(&other),
        Err(rm_discovery::Error::TooManyProvided { limit: 1 })
    ));
    lonely.shutdown().await;
}

fn registry_with(peers: &[RetrievalPeer]) -> Arc<Registry> {
    let registry = Arc::new(Registry::open(Keyspace::memory(registry::DEFAULT_KEYSPACE)));
    for peer in peers {
        registry.add_peer(&payload(), peer.clone()).unwrap();
    }
    registry
}

fn local_peer(peer: PeerId) -> RetrievalPeer {
    RetrievalPeer {
        address: Address::new_id(1000),
        id: rm_network::to_rm_peer(&peer),
        piece_cid: Some(payload()),
    }
}

#[tokio::test]
async fn registry_first_then_dht_deduplicated_and_bounded() {
    // Two providers on the DHT; the registry also knows the first one.
    let (bootstrap, nodes) = dht(4).await;
    let (p1, p2, client) = (&nodes[0], &nodes[1], &nodes[3]);
    let mut announcers = Vec::new();
    for provider in [p1, p2] {
        serve_queries(provider);
        let pdb = set();
        let announcer = announcer(provider, &pdb, HOUR);
        let mut stats = announcer.subscribe();
        announcer.provide(&payload()).unwrap();
        wait_stats(&mut stats, |s| s.announced >= 1).await;
        announcers.push(announcer);
    }
    let local = local_peer(p1.local_peer_id());
    let registry = registry_with(std::slice::from_ref(&local));
    let resolver = Resolver::new(ResolverConfig::default())
        .with_registry(Arc::clone(&registry))
        .with_network(client.clone());

    // Both DHT providers are found; the registry one comes first, once, with the
    // addresses the DHT had for it.
    let mut found = Vec::new();
    for _ in 0..20 {
        found = within(resolver.find(&payload())).await;
        if found.len() == 2 {
            break;
        }
    }
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].peer_id, p1.local_peer_id());
    assert_eq!(found[0].source, Source::Registry);
    assert_eq!(found[0].record.as_ref(), Some(&local));
    assert!(!found[0].addrs.is_empty());
    assert_eq!(found[1].peer_id, p2.local_peer_id());
    assert_eq!(found[1].source, Source::Dht);

    // As a PeerResolver: the registry entry as stored, then the DHT provider with the
    // address it answered with.
    let peers = within(resolver.get_peers(&payload())).await.unwrap();
    assert_eq!(
        peers,
        vec![
            local.clone(),
            RetrievalPeer {
                address: payment_address(),
                id: rm_network::to_rm_peer(&p2.local_peer_id()),
                piece_cid: None,
            }
        ]
    );

    // Bounded: one result, the registry's.
    let one = Resolver::new(ResolverConfig::default().with_max_results(1))
        .with_registry(registry)
        .with_network(client.clone());
    let found = within(one.find(&payload())).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].source, Source::Registry);
    assert_eq!(
        within(one.get_peers(&payload())).await.unwrap(),
        vec![local]
    );

    for node in nodes.iter().chain([&bootstrap]) {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn a_dht_without_peers_returns_the_local_results() {
    let lonely = host().await;
    let local = local_peer(keys::generate().public().to_peer_id());
    let registry = registry_with(std::slice::from_ref(&local));
    let resolver = Resolver::new(ResolverConfig::default())
        .with_registry(registry)
        .with_network(lonely.clone());
    let found = within(resolver.find(&payload())).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].source, Source::Registry);
    assert_eq!(
        within(resolver.get_peers(&payload())).await.unwrap(),
        vec![local]
    );
    lonely.shutdown().await;
}

#[tokio::test]
async fn a_dht_that_does_not_answer_is_cut_off_by_the_timeout() {
    // The only DHT peer accepts TCP connections and never speaks, so the lookup would run
    // for the whole query timeout (10 s here); the resolver gives up after 300 ms.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            if held.len() < 16 {
                held.push(socket);
            }
        }
    });
    let network = host().await;
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    network
        .add_dht_peer(keys::generate().public().to_peer_id(), addr)
        .await
        .unwrap();
    let local = local_peer(keys::generate().public().to_peer_id());
    let registry = registry_with(std::slice::from_ref(&local));
    let resolver =
        Resolver::new(ResolverConfig::default().with_timeout(Duration::from_millis(300)))
            .with_registry(registry)
            .with_network(network.clone());
    // `within` is far shorter than the DHT query timeout plus the open timeout.
    let bound = Duration::from_secs(5);
    let found = tokio::time::timeout(bound, resolver.find(&payload()))
        .await
        .expect("the resolver's timeout did not apply");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].source, Source::Registry);
    let peers = tokio::time::timeout(bound, resolver.get_peers(&payload()))
        .await
        .expect("the resolver's timeout did not apply")
        .unwrap();
    assert_eq!(peers, vec![local]);
    hold.abort();
    network.shutdown().await;
}

// A provider that announced before it had any DHT peer announces again as soon as peers
// appear, not 12 hours later.
#[tokio::test]
async fn announces_made_without_peers_are_repeated_when_peers_appear() {
    let (bootstrap, nodes) = dht(2).await;
    let client = &nodes[0];
    let provider = host().await;
    let pdb = set();
    let announcer = Announcer::open(
        provider.clone(),
        pdb.clone(),
        AnnouncerConfig::default()
            .with_reannounce_interval(HOUR)
            .with_peerless_retry(Duration::from_millis(100)),
    )
    .unwrap();
    let mut stats = announcer.subscribe();
    announcer.provide(&payload()).unwrap();
    // Announced to nobody (the provider knows no peer yet): only its own store has it.
    let before = wait_stats(&mut stats, |s| s.announced >= 1).await;
    join(&provider, &bootstrap).await;
    // Within a few retry periods, a round runs again now that there are peers.
    wait_stats(&mut stats, |s| s.rounds > before.rounds).await;
    let resolver = Resolver::new(ResolverConfig::default()).with_network(client.clone());
    let mut found = Vec::new();
    for _ in 0..20 {
        found = within(resolver.find(&payload())).await;
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].peer_id, provider.local_peer_id());
}
