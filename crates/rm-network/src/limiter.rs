//! Counting inbound streams per peer, per remote IP address and in total.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use std::net::IpAddr;

use libp2p::PeerId;

/// Hands out at most `max_total` permits, at most `max_per_peer` to one peer and at most
/// `max_per_ip` to the peers of one remote IP address (peer ids cost nothing; addresses
/// do).
#[derive(Debug)]
pub(crate) struct Limiter {
    max_total: usize,
    max_per_peer: usize,
    max_per_ip: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_peer: HashMap<PeerId, usize>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Which limit of a [`Limiter`] refused a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The peer holds `max_per_peer` permits.
    PerPeer,
    /// The peers at the peer's IP address hold `max_per_ip` permits.
    PerIp,
    /// `max_total` permits are held.
    Total,
}

/// One slot of a [`Limiter`]; released when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
    peer: PeerId,
    ip: Option<IpAddr>,
}

impl Limiter {
    pub(crate) fn new(max_total: usize, max_per_peer: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_peer,
            max_per_ip,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two counters: a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A permit for `peer`, or `None` when a limit is reached.
    #[cfg(test)]
    pub(crate) fn try_acquire(self: &Arc<Self>, peer: PeerId) -> Option<Permit> {
        self.acquire(peer, None).ok()
    }

    /// A permit for `peer` at `ip` (unknown for a connection it dialled, or not over
    /// IP), or the limit that refused it (the total one before the per-IP one before the
    /// per-peer one).
    pub(crate) fn acquire(
        self: &Arc<Self>,
        peer: PeerId,
        ip: Option<IpAddr>,
    ) -> Result<Permit, Refused> {
        let mut state = self.lock();
        if state.total >= self.max_total {
            return Err(Refused::Total);
        }
        if let Some(ip) = ip
            && state.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip
        {
            return Err(Refused::PerIp);
        }
        let current = state.per_peer.get(&peer).copied().unwrap_or(0);
        if current >= self.max_per_peer {
            return Err(Refused::PerPeer);
        }
        state.total += 1;
        state.per_peer.insert(peer, current + 1);
        if let Some(ip) = ip {
            *state.per_ip.entry(ip).or_default() += 1;
        }
        Ok(Permit {
            limiter: Arc::clone(self),
            peer,
            ip,
        })
    }

    /// Permits held in total.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.lock().total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.limiter.lock();
        state.total = state.total.saturating_sub(1);
        if let Some(n) = state.per_peer.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.per_peer.remove(&self.peer);
            }
        }
        if let Some(ip) = self.ip
            && let Some(n) = state.per_ip.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.per_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_peer_and_total_limits() {
        let limiter = Limiter::new(3, 2, usize::MAX);
        let (a, b) = (PeerId::random(), PeerId::random());
        let a1 = limiter.try_acquire(a).unwrap();
        let _a2 = limiter.try_acquire(a).unwrap();
        assert!(limiter.try_acquire(a).is_none(), "per-peer limit");
        assert_eq!(limiter.acquire(a, None).err(), Some(Refused::PerPeer));
        let _b1 = limiter.try_acquire(b).unwrap();
        assert!(limiter.try_acquire(b).is_none(), "total limit");
        assert_eq!(limiter.acquire(b, None).err(), Some(Refused::Total));
        assert_eq!(limiter.acquire(a, None).err(), Some(Refused::Total));
        drop(a1);
        assert_eq!(limiter.in_use(), 2);
        let _b2 = limiter.try_acquire(b).unwrap();
        assert_eq!(limiter.in_use(), 3);
    }

    #[test]
    fn released_permits_leave_no_entries() {
        let limiter = Limiter::new(10, 10, 10);
        let ip = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..100 {
            let _p = limiter.try_acquire(PeerId::random()).unwrap();
            let _q = limiter.acquire(PeerId::random(), Some(ip)).unwrap();
        }
        assert_eq!(limiter.in_use(), 0);
        assert!(limiter.lock().per_peer.is_empty());
        assert!(limiter.lock().per_ip.is_empty());
    }

    /// Fresh peer ids from one address share that address's permits.
    #[test]
    fn per_ip_limit_spans_peer_ids() {
        let limiter = Limiter::new(100, 2, 3);
        let (here, there) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let held: Vec<_> = (0..3)
            .map(|_| limiter.acquire(PeerId::random(), Some(here)).unwrap())
            .collect();
        assert_eq!(
            limiter.acquire(PeerId::random(), Some(here)).err(),
            Some(Refused::PerIp)
        );
        // Another address, and a peer of unknown address, are not affected.
        let _t = limiter.acquire(PeerId::random(), Some(there)).unwrap();
        let _u = limiter.acquire(PeerId::random(), None).unwrap();
        drop(held);
        let _again = limiter.acquire(PeerId::random(), Some(here)).unwrap();
    }
}
