//! [`Announcer`]: the payloads this node provides, announced on the DHT and re-announced
//! before their provider records expire.
//!
//! The set lives in its own keyspace (key: the payload's multihash bytes, value: the
//! CID as first provided), so it survives a restart. A background task announces each
//! payload when it is added, every payload again every
//! [`AnnouncerConfig::reannounce_interval`], and every payload once at start (after a
//! restart, the DHT hears about everything again at once). Announces run at most
//! [`AnnouncerConfig::concurrency`] at a time; a round reads the set in batches, so it
//! never holds the whole set in memory.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use rm_network::Network;
use rm_store::Keyspace;
use rm_types::Cid;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::Error;

/// The keyspace name a node uses for the provided set.
pub const DEFAULT_KEYSPACE: &str = "provided";

/// Payloads read from the database per step of a round.
const ROUND_BATCH: usize = 256;

/// Newly provided payloads waiting for their first announce; beyond it, the next round
/// (started at once) announces them.
const QUEUE: usize = 1024;

/// Announcer settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AnnouncerConfig {
    /// How often every provided payload is announced again. Must be shorter than the
    /// network's `dht_provider_record_ttl` (48 h by default). Default: 12 h, a quarter of
    /// that TTL, so a record missed by one round (a peer was down) is renewed by the next
    /// ones before it expires.
    pub reannounce_interval: Duration,
    /// Announces in progress at once. Default: 8.
    pub concurrency: usize,
    /// Most payloads provided. Default: 65,536 (the network's default
    /// `dht_max_provider_keys`).
    pub max_provided: usize,
    /// How often the announcer checks, after announcing while the node had no DHT peers
    /// (its records then reached nobody), whether peers have appeared; it then announces
    /// everything again at once instead of at the next round. Default: 30 s.
    pub peerless_retry: Duration,
}

impl Default for AnnouncerConfig {
    fn default() -> Self {
        Self {
            reannounce_interval: Duration::from_secs(12 * 60 * 60),
            concurrency: 8,
            max_provided: 65_536,
            peerless_retry: Duration::from_secs(30),
        }
    }
}

impl AnnouncerConfig {
    /// Sets [`AnnouncerConfig::peerless_retry`].
    pub fn with_peerless_retry(mut self, retry: Duration) -> Self {
        self.peerless_retry = retry;
        self
    }

    /// Sets [`AnnouncerConfig::reannounce_interval`].
    pub fn with_reannounce_interval(mut self, interval: Duration) -> Self {
        self.reannounce_interval = interval;
        self
    }
}

/// What the announcer has done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnnouncerStats {
    /// Rounds completed (announcing every provided payload), the one at start included.
    pub rounds: u64,
    /// Announces that succeeded.
    pub announced: u64,
    /// Announces that failed (they are retried by the next round).
    pub failed: u64,
}

/// The payloads this node provides, and the task that announces them.
///
/// ```no_run
/// # async fn example(network: rm_network::Network, payload: rm_types::Cid) -> Result<(), rm_discovery::Error> {
/// use rm_discovery::{Announcer, AnnouncerConfig, announcer};
///
/// // A node passes a keyspace of its RocksDB database; this set lives in memory.
/// let set = rm_store::Keyspace::memory(announcer::DEFAULT_KEYSPACE);
/// let announcer = Announcer::open(network, set, AnnouncerConfig::default())?;
/// announcer.provide(&payload)?; // persisted now, announced by the task
/// assert_eq!(announcer.provided()?, vec![payload]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Announcer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Announcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announcer")
            .field("keyspace", &self.inner.set.keyspace)
            .field("stats", &*self.inner.stats.borrow())
            .finish()
    }
}

struct Inner {
    set: Arc<Set>,
    network: Network,
    max_provided: usize,
    queue: mpsc::Sender<Cid>,
    /// Set when a new payload did not fit in the queue: the task runs a round.
    overflow: Arc<AtomicBool>,
    stats: watch::Receiver<AnnouncerStats>,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The persistent set.
struct Set {
    keyspace: Keyspace,
    /// Serialises check-and-insert, and holds the count.
    len: Mutex<usize>,
}

impl Set {
    /// Up to `n` payloads with keys after `after` (from the start when `None`), and the
    /// last key read. Entries that are not CIDs are logged and skipped.
    fn batch(&self, after: Option<&[u8]>, n: usize) -> Result<(Vec<Cid>, Option<Vec<u8>>), Error> {
        let mut cids = Vec::new();
        let mut last = None;
        for item in self.keyspace.iter_from(after.unwrap_or_default()) {
            let (key, value) = item?;
            if after == Some(&*key) {
                continue;
            }
            match Cid::try_from(&*value) {
                Ok(cid) => cids.push(cid),
                Err(e) => tracing::warn!(%e, "skipping a corrupt provided-set entry"),
            }
            last = Some(key.into_vec());
            if cids.len() >= n {
                break;
            }
        }
        Ok((cids, last))
    }
}

impl Announcer {
    /// Opens the provided set kept in `set` (for a node: [`DEFAULT_KEYSPACE`] of its
    /// database) and starts the task that
    /// announces it on `network`'s DHT (at once, then every
    /// [`AnnouncerConfig::reannounce_interval`]). Must be called inside a tokio runtime.
    pub fn open(
        network: Network,
        keyspace: Keyspace,
        config: AnnouncerConfig,
    ) -> Result<Self, Error> {
        let ttl = network.config().dht_provider_record_ttl;
        if config.reannounce_interval.is_zero() || config.reannounce_interval >= ttl {
            return Err(Error::InvalidConfig(format!(
                "reannounce_interval {:?} must be positive and below the provider record TTL {ttl:?}",
                config.reannounce_interval
            )));
        }
        let set = Arc::new(Set {
            keyspace,
            len: Mutex::new(0),
        });
        let count = {
            let mut count = 0;
            for item in set.keyspace.iter() {
                item?;
                count += 1;
            }
            count
        };
        *set.len.lock().unwrap_or_else(|e| e.into_inner()) = count;

        let (queue, queued) = mpsc::channel(QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let (stats_tx, stats) = watch::channel(AnnouncerStats::default());
        let task = tokio::spawn(run(Task {
            set: Arc::clone(&set),
            network: network.clone(),
            queued,
            overflow: Arc::clone(&overflow),
            stats: stats_tx,
            interval: config.reannounce_interval,
            concurrency: config.concurrency.max(1),
            peerless_retry: config.peerless_retry.max(Duration::from_millis(10)),
            announced_alone: AtomicBool::new(false),
        }));
        Ok(Self {
            inner: Arc::new(Inner {
                set,
                network,
                max_provided: config.max_provided,
                queue,
                overflow,
                stats,
                task,
            }),
        })
    }

    /// Adds `payload` to the provided set (idempotent; a CIDv0 and a CIDv1 of the same
    /// multihash are one entry) and has it announced now. Returns once it is persisted;
    /// the announce runs in the background. Fails with [`Error::TooManyProvided`] when
    /// the set is full.
    pub fn provide(&self, payload: &Cid) -> Result<(), Error> {
        let set = &self.inner.set;
        {
            let mut len = set.len.lock().unwrap_or_else(|e| e.into_inner());
            let key = payload.hash().to_bytes();
            if !set.keyspace.contains(&key)? {
                if *len >= self.inner.max_provided {
                    return Err(Error::TooManyProvided {
                        limit: self.inner.max_provided,
                    });
                }
                set.keyspace.put(&key, &payload.to_bytes())?;
                *len += 1;
            }
        }
        match self.inner.queue.try_send(*payload) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.inner.overflow.store(true, Ordering::Release);
            }
            // The task only stops when the announcer is dropped.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
        Ok(())
    }

    /// Removes `payload` from the set and stops announcing it (peers keep their records
    /// until they expire). Returns whether it was there.
    pub async fn unprovide(&self, payload: &Cid) -> Result<bool, Error> {
        let set = &self.inner.set;
        let removed = {
            let mut len = set.len.lock().unwrap_or_else(|e| e.into_inner());
            let key = payload.hash().to_bytes();
            if set.keyspace.contains(&key)? {
                set.keyspace.delete(&key)?;
                *len = len.saturating_sub(1);
                true
            } else {
                false
            }
        };
        // Not announcing it any more is a local operation on the network.
        self.inner.network.stop_providing(payload).await?;
        Ok(removed)
    }

    /// Whether `payload` (or another CID with its multihash) is provided.
    pub fn is_provided(&self, payload: &Cid) -> Result<bool, Error> {
        let set = &self.inner.set;
        Ok(set.keyspace.contains(&payload.hash().to_bytes())?)
    }

    /// Every provided payload (at most [`AnnouncerConfig::max_provided`]).
    pub fn provided(&self) -> Result<Vec<Cid>, Error> {
        let (cids, _) = self.inner.set.batch(None, usize::MAX)?;
        Ok(cids)
    }

    /// How many payloads are provided.
    pub fn len(&self) -> usize {
        *self.inner.set.len.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether nothing is provided.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the task has done so far.
    pub fn stats(&self) -> AnnouncerStats {
        *self.inner.stats.borrow()
    }

    /// A receiver that sees [`AnnouncerStats`] change (after each announce and round).
    pub fn subscribe(&self) -> watch::Receiver<AnnouncerStats> {
        self.inner.stats.clone()
    }
}

struct Task {
    set: Arc<Set>,
    network: Network,
    queued: mpsc::Receiver<Cid>,
    overflow: Arc<AtomicBool>,
    stats: watch::Sender<AnnouncerStats>,
    interval: Duration,
    concurrency: usize,
    peerless_retry: Duration,
    /// Something was announced while the node had no DHT peers.
    announced_alone: AtomicBool,
}

async fn run(mut task: Task) {
    // The first tick fires at once: the round at start.
    let mut tick = tokio::time::interval(task.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = tokio::time::interval(task.peerless_retry);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => task.round().await,
            _ = retry.tick() => {
                if task.announced_alone.load(Ordering::Acquire) && task.has_peers().await {
                    tracing::debug!("DHT peers appeared: announcing everything again");
                    task.round().await;
                }
            }
            first = task.queued.recv() => {
                let Some(first) = first else { break };
                let mut batch = vec![first];
                while batch.len() < task.concurrency {
                    match task.queued.try_recv() {
                        Ok(cid) => batch.push(cid),
                        Err(_) => break,
                    }
                }
                task.announce_all(batch).await;
                if task.overflow.swap(false, Ordering::AcqRel) {
                    task.round().await;
                }
            }
        }
    }
}

impl Task {
    /// Announces every provided payload once.
    async fn round(&self) {
        // A whole round announced with peers reaches them all: nothing is owed any more.
        let with_peers = self.has_peers().await;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let (cids, last) = match self.set.batch(after.as_deref(), ROUND_BATCH) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(%e, "cannot read the provided set; round abandoned");
                    return;
                }
            };
            self.announce_all(cids).await;
            match last {
                Some(last) => after = Some(last),
                None => break,
            }
        }
        if with_peers {
            self.announced_alone.store(false, Ordering::Release);
        }
        self.stats.send_modify(|s| s.rounds += 1);
        tracing::debug!(stats = ?*self.stats.borrow(), "announce round done");
    }

    async fn has_peers(&self) -> bool {
        self.network
            .dht_peers()
            .await
            .is_ok_and(|peers| !peers.is_empty())
    }

    async fn announce_all(&self, cids: Vec<Cid>) {
        if cids.is_empty() {
            return;
        }
        // Announcing to nobody succeeds but reaches nobody: remember it, so the
        // payloads are announced again once peers appear.
        if !self.has_peers().await {
            self.announced_alone.store(true, Ordering::Release);
        }
        futures::stream::iter(cids)
            .for_each_concurrent(self.concurrency, |cid| async move {
                match self.network.start_providing(&cid).await {
                    Ok(()) => self.stats.send_modify(|s| s.announced += 1),
                    Err(e) => {
                        tracing::debug!(%cid, %e, "announce failed");
                        self.stats.send_modify(|s| s.failed += 1);
                    }
                }
            })
            .await;
    }
}
