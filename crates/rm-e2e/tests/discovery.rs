//! Acceptance test of issue 9: a provider node imports lorem.txt (which announces it on the
//! DHT); a client node that knows only a bootstrap node finds it with
//! `Client::find_providers`, queries it and retrieves it.

use std::time::Duration;

use rm_blockio::unixfs::Preset;
use rm_client::Retrieval;
use rm_discovery::ResolverConfig;
use rm_e2e::{Node, lorem_path};
use rm_types::{Ask, QueryParams, QueryResponseStatus, TokenAmount};

/// Upper bound for a single step.
const STEP: Duration = Duration::from_secs(60);

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f).await.expect("step timed out")
}

/// Makes `node` know only `bootstrap` on the DHT and joins through it.
async fn join(node: &Node, bootstrap: &Node) {
    let addr = bootstrap.addrs().await.unwrap().remove(0);
    node.network
        .add_dht_peer(bootstrap.peer_id(), addr)
        .await
        .unwrap();
    within(node.network.bootstrap()).await.unwrap();
}

#[tokio::test]
async fn a_client_that_knows_only_a_bootstrap_node_finds_queries_and_retrieves() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = Node::open(&dir.path().join("bootstrap")).await.unwrap();
    let pnode = Node::open(&dir.path().join("provider")).await.unwrap();
    let cnode = Node::open(&dir.path().join("client")).await.unwrap();
    join(&pnode, &bootstrap).await;
    join(&cnode, &bootstrap).await;

    // Importing provides the root: the announcer announces it on the DHT.
    let mut announced = pnode.announcer.subscribe();
    let root = pnode.import(&lorem_path(), Preset::GO_FIL_MARKETS).unwrap();
    within(announced.wait_for(|s| s.announced >= 1))
        .await
        .unwrap();
    assert!(pnode.announcer.is_provided(&root).unwrap());

    let provider = pnode
        .provider(rm_provider::Config::default())
        .await
        .unwrap();
    provider
        .set_ask(Ask {
            price_per_byte: TokenAmount::from_atto(1000u64),
            unseal_price: TokenAmount::zero(),
            payment_interval: 10_000,
            payment_interval_increase: 1_000,
        })
        .unwrap();
    provider.start();

    // Find: through the DHT, the provider's payment address learned with a query.
    let client = cnode.client(rm_client::Config::default()).await.unwrap();
    let resolver = cnode.resolver(ResolverConfig::default());
    // ADD_PROVIDER is fire-and-forget: a few bounded tries while the records land.
    let mut peers = Vec::new();
    for _ in 0..20 {
        peers = within(client.find_providers(&resolver, &root))
            .await
            .unwrap();
        if !peers.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(peers.len(), 1, "{peers:?}");
    let peer = rm_network::from_rm_peer(&peers[0].id).unwrap();
    assert_eq!(peer, pnode.peer_id());
    assert_eq!(peers[0].address, pnode.address);

    // Query and retrieve by peer id: the lookup left its addresses in the address book.
    let terms = within(client.query(peer, Vec::new(), root, QueryParams::default()))
        .await
        .unwrap();
    assert_eq!(terms.status, QueryResponseStatus::Available);
    let id = client
        .retrieve(Retrieval::from_query(root, peer, Vec::new(), &terms))
        .await
        .unwrap();
    let deal = within(client.wait(id)).await.unwrap();
    assert_eq!(deal.status(), rm_client::ClientStatus::Completed);
    assert_eq!(
        cnode.export(&root).unwrap(),
        std::fs::read(lorem_path()).unwrap()
    );

    client.close().await;
    for node in [&cnode, &pnode, &bootstrap] {
        node.network.shutdown().await;
    }
}
