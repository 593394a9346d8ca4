//! [`Journal`]: the persisted snapshots of many machines of one kind, keyed by id.
//!
//! A journal does not run machines: whoever drives a machine (a deal core and its async
//! adapter) decides what happens, and the journal writes each new snapshot with the
//! configured [`Durability`] before it returns, then tells subscribers. Writes to one
//! machine are serialised; different machines write concurrently (and share fsyncs with
//! group commit).
//!
//! Keys in the store: `r` + id for the record (`[seq, state]` in DAG-CBOR), `l` + id for
//! every machine that is not final, so a restart finds the unfinished machines without
//! decoding finished ones; `e` + end time (big-endian Unix seconds) + id for every final
//! machine, so [`Journal::prune`] finds the oldest without reading the others; `t` for the
//! totals folded from pruned machines.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::error::{Error, StoreError, hex};
use crate::key::Key;
use crate::machine::{Machine, Rejection, Snapshot, step};
use crate::store::{Batch, Store};

/// When a written snapshot is on stable storage.
///
/// In every mode a snapshot is written (atomically) before the write call returns and
/// before subscribers hear of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Written to the database's write-ahead log without fsync: survives a crash of the
    /// process (the OS has the data), not a power loss or kernel crash. The default;
    /// fastest.
    #[default]
    NoSync,
    /// fsync every write before returning: survives power loss; one fsync per write
    /// (machines still sync concurrently).
    SyncEachEvent,
    /// One committer per journal collects the writes of all machines, writes them as one
    /// synced batch and returns to each writer after the sync. Survives power loss; many
    /// machines share one fsync.
    GroupCommit {
        /// At most this many writes per synced batch.
        max_batch: usize,
        /// After the first write arrives, wait at most this long for more before syncing.
        /// Zero means "sync now with whatever queued up during the previous sync"
        /// (adaptive).
        max_delay: Duration,
    },
}

impl Durability {
    /// Group commit with up to 1024 writes per fsync and no added delay.
    pub fn group_commit() -> Self {
        Durability::GroupCommit {
            max_batch: 1024,
            max_delay: Duration::ZERO,
        }
    }
}

/// Settings of a [`Journal`]. Start from `Config::default()` and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// When writes reach stable storage.
    pub durability: Durability,
    /// Capacity of the notification channel; a subscriber further behind than this loses
    /// the oldest notifications and is told how many. Default 1024.
    pub subscriber_capacity: usize,
    /// The largest encoded state accepted for writing or reading. Default 1 MiB.
    pub max_state_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            durability: Durability::NoSync,
            subscriber_capacity: 1024,
            max_state_bytes: 1 << 20,
        }
    }
}

impl Config {
    /// This configuration with another durability mode.
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
}

/// What subscribers hear: every begun machine and every recorded event, in order per
/// machine.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Notification<K, S, E> {
    /// A machine was begun with this snapshot (`seq` 0).
    Began {
        /// The machine.
        id: K,
        /// Its initial snapshot.
        snapshot: Snapshot<S>,
    },
    /// An event was applied (and, unless published with [`Journal::publish`], persisted).
    Applied {
        /// The machine.
        id: K,
        /// The event.
        event: E,
        /// The machine's new snapshot.
        snapshot: Snapshot<S>,
    },
}

impl<K, S, E> Notification<K, S, E> {
    /// The machine the notification is about.
    pub fn id(&self) -> &K {
        match self {
            Notification::Began { id, .. } | Notification::Applied { id, .. } => id,
        }
    }

    /// The machine's snapshot after the notification.
    pub fn snapshot(&self) -> &Snapshot<S> {
        match self {
            Notification::Began { snapshot, .. } | Notification::Applied { snapshot, .. } => {
                snapshot
            }
        }
    }
}

/// Why [`Subscription::recv`] returned no notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The subscriber fell behind by more than `Config::subscriber_capacity`; this many of
    /// the oldest notifications were dropped for it. The next `recv` continues with the
    /// oldest one still held.
    #[error("subscriber lagged; {0} notifications dropped")]
    Lagged(u64),
    /// The journal is gone and every notification was received.
    #[error("journal closed")]
    Closed,
}

/// A subscriber's bounded receiver of [`Notification`]s (see [`Journal::subscribe`]).
///
/// The journal never waits for subscribers: one that falls behind by more than the
/// channel's capacity loses the oldest notifications and gets [`RecvError::Lagged`] with
/// the count once (tokio `broadcast` semantics). Memory stays bounded by the capacity.
pub struct Subscription<K, S, E> {
    rx: broadcast::Receiver<Notification<K, S, E>>,
}

impl<K, S, E> fmt::Debug for Subscription<K, S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pending", &self.rx.len())
            .finish()
    }
}

impl<K: Clone, S: Clone, E: Clone> Subscription<K, S, E> {
    /// The next notification.
    pub async fn recv(&mut self) -> Result<Notification<K, S, E>, RecvError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
            broadcast::error::RecvError::Closed => RecvError::Closed,
        })
    }

    /// The next notification if one is waiting.
    pub fn try_recv(&mut self) -> Result<Option<Notification<K, S, E>>, RecvError> {
        match self.rx.try_recv() {
            Ok(n) => Ok(Some(n)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
            Err(broadcast::error::TryRecvError::Closed) => Err(RecvError::Closed),
        }
    }
}

type Note<M, K> = Notification<K, <M as Machine>::State, <M as Machine>::Event>;

struct CommitReq {
    batch: Batch,
    done: oneshot::Sender<Result<(), StoreError>>,
}

struct Shared<M: Machine, K: Key> {
    machine: M,
    store: Arc<dyn Store>,
    config: Config,
    notify: broadcast::Sender<Note<M, K>>,
    /// The group committer's inbox (group commit only); `close` takes it.
    committer: Mutex<Option<mpsc::Sender<CommitReq>>>,
    committer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// One lock per machine being written; entries go when nobody holds or waits.
    locks: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
    closed: AtomicBool,
}

const RECORD: u8 = b'r';
const LIVE: u8 = b'l';
const ENDED: u8 = b'e';
const TOTALS: &[u8] = b"t";

/// Pruned machines are deleted in batches of this many (one write each, totals included).
const PRUNE_BATCH: usize = 1024;

/// `e` + the end time in big-endian Unix seconds: entries sort by end time.
fn ended_prefix(at: SystemTime) -> [u8; 9] {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut prefix = [ENDED; 9];
    prefix[1..].copy_from_slice(&secs.to_be_bytes());
    prefix
}

fn ended_key<K: Key>(at: SystemTime, id: &K) -> Vec<u8> {
    let mut key = ended_prefix(at).to_vec();
    key.extend(id.to_key_bytes());
    key
}

fn record_key<K: Key>(id: &K) -> Vec<u8> {
    let mut key = vec![RECORD];
    key.extend(id.to_key_bytes());
    key
}

fn live_key<K: Key>(id: &K) -> Vec<u8> {
    let mut key = vec![LIVE];
    key.extend(id.to_key_bytes());
    key
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Upper bound for configured channel capacities (tokio panics above `usize::MAX >> 3`).
const MAX_CHANNEL: usize = 1 << 24;

/// The persisted snapshots of the machines of one kind, keyed by id. Cheap to clone.
///
/// Open at most one journal per store at a time.
pub struct Journal<M: Machine, K: Key> {
    shared: Arc<Shared<M, K>>,
}

impl<M: Machine, K: Key> Clone for Journal<M, K> {
    fn clone(&self) -> Self {
        Journal {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<M: Machine, K: Key> fmt::Debug for Journal<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<M: Machine, K: Key> Journal<M, K> {
    /// The journal of `machine`s kept in `store`. Reads nothing yet; must be called inside
    /// a tokio runtime (group commit starts its committer task).
    pub fn open(machine: M, store: impl Store, config: Config) -> Self {
        let store: Arc<dyn Store> = Arc::new(store);
        let mut committer_task = None;
        let committer = match config.durability {
            Durability::GroupCommit {
                max_batch,
                max_delay,
            } => {
                let max_batch = max_batch.clamp(1, MAX_CHANNEL / 2);
                let (tx, rx) = mpsc::channel(max_batch.saturating_mul(2));
                committer_task = Some(tokio::spawn(run_committer(
                    Arc::clone(&store),
                    rx,
                    max_batch,
                    max_delay,
                )));
                Some(tx)
            }
            Durability::NoSync | Durability::SyncEachEvent => None,
        };
        let (notify, _) = broadcast::channel(config.subscriber_capacity.clamp(1, MAX_CHANNEL));
        Journal {
            shared: Arc::new(Shared {
                machine,
                store,
                config,
                notify,
                committer: Mutex::new(committer),
                committer_task: Mutex::new(committer_task),
                locks: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The machine description.
    pub fn machine(&self) -> &M {
        &self.shared.machine
    }

    /// The journal's settings.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Starts machine `id` in `initial` (`seq` 0): persists it and publishes
    /// [`Notification::Began`]. [`Error::Exists`] if `id` is stored (even if final).
    pub async fn begin(&self, id: K, initial: M::State) -> Result<Snapshot<M::State>, Error> {
        let lock = self.lock_for(&id);
        let _guard = lock.lock().await;
        self.check_open()?;
        let key = record_key(&id);
        if self.shared.store.get(&key)?.is_some() {
            return Err(Error::Exists(format!("{id:?}")));
        }
        let snapshot = Snapshot {
            seq: 0,
            state: initial,
        };
        let mut batch = Batch::new();
        batch.put(key, encode(&snapshot, self.shared.config.max_state_bytes)?);
        if self.shared.machine.is_final(&snapshot.state) {
            batch.put(ended_key(SystemTime::now(), &id), Vec::new());
        } else {
            batch.put(live_key(&id), Vec::new());
        }
        self.persist(batch).await?;
        if self.shared.notify.receiver_count() > 0 {
            let _ = self.shared.notify.send(Notification::Began {
                id,
                snapshot: snapshot.clone(),
            });
        }
        Ok(snapshot)
    }

    /// Applies `event` to the stored state of `id` with the machine, persists the result
    /// and returns it.
    ///
    /// Errors: [`Error::Invalid`] (state unchanged), [`Error::Final`], [`Error::NotFound`],
    /// [`Error::Closed`], or a store or encoding error (state unchanged).
    pub async fn apply(&self, id: &K, event: M::Event) -> Result<Snapshot<M::State>, Error> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        self.check_open()?;
        let current = self
            .snapshot(id)?
            .ok_or_else(|| Error::NotFound(format!("{id:?}")))?;
        let next = match step(&self.shared.machine, &current, &event) {
            Ok(next) => next,
            Err(Rejection::Final) => return Err(Error::Final(format!("{id:?}"))),
            Err(Rejection::Invalid(invalid)) => return Err(Error::Invalid(invalid)),
        };
        self.write(id, &current, &next).await?;
        self.notify(id, event, &next);
        Ok(next)
    }

    /// Persists `snapshot` for `id`, reached from the stored snapshot by `event` (and
    /// possibly others before it that were only [published](Journal::publish)): its `seq`
    /// must be above the stored one ([`Error::Stale`] otherwise). For a driver that applies
    /// events to its own copy of the state with [`step`](crate::step).
    pub async fn record(
        &self,
        id: &K,
        event: &M::Event,
        snapshot: &Snapshot<M::State>,
    ) -> Result<(), Error> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        self.check_open()?;
        let current = self
            .snapshot(id)?
            .ok_or_else(|| Error::NotFound(format!("{id:?}")))?;
        if self.shared.machine.is_final(&current.state) {
            return Err(Error::Final(format!("{id:?}")));
        }
        if snapshot.seq <= current.seq {
            return Err(Error::Stale {
                id: format!("{id:?}"),
                stored: current.seq,
                given: snapshot.seq,
            });
        }
        self.write(id, &current, snapshot).await?;
        self.notify(id, event.clone(), snapshot);
        Ok(())
    }

    /// Tells subscribers of `event` and the snapshot it led to without writing anything
    /// (progress a driver chose not to persist yet).
    pub fn publish(&self, id: &K, event: &M::Event, snapshot: &Snapshot<M::State>) {
        self.notify(id, event.clone(), snapshot);
    }

    fn notify(&self, id: &K, event: M::Event, snapshot: &Snapshot<M::State>) {
        if self.shared.notify.receiver_count() > 0 {
            let _ = self.shared.notify.send(Notification::Applied {
                id: id.clone(),
                event,
                snapshot: snapshot.clone(),
            });
        }
    }

    async fn write(
        &self,
        id: &K,
        current: &Snapshot<M::State>,
        next: &Snapshot<M::State>,
    ) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.put(
            record_key(id),
            encode(next, self.shared.config.max_state_bytes)?,
        );
        let was_final = self.shared.machine.is_final(&current.state);
        if !was_final && self.shared.machine.is_final(&next.state) {
            batch.delete(live_key(id));
            batch.put(ended_key(SystemTime::now(), id), Vec::new());
        }
        self.persist(batch).await?;
        Ok(())
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.shared.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// The lock serialising writes to `id`. Locks nobody holds are forgotten here.
    fn lock_for(&self, id: &K) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.shared.locks);
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        Arc::clone(locks.entry(id.clone()).or_default())
    }

    /// Writes `batch` as the durability mode demands.
    async fn persist(&self, batch: Batch) -> Result<(), StoreError> {
        let shared = &self.shared;
        match shared.config.durability {
            Durability::NoSync => shared.store.write(&batch, false),
            Durability::SyncEachEvent => {
                let store = Arc::clone(&shared.store);
                tokio::task::spawn_blocking(move || store.write(&batch, true))
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))?
            }
            Durability::GroupCommit { .. } => {
                let stopped = || StoreError::Task("group committer stopped".to_owned());
                let Some(committer) = lock(&shared.committer).clone() else {
                    return Err(stopped());
                };
                let (done, result) = oneshot::channel();
                committer
                    .send(CommitReq { batch, done })
                    .await
                    .map_err(|_| stopped())?;
                result.await.map_err(|_| stopped())?
            }
        }
    }

    /// The stored state of machine `id`.
    pub fn get(&self, id: &K) -> Result<Option<M::State>, Error> {
        Ok(self.snapshot(id)?.map(|s| s.state))
    }

    /// The stored snapshot (state and `seq`) of machine `id`.
    pub fn snapshot(&self, id: &K) -> Result<Option<Snapshot<M::State>>, Error> {
        let key = record_key(id);
        match self.shared.store.get(&key)? {
            None => Ok(None),
            Some(bytes) => decode(&key, &bytes, self.shared.config.max_state_bytes).map(Some),
        }
    }

    /// Whether machine `id` is stored (running or final).
    pub fn has(&self, id: &K) -> Result<bool, Error> {
        Ok(self.shared.store.get(&record_key(id))?.is_some())
    }

    /// The machines that are not final, with their snapshots, in key order. Reads only
    /// those: finished machines cost nothing here however many there are.
    #[allow(clippy::type_complexity)]
    pub fn unfinished(&self) -> Result<Vec<(K, Snapshot<M::State>)>, Error> {
        let mut ids = Vec::new();
        let mut failure = None;
        self.shared.store.scan_prefix(&[LIVE], &mut |key, _| {
            match K::from_key_bytes(&key[1..]) {
                Some(id) => ids.push(id),
                None => {
                    failure = Some(Error::Decode {
                        key: hex(key),
                        reason: "not a valid machine id".to_owned(),
                    });
                    return false;
                }
            }
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.snapshot(&id)? {
                Some(snapshot) if !self.shared.machine.is_final(&snapshot.state) => {
                    out.push((id, snapshot));
                }
                // A live mark without a record, or with a final one: only a crash
                // between two writes of another version could leave it; skip it.
                _ => {}
            }
        }
        Ok(out)
    }

    /// Every stored machine (running or final) for which `filter` returns true, in key
    /// order. Decodes every record: for listings, not for hot paths.
    pub fn list(
        &self,
        mut filter: impl FnMut(&K, &M::State) -> bool,
    ) -> Result<Vec<(K, M::State)>, Error> {
        let max = self.shared.config.max_state_bytes;
        let mut out = Vec::new();
        let mut failure = None;
        self.shared
            .store
            .scan_prefix(&[RECORD], &mut |key, value| {
                let Some(id) = K::from_key_bytes(&key[1..]) else {
                    failure = Some(Error::Decode {
                        key: hex(key),
                        reason: "not a valid machine id".to_owned(),
                    });
                    return false;
                };
                match decode::<M::State>(key, value, max) {
                    Ok(snapshot) => {
                        if filter(&id, &snapshot.state) {
                            out.push((id, snapshot.state));
                        }
                        true
                    }
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
            })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Deletes up to `limit` machines that became final before `ended_before`, oldest
    /// first, folding each into the totals kept under the journal (`fold(totals, id,
    /// state)`), and returns how many it deleted. The deletions and the new totals are
    /// written together, in batches: a crash leaves every machine either counted and gone
    /// or still stored. Use one totals type `T` per journal.
    ///
    /// Finds the oldest without reading the others (the end-time index); running machines
    /// are never touched.
    pub async fn prune<T>(
        &self,
        ended_before: SystemTime,
        limit: usize,
        mut fold: impl FnMut(&mut T, &K, &M::State),
    ) -> Result<usize, Error>
    where
        T: Serialize + DeserializeOwned + Default,
    {
        self.check_open()?;
        let cutoff = ended_prefix(ended_before);
        let max = self.shared.config.max_state_bytes;
        let mut pruned = 0;
        while pruned < limit {
            let want = (limit - pruned).min(PRUNE_BATCH);
            // The ids first: the store is not read while it is being scanned.
            let mut ended = Vec::new();
            let mut failure = None;
            self.shared.store.scan_prefix(&[ENDED], &mut |key, _| {
                if key.len() < cutoff.len() || key[..cutoff.len()] >= cutoff[..] {
                    return false;
                }
                match K::from_key_bytes(&key[cutoff.len()..]) {
                    Some(id) => ended.push((key.to_vec(), id)),
                    None => {
                        failure = Some(Error::Decode {
                            key: hex(key),
                            reason: "not a valid machine id".to_owned(),
                        });
                        return false;
                    }
                }
                ended.len() < want
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            if ended.is_empty() {
                break;
            }
            let mut totals: T = self.totals()?;
            let mut batch = Batch::new();
            for (key, id) in &ended {
                let record = record_key(id);
                // A record already gone leaves only its index entry to delete.
                if let Some(bytes) = self.shared.store.get(&record)? {
                    let snapshot = decode::<M::State>(&record, &bytes, max)?;
                    fold(&mut totals, id, &snapshot.state);
                }
                batch.delete(record);
                batch.delete(key.clone());
            }
            let bytes =
                serde_ipld_dagcbor::to_vec(&totals).map_err(|e| Error::Encode(e.to_string()))?;
            batch.put(TOTALS.to_vec(), bytes);
            self.persist(batch).await?;
            pruned += ended.len();
        }
        Ok(pruned)
    }

    /// The totals folded from every machine [pruned](Journal::prune) so far (`T::default()`
    /// before the first).
    pub fn totals<T: DeserializeOwned + Default>(&self) -> Result<T, Error> {
        match self.shared.store.get(TOTALS)? {
            None => Ok(T::default()),
            Some(bytes) => serde_ipld_dagcbor::from_slice(&bytes).map_err(|e| Error::Decode {
                key: hex(TOTALS),
                reason: e.to_string(),
            }),
        }
    }

    /// A new subscriber; it hears of everything that happens after this call.
    pub fn subscribe(&self) -> Subscription<K, M::State, M::Event> {
        Subscription {
            rx: self.shared.notify.subscribe(),
        }
    }

    /// Stops the journal: later writes fail with [`Error::Closed`]; writes in progress
    /// finish first, so the store is consistent. Returns when the group committer (if any)
    /// has written everything it was handed and let go of the store.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        // Wait for writes in progress: take every machine's lock once.
        let locks: Vec<_> = lock(&self.shared.locks).values().cloned().collect();
        for l in locks {
            drop(l.lock().await);
        }
        lock(&self.shared.committer).take();
        let task = lock(&self.shared.committer_task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// Collects writes from all machines of a journal into synced batches.
async fn run_committer(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<CommitReq>,
    max_batch: usize,
    max_delay: Duration,
) {
    while let Some(first) = rx.recv().await {
        let mut reqs = vec![first];
        while reqs.len() < max_batch {
            match rx.try_recv() {
                Ok(req) => reqs.push(req),
                Err(_) => break,
            }
        }
        if reqs.len() < max_batch && !max_delay.is_zero() {
            let deadline = tokio::time::Instant::now() + max_delay;
            while reqs.len() < max_batch {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(req)) => reqs.push(req),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let mut batch = Batch::new();
        let mut waiting = Vec::with_capacity(reqs.len());
        for req in reqs {
            batch.append(req.batch);
            waiting.push(req.done);
        }
        let store = Arc::clone(&store);
        let result = tokio::task::spawn_blocking(move || store.write(&batch, true))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))
            .and_then(|r| r);
        for done in waiting {
            let _ = done.send(result.clone());
        }
    }
}

/// The stored form of a snapshot: the DAG-CBOR array `[seq, state]`.
fn encode<S: Serialize>(snapshot: &Snapshot<S>, max: usize) -> Result<Vec<u8>, Error> {
    let bytes = serde_ipld_dagcbor::to_vec(&(snapshot.seq, &snapshot.state))
        .map_err(|e| Error::Encode(e.to_string()))?;
    if bytes.len() > max {
        return Err(Error::Encode(format!(
            "state is {} bytes, the limit is {max}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn decode<S: DeserializeOwned>(key: &[u8], bytes: &[u8], max: usize) -> Result<Snapshot<S>, Error> {
    let fail = |reason: String| Error::Decode {
        key: hex(key),
        reason,
    };
    if bytes.len() > max {
        return Err(fail(format!(
            "record is {} bytes, the limit is {max}",
            bytes.len()
        )));
    }
    let (seq, state) =
        serde_ipld_dagcbor::from_slice::<(u64, S)>(bytes).map_err(|e| fail(e.to_string()))?;
    Ok(Snapshot { seq, state })
}
