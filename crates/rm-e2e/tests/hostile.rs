//! The hostile-peer suite (issue 17, item 7): scripted malicious clients and providers,
//! built on rm-network's raw deal streams, against rm's real provider and client over
//! libp2p on 127.0.0.1, each node with its own RocksDB, wallet and ledger.
//!
//! Every test runs one attack while an honest client retrieves from the same provider (or,
//! for a malicious provider, while the attacked client also retrieves from an honest one),
//! and checks that the attack ends with a typed error within a deadline, that nothing is
//! paid for bad bytes and no more is sent unpaid than one payment interval, and that the
//! honest deal completes and is paid exactly.
//!
//! Data: go-fil-markets' `lorem.txt` (19,000 bytes; 19,958 bytes of blocks with the
//! go-fil-markets preset) at 1,000 attoFIL per byte, payment interval 10,000: an honest
//! deal pays vouchers of 10,174,000 then 19,958,000.

use std::sync::Arc;
use std::time::Duration;

use rm_blockio::unixfs::Preset;
use rm_blockio::{BlockReader, Blockstore, Selector};
use rm_client::{Client, ClientState, ClientStatus, Retrieval};
use rm_e2e::{Node, lorem_path};
use rm_network::DealStream;
use rm_network::libp2p::{Multiaddr, PeerId};
use rm_paych::PaychNode;
use rm_provider::{Provider, ProviderState, ProviderStatus};
use rm_types::{
    Address, Ask, Block, Cid, DealId, DealPayment, DealProposal, DealResponse, DealStatus, Params,
    QueryParams, Resume, SignedVoucher, TokenAmount,
};
use tempfile::TempDir;

const PRICE: u64 = 1000;
/// Bytes sent before the first payment point, and in all.
const FIRST_INTERVAL: u64 = 10_174;
const ALL_BYTES: u64 = 19_958;
/// The deadlines of the provider under attack: short, so the tests end soon.
const PAYMENT_TIMEOUT: Duration = Duration::from_secs(3);
const RESUME_WINDOW: Duration = Duration::from_secs(3);
const MAX_RESUMES: u32 = 3;
/// Every attack ends within this.
const BOUND: Duration = Duration::from_secs(30);

fn atto(v: u64) -> TokenAmount {
    TokenAmount::from_atto(v)
}

fn ask() -> Ask {
    Ask {
        price_per_byte: atto(PRICE),
        unseal_price: TokenAmount::zero(),
        payment_interval: 10_000,
        payment_interval_increase: 1_000,
    }
}

fn params() -> Params {
    Params::new(atto(PRICE), 10_000, 1_000)
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// An honest provider holding lorem.txt in a piece, an honest client, and room for
/// attackers.
struct World {
    dir: TempDir,
    pnode: Node,
    provider: Provider<PaychNode>,
    root: Cid,
    addrs: Vec<Multiaddr>,
    cnode: Node,
    client: Client<PaychNode>,
}

fn provider_config() -> rm_provider::Config {
    let mut c = rm_provider::Config::default();
    c.deal.payment_timeout = PAYMENT_TIMEOUT;
    c.deal.resume_window = RESUME_WINDOW;
    c.deal.max_resumes = MAX_RESUMES;
    c
}

async fn world() -> World {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let pnode = Node::open(&dir.path().join("provider")).await.unwrap();
    let root = pnode.import(&lorem_path(), Preset::GO_FIL_MARKETS).unwrap();
    let provider = pnode.provider(provider_config()).await.unwrap();
    provider.set_ask(ask()).unwrap();
    provider.start();
    let addrs = pnode.addrs().await.unwrap();
    let cnode = Node::open(&dir.path().join("client")).await.unwrap();
    let client = cnode.client(rm_client::Config::default()).await.unwrap();
    World {
        dir,
        pnode,
        provider,
        root,
        addrs,
        cnode,
        client,
    }
}

impl World {
    /// Starts an honest retrieval of lorem.txt on the provider's query terms.
    async fn start_honest(&self) -> DealId {
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
        let retrieval =
            Retrieval::from_query(self.root, self.pnode.peer_id(), self.addrs.clone(), &terms);
        self.client.retrieve(retrieval).await.unwrap()
    }

    /// The honest deal completed, paid exactly, and its file is intact.
    async fn honest_completes(&self, id: DealId) {
        let deal = within(self.client.wait(id)).await.unwrap();
        assert_eq!(deal.status(), ClientStatus::Completed, "{}", deal.message());
        assert_eq!(deal.funds_spent, atto(ALL_BYTES * PRICE));
        assert_eq!(
            self.cnode.export(&self.root).unwrap(),
            std::fs::read(lorem_path()).unwrap()
        );
        let p = self.provider_final(self.cnode.peer_id(), id).await;
        assert_eq!(p.status(), ProviderStatus::Completed);
        assert_eq!(p.funds_received, atto(ALL_BYTES * PRICE));
    }

    /// A new node that will attack the provider.
    async fn attacker(&self, name: &str) -> Attacker {
        let node = Node::open(&self.dir.path().join(name)).await.unwrap();
        node.network
            .dial(self.pnode.peer_id(), self.addrs.clone())
            .await
            .unwrap();
        Attacker {
            node,
            provider: self.pnode.peer_id(),
            provider_address: self.pnode.address.clone(),
            root: self.root,
        }
    }

    /// The provider's record of `peer`'s deal `id`, once it has ended (within [`BOUND`]).
    async fn provider_final(&self, peer: PeerId, id: DealId) -> ProviderState {
        let key = (peer.to_bytes(), id.0);
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            if let Some(state) = self.provider.deal(&key).unwrap()
                && state.status.is_final()
            {
                return state;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the provider's deal {id:?} did not end within {BOUND:?}: {:?}",
                self.provider.deal(&key).unwrap().map(|s| s.status)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The provider's record of `peer`'s deal `id` as it stands.
    fn provider_deal(&self, peer: PeerId, id: DealId) -> ProviderState {
        self.provider
            .deal(&(peer.to_bytes(), id.0))
            .unwrap()
            .expect("the provider knows the deal")
    }
}

async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("ended within the bound")
}

/// A malicious client: raw deal streams, hand-made vouchers.
struct Attacker {
    node: Node,
    provider: PeerId,
    provider_address: Address,
    root: Cid,
}

/// What an attacker has read of a deal so far.
#[derive(Default)]
struct Received {
    blocks: u64,
    bytes: u64,
    responses: Vec<DealResponse>,
}

impl Received {
    fn last(&self) -> &DealResponse {
        self.responses.last().expect("a response")
    }
}

impl Attacker {
    fn peer(&self) -> PeerId {
        self.node.peer_id()
    }

    async fn open(&self) -> DealStream {
        within(self.node.network.open_deal_stream(self.provider))
            .await
            .unwrap()
    }

    /// Proposes deal `id` for the whole of lorem.txt on a new stream.
    async fn propose(&self, id: DealId) -> DealStream {
        self.propose_with(DealProposal::new(self.root, DealId(id.0), params()))
            .await
    }

    async fn propose_with(&self, proposal: DealProposal) -> DealStream {
        let mut stream = self.open().await;
        within(stream.write_proposal(&proposal)).await.unwrap();
        stream
    }

    /// The payment channel the provider learns from this attacker's vouchers.
    fn channel(&self) -> Address {
        rm_paych::ledger::derive_channel_address(&self.node.address, &self.provider_address, 0)
    }

    /// A voucher on the attacker's channel, signed by `signer` (its own key unless a test
    /// says otherwise).
    fn voucher(&self, lane: u64, nonce: u64, amount: u64) -> SignedVoucher {
        rm_paych::voucher::create(
            &self.node.wallet,
            &self.node.address,
            self.channel(),
            lane,
            nonce,
            atto(amount),
        )
        .unwrap()
    }

    fn payment(&self, id: DealId, voucher: SignedVoucher) -> DealPayment {
        DealPayment {
            id,
            payment_channel: self.channel(),
            payment_voucher: Some(voucher),
        }
    }
}

/// Reads responses until one with `status` (or a final one), counting blocks.
async fn read_until(stream: &mut DealStream, status: DealStatus, got: &mut Received) {
    for _ in 0..256 {
        let r = within(stream.read_response()).await.unwrap();
        got.blocks += r.blocks.len() as u64;
        got.bytes += r.blocks.iter().map(|b| b.data.len() as u64).sum::<u64>();
        let done = r.status == status
            || matches!(
                r.status,
                DealStatus::Errored
                    | DealStatus::Rejected
                    | DealStatus::DealNotFound
                    | DealStatus::Cancelled
                    | DealStatus::Completed
            );
        got.responses.push(r);
        if done {
            return;
        }
    }
    panic!("no {status:?} in 256 responses");
}

/// The next response, which must carry no blocks.
async fn next_without_blocks(stream: &mut DealStream) -> DealResponse {
    let r = within(stream.read_response()).await.unwrap();
    assert!(r.blocks.is_empty(), "unpaid blocks: {:?}", r.status);
    r
}

// ---- a malicious client against rm's provider ----

/// A 40-byte selector whose traversal work doubles with every level of a chain of
/// DAG-CBOR blocks (rm-blockio's `traversal_budget` tests): the provider's traversal
/// budget ends that deal with a typed error before it has sent anything, in bounded time;
/// the honest deal alongside completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exponential_selector_ends_its_deal_only() {
    let w = world().await;
    // A chain of 64 one-link DAG-CBOR blocks in the provider's blockstore: 2^64 steps for
    // the doubling selector without a budget.
    let mut next = put_cbor(&w.pnode, &rm_blockio::codec::Node::List(vec![]));
    for _ in 1..64 {
        next = put_cbor(
            &w.pnode,
            &rm_blockio::codec::Node::List(vec![rm_blockio::codec::Node::link(next)]),
        );
    }
    let chain = next;
    let honest = w.start_honest().await;
    let evil = w.attacker("evil").await;
    let edge = || Selector::ExploreAll {
        next: Box::new(Selector::ExploreRecursiveEdge),
    };
    let doubling = Selector::ExploreRecursive {
        limit: rm_blockio::selector::RecursionLimit::None,
        sequence: Box::new(Selector::ExploreUnion(vec![edge(), edge()])),
    };
    let mut p = params();
    p.selector = Some(rm_types::codec::from_slice(&doubling.to_dag_cbor()).unwrap());
    let mut stream = evil
        .propose_with(DealProposal::new(chain, DealId(1), p))
        .await;
    let mut got = Received::default();
    read_until(&mut stream, DealStatus::Errored, &mut got).await;
    assert_eq!(got.last().status, DealStatus::Errored);
    let state = w.provider_final(evil.peer(), DealId(1)).await;
    assert_eq!(state.status(), ProviderStatus::Errored);
    assert!(
        state.message().contains("budget") || state.message().contains("selector grew"),
        "{}",
        state.message()
    );
    // Under one payment interval of the chain's few-dozen-byte blocks went out.
    assert!(state.bytes_sent < 10_000, "{}", state.bytes_sent);
    w.honest_completes(honest).await;
}

fn put_cbor(node: &Node, value: &rm_blockio::codec::Node) -> Cid {
    let bytes = value.to_dag_cbor().unwrap();
    let cid = rm_blockio::codec::cid_of(
        cid::Version::V1,
        rm_blockio::codec::DAG_CBOR,
        rm_blockio::codec::SHA2_256,
        &bytes,
    )
    .unwrap();
    node.blocks.put(&cid, &bytes).unwrap();
    cid
}

/// A voucher signed by a key that does not own the channel: refused with a payment error,
/// nothing credited, and the deal ends with only its first interval sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voucher_from_the_wrong_signer_pays_nothing() {
    let w = world().await;
    let honest = w.start_honest().await;
    let evil = w.attacker("evil").await;
    let mut stream = evil.propose(DealId(1)).await;
    let mut got = Received::default();
    read_until(&mut stream, DealStatus::FundsNeeded, &mut got).await;
    assert_eq!(got.last().status, DealStatus::FundsNeeded);
    // Signed by another key for the attacker's channel.
    let other = rm_paych::Wallet::in_memory();
    let stranger = other.new_key().unwrap();
    let forged = rm_paych::voucher::create(
        &other,
        &stranger,
        evil.channel(),
        0,
        1,
        atto(FIRST_INTERVAL * PRICE),
    )
    .unwrap();
    within(stream.write_payment(&evil.payment(DealId(1), forged)))
        .await
        .unwrap();
    let answer = next_without_blocks(&mut stream).await;
    assert_eq!(answer.status, DealStatus::Errored, "{}", answer.message);
    let state = w.provider_final(evil.peer(), DealId(1)).await;
    assert_eq!(state.status(), ProviderStatus::Errored);
    assert!(state.funds_received.is_zero());
    assert_eq!(state.bytes_sent, FIRST_INTERVAL);
    w.honest_completes(honest).await;
}

/// A voucher for less than is owed is credited, and buys what one interval of credit past
/// it allows and no more: the provider goes on to `credit_limit` of the new funds, asks for
/// the rest, sends no block after that, and ends the deal at its payment deadline. Unpaid
/// the whole time: at most one interval plus the block that crosses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_voucher_buys_one_interval_past_it_and_no_more() {
    let w = world().await;
    let honest = w.start_honest().await;
    let evil = w.attacker("evil").await;
    let mut stream = evil.propose(DealId(1)).await;
    let mut got = Received::default();
    read_until(&mut stream, DealStatus::FundsNeeded, &mut got).await;
    assert!(got.last().payment_owed.is_positive());
    assert_eq!(got.bytes, FIRST_INTERVAL);
    // 5,087 bytes paid for: the credit reaches one 10,000-byte interval past them.
    let half = FIRST_INTERVAL * PRICE / 2;
    within(stream.write_payment(&evil.payment(DealId(1), evil.voucher(0, 1, half))))
        .await
        .unwrap();
    let limit = params().credit_limit(&atto(half)).unwrap();
    assert_eq!(limit, 15_087);
    read_until(&mut stream, DealStatus::FundsNeeded, &mut got).await;
    // Five more 1,024-byte leaves reach it; the rest up to the 10,000-byte boundary is owed.
    assert_eq!(got.bytes, FIRST_INTERVAL + 5 * 1024);
    assert_eq!(got.last().payment_owed, atto(10_000 * PRICE - half));
    assert!(got.bytes - half / PRICE <= 10_000 + 1024);
    // Then silence: the payment deadline ends it.
    let state = w.provider_final(evil.peer(), DealId(1)).await;
    assert_eq!(state.status(), ProviderStatus::Errored);
    assert!(
        state.message().contains("no payment"),
        "{}",
        state.message()
    );
    assert_eq!(state.funds_received, atto(half));
    assert_eq!(state.bytes_sent, got.bytes);
    w.honest_completes(honest).await;
}

/// The same voucher again and again: each copy is worth nothing new and gets no answer
/// (the request already out stands; a second one would only race an honest client's next
/// voucher); nothing is sent, and the deal ends at the payment deadline (counted from the
/// first request, not reset by copies) or after 16 copies in a row, whichever comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_voucher_again_and_again_buys_nothing() {
    let w = world().await;
    let honest = w.start_honest().await;
    let evil = w.attacker("evil").await;
    let mut stream = evil.propose(DealId(1)).await;
    let mut got = Received::default();
    read_until(&mut stream, DealStatus::FundsNeeded, &mut got).await;
    let first = evil.voucher(0, 1, FIRST_INTERVAL * PRICE);
    within(stream.write_payment(&evil.payment(DealId(1), first.clone())))
        .await
        .unwrap();
    read_until(&mut stream, DealStatus::FundsNeededLastPayment, &mut got).await;
    let rest = (ALL_BYTES - FIRST_INTERVAL) * PRICE;
    assert_eq!(got.last().payment_owed, atto(rest));
    let mut copies = 0;
    for _ in 0..20 {
        if stream
            .write_payment(&evil.payment(DealId(1), first.clone()))
            .await
            .is_err()
        {
            break;
        }
        copies += 1;
    }
    // The next word from the provider is the end of the deal, at the deadline.
    let started = std::time::Instant::now();
    match tokio::time::timeout(BOUND, stream.read_response()).await {
        Ok(Ok(r)) => {
            assert_eq!(r.status, DealStatus::Errored, "{}", r.message);
            assert!(r.blocks.is_empty());
        }
        // Or the stream ended with the deal.
        Ok(Err(_)) => {}
        Err(_) => panic!("no end of the deal within {BOUND:?}"),
    }
    assert!(started.elapsed() < BOUND);
    assert!(copies >= 5, "{copies} copies written");
    let state = w.provider_final(evil.peer(), DealId(1)).await;
    assert_eq!(state.status(), ProviderStatus::Errored);
    // 20 copies: the 17th in a row ends it, before the 3 s payment deadline.
    assert!(
        state.message().contains("paid nothing new"),
        "{}",
        state.message()
    );
    assert_eq!(state.funds_received, atto(FIRST_INTERVAL * PRICE));
    assert_eq!(state.bytes_sent, ALL_BYTES);
    w.honest_completes(honest).await;
}

/// After paying on lane 0, a voucher on lane 1 (whose amount would count from zero):
/// refused as a payment error; the deal keeps only what lane 0 paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voucher_on_another_lane_is_refused() {
    let w = world().await;
    let honest = w.start_honest().await;
    let evil = w.attacker("evil").await;
    let mut stream = evil.propose(DealId(1)).await;
    let mut got = Received::default();
    read_until(&mut stream, DealStatus::FundsNeeded, &mut got).await;
    within(
        stream.write_payment(&evil.payment(DealId(1), evil.voucher(0, 1, FIRST_INTERVAL * PRICE))),
    )
    .await
    .unwrap();
    read_until(&mut stream, DealStatus::FundsNeededLastPayment, &mut got).await;
    let other_lane = evil.voucher(1, 1, (ALL_BYTES - FIRST_INTERVAL) * PRICE);
    within(stream.write_payment(&evil.payment(DealId(1), other_lane)))
        .await
        .unwrap();
    let answer = next_without_blocks(&mut stream).await;
    assert_eq!(answer.status, DealStatus::Errored);
    assert!(
        answer.message.contains("another lane"),
        "{}",
        answer.message
    );
    let state = w.provider_final(evil.peer(), DealId(1)).await;
    assert_eq!(state.funds_received, atto(FIRST_INTERVAL * PRICE));
    w.honest_completes(honest).await;
}

/// Runs deal `id` to completion, paying honestly on `lane`; returns the last voucher.
async fn complete_paying(evil: &Attacker, id: DealId, lane: u64) -> SignedVoucher {
    let mut stream = evil.propose(id).await;
    let mut got = Received::default();
    read_until(&mut stream, DealStatus::FundsNeeded, &mut got).await;
    within(stream.write_payment(&evil.payment(id, evil.voucher(lane, 1, FIRST_INTERVAL * PRICE))))
        .await
        .unwrap();
    read_until(&mut stream, DealStatus::FundsNeededLastPayment, &mut got).await;
    let last = evil.voucher(lane, 2, ALL_BYTES * PRICE);
    within(stream.write_payment(&evil.payment(id, last.clone())))
        .await
        .unwrap();
    read_until(&mut stream, DealStatus::Completed, &mut got).await;
    assert_eq!(got.last().status, DealStatus::Completed);
    assert_eq!(got.bytes, ALL_BYTES);
    last
}

/// A voucher that paid one deal, offered for another: its lane belongs to the first deal,
/// so it is refused and the second deal gets nothing for it. Then the completed deal is
/// proposed again under its id without a resume: refused before any block goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_deals_voucher_and_a_replayed_deal_get_nothing() {
    let w = world().await;
    let honest = w.start_honest().await;
    let evil = w.attacker("evil").await;
    let paid = complete_paying(&evil, DealId(1), 0).await;
    let first = w.provider_final(evil.peer(), DealId(1)).await;
    assert_eq!(first.status(), ProviderStatus::Completed);

    let mut stream = evil.propose(DealId(2)).await;
    let mut got = Received::default();
    read_until(&mut stream, DealStatus::FundsNeeded, &mut got).await;
    within(stream.write_payment(&evil.payment(DealId(2), paid)))
        .await
        .unwrap();
    let answer = next_without_blocks(&mut stream).await;
    assert_eq!(answer.status, DealStatus::Errored);
    assert!(
        answer.message.contains("pays another deal"),
        "{}",
        answer.message
    );
    let second = w.provider_final(evil.peer(), DealId(2)).await;
    assert!(second.funds_received.is_zero());

    // The completed deal again, as if new.
    let mut stream = evil.propose(DealId(1)).await;
    let answer = next_without_blocks(&mut stream).await;
    assert_eq!(answer.status, DealStatus::Errored);
    assert!(
        answer.message.contains("already used"),
        "{}",
        answer.message
    );
    // The first deal keeps exactly what it was paid.
    assert_eq!(
        w.provider_deal(evil.peer(), DealId(1)).funds_received,
        atto(ALL_BYTES * PRICE)
    );
    w.honest_completes(honest).await;
}

/// Resumes that claim more blocks than were sent are refused and change nothing; a claim
/// of the right blocks with the wrong bytes fails the deal as a protocol violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_claimed_resumes_are_refused() {
    let w = world().await;
    let honest = w.start_honest().await;
    let evil = w.attacker("evil").await;
    let mut stream = evil.propose(DealId(1)).await;
    let mut got = Received::default();
    read_until(&mut stream, DealStatus::FundsNeeded, &mut got).await;
    stream.reset();
    let resume = |blocks, bytes| {
        let mut p = DealProposal::new(evil.root, DealId(1), params());
        p.resume = Some(Resume { blocks, bytes });
        p
    };
    let mut s = evil.propose_with(resume(got.blocks + 5, got.bytes)).await;
    let answer = next_without_blocks(&mut s).await;
    assert_eq!(answer.status, DealStatus::Errored);
    assert!(answer.message.contains("claims"), "{}", answer.message);
    let state = w.provider_deal(evil.peer(), DealId(1));
    assert!(!state.status.is_final());
    assert_eq!(state.blocks_sent, got.blocks);

    let mut s = evil.propose_with(resume(got.blocks, got.bytes + 1)).await;
    // The provider counts the claimed blocks' bytes, then fails the deal.
    let mut tail = Received::default();
    read_until(&mut s, DealStatus::Errored, &mut tail).await;
    assert_eq!(tail.blocks, 0);
    let state = w.provider_final(evil.peer(), DealId(1)).await;
    assert_eq!(state.status(), ProviderStatus::Errored);
    assert!(state.funds_received.is_zero());
    assert_eq!(state.bytes_sent, FIRST_INTERVAL);
    w.honest_completes(honest).await;
}

/// A client that resumes again and again: after `max_resumes` the next resume fails the
/// deal, and no resume re-sends data that was not paid for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_resumes_fail_the_deal() {
    let w = world().await;
    let honest = w.start_honest().await;
    let evil = w.attacker("evil").await;
    let mut stream = evil.propose(DealId(1)).await;
    let mut got = Received::default();
    read_until(&mut stream, DealStatus::FundsNeeded, &mut got).await;
    let mut last = stream;
    let mut refused = None;
    for attempt in 1..=MAX_RESUMES + 1 {
        last.reset();
        let mut p = DealProposal::new(evil.root, DealId(1), params());
        p.resume = Some(Resume {
            blocks: got.blocks,
            bytes: got.bytes,
        });
        let mut s = evil.propose_with(p).await;
        let mut again = Received::default();
        read_until(&mut s, DealStatus::FundsNeeded, &mut again).await;
        assert_eq!(again.blocks, 0, "a resume sent unpaid blocks again");
        if again.last().status == DealStatus::Errored {
            refused = Some((attempt, again.last().message.clone()));
            break;
        }
        last = s;
    }
    let (attempt, message) = refused.expect("a resume past the limit is refused");
    assert_eq!(attempt, MAX_RESUMES + 1);
    assert!(message.contains("the most allowed"), "{message}");
    let state = w.provider_final(evil.peer(), DealId(1)).await;
    assert_eq!(state.status(), ProviderStatus::Errored);
    assert_eq!(state.resumes, u64::from(MAX_RESUMES));
    assert_eq!(state.bytes_sent, FIRST_INTERVAL);
    w.honest_completes(honest).await;
}

/// Splitting a DAG into many deals that each take one interval on credit and never pay:
/// a peer gets `max_unpaid_deals_per_peer` (4) such deals at once; the next is rejected
/// before any data goes out. Deals that ended owing are remembered: once a peer has
/// `max_debts` (2), its new paid deals are rejected too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_across_deals_is_bounded() {
    let w = world().await;
    let honest = w.start_honest().await;
    let evil = w.attacker("evil").await;
    let mut open = Vec::new();
    for id in 1..=4 {
        let mut s = evil.propose(DealId(id)).await;
        let mut got = Received::default();
        read_until(&mut s, DealStatus::FundsNeeded, &mut got).await;
        assert_eq!(got.last().status, DealStatus::FundsNeeded);
        open.push(s);
    }
    let mut s = evil.propose(DealId(5)).await;
    let answer = next_without_blocks(&mut s).await;
    assert_eq!(answer.status, DealStatus::Rejected);
    assert!(answer.message.contains("not paid"), "{}", answer.message);
    // The four end unpaid at their payment deadline: four debts.
    drop(open);
    for id in 1..=4 {
        let state = w.provider_final(evil.peer(), DealId(id)).await;
        assert_eq!(state.status(), ProviderStatus::Errored);
        assert!(state.funds_received.is_zero());
        assert_eq!(state.bytes_sent, FIRST_INTERVAL);
    }
    let mut s = evil.propose(DealId(6)).await;
    let answer = next_without_blocks(&mut s).await;
    assert_eq!(answer.status, DealStatus::Rejected);
    assert!(
        answer.message.contains("without paying"),
        "{}",
        answer.message
    );
    w.honest_completes(honest).await;
}

// ---- a malicious provider against rm's client ----

/// A scripted provider: answers every deal stream with `script`, given the proposal and
/// lorem.txt's blocks in traversal order.
async fn evil_provider<F, Fut>(w: &World, script: F) -> (Node, Vec<Block>)
where
    F: Fn(DealStream, DealProposal, Vec<Block>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let evil = Node::open(&w.dir.path().join("evil-provider"))
        .await
        .unwrap();
    let source = Node::open(&w.dir.path().join("source")).await.unwrap();
    let root = source
        .import_blocks(&lorem_path(), Preset::GO_FIL_MARKETS)
        .unwrap();
    assert_eq!(root, w.root);
    let blocks: Vec<Block> = BlockReader::new(
        source.blocks.clone(),
        root,
        &Selector::explore_all_recursively(),
    )
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    evil.network.set_delegate(tx);
    let script = Arc::new(script);
    let served = blocks.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            if let rm_network::Event::Deal(mut stream) = event {
                let Ok(proposal) = stream.read_proposal().await else {
                    continue;
                };
                tokio::spawn(script(stream, proposal, served.clone()));
            }
        }
    });
    (evil, blocks)
}

fn reply(id: DealId, status: DealStatus, blocks: Vec<Block>, owed: u64) -> DealResponse {
    DealResponse {
        status,
        id,
        payment_owed: atto(owed),
        message: String::new(),
        blocks,
    }
}

/// The honest client retrieves lorem.txt from `evil` with funds for all of it; returns
/// how its deal ended.
async fn retrieve_from(w: &World, evil: &Node, config: Option<rm_client::Config>) -> ClientState {
    let client = match config {
        Some(c) => {
            // Its own client node, for deal settings of its own.
            let node = Node::open(&w.dir.path().join("client-2")).await.unwrap();
            let client = node.client(c).await.unwrap();
            let retrieval = Retrieval {
                payload_cid: w.root,
                params: params(),
                total_funds: atto(ALL_BYTES * PRICE),
                provider: evil.peer_id(),
                provider_addrs: evil.addrs().await.unwrap(),
                miner_wallet: evil.address.clone(),
                caps: rm_client::Caps::default(),
            };
            let id = client.retrieve(retrieval).await.unwrap();
            return within(client.wait(id)).await.unwrap();
        }
        None => &w.client,
    };
    let retrieval = Retrieval {
        payload_cid: w.root,
        params: params(),
        total_funds: atto(ALL_BYTES * PRICE),
        provider: evil.peer_id(),
        provider_addrs: evil.addrs().await.unwrap(),
        miner_wallet: evil.address.clone(),
        caps: rm_client::Caps::default(),
    };
    let id = client.retrieve(retrieval).await.unwrap();
    within(client.wait(id)).await.unwrap()
}

/// The client's deal failed as a protocol violation, paid nothing, kept no byte.
fn failed_unpaid(deal: &ClientState, says: &str) {
    assert_eq!(deal.status(), ClientStatus::Errored);
    assert!(deal.message().contains(says), "{}", deal.message());
    assert!(deal.vouchers.is_empty());
    assert!(deal.funds_spent.is_zero());
    assert_eq!(deal.bytes_received, 0);
}

/// Every block, then one block that is not in the DAG, then a demand for everything:
/// the response fails verification as a whole; nothing is kept or paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extra_block_fails_the_deal_unpaid() {
    let w = world().await;
    let (evil, _) = evil_provider(&w, |mut s, p, mut blocks| async move {
        let extra = Block::new(&blocks[1].cid().unwrap(), b"not in the DAG".to_vec());
        blocks.push(extra);
        let _ = s
            .write_response(&reply(p.id, DealStatus::Accepted, vec![], 0))
            .await;
        let _ = s
            .write_response(&reply(
                p.id,
                DealStatus::FundsNeededLastPayment,
                blocks,
                ALL_BYTES * PRICE,
            ))
            .await;
        let _ = s.read_client_message().await;
    })
    .await;
    let honest = w.start_honest().await;
    let deal = retrieve_from(&w, &evil, None).await;
    failed_unpaid(&deal, "wrong block");
    w.honest_completes(honest).await;
}

/// The leaves in the wrong order: the verifier wants each block where the traversal
/// reaches it; nothing is kept or paid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_blocks_fail_the_deal_unpaid() {
    let w = world().await;
    let (evil, blocks) = evil_provider(&w, |mut s, p, mut blocks| async move {
        let n = blocks.len();
        blocks.swap(1, n - 1);
        let _ = s
            .write_response(&reply(p.id, DealStatus::Accepted, vec![], 0))
            .await;
        let _ = s
            .write_response(&reply(
                p.id,
                DealStatus::FundsNeededLastPayment,
                blocks,
                ALL_BYTES * PRICE,
            ))
            .await;
        let _ = s.read_client_message().await;
    })
    .await;
    assert!(blocks.len() > 2);
    let honest = w.start_honest().await;
    let deal = retrieve_from(&w, &evil, None).await;
    failed_unpaid(&deal, "wrong block");
    w.honest_completes(honest).await;
}

/// `Completed` after the root block only: the client fails the deal rather than take a
/// partial DAG as complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_without_all_blocks_fails_the_deal() {
    let w = world().await;
    let (evil, _) = evil_provider(&w, |mut s, p, blocks| async move {
        let _ = s
            .write_response(&reply(p.id, DealStatus::Accepted, vec![], 0))
            .await;
        let _ = s
            .write_response(&reply(
                p.id,
                DealStatus::Completed,
                vec![blocks[0].clone()],
                0,
            ))
            .await;
        let _ = s.read_client_message().await;
    })
    .await;
    let honest = w.start_honest().await;
    let deal = retrieve_from(&w, &evil, None).await;
    assert_eq!(deal.status(), ClientStatus::Errored);
    assert!(
        deal.message().contains("without sending all data"),
        "{}",
        deal.message()
    );
    assert!(deal.funds_spent.is_zero());
    w.honest_completes(honest).await;
}

/// A demand for the whole price after one block: the client pays only what verified
/// bytes are worth, so it refuses and fails the deal, paying nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demand_beyond_the_bytes_received_is_refused() {
    let w = world().await;
    let (evil, _) = evil_provider(&w, |mut s, p, blocks| async move {
        let _ = s
            .write_response(&reply(p.id, DealStatus::Accepted, vec![], 0))
            .await;
        let _ = s
            .write_response(&reply(
                p.id,
                DealStatus::FundsNeeded,
                vec![blocks[0].clone()],
                ALL_BYTES * PRICE,
            ))
            .await;
        let _ = s.read_client_message().await;
    })
    .await;
    let honest = w.start_honest().await;
    let deal = retrieve_from(&w, &evil, None).await;
    assert_eq!(deal.status(), ClientStatus::Errored);
    assert!(deal.message().contains("worth only"), "{}", deal.message());
    assert!(deal.vouchers.is_empty());
    assert!(deal.funds_spent.is_zero());
    w.honest_completes(honest).await;
}

/// An error message of 1 MiB: the deal ends, `wait` returns, and what is stored is cut
/// to `MAX_REASON_LEN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_error_message_is_cut_and_the_deal_ends() {
    let w = world().await;
    let (evil, _) = evil_provider(&w, |mut s, p, _| async move {
        let mut r = reply(p.id, DealStatus::Errored, vec![], 0);
        r.message = "x".repeat(1 << 20);
        let _ = s.write_response(&r).await;
        let _ = s.read_client_message().await;
    })
    .await;
    let honest = w.start_honest().await;
    let deal = retrieve_from(&w, &evil, None).await;
    assert_eq!(deal.status(), ClientStatus::Errored);
    assert!(
        deal.message().len() <= rm_types::MAX_REASON_LEN + 64,
        "{} bytes stored",
        deal.message().len()
    );
    w.honest_completes(honest).await;
}

/// Empty `Ongoing` responses just inside the read deadline, forever: the client's
/// progress deadline ends the deal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alives_without_progress_end_the_deal() {
    let w = world().await;
    let (evil, _) = evil_provider(&w, |mut s, p, _| async move {
        let _ = s
            .write_response(&reply(p.id, DealStatus::Accepted, vec![], 0))
            .await;
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_response(&reply(p.id, DealStatus::Ongoing, vec![], 0))
                .await
                .is_err()
            {
                return;
            }
        }
    })
    .await;
    let mut config = rm_client::Config::default();
    config.deal.read_timeout = Duration::from_secs(1);
    config.deal.progress_timeout = Duration::from_secs(3);
    let started = std::time::Instant::now();
    let deal = retrieve_from(&w, &evil, Some(config)).await;
    assert_eq!(deal.status(), ClientStatus::Errored);
    assert!(deal.message().contains("no progress"), "{}", deal.message());
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(deal.funds_spent.is_zero());
}
