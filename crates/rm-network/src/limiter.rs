//! Counting inbound streams per peer and in total.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use libp2p::PeerId;

/// Hands out at most `max_total` permits, at most `max_per_peer` to one peer.
#[derive(Debug)]
pub(crate) struct Limiter {
    max_total: usize,
    max_per_peer: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    total: usize,
    per_peer: HashMap<PeerId, usize>,
}

/// Which limit of a [`Limiter`] refused a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The peer holds `max_per_peer` permits.
    PerPeer,
    /// `max_total` permits are held.
    Total,
}

/// One slot of a [`Limiter`]; released when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
    peer: PeerId,
}

impl Limiter {
    pub(crate) fn new(max_total: usize, max_per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_peer,
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
        self.acquire(peer).ok()
    }

    /// A permit for `peer`, or the limit that refused it (the total one when both are
    /// reached).
    pub(crate) fn acquire(self: &Arc<Self>, peer: PeerId) -> Result<Permit, Refused> {
        let mut state = self.lock();
        let current = state.per_peer.get(&peer).copied().unwrap_or(0);
        if state.total >= self.max_total {
            return Err(Refused::Total);
        }
        if current >= self.max_per_peer {
            return Err(Refused::PerPeer);
        }
        state.total += 1;
        state.per_peer.insert(peer, current + 1);
        Ok(Permit {
            limiter: Arc::clone(self),
            peer,
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_peer_and_total_limits() {
        let limiter = Limiter::new(3, 2);
        let (a, b) = (PeerId::random(), PeerId::random());
        let a1 = limiter.try_acquire(a).unwrap();
        let _a2 = limiter.try_acquire(a).unwrap();
        assert!(limiter.try_acquire(a).is_none(), "per-peer limit");
        assert_eq!(limiter.acquire(a).err(), Some(Refused::PerPeer));
        let _b1 = limiter.try_acquire(b).unwrap();
        assert!(limiter.try_acquire(b).is_none(), "total limit");
        assert_eq!(limiter.acquire(b).err(), Some(Refused::Total));
        assert_eq!(limiter.acquire(a).err(), Some(Refused::Total));
        drop(a1);
        assert_eq!(limiter.in_use(), 2);
        let _b2 = limiter.try_acquire(b).unwrap();
        assert_eq!(limiter.in_use(), 3);
    }

    #[test]
    fn released_permits_leave_no_entries() {
        let limiter = Limiter::new(10, 10);
        for _ in 0..100 {
            let _p = limiter.try_acquire(PeerId::random()).unwrap();
        }
        assert_eq!(limiter.in_use(), 0);
        assert!(limiter.lock().per_peer.is_empty());
    }
}
