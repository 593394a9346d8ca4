//! The credit a provider extends across deals, so that splitting a DAG into many small
//! deals does not make it free.
//!
//! A paid deal sends up to one payment interval before it asks to be paid: that is credit.
//! One deal's credit is bounded by its terms; what bounds the credit of *many* deals is
//! this book. It counts, per client peer, per remote IP address and per paying channel
//! (a client key pays this provider through one channel):
//!
//! - the live paid deals that were sent data they have not paid for yet ("unpaid"), and
//! - the paid deals that ended owing the provider, for [`CreditLimits::debt_memory`].
//!
//! A new paid deal is refused while any of its accounts is at a limit. Free deals are not
//! counted (nothing is owed); they are bounded by the network's stream and connection
//! limits. The book lives in memory: its size is bounded ([`CreditLimits::max_accounts`])
//! and a restart forgets the debts (a restart is rare; an attacker cannot cause one).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rm_types::Address;

use crate::fsm::ProviderState;
use crate::provider::DealKey;

/// The limits of the provider's credit book: how many paid deals may hold data not paid
/// for yet, and how many that ended owing may be remembered, per client peer, per remote
/// IP address and per paying channel (a new paid deal over a limit is rejected before
/// anything is unsealed). Defaults suit a provider serving many honest clients that pay
/// as they go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CreditLimits {
    /// Most live paid deals owing the provider at once, per client peer. Default 4.
    pub max_unpaid_deals_per_peer: usize,
    /// The same per remote IP address. Default 16.
    pub max_unpaid_deals_per_ip: usize,
    /// Paid deals that ended owing the provider, remembered per peer, IP address and
    /// channel; at this many, new paid deals from them are refused. Default 2.
    pub max_debts: usize,
    /// How long an ending that owed the provider counts against its peer, address and
    /// channel. Default 24 hours.
    pub debt_memory: Duration,
    /// Most accounts (peers, addresses, channels) kept; beyond it the accounts with the
    /// oldest debts are forgotten first. Default 65,536.
    pub max_accounts: usize,
}

impl Default for CreditLimits {
    fn default() -> Self {
        CreditLimits {
            max_unpaid_deals_per_peer: 4,
            max_unpaid_deals_per_ip: 16,
            max_debts: 2,
            debt_memory: Duration::from_secs(24 * 3600),
            max_accounts: 65_536,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Who {
    Peer(Vec<u8>),
    Ip(IpAddr),
    Channel(Address),
}

#[derive(Debug, Default)]
struct Account {
    unpaid: HashSet<DealKey>,
    debts: VecDeque<Instant>,
}

/// Whether a deal owes the provider: paid terms, data sent, and less received than the
/// data sent is worth.
pub(crate) fn owes(state: &ProviderState) -> bool {
    let params = &state.proposal.params;
    !params.is_free()
        && state.bytes_sent > 0
        && params.amount_for_bytes(state.bytes_sent) > state.funds_received
}

/// The book ([module docs](self)).
#[derive(Debug)]
pub(crate) struct CreditBook {
    limits: CreditLimits,
    accounts: HashMap<Who, Account>,
    /// The channels each peer paid with, so a peer is refused for its channel's debts.
    channels: HashMap<Vec<u8>, Vec<Address>>,
}

/// Channels remembered per peer.
const CHANNELS_PER_PEER: usize = 4;

impl CreditBook {
    pub(crate) fn new(limits: CreditLimits) -> Self {
        CreditBook {
            limits,
            accounts: HashMap::new(),
            channels: HashMap::new(),
        }
    }

    fn forget_old(&mut self, now: Instant) {
        let memory = self.limits.debt_memory;
        self.accounts.retain(|_, a| {
            while a
                .debts
                .front()
                .is_some_and(|t| now.duration_since(*t) >= memory)
            {
                a.debts.pop_front();
            }
            !a.unpaid.is_empty() || !a.debts.is_empty()
        });
        let accounts = &self.accounts;
        self.channels
            .retain(|peer, _| accounts.contains_key(&Who::Peer(peer.clone())));
    }

    /// Whether a new paid deal from `peer` at `ip` may start; why not otherwise.
    pub(crate) fn admit(
        &mut self,
        peer: &[u8],
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), String> {
        self.forget_old(now);
        let limits = &self.limits;
        let check = |who: &Who, what: &str, max_unpaid: usize| -> Result<(), String> {
            let Some(a) = self.accounts.get(who) else {
                return Ok(());
            };
            if a.unpaid.len() >= max_unpaid {
                return Err(format!(
                    "{what} has {} deals that were sent data and have not paid for it",
                    a.unpaid.len()
                ));
            }
            if a.debts.len() >= limits.max_debts {
                return Err(format!(
                    "{what} ended {} deals without paying for the data sent",
                    a.debts.len()
                ));
            }
            Ok(())
        };
        check(
            &Who::Peer(peer.to_vec()),
            "this peer",
            limits.max_unpaid_deals_per_peer,
        )?;
        if let Some(ip) = ip {
            check(&Who::Ip(ip), "this address", limits.max_unpaid_deals_per_ip)?;
        }
        for channel in self.channels.get(peer).into_iter().flatten() {
            check(
                &Who::Channel(channel.clone()),
                "this peer's channel",
                usize::MAX,
            )?;
        }
        Ok(())
    }

    fn accounts_of(deal: &DealKey, ip: Option<IpAddr>, state: &ProviderState) -> Vec<Who> {
        let mut who = vec![Who::Peer(deal.0.clone())];
        if let Some(ip) = ip {
            who.push(Who::Ip(ip));
        }
        if let Some(lane) = &state.lane {
            who.push(Who::Channel(lane.channel.clone()));
        }
        who
    }

    /// Records where a running deal stands (after each of its persisted steps).
    pub(crate) fn update(&mut self, deal: &DealKey, ip: Option<IpAddr>, state: &ProviderState) {
        if let Some(lane) = &state.lane {
            let channels = self.channels.entry(deal.0.clone()).or_default();
            if !channels.contains(&lane.channel) && channels.len() < CHANNELS_PER_PEER {
                channels.push(lane.channel.clone());
            }
        }
        let owing = owes(state);
        for who in Self::accounts_of(deal, ip, state) {
            if owing {
                self.accounts
                    .entry(who)
                    .or_default()
                    .unpaid
                    .insert(deal.clone());
            } else if let Some(a) = self.accounts.get_mut(&who) {
                a.unpaid.remove(deal);
            }
        }
        self.bound();
    }

    /// Records a deal's end: an ending that owes the provider becomes a debt of its peer,
    /// address and channel.
    pub(crate) fn finish(
        &mut self,
        deal: &DealKey,
        ip: Option<IpAddr>,
        state: &ProviderState,
        now: Instant,
    ) {
        let owing = owes(state);
        for who in Self::accounts_of(deal, ip, state) {
            let account = self.accounts.entry(who).or_default();
            account.unpaid.remove(deal);
            if owing {
                account.debts.push_back(now);
            }
        }
        self.forget_old(now);
        self.bound();
    }

    /// Keeps at most `max_accounts`, forgetting the accounts with the oldest debts (and no
    /// live deal) first.
    fn bound(&mut self) {
        while self.accounts.len() > self.limits.max_accounts.max(1) {
            let oldest = self
                .accounts
                .iter()
                .filter(|(_, a)| a.unpaid.is_empty())
                .min_by_key(|(_, a)| a.debts.back().copied())
                .map(|(who, _)| who.clone());
            match oldest {
                Some(who) => {
                    self.accounts.remove(&who);
                }
                // Every account has a live deal: bounded by the deal limits already.
                None => break,
            }
        }
    }

    #[cfg(test)]
    fn accounts(&self) -> usize {
        self.accounts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsm::{PaymentLane, ProviderStatus};
    use rm_types::{DealId, DealProposal, Params, PeerId, TokenAmount};

    fn state(sent: u64, received: u64) -> ProviderState {
        let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
            .parse()
            .unwrap();
        let params = Params::new(TokenAmount::from_atto(10u64), 1000, 0);
        let mut s =
            ProviderState::new(DealProposal::new(cid, DealId(1), params), PeerId::default());
        s.status = ProviderStatus::Ongoing;
        s.bytes_sent = sent;
        s.funds_received = TokenAmount::from_atto(received);
        s
    }

    fn key(peer: u8, id: u64) -> DealKey {
        (vec![peer], id)
    }

    #[test]
    fn owing_means_data_sent_and_not_paid_for() {
        assert!(!owes(&state(0, 0)));
        assert!(owes(&state(100, 0)));
        assert!(owes(&state(100, 999)));
        assert!(!owes(&state(100, 1000)));
        let mut free = state(100, 0);
        free.proposal.params = Params::new(TokenAmount::zero(), 0, 0);
        assert!(!owes(&free));
    }

    #[test]
    fn many_small_unpaid_deals_from_one_peer_are_refused() {
        let mut book = CreditBook::new(CreditLimits::default());
        let now = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for id in 0..4 {
            book.admit(&[1], Some(ip), now).unwrap();
            book.update(&key(1, id), Some(ip), &state(1000, 0));
        }
        let refused = book.admit(&[1], Some(ip), now).unwrap_err();
        assert!(refused.contains("4 deals"), "{refused}");
        // Another peer from the same address: up to the address's limit.
        book.admit(&[2], Some(ip), now).unwrap();
        // One deal pays: the peer may start another.
        book.update(&key(1, 0), Some(ip), &state(1000, 10_000));
        book.admit(&[1], Some(ip), now).unwrap();
    }

    #[test]
    fn deals_that_end_owing_are_held_against_peer_address_and_channel() {
        let limits = CreditLimits::default();
        let memory = limits.debt_memory;
        let mut book = CreditBook::new(limits);
        let now = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut walked_away = state(1000, 0);
        walked_away.lane = Some(PaymentLane {
            channel: "f0100".parse().unwrap(),
            lane: 0,
        });
        for id in 0..2 {
            book.update(&key(1, id), Some(ip), &walked_away);
            book.finish(&key(1, id), Some(ip), &walked_away, now);
        }
        assert!(
            book.admit(&[1], Some(ip), now)
                .unwrap_err()
                .contains("without paying")
        );
        // A fresh peer id from the same address is refused too.
        assert!(book.admit(&[9], Some(ip), now).is_err());
        // From elsewhere, a fresh peer is welcome.
        book.admit(&[9], Some("10.0.0.2".parse().unwrap()), now)
            .unwrap();
        // Debts are forgotten after the memory.
        let later = now + memory;
        book.admit(&[1], Some(ip), later).unwrap();
        assert_eq!(book.accounts(), 0);
    }

    #[test]
    fn the_book_stays_bounded() {
        let mut book = CreditBook::new(CreditLimits {
            max_accounts: 100,
            ..CreditLimits::default()
        });
        let now = Instant::now();
        for peer in 0..1000u32 {
            let k = (peer.to_be_bytes().to_vec(), 1);
            book.update(&k, None, &state(1000, 0));
            book.finish(&k, None, &state(1000, 0), now);
        }
        assert!(book.accounts() <= 100, "{}", book.accounts());
    }
}
