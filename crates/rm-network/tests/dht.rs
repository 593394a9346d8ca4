//! The Kademlia DHT of rm-network over 127.0.0.1: provider records keyed by multihash,
//! lookups that return dialable addresses, and the limits.

use std::{future::Future, time::Duration};

use rm_network::{Config, Error, Network, keys, libp2p::Multiaddr};
use rm_types::Cid;

/// Upper bound for any single step of a test.
const STEP: Duration = Duration::from_secs(30);

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

fn loopback() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0".parse().unwrap()
}

fn config() -> Config {
    Config::default()
        .with_listen_addrs([loopback()])
        .with_dht_query_timeout(Duration::from_secs(10))
}

async fn host() -> Network {
    within(Network::new(keys::generate(), config()))
        .await
        .unwrap()
}

/// Makes `host` know `bootstrap` and joins the DHT through it.
async fn join(host: &Network, bootstrap: &Network) {
    let addr = bootstrap.listen_addrs().await.unwrap().remove(0);
    host.add_dht_peer(bootstrap.local_peer_id(), addr)
        .await
        .unwrap();
    within(host.bootstrap()).await.unwrap();
}

fn payload() -> Cid {
    "QmTTA2daxGqo5denp6SwLzzkLJm3fuisYEi9CoWsuHpzfb"
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_provider_record_is_found_by_a_peer_that_only_knows_the_bootstrap_node() {
    let bootstrap = host().await;
    let provider = host().await;
    let client = host().await;
    join(&provider, &bootstrap).await;
    join(&client, &bootstrap).await;

    within(provider.start_providing(&payload())).await.unwrap();
    // ADD_PROVIDER is fire-and-forget: the record lands on the bootstrap node soon after.
    let mut stored = false;
    for _ in 0..200 {
        let providers = bootstrap.stored_providers(&payload()).await.unwrap();
        if providers.contains(&provider.local_peer_id()) {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(stored, "the bootstrap node never stored the record");

    // The CIDv1 of the same multihash names the same record.
    let v1 = Cid::new_v1(0x70, *payload().hash());
    let found = within(client.get_providers(&v1, 10)).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let (peer, addrs) = &found[0];
    assert_eq!(*peer, provider.local_peer_id());
    // Addresses come as the address book keeps them, ending in /p2p/<peer>.
    let listening: Vec<Multiaddr> = provider
        .listen_addrs()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.with_p2p(*peer).unwrap())
        .collect();
    assert!(
        addrs.iter().any(|a| listening.contains(a)),
        "{addrs:?} vs {listening:?}"
    );

    // A lookup never returns the host itself.
    let own = within(provider.get_providers(&payload(), 10))
        .await
        .unwrap();
    assert!(own.iter().all(|(p, _)| *p != provider.local_peer_id()));

    // After stop_providing the provider's own store forgets it.
    provider.stop_providing(&payload()).await.unwrap();
    assert!(
        !provider
            .stored_providers(&payload())
            .await
            .unwrap()
            .contains(&provider.local_peer_id())
    );
    for host in [client, provider, bootstrap] {
        host.shutdown().await;
    }
}

#[tokio::test]
async fn dht_calls_without_peers_end_at_once() {
    let lonely = host().await;
    assert!(matches!(
        within(lonely.bootstrap()).await,
        Err(Error::Dht(_))
    ));
    // Announcing with no peers stores the record locally only.
    within(lonely.start_providing(&payload())).await.unwrap();
    assert_eq!(
        lonely.stored_providers(&payload()).await.unwrap(),
        vec![lonely.local_peer_id()]
    );
    assert!(
        within(lonely.get_providers(&payload(), 5))
            .await
            .unwrap()
            .is_empty()
    );
    // A limit of zero asks nothing.
    assert!(
        within(lonely.get_providers(&payload(), 0))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(lonely.dht_peers().await.unwrap().is_empty());
    lonely.shutdown().await;
}

#[tokio::test]
async fn the_number_of_dht_operations_in_progress_is_capped() {
    let mut config = config();
    config.dht_max_queries = 1;
    let busy = within(Network::new(keys::generate(), config))
        .await
        .unwrap();
    // A peer that accepts TCP connections and never answers keeps a lookup running.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            if held.len() < 16 {
                held.push(socket);
            }
        }
    });
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    busy.add_dht_peer(keys::generate().public().to_peer_id(), addr)
        .await
        .unwrap();
    // Polling the first lookup once queues its command; the second one, queued after it,
    // fails at once while the first is in progress.
    let cid = payload();
    let mut first = Box::pin(busy.get_providers(&cid, 5));
    assert!(futures::poll!(&mut first).is_pending());
    let second = within(busy.get_providers(&payload(), 5)).await;
    assert!(matches!(second, Err(Error::Dht(_))), "{second:?}");
    drop(first);
    busy.shutdown().await;
}
