//! Acceptance tests of issue 7: whole deals between a client and a provider, each with its
//! own RocksDB, wallet and ledger, over real libp2p on 127.0.0.1.
//!
//! Fixtures: `testdata/lorem.txt` and `testdata/lorem_under_1_block.txt`, go-fil-markets'
//! retrieval test files (retrievalmarket/impl/fixtures), imported with the go-fil-markets
//! test preset; price 1000 attoFIL/byte, payment interval 10,000, increase 1,000 unless a
//! test says otherwise.

use std::path::Path;
use std::time::Duration;

use rm_blockio::unixfs::Preset;
use rm_blockio::{BlockReader, Blockstore, Selector};
use rm_client::{Client, ClientState, ClientStatus, Retrieval};
use rm_e2e::{Node, lorem_path, lorem_small_path};
use rm_network::libp2p::Multiaddr;
use rm_paych::PaychNode;
use rm_provider::{Provider, ProviderState, ProviderStatus};
use rm_types::{
    Ask, Block, Cid, DealId, DealResponse, DealStatus, Ipld, Params, QueryParams,
    QueryResponseStatus, TokenAmount,
};
use tempfile::TempDir;

const LOREM_VOUCHERS: [u64; 2] = [10_174_000, 19_958_000];

fn atto(v: u64) -> TokenAmount {
    TokenAmount::from_atto(v)
}

fn ask(price: u64) -> Ask {
    Ask {
        price_per_byte: atto(price),
        unseal_price: TokenAmount::zero(),
        payment_interval: 10_000,
        payment_interval_increase: 1_000,
    }
}

struct Pair {
    _dir: TempDir,
    pnode: Node,
    cnode: Node,
    provider: Provider<PaychNode>,
    client: Client<PaychNode>,
    root: Cid,
    addrs: Vec<Multiaddr>,
}

fn init_logs() {
    // RUST_LOG=rm_client=debug,rm_provider=debug to see deals move.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn pair_with(
    fixture: &Path,
    ask: Ask,
    pconfig: rm_provider::Config,
    cconfig: rm_client::Config,
) -> Pair {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let pnode = Node::open(&dir.path().join("provider")).await.unwrap();
    let cnode = Node::open(&dir.path().join("client")).await.unwrap();
    let root = pnode.import(fixture, Preset::GO_FIL_MARKETS).unwrap();
    let provider = pnode.provider(pconfig).await.unwrap();
    provider.set_ask(ask).unwrap();
    provider.start();
    let client = cnode.client(cconfig).await.unwrap();
    let addrs = pnode.addrs().await.unwrap();
    Pair {
        _dir: dir,
        pnode,
        cnode,
        provider,
        client,
        root,
        addrs,
    }
}

/// lorem.txt from a provider that sends one block per response at `bytes_per_second`, so
/// a test can act while blocks flow.
async fn throttled_pair(ask: Ask, bytes_per_second: u64) -> Pair {
    let mut pconfig = rm_provider::Config::default();
    pconfig.deal.max_blocks_per_response = 1;
    pconfig.deal.max_bytes_per_second = Some(bytes_per_second);
    pair_with(&lorem_path(), ask, pconfig, rm_client::Config::default()).await
}

async fn pair(fixture: &Path, ask: Ask) -> Pair {
    pair_with(
        fixture,
        ask,
        rm_provider::Config::default(),
        rm_client::Config::default(),
    )
    .await
}

impl Pair {
    /// A retrieval on the provider's query terms, with funds for everything.
    async fn retrieval(&self) -> Retrieval {
        let terms = self
            .client
            .query(
                self.pnode.peer_id(),
                self.addrs.clone(),
                self.root,
                QueryParams::default(),
            )
            .await
            .unwrap();
        assert_eq!(terms.status, QueryResponseStatus::Available);
        Retrieval::from_query(self.root, self.pnode.peer_id(), self.addrs.clone(), &terms)
    }

    /// Waits for the deal's end. Generous: a stream that stalls is re-established after the
    /// 30 s read timeout, and the deal must still end right.
    async fn finish(&self, id: DealId) -> ClientState {
        match tokio::time::timeout(Duration::from_secs(150), self.client.wait(id)).await {
            Ok(deal) => deal.unwrap(),
            Err(_) => panic!(
                "deal did not end within 150 s; client {:?}; provider {:?}",
                self.client.retrieval_status(id).unwrap(),
                self.provider
                    .deal(&(self.cnode.peer_id().to_bytes(), id.0))
                    .unwrap()
            ),
        }
    }

    fn provider_deal(&self, id: DealId) -> ProviderState {
        let key = (self.cnode.peer_id().to_bytes(), id.0);
        self.provider
            .deal(&key)
            .unwrap()
            .expect("provider has the deal")
    }

    /// Waits until the provider's side of the deal is final.
    async fn provider_final(&self, id: DealId) -> ProviderState {
        for _ in 0..3_000 {
            let deal = self.provider_deal(id);
            if deal.status().is_final() {
                return deal;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "provider deal not final: {:?}",
            self.provider_deal(id).status()
        );
    }
}

fn amounts(v: &[u64]) -> Vec<TokenAmount> {
    v.iter().map(|a| atto(*a)).collect()
}

fn file(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("fixture in crates/rm-e2e/testdata")
}

/// Checks a completed paid deal on both sides: vouchers, amounts, bytes.
async fn assert_paid(p: &Pair, id: DealId, deal: &ClientState, vouchers: &[u64]) {
    assert_eq!(deal.status(), ClientStatus::Completed, "{}", deal.message());
    assert_eq!(deal.vouchers, amounts(vouchers));
    let total = atto(*vouchers.last().unwrap());
    assert_eq!(deal.funds_spent, total);
    let pdeal = p.provider_final(id).await;
    assert_eq!(
        pdeal.status(),
        ProviderStatus::Completed,
        "{}",
        pdeal.message()
    );
    assert_eq!(pdeal.funds_received, total);
    let mut sum = TokenAmount::zero();
    for r in &pdeal.received {
        sum += r;
    }
    assert_eq!(sum, total);
    // The provider's ledger holds the client's last voucher.
    let lane = pdeal.lane.as_ref().expect("paid deal has a lane");
    let latest = p
        .pnode
        .ledger
        .latest_voucher(&lane.channel, lane.lane)
        .unwrap()
        .expect("voucher saved");
    assert_eq!(latest.amount, total);
}

// 1 + 9
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_block_pays_410_000() {
    let p = pair(&lorem_small_path(), ask(1000)).await;
    let id = p.client.retrieve(p.retrieval().await).await.unwrap();
    let deal = p.finish(id).await;
    assert_paid(&p, id, &deal, &[410_000]).await;
    assert_eq!(deal.bytes_received, 410);
    assert_eq!(p.cnode.export(&p.root).unwrap(), file(&lorem_small_path()));
}

// 2 + 9
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lorem_pays_two_cumulative_vouchers() {
    let p = pair(&lorem_path(), ask(1000)).await;
    let retrieval = p.retrieval().await;
    // The query's size is the piece's unpadded size (a 32 KiB piece), as go-fil-markets
    // answers: the budget covers it; the vouchers pay for the 19,958 bytes sent.
    assert_eq!(retrieval.total_funds, atto(32_512_000));
    let id = p.client.retrieve(retrieval).await.unwrap();
    let deal = p.finish(id).await;
    assert_paid(&p, id, &deal, &LOREM_VOUCHERS).await;
    assert_eq!(deal.bytes_received, 19_958);
    assert_eq!(deal.blocks_received, 20);
    assert_eq!(
        p.provider_final(id).await.received,
        amounts(&[10_174_000, 9_784_000])
    );
    assert_eq!(p.cnode.export(&p.root).unwrap(), file(&lorem_path()));
}

// 3
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_price_needs_no_channel() {
    let p = pair(&lorem_path(), ask(0)).await;
    let id = p.client.retrieve(p.retrieval().await).await.unwrap();
    let deal = p.finish(id).await;
    assert_eq!(deal.status(), ClientStatus::Completed, "{}", deal.message());
    assert!(deal.payment_info.is_none());
    assert!(deal.vouchers.is_empty());
    assert!(p.cnode.ledger.channels().unwrap().is_empty());
    let pdeal = p.provider_final(id).await;
    assert_eq!(pdeal.status(), ProviderStatus::Completed);
    assert!(pdeal.funds_received.is_zero());
    assert_eq!(p.cnode.export(&p.root).unwrap(), file(&lorem_path()));
}

/// The partial selector of go-fil-markets' retrieval integration test: `ExploreFields{"Links":
/// ExploreIndex(0, ExploreFields{"Hash": Matcher})}` — the root and its first link.
fn partial_selector() -> Ipld {
    let map = |k: &str, v: Ipld| Ipld::Map([(k.to_owned(), v)].into_iter().collect());
    let fields = |name: &str, next: Ipld| map("f", map("f>", map(name, next)));
    let matcher = map(".", Ipld::Map(Default::default()));
    let index = map(
        "i",
        Ipld::Map(
            [
                ("i".to_owned(), Ipld::Integer(0)),
                (">".to_owned(), fields("Hash", matcher)),
            ]
            .into_iter()
            .collect(),
        ),
    );
    fields("Links", index)
}

// 4
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_selector_pays_1_982_000() {
    let p = pair(&lorem_path(), ask(1000)).await;
    let mut retrieval = p.retrieval().await;
    retrieval.params.selector = Some(partial_selector());
    let id = p.client.retrieve(retrieval).await.unwrap();
    let deal = p.finish(id).await;
    assert_paid(&p, id, &deal, &[1_982_000]).await;
    assert_eq!(deal.bytes_received, 1_982);
    // The 1,024 bytes it selects (the first leaf) are in the client's blockstore.
    let bytes = rm_types::codec::to_vec(&partial_selector()).unwrap();
    let selector = Selector::from_dag_cbor(&bytes).unwrap();
    let blocks: Vec<Block> = BlockReader::new(p.cnode.blocks.clone(), p.root, &selector)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[1].data, file(&lorem_path())[..1024]);
}

// 5
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_channel_gets_funds_added() {
    let p = pair(&lorem_path(), ask(1000)).await;
    let (channel, _) = p
        .cnode
        .ledger
        .create_channel(&p.cnode.address, &p.pnode.address, &atto(1_000))
        .unwrap();
    let id = p.client.retrieve(p.retrieval().await).await.unwrap();
    let deal = p.finish(id).await;
    assert_paid(&p, id, &deal, &LOREM_VOUCHERS).await;
    assert_eq!(deal.payment_info.as_ref().unwrap().pay_ch, channel);
    // The deal brought its own funds to the channel.
    let ch = p.cnode.ledger.channel(&channel).unwrap().unwrap();
    assert_eq!(ch.funds, atto(1_000 + 32_512_000));
    assert_eq!(p.cnode.ledger.channels().unwrap().len(), 1);
}

async fn wait_status(p: &Pair, id: DealId, status: ClientStatus) {
    for _ in 0..3_000 {
        if p.client.retrieval_status(id).unwrap().unwrap().status() == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "deal never reached {status:?}: {:?}",
        p.client.retrieval_status(id).unwrap().unwrap()
    );
}

// 6
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_funds_then_add_more_funds() {
    let p = pair(&lorem_path(), ask(1000)).await;
    let mut retrieval = p.retrieval().await;
    retrieval.total_funds = atto(1_000_000);
    let id = p.client.retrieve(retrieval).await.unwrap();
    wait_status(&p, id, ClientStatus::InsufficientFunds).await;
    let waiting = p.client.retrieval_status(id).unwrap().unwrap();
    assert!(waiting.vouchers.is_empty());
    assert!(
        waiting
            .message()
            .contains("shortfall of 0.000000000009174 FIL"),
        "{}",
        waiting.message()
    );
    p.client.add_more_funds(id, atto(18_958_000)).await.unwrap();
    let deal = p.finish(id).await;
    assert_paid(&p, id, &deal, &LOREM_VOUCHERS).await;
    assert_eq!(deal.total_funds, atto(19_958_000));
}

// 7
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_waiting_for_funds() {
    let p = pair(&lorem_path(), ask(1000)).await;
    let mut retrieval = p.retrieval().await;
    retrieval.total_funds = atto(1_000_000);
    let id = p.client.retrieve(retrieval).await.unwrap();
    wait_status(&p, id, ClientStatus::InsufficientFunds).await;
    p.client.cancel_deal(id).await.unwrap();
    let deal = p.finish(id).await;
    assert_eq!(deal.status(), ClientStatus::Cancelled);
    assert!(deal.vouchers.is_empty());
    assert!(deal.funds_spent.is_zero());
    let pdeal = p.provider_final(id).await;
    assert_eq!(
        pdeal.status(),
        ProviderStatus::Cancelled,
        "{}",
        pdeal.message()
    );
    assert!(pdeal.funds_received.is_zero());
}

// 7b: a cancel while blocks flow (a free deal has no payment point) reaches the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_blocks_flow() {
    let p = throttled_pair(ask(0), 10_000).await;
    let id = p.client.retrieve(p.retrieval().await).await.unwrap();
    for _ in 0..5_000 {
        if p.client
            .retrieval_status(id)
            .unwrap()
            .unwrap()
            .bytes_received
            >= 3_000
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    p.client.cancel_deal(id).await.unwrap();
    let deal = p.finish(id).await;
    assert_eq!(deal.status(), ClientStatus::Cancelled, "{}", deal.message());
    assert!(deal.bytes_received < 19_958);
    let pdeal = p.provider_final(id).await;
    assert_eq!(
        pdeal.status(),
        ProviderStatus::Cancelled,
        "{}",
        pdeal.message()
    );
    assert!(pdeal.message().starts_with("client cancelled retrieval"));
}

// 8a
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decider_says_no() {
    let p = pair(&lorem_path(), ask(1000)).await;
    p.provider
        .set_decider(std::sync::Arc::new(|_| Err("not today".to_owned())));
    let id = p.client.retrieve(p.retrieval().await).await.unwrap();
    let deal = p.finish(id).await;
    assert_eq!(deal.status(), ClientStatus::Rejected);
    assert_eq!(deal.message(), "deal rejected: not today");
    assert!(deal.vouchers.is_empty());
    assert_eq!(
        p.provider_final(id).await.status(),
        ProviderStatus::Rejected
    );
}

// 8b
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_not_found() {
    let p = pair(&lorem_small_path(), ask(1000)).await;
    let mut retrieval = p.retrieval().await;
    let missing: Cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
        .parse()
        .unwrap();
    let answer = p
        .client
        .query(p.pnode.peer_id(), vec![], missing, QueryParams::default())
        .await
        .unwrap();
    assert_eq!(answer.status, QueryResponseStatus::Unavailable);
    retrieval.payload_cid = missing;
    let id = p.client.retrieve(retrieval).await.unwrap();
    let deal = p.finish(id).await;
    assert_eq!(deal.status(), ClientStatus::DealNotFound);
    assert_eq!(deal.message(), "deal not found: not found");
    assert_eq!(
        p.provider_final(id).await.status(),
        ProviderStatus::DealNotFound
    );
}

// 8c: terms below the ask are rejected with go-fil-markets' reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_below_the_ask_is_rejected() {
    let p = pair(&lorem_small_path(), ask(1000)).await;
    let mut retrieval = p.retrieval().await;
    retrieval.params.price_per_byte = atto(999);
    let id = p.client.retrieve(retrieval).await.unwrap();
    let deal = p.finish(id).await;
    assert_eq!(deal.status(), ClientStatus::Rejected);
    assert_eq!(deal.message(), "deal rejected: Price per byte too low");
}

// 10
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounced_connections_resume_and_pay_exactly() {
    // One block per response at 20,000 bytes/s: about 50 ms per block, so the bounces
    // land where they are meant to.
    let p = throttled_pair(ask(1000), 20_000).await;
    let id = p.client.retrieve(p.retrieval().await).await.unwrap();
    let network = p.cnode.network.clone();
    let provider = p.pnode.peer_id();
    let client = p.client.clone();
    let bouncer = tokio::spawn(async move {
        let mut bounced = Vec::new();
        for threshold in [1_000u64, 3_000, 5_000, 7_000, 9_000] {
            // Bounded: the deal moves on within seconds or the test fails below.
            for _ in 0..5_000 {
                let deal = client.retrieval_status(id).unwrap().unwrap();
                if deal.bytes_received >= threshold || deal.status().is_final() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let received = client.retrieval_status(id).unwrap().unwrap().bytes_received;
            bounced.push((received, network.disconnect(provider).await.unwrap()));
            // Wait for the connection to go, then for the client to come back.
            for want in [false, true] {
                for _ in 0..5_000 {
                    if network.is_connected(provider).await.unwrap() == want {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        bounced
    });
    let deal = p.finish(id).await;
    let bounced = bouncer.await.unwrap();
    assert_eq!(bounced.len(), 5, "bounced at {bounced:?}");
    assert!(
        bounced.iter().all(|(_, cut)| *cut),
        "a live connection each time: {bounced:?}"
    );
    assert_paid(&p, id, &deal, &LOREM_VOUCHERS).await;
    // Each cut connection that held the deal's stream made the client resume.
    let resumes = p.provider_deal(id).resumes;
    println!("bounced at {bounced:?}; the provider saw {resumes} resumes");
    assert_eq!(resumes, 5);
    assert_eq!(p.cnode.export(&p.root).unwrap(), file(&lorem_path()));
}

// An unseal price is paid before any data, then the data in exact amounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseal_price_is_paid_first() {
    let mut a = ask(1000);
    a.unseal_price = atto(100);
    let p = pair(&lorem_path(), a).await;
    let retrieval = p.retrieval().await;
    assert_eq!(retrieval.total_funds, atto(32_512_100));
    let id = p.client.retrieve(retrieval).await.unwrap();
    let deal = p.finish(id).await;
    assert_paid(&p, id, &deal, &[100, 10_174_100, 19_958_100]).await;
    assert_eq!(
        p.provider_final(id).await.received,
        amounts(&[100, 10_174_000, 9_784_000])
    );
    assert_eq!(p.cnode.export(&p.root).unwrap(), file(&lorem_path()));
}

// Connections cut right when payments are asked for and right after vouchers are made:
// a voucher may be lost in flight and is then sent again; nothing is paid twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounced_around_payments_pay_exactly() {
    let p = throttled_pair(ask(1000), 40_000).await;
    let mut events = p.client.subscribe_to_events();
    let id = p.client.retrieve(p.retrieval().await).await.unwrap();
    let network = p.cnode.network.clone();
    let provider = p.pnode.peer_id();
    let bouncer = tokio::spawn(async move {
        let mut cuts = 0;
        while let Ok(note) = events.recv().await {
            if let rm_fsm::Notification::Applied {
                event, snapshot, ..
            } = note
            {
                if matches!(
                    event,
                    rm_client::ClientEvent::PaymentRequested(_)
                        | rm_client::ClientEvent::LastPaymentRequested(_)
                        | rm_client::ClientEvent::PaymentSent { .. }
                ) && network.disconnect(provider).await.unwrap()
                {
                    cuts += 1;
                }
                if snapshot.state.status().is_final() {
                    break;
                }
            }
        }
        cuts
    });
    let deal = p.finish(id).await;
    let cuts = bouncer.await.unwrap();
    assert!(cuts >= 2, "cut {cuts} connections");
    assert_paid(&p, id, &deal, &LOREM_VOUCHERS).await;
    assert_eq!(p.cnode.export(&p.root).unwrap(), file(&lorem_path()));
}

// A voucher is credited to one deal only: a client replaying a finished deal's voucher
// for a new deal is refused and the new deal gets nothing for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voucher_pays_one_deal_only() {
    let p = pair(&lorem_path(), ask(1000)).await;
    let retrieval = p.retrieval().await;
    let params = retrieval.params.clone();
    let id = p.client.retrieve(retrieval).await.unwrap();
    let paid = p.finish(id).await;
    assert_paid(&p, id, &paid, &LOREM_VOUCHERS).await;
    let info = paid.payment_info.clone().unwrap();
    let old_voucher = paid.last_voucher.clone().unwrap();

    // A hand-driven second deal on the same connection, paid with the old voucher.
    let mut stream = p
        .cnode
        .network
        .open_deal_stream(p.pnode.peer_id())
        .await
        .unwrap();
    let proposal = rm_types::DealProposal::new(p.root, DealId(77), params);
    stream.write_proposal(&proposal).await.unwrap();
    let mut owed = None;
    for _ in 0..64 {
        let r = stream.read_response().await.unwrap();
        if r.status == DealStatus::FundsNeeded {
            owed = Some(r.payment_owed);
            break;
        }
    }
    assert_eq!(owed, Some(atto(10_000_000)));
    stream
        .write_payment(&rm_types::DealPayment {
            id: DealId(77),
            payment_channel: info.pay_ch.clone(),
            payment_voucher: Some(old_voucher),
        })
        .await
        .unwrap();
    let answer = stream.read_response().await.unwrap();
    assert_eq!(answer.status, DealStatus::Errored);
    assert!(
        answer.message.contains("pays another deal"),
        "{}",
        answer.message
    );
    let replayed = p.provider_final(DealId(77)).await;
    assert_eq!(replayed.status(), ProviderStatus::Errored);
    assert!(replayed.funds_received.is_zero());
    // The first deal keeps exactly what it was paid.
    assert_eq!(p.provider_deal(id).funds_received, atto(19_958_000));
}

// 12
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_block_fails_the_deal_unpaid() {
    // An honest node holds the data; an evil provider sends its root, then a corrupted leaf.
    let dir = tempfile::tempdir().unwrap();
    let honest = Node::open(&dir.path().join("honest")).await.unwrap();
    let root = honest
        .import_blocks(&lorem_path(), Preset::GO_FIL_MARKETS)
        .unwrap();
    let blocks: Vec<Block> = BlockReader::new(
        honest.blocks.clone(),
        root,
        &Selector::explore_all_recursively(),
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap();
    let evil = Node::open(&dir.path().join("evil")).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    evil.network.set_delegate(tx);
    let mut wrong = blocks[1].clone();
    let mut flipped = wrong.data.to_vec();
    flipped[0] ^= 1;
    wrong.data = flipped.into();
    let wrong_cid = wrong.cid().unwrap();
    let served = vec![blocks[0].clone(), wrong];
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let rm_network::Event::Deal(mut stream) = event {
                let proposal = stream.read_proposal().await.unwrap();
                let reply = |status, blocks: Vec<Block>, owed: u64| DealResponse {
                    status,
                    id: proposal.id,
                    payment_owed: atto(owed),
                    message: String::new(),
                    blocks,
                };
                stream
                    .write_response(&reply(DealStatus::Accepted, vec![], 0))
                    .await
                    .unwrap();
                // Both blocks, then a demand for all 1,982 bytes.
                let _ = stream
                    .write_response(&reply(DealStatus::FundsNeeded, served.clone(), 1_982_000))
                    .await;
                let _ = stream.read_client_message().await;
            }
        }
    });
    let cnode = Node::open(&dir.path().join("client")).await.unwrap();
    let client = cnode.client(rm_client::Config::default()).await.unwrap();
    let retrieval = Retrieval {
        payload_cid: root,
        params: Params::new(atto(1000), 10_000, 1_000),
        total_funds: atto(19_958_000),
        provider: evil.peer_id(),
        provider_addrs: evil.addrs().await.unwrap(),
        miner_wallet: evil.address.clone(),
        caps: rm_client::Caps::default(),
    };
    let id = client.retrieve(retrieval).await.unwrap();
    let deal = tokio::time::timeout(Duration::from_secs(30), client.wait(id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deal.status(), ClientStatus::Errored);
    assert!(
        deal.message().contains("provider sent a wrong block"),
        "{}",
        deal.message()
    );
    assert!(deal.vouchers.is_empty());
    assert!(deal.funds_spent.is_zero());
    assert!(
        !cnode.blocks.has(&wrong_cid).unwrap(),
        "the wrong block is not kept"
    );
    // Nothing of the response holding the wrong block was kept either.
    assert!(!cnode.blocks.has(&blocks[0].cid().unwrap()).unwrap());
    assert_eq!(deal.bytes_received, 0);
}

/// Property: subscribers see exactly the sequence the state machine persisted — every
/// applied event once, in order, with consecutive sequence numbers, each snapshot equal to
/// replaying the table on the previous one, the last one equal to what is stored.
#[test]
fn subscribers_see_exactly_what_was_persisted() {
    use proptest::prelude::*;
    let config = ProptestConfig {
        cases: 6,
        ..ProptestConfig::default()
    };
    proptest!(config, |(price in 0u64..3, interval in 1u64..12_000, increase in 0u64..3_000,
                        per_response in 1usize..6)| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let a = Ask {
                price_per_byte: atto(price),
                unseal_price: TokenAmount::zero(),
                payment_interval: interval,
                payment_interval_increase: increase,
            };
            let mut pconfig = rm_provider::Config::default();
            pconfig.deal.max_blocks_per_response = per_response;
            let p = pair_with(&lorem_path(), a, pconfig, rm_client::Config::default()).await;
            let mut events = p.client.subscribe_to_events();
            let id = p.client.retrieve(p.retrieval().await).await.unwrap();
            let deal = p.finish(id).await;
            prop_assert_eq!(deal.status(), ClientStatus::Completed, "{}", deal.message());
            let table = rm_client::fsm::table();
            let mut seen: Option<rm_fsm::Snapshot<ClientState>> = None;
            loop {
                match events.try_recv().unwrap() {
                    Some(rm_fsm::Notification::Began { snapshot, .. }) => {
                        prop_assert_eq!(snapshot.seq, 0);
                        seen = Some(snapshot);
                    }
                    Some(rm_fsm::Notification::Applied { event, snapshot, .. }) => {
                        let before = seen.take().expect("Began comes first");
                        let after = rm_fsm::step(table, &before, &event).unwrap();
                        prop_assert_eq!(&after, &snapshot);
                        seen = Some(snapshot);
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            let last = seen.expect("events were seen");
            let stored = rm_client::Deals::snapshot(&client_deals(&p), &id.0).unwrap().unwrap();
            prop_assert_eq!(last, stored);
            Ok(())
        })?;
    });
}

fn client_deals(p: &Pair) -> rm_client::Deals {
    p.client.deals().clone()
}

// ---- Issue 8: deals served from pieces in sectors ----

/// lorem.txt (go-fil-markets preset) as a piece; cross-checked in rm-unseal's tests with an
/// independent implementation.
const LOREM_PIECE_CID: &str = "baga6ea4seaqfuolhqhanwfpvi74zcd2jxvrktjrrpczhiz2tenm6fzvibvzmoky";

/// The provider statuses a deal passed through, in order, from its event subscription.
fn provider_statuses(
    mut events: rm_provider::ProviderSubscription,
) -> tokio::task::JoinHandle<Vec<ProviderStatus>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(note) = events.recv().await {
            if let rm_fsm::Notification::Applied { snapshot, .. } = note {
                let status = snapshot.state.status();
                if seen.last() != Some(&status) {
                    seen.push(status);
                }
                if status.is_final() {
                    break;
                }
            }
        }
        seen
    })
}

// The piece is stable, the query answers from the piece store, and an unseal price is
// paid before the provider unseals and sends anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piece_is_queried_unsealed_and_paid_for_in_order() {
    let mut a = ask(1000);
    a.unseal_price = atto(100);
    let p = pair(&lorem_path(), a).await;
    let piece: Cid = LOREM_PIECE_CID.parse().unwrap();
    // The import made this piece, and nothing is in the provider's blockstore yet.
    let info = p.pnode.pieces.get_piece_info(&piece).unwrap();
    assert_eq!(info.deals[0].length, 32 << 10);
    assert!(!p.pnode.blocks.has(&p.root).unwrap());

    let query = |piece_cid: Option<Cid>| {
        let params = QueryParams { piece_cid };
        p.client
            .query(p.pnode.peer_id(), p.addrs.clone(), p.root, params)
    };
    let terms = query(None).await.unwrap();
    assert_eq!(terms.status, QueryResponseStatus::Available);
    assert_eq!(terms.piece_cid_found, rm_types::QueryItemStatus::Available);
    assert_eq!(terms.size, 32_512); // the 32 KiB piece, unpadded
    assert_eq!(terms.unseal_price, atto(100));
    let named = query(Some(piece)).await.unwrap();
    assert_eq!(named.status, QueryResponseStatus::Available);
    let other: Cid = "baga6ea4seaqozp3abki6vgdf7ztbipcycmxfyt2o64cpuyvdkczsjxsg7bqmioi"
        .parse()
        .unwrap();
    let wrong = query(Some(other)).await.unwrap();
    assert_eq!(wrong.status, QueryResponseStatus::Unavailable);
    assert_eq!(
        wrong.piece_cid_found,
        rm_types::QueryItemStatus::Unavailable
    );
    assert_eq!(
        wrong.message,
        "piece info for cid not found (deal has not been added to a piece yet)"
    );

    let statuses = provider_statuses(p.provider.subscribe_to_events());
    let mut retrieval = Retrieval::from_query(p.root, p.pnode.peer_id(), p.addrs.clone(), &terms);
    retrieval.params.piece_cid = Some(piece);
    let id = p.client.retrieve(retrieval).await.unwrap();
    let deal = p.finish(id).await;
    assert_paid(&p, id, &deal, &[100, 10_174_100, 19_958_100]).await;
    assert_eq!(p.cnode.export(&p.root).unwrap(), file(&lorem_path()));
    let statuses = statuses.await.unwrap();
    let at = |s| statuses.iter().position(|x| *x == s);
    let (unseal_owed, unsealing, unsealed, ongoing) = (
        at(ProviderStatus::FundsNeededUnseal).expect("asked for the unseal price"),
        at(ProviderStatus::Unsealing).expect("unsealed"),
        at(ProviderStatus::Unsealed).expect("unsealed"),
        at(ProviderStatus::Ongoing).expect("sent data"),
    );
    assert!(
        unseal_owed < unsealing && unsealing < unsealed && unsealed < ongoing,
        "{statuses:?}"
    );
    // The blocks were read where they lie in the sector file: nothing was copied into
    // the provider's blockstore.
    assert!(!p.pnode.blocks.has(&p.root).unwrap());

    // A second deal for the piece reads it the same way.
    let again = p.retrieval().await;
    let again_id = p.client.retrieve(again).await.unwrap();
    let deal = p.finish(again_id).await;
    assert_eq!(deal.status(), ClientStatus::Completed, "{}", deal.message());
}

// A piece that cannot be unsealed ends the deal cleanly: the provider errors, the client
// learns why, and nothing beyond the unseal price is paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unseal_failure_ends_the_deal_cleanly() {
    for unseal_price in [100u64, 0] {
        let mut a = ask(1000);
        a.unseal_price = atto(unseal_price);
        let p = pair(&lorem_path(), a).await;
        // The sector file is lost after the import.
        let piece: Cid = LOREM_PIECE_CID.parse().unwrap();
        let sector = p.pnode.pieces.get_piece_info(&piece).unwrap().deals[0].sector_id;
        std::fs::remove_file(p.pnode.sectors.path(sector)).unwrap();

        let id = p.client.retrieve(p.retrieval().await).await.unwrap();
        let deal = p.finish(id).await;
        // go-fil-markets ends the client Cancelled; ours records the provider's error.
        assert_eq!(deal.status(), ClientStatus::Errored);
        assert!(
            deal.message().contains("Unable to unseal piece"),
            "client told why: {}",
            deal.message()
        );
        let pdeal = p.provider_final(id).await;
        assert_eq!(
            pdeal.status(),
            ProviderStatus::Errored,
            "{}",
            pdeal.message()
        );
        assert!(pdeal.message().contains("Unable to unseal piece"));
        // Only the unseal price was paid, and nothing was sent or kept.
        let paid: Vec<TokenAmount> = if unseal_price > 0 {
            amounts(&[unseal_price])
        } else {
            Vec::new()
        };
        assert_eq!(deal.vouchers, paid);
        assert_eq!(pdeal.funds_received, atto(unseal_price));
        assert_eq!(pdeal.bytes_sent, 0);
        assert_eq!(deal.bytes_received, 0);
        assert!(!p.cnode.blocks.has(&p.root).unwrap());
        assert!(!p.pnode.blocks.has(&p.root).unwrap());
    }
}
