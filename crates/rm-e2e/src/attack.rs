//! Scripted attacks on a running provider, in loops: what `benches/under_attack.rs` and
//! the soak (`rm-e2e-soak`) run beside honest retrievals. The one-attack-per-test suite
//! with exact assertions is `tests/hostile.rs`.
//!
//! Each attack loop uses a fresh peer id (a [`Node`] of its own under
//! [`Target::homes`]) until the provider refuses it, then takes another one, as an
//! attacker with free peer ids would; all of them dial from 127.0.0.1.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rm_network::DealStream;
use rm_network::libp2p::{Multiaddr, PeerId};
use rm_types::{
    Address, Cid, DealId, DealPayment, DealProposal, DealStatus, Ipld, Params, Query, Resume,
    TokenAmount,
};

use crate::Node;

/// The provider under attack.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its peer id.
    pub peer: PeerId,
    /// Where the attackers reach it (each identity dials it once; see [`spawn`]).
    pub addr: Multiaddr,
    /// Its payment address (what forged vouchers name as recipient).
    pub payment: Address,
    /// A payload it serves (paid, so the leeches take credit).
    pub root: Cid,
    /// A chain of DAG-CBOR blocks it holds, for [`Attack::Selector`] (skipped without).
    pub chain: Option<Cid>,
    /// The terms the attacks propose (the provider's ask).
    pub params: Params,
    /// Where attacker nodes keep their homes.
    pub homes: PathBuf,
}

/// One kind of attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    /// A 40-byte selector whose traversal work doubles per level, over [`Target::chain`].
    Selector,
    /// A paid deal that takes its first payment interval on credit and vanishes.
    Leech,
    /// A deal paid with a voucher signed by a key that owns no channel.
    ForgedVoucher,
    /// A resume of an unknown deal claiming 1,000 blocks.
    Resume,
    /// A deal stream opened and left silent until the provider drops it.
    Slots,
    /// Queries for payloads the provider does not have.
    Queries,
}

/// Attempts of one attack and how they ended.
#[derive(Debug, Default)]
pub struct Tally {
    attempts: AtomicU64,
    refused: AtomicU64,
    bytes: AtomicU64,
}

impl Tally {
    /// Attempts made.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Relaxed)
    }

    /// Attempts the provider refused, reset or ended with an error.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Bytes of block data the provider sent the attacker without being paid.
    pub fn unpaid_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

static NEXT: AtomicU64 = AtomicU64::new(1 << 40);

async fn identity(t: &Target) -> Option<Node> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let node = Node::open(&t.homes.join(format!("attacker-{n}")))
        .await
        .ok()?;
    node.network.dial(t.peer, vec![t.addr.clone()]).await.ok()?;
    Some(node)
}

/// Reads until a status in `until` or a final one; returns it with the block bytes read.
async fn read_until(stream: &mut DealStream, until: &[DealStatus]) -> Option<(DealStatus, u64)> {
    let mut bytes = 0;
    for _ in 0..4096 {
        let r = tokio::time::timeout(Duration::from_secs(30), stream.read_response())
            .await
            .ok()?
            .ok()?;
        bytes += r.blocks.iter().map(|b| b.data.len() as u64).sum::<u64>();
        if until.contains(&r.status)
            || matches!(
                r.status,
                DealStatus::Errored
                    | DealStatus::Rejected
                    | DealStatus::DealNotFound
                    | DealStatus::Completed
            )
        {
            return Some((r.status, bytes));
        }
    }
    None
}

/// `ExploreRecursive(ExploreUnion[ExploreAll(@), ExploreAll(@)])`.
fn doubling_selector() -> Ipld {
    use rm_blockio::Selector;
    let edge = || Selector::ExploreAll {
        next: Box::new(Selector::ExploreRecursiveEdge),
    };
    let s = Selector::ExploreRecursive {
        limit: rm_blockio::selector::RecursionLimit::None,
        sequence: Box::new(Selector::ExploreUnion(vec![edge(), edge()])),
    };
    rm_types::codec::from_slice(&s.to_dag_cbor()).unwrap_or(Ipld::Null)
}

/// One attempt of `attack` from `node`; true if the provider refused or ended it.
pub async fn attempt(attack: Attack, t: &Target, node: &Node, tally: &Tally) -> bool {
    let id = DealId(NEXT.fetch_add(1, Ordering::Relaxed));
    tally.attempts.fetch_add(1, Ordering::Relaxed);
    let refused = run(attack, t, node, tally, id).await;
    if refused {
        tally.refused.fetch_add(1, Ordering::Relaxed);
    }
    refused
}

async fn open(t: &Target, node: &Node) -> Option<DealStream> {
    tokio::time::timeout(
        Duration::from_secs(10),
        node.network.open_deal_stream(t.peer),
    )
    .await
    .ok()?
    .ok()
}

async fn run(attack: Attack, t: &Target, node: &Node, tally: &Tally, id: DealId) -> bool {
    match attack {
        Attack::Selector => {
            let Some(chain) = t.chain else { return true };
            let Some(mut s) = open(t, node).await else {
                return true;
            };
            let mut p = t.params.clone();
            p.selector = Some(doubling_selector());
            if s.write_proposal(&DealProposal::new(chain, id, p))
                .await
                .is_err()
            {
                return true;
            }
            let end = read_until(&mut s, &[]).await;
            if let Some((_, bytes)) = end {
                tally.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            !matches!(end, Some((DealStatus::Completed, _)))
        }
        Attack::Leech | Attack::ForgedVoucher => {
            let Some(mut s) = open(t, node).await else {
                return true;
            };
            let proposal = DealProposal::new(t.root, id, t.params.clone());
            if s.write_proposal(&proposal).await.is_err() {
                return true;
            }
            let Some((status, bytes)) = read_until(&mut s, &[DealStatus::FundsNeeded]).await else {
                return true;
            };
            tally.bytes.fetch_add(bytes, Ordering::Relaxed);
            if status != DealStatus::FundsNeeded {
                return true;
            }
            if attack == Attack::ForgedVoucher {
                let Some(payment) = forged(t, node, id, bytes) else {
                    return true;
                };
                if s.write_payment(&payment).await.is_ok() {
                    let _ = read_until(&mut s, &[]).await;
                }
            } else {
                s.reset();
            }
            false
        }
        Attack::Resume => {
            let Some(mut s) = open(t, node).await else {
                return true;
            };
            let mut p = DealProposal::new(t.root, id, t.params.clone());
            p.resume = Some(Resume {
                blocks: 1000,
                bytes: 1 << 30,
            });
            if s.write_proposal(&p).await.is_err() {
                return true;
            }
            let end = read_until(&mut s, &[]).await;
            !matches!(end, Some((DealStatus::Completed, _)))
        }
        Attack::Slots => match open(t, node).await {
            // Silent until after the provider's proposal timeout (20 s).
            Some(s) => {
                tokio::time::sleep(Duration::from_secs(25)).await;
                drop(s);
                false
            }
            None => true,
        },
        Attack::Queries => {
            let Ok(bogus) = rm_blockio::codec::cid_of(
                t.root.version(),
                rm_blockio::codec::RAW,
                rm_blockio::codec::SHA2_256,
                &id.0.to_le_bytes(),
            ) else {
                return true;
            };
            node.network
                .query(t.peer, &Query::new(bogus))
                .await
                .is_err()
        }
    }
}

/// A payment for `bytes` on the attacker's channel, signed by a stranger's key.
fn forged(t: &Target, node: &Node, id: DealId, bytes: u64) -> Option<DealPayment> {
    let wallet = rm_paych::Wallet::in_memory();
    let key = wallet.new_key().ok()?;
    let channel = rm_paych::ledger::derive_channel_address(&node.address, &t.payment, 0);
    let voucher = rm_paych::voucher::create(
        &wallet,
        &key,
        channel.clone(),
        0,
        1,
        TokenAmount::from_atto(bytes),
    )
    .ok()?;
    Some(DealPayment {
        id,
        payment_channel: channel,
        payment_voucher: Some(voucher),
    })
}

/// How long a loop waits after a refusal before it tries again as a new peer.
const REFUSED_PAUSE: Duration = Duration::from_secs(1);

/// Runs `attack` in `loops` concurrent loops until `stop` is set, each pausing `pause`
/// between attempts and, after a refusal, taking a new peer id a second later.
pub fn spawn(
    attack: Attack,
    loops: usize,
    pause: Duration,
    target: &Target,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..loops)
        .map(|_| {
            let (t, stop, tally) = (target.clone(), Arc::clone(stop), Arc::clone(tally));
            tokio::spawn(async move {
                let mut node = None;
                while !stop.load(Ordering::Relaxed) {
                    if node.is_none() {
                        node = identity(&t).await;
                    }
                    let Some(n) = &node else {
                        tokio::time::sleep(pause).await;
                        continue;
                    };
                    // An identity uses the one connection it made to `Target::addr`: once
                    // that is gone it is retired, never redialled (a redial could take
                    // another of the provider's addresses, and so come from another
                    // source address than the attacks are meant to).
                    if !n.network.is_connected(t.peer).await.unwrap_or(false) {
                        if let Some(old) = node.take() {
                            retire(old).await;
                        }
                        continue;
                    }
                    if attempt(attack, &t, n, &tally).await
                        && let Some(old) = node.take()
                    {
                        retire(old).await;
                        // A new identity costs the attacker a key and a connection; it
                        // takes one a second, not as fast as the provider refuses.
                        tokio::time::sleep(REFUSED_PAUSE.saturating_sub(pause)).await;
                    }
                    tokio::time::sleep(pause).await;
                }
                if let Some(n) = node {
                    retire(n).await;
                }
            })
        })
        .collect()
}

/// Shuts an attacker identity down and deletes its home.
async fn retire(node: Node) {
    node.network.shutdown().await;
    let home = node.home.clone();
    drop(node);
    let _ = std::fs::remove_dir_all(home);
}

/// The mix both the benchmark under attack and the soak run: (attack, loops, pause).
pub const MIX: &[(Attack, usize, Duration)] = &[
    (Attack::Selector, 2, Duration::from_millis(50)),
    (Attack::Leech, 4, Duration::from_millis(50)),
    (Attack::ForgedVoucher, 2, Duration::from_millis(50)),
    (Attack::Resume, 2, Duration::from_millis(50)),
    (Attack::Slots, 40, Duration::from_millis(100)),
    (Attack::Queries, 2, Duration::from_millis(20)),
];
