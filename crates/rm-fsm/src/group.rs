//! The async driver: a group of persistent machines keyed by id.
//!
//! Every live (non-final) machine is one tokio task with a bounded inbox. The task applies the
//! events of its machine one after the other with [`step`], writes each new snapshot to the
//! store, publishes it, answers the sender and only then runs the entry action. Different
//! machines run concurrently.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Poll;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::{Error, StoreError, hex};
use crate::key::Key;
use crate::machine::{Effect, Invalid, Machine, Rejection, Snapshot, step};
use crate::store::{Batch, Store};

/// When an applied event is on stable storage.
///
/// In every mode the event is written (atomically, one RocksDB `WriteBatch`) before its entry
/// action runs and before the sender and subscribers hear of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Write to the database's write-ahead log without fsync: survives a crash of the process
    /// (the OS has the data), not a power loss or kernel crash. The default; fastest.
    #[default]
    NoSync,
    /// fsync every write before going on: survives power loss; about one event per fsync per
    /// machine (machines still sync concurrently).
    SyncEachEvent,
    /// One committer per group collects the writes of all machines, writes them as one synced
    /// batch and releases each machine only after the sync. Survives power loss; many machines
    /// share one fsync.
    GroupCommit {
        /// At most this many machine writes per synced batch.
        max_batch: usize,
        /// After the first write arrives, wait at most this long for more before syncing. Zero
        /// means "sync now with whatever queued up during the previous sync" (adaptive).
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

/// Settings of a [`Group`]. Start from `Config::default()` and change fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// When writes reach stable storage.
    pub durability: Durability,
    /// Capacity of each machine's inbox; senders wait when it is full. Default 64.
    pub queue_capacity: usize,
    /// Capacity of the notification channel; a subscriber further behind than this loses the
    /// oldest notifications and is told how many. Default 1024.
    pub subscriber_capacity: usize,
    /// How many triggered events may wait in one machine's internal queue. Default 16.
    pub max_triggers: usize,
    /// The largest encoded state accepted for writing or reading. Default 1 MiB.
    pub max_state_bytes: usize,
    /// At most this many queued record-only events of one machine are applied in one write.
    /// Default 64.
    pub max_coalesce: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            durability: Durability::NoSync,
            queue_capacity: 64,
            subscriber_capacity: 1024,
            max_triggers: 16,
            max_state_bytes: 1 << 20,
            max_coalesce: 64,
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

/// The side effects of a machine: what happens on entering a state.
///
/// `on_entry` runs after an event moved the machine into a state (`To`) or re-entered it
/// (`NoChange`), after [`Group::begin`], and again for every non-final machine when a group is
/// opened after a restart (then [`Context::resumed`] is true). It never runs for final states.
/// The event that led here is already persisted. While it runs the machine applies no other
/// event; events it sends with [`Context::trigger`] are applied right after it returns, before
/// queued events from outside.
///
/// Because a crash can interrupt an entry action and the restart runs it again, it must be
/// safe to run twice: see the crate documentation ("Writing entry actions").
pub trait Actions<M: Machine, K: Key>: Send + Sync + 'static {
    /// Runs the entry action of `state` for machine `ctx.id()`.
    fn on_entry(
        &self,
        ctx: &mut Context<M, K>,
        state: &M::State,
    ) -> impl Future<Output = ()> + Send;
}

/// No entry actions.
impl<M: Machine, K: Key> Actions<M, K> for () {
    fn on_entry(
        &self,
        _ctx: &mut Context<M, K>,
        _state: &M::State,
    ) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// Object-safe form of [`Actions`].
trait DynActions<M: Machine, K: Key>: Send + Sync {
    fn on_entry<'a>(&'a self, ctx: &'a mut Context<M, K>, state: &'a M::State)
    -> BoxFuture<'a, ()>;
}

impl<M: Machine, K: Key, A: Actions<M, K>> DynActions<M, K> for A {
    fn on_entry<'a>(
        &'a self,
        ctx: &'a mut Context<M, K>,
        state: &'a M::State,
    ) -> BoxFuture<'a, ()> {
        Box::pin(Actions::on_entry(self, ctx, state))
    }
}

/// What an entry action gets besides the state: its machine's id and a way to send events.
pub struct Context<M: Machine, K: Key> {
    id: K,
    resumed: bool,
    triggered: Vec<M::Event>,
    room: usize,
    limit: usize,
    group: Weak<Shared<M, K>>,
}

impl<M: Machine, K: Key> fmt::Debug for Context<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id)
            .field("resumed", &self.resumed)
            .field("triggered", &self.triggered)
            .finish_non_exhaustive()
    }
}

impl<M: Machine, K: Key> Context<M, K> {
    /// The machine's id.
    pub fn id(&self) -> &K {
        &self.id
    }

    /// Whether this run resumes the machine after the group was (re)opened, rather than
    /// following an event.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Sends `event` to this machine. It is applied when the entry action returns, before any
    /// queued event from outside. Never blocks; fails when the machine's internal queue
    /// (`Config::max_triggers`) is full. If it turns out invalid, it is published to
    /// subscribers and logged.
    pub fn trigger(&mut self, event: M::Event) -> Result<(), Error> {
        if self.triggered.len() >= self.room {
            return Err(Error::TriggerLimit(self.limit));
        }
        self.triggered.push(event);
        Ok(())
    }

    /// A handle to the group, for work that outlives the entry action (a spawned task that
    /// sends an event later). `None` if the group was dropped. Do not await
    /// [`Group::send`] to this same machine inside the entry action: the machine applies
    /// nothing until the entry action returns; use [`Context::trigger`].
    pub fn group(&self) -> Option<Group<M, K>> {
        self.group.upgrade().map(|shared| Group { shared })
    }
}

/// What subscribers hear: every begun machine, every applied event and every invalid event,
/// in order per machine.
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
    /// An event was applied and persisted.
    Applied {
        /// The machine.
        id: K,
        /// The event.
        event: E,
        /// The machine's new snapshot.
        snapshot: Snapshot<S>,
    },
    /// An event was refused; the state is unchanged.
    Invalid {
        /// The machine.
        id: K,
        /// The event.
        event: E,
        /// Why.
        error: Invalid,
    },
}

impl<K, S, E> Notification<K, S, E> {
    /// The machine the notification is about.
    pub fn id(&self) -> &K {
        match self {
            Notification::Began { id, .. }
            | Notification::Applied { id, .. }
            | Notification::Invalid { id, .. } => id,
        }
    }
}

/// Why [`Subscription::recv`] returned no notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The subscriber fell behind by more than `Config::subscriber_capacity`; this many of the
    /// oldest notifications were dropped for it. The next `recv` continues with the oldest
    /// one still held.
    #[error("subscriber lagged; {0} notifications dropped")]
    Lagged(u64),
    /// The group is gone and every notification was received.
    #[error("group closed")]
    Closed,
}

/// A subscriber's bounded receiver of [`Notification`]s (see [`Group::subscribe`]).
///
/// The engine never waits for subscribers: a subscriber that falls behind by more than the
/// channel's capacity loses the oldest notifications and gets [`RecvError::Lagged`] with the
/// count once (tokio `broadcast` semantics). Memory stays bounded by the capacity.
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

/// A queued event's result: resolves to the new snapshot once the event is applied and
/// persisted (before the entry action runs), or to the error. Dropping it does not cancel the
/// event.
pub struct Receipt<S> {
    rx: oneshot::Receiver<Result<Snapshot<S>, Error>>,
}

impl<S> fmt::Debug for Receipt<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt").finish_non_exhaustive()
    }
}

impl<S> Future for Receipt<S> {
    type Output = Result<Snapshot<S>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.get_mut().rx).poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result),
            // The machine stopped (group closed) before applying the event.
            Poll::Ready(Err(_)) => Poll::Ready(Err(Error::Closed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

type Reply<S> = oneshot::Sender<Result<Snapshot<S>, Error>>;
type Note<M, K> = Notification<K, <M as Machine>::State, <M as Machine>::Event>;

struct Cmd<M: Machine> {
    event: M::Event,
    reply: Option<Reply<M::State>>,
}

struct CommitReq {
    batch: Batch,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// What every machine task of a group shares.
struct Core<M: Machine, K: Key> {
    machine: M,
    actions: Box<dyn DynActions<M, K>>,
    store: Arc<dyn Store>,
    config: Config,
    notify: broadcast::Sender<Note<M, K>>,
    /// The group committer's inbox (group commit only); `close` takes it so the committer
    /// ends once the writes already handed to it are done.
    committer: Mutex<Option<mpsc::Sender<CommitReq>>>,
}

struct Registry<M: Machine, K: Key> {
    closed: bool,
    machines: HashMap<K, mpsc::Sender<Cmd<M>>>,
}

struct Shared<M: Machine, K: Key> {
    core: Arc<Core<M, K>>,
    registry: Mutex<Registry<M, K>>,
    shutdown: watch::Sender<bool>,
    /// Cloned into every machine task; `close` drops this one and waits for the rest.
    alive_tx: Mutex<Option<mpsc::Sender<()>>>,
    alive_rx: tokio::sync::Mutex<mpsc::Receiver<()>>,
    /// The group-commit writer, if any; `close` stops it once no machine can write, so that
    /// the store (and the database lock) is released when `close` returns.
    committer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Pause before re-running an entry action whose triggered events could not be written.
const STORE_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Upper bound for configured channel capacities (tokio panics above `usize::MAX >> 3`).
const MAX_CHANNEL: usize = 1 << 24;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A group of persistent machines of one kind, keyed by id, stored in one [`Store`] (one
/// column family). Cheap to clone; all clones drive the same machines.
///
/// Open at most one group per store at a time. Dropping every handle stops the machines like
/// [`Group::close`] without waiting.
pub struct Group<M: Machine, K: Key> {
    shared: Arc<Shared<M, K>>,
}

impl<M: Machine, K: Key> Clone for Group<M, K> {
    fn clone(&self) -> Self {
        Group {
            shared: self.shared.clone(),
        }
    }
}

impl<M: Machine, K: Key> fmt::Debug for Group<M, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("live", &self.live())
            .field("config", &self.shared.core.config)
            .finish_non_exhaustive()
    }
}

impl<M: Machine, K: Key> Group<M, K> {
    /// Opens the group stored in `store`: loads every machine, and resumes each one that is
    /// not final by running its current state's entry action (with [`Context::resumed`] true).
    ///
    /// Fails on a store error or a record that does not decode (nothing is resumed then).
    /// Must be called within a tokio runtime (with its timer enabled when using
    /// [`Durability::GroupCommit`] with a non-zero `max_delay`).
    pub async fn open(
        machine: M,
        actions: impl Actions<M, K>,
        store: impl Store,
        config: Config,
    ) -> Result<Self, Error> {
        let store: Arc<dyn Store> = Arc::new(store);
        let max = config.max_state_bytes;
        let mut live = Vec::new();
        let mut failure = None;
        store.scan(&mut |key, value| {
            let Some(id) = K::from_key_bytes(key) else {
                failure = Some(Error::Decode {
                    key: hex(key),
                    reason: "not a valid machine id".to_owned(),
                });
                return false;
            };
            match decode::<M::State>(key, value, max) {
                Ok(snapshot) => {
                    if !machine.is_final(&snapshot.state) {
                        live.push((id, key.to_vec(), snapshot));
                    }
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }

        let mut committer_task = None;
        let committer = match config.durability {
            Durability::GroupCommit {
                max_batch,
                max_delay,
            } => {
                let max_batch = max_batch.clamp(1, MAX_CHANNEL / 2);
                let (tx, rx) = mpsc::channel(max_batch.saturating_mul(2));
                committer_task = Some(tokio::spawn(run_committer(
                    store.clone(),
                    rx,
                    max_batch,
                    max_delay,
                )));
                Some(tx)
            }
            Durability::NoSync | Durability::SyncEachEvent => None,
        };
        let (notify, _) = broadcast::channel(config.subscriber_capacity.clamp(1, 1 << 24));
        let (alive_tx, alive_rx) = mpsc::channel(1);
        let (shutdown, _) = watch::channel(false);
        let queue = config.queue_capacity.clamp(1, MAX_CHANNEL);
        let shared = Arc::new(Shared {
            core: Arc::new(Core {
                machine,
                actions: Box::new(actions),
                store,
                config,
                notify,
                committer: Mutex::new(committer),
            }),
            registry: Mutex::new(Registry {
                closed: false,
                machines: HashMap::new(),
            }),
            shutdown,
            alive_tx: Mutex::new(Some(alive_tx)),
            alive_rx: tokio::sync::Mutex::new(alive_rx),
            committer_task: Mutex::new(committer_task),
        });
        tracing::debug!(resumed = live.len(), "fsm group opened");
        // Register every resumed machine before any starts, so that an entry action sending
        // to another resumed machine finds it registered.
        let mut inboxes = Vec::with_capacity(live.len());
        {
            let mut registry = lock(&shared.registry);
            for (id, key, snapshot) in live {
                let (tx, rx) = mpsc::channel(queue);
                registry.machines.insert(id.clone(), tx);
                inboxes.push((id, key, snapshot, rx));
            }
        }
        for (id, key, snapshot, rx) in inboxes {
            spawn(&shared, id, key, snapshot, rx, true);
        }
        Ok(Group { shared })
    }

    /// Starts machine `id` in `initial`: persists it (`seq` 0), publishes
    /// [`Notification::Began`] and runs the initial state's entry action.
    ///
    /// Fails with [`Error::Exists`] if `id` is running or stored (even if final), and with
    /// [`Error::Closed`] once the group is closing. `close` waits for a `begin` in progress;
    /// if it started closing after the initial state was written, `begin` returns `Closed`
    /// and the machine resumes at the next `open`.
    pub async fn begin(&self, id: K, initial: M::State) -> Result<(), Error> {
        let core = &self.shared.core;
        let key = id.to_key_bytes();
        let snapshot = Snapshot {
            seq: 0,
            state: initial,
        };
        let bytes = encode(&snapshot, core.config.max_state_bytes)?;
        let (tx, rx) = mpsc::channel(core.config.queue_capacity.clamp(1, MAX_CHANNEL));
        // Held until the machine is spawned, so that `close` waits for this `begin` and the
        // initial write never lands after `close` returned.
        let Some(_alive) = lock(&self.shared.alive_tx).clone() else {
            return Err(Error::Closed);
        };
        {
            let mut registry = lock(&self.shared.registry);
            if registry.closed {
                return Err(Error::Closed);
            }
            if registry.machines.contains_key(&id) || core.store.get(&key)?.is_some() {
                return Err(Error::Exists(format!("{id:?}")));
            }
            // Reserve the id while the initial state is written.
            registry.machines.insert(id.clone(), tx);
        }
        let mut batch = Batch::new();
        batch.put(key.clone(), bytes);
        if let Err(e) = persist(core, batch).await {
            lock(&self.shared.registry).machines.remove(&id);
            return Err(e.into());
        }
        if core.notify.receiver_count() > 0 {
            let _ = core.notify.send(Notification::Began {
                id: id.clone(),
                snapshot: snapshot.clone(),
            });
        }
        if spawn(&self.shared, id, key, snapshot, rx, false) {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Sends `event` to machine `id` and waits until it is applied and persisted (not until
    /// its entry action has run). Returns the new snapshot.
    ///
    /// Errors: [`Error::Invalid`] (state unchanged), [`Error::Final`], [`Error::NotFound`],
    /// [`Error::Closed`], or a store/encoding error (state unchanged).
    pub async fn send(&self, id: &K, event: M::Event) -> Result<Snapshot<M::State>, Error> {
        self.enqueue(id, event).await?.await
    }

    /// Queues `event` for machine `id`, waiting only while its inbox is full, and returns a
    /// [`Receipt`] for the result. Events queued by one caller are applied in order; use this
    /// to pipeline many events.
    pub async fn enqueue(&self, id: &K, event: M::Event) -> Result<Receipt<M::State>, Error> {
        let tx = {
            let registry = lock(&self.shared.registry);
            if registry.closed {
                return Err(Error::Closed);
            }
            registry.machines.get(id).cloned()
        };
        let Some(tx) = tx else {
            return Err(self.absent(id)?);
        };
        let (reply, rx) = oneshot::channel();
        let cmd = Cmd {
            event,
            reply: Some(reply),
        };
        if tx.send(cmd).await.is_err() {
            // The machine stopped between the lookup and the send.
            return Err(self.absent(id)?);
        }
        Ok(Receipt { rx })
    }

    /// The error for an id that has no running machine.
    fn absent(&self, id: &K) -> Result<Error, Error> {
        if lock(&self.shared.registry).closed {
            return Ok(Error::Closed);
        }
        Ok(match self.snapshot(id)? {
            Some(s) if self.shared.core.machine.is_final(&s.state) => {
                Error::Final(format!("{id:?}"))
            }
            Some(_) => Error::Closed,
            None => Error::NotFound(format!("{id:?}")),
        })
    }

    /// The stored state of machine `id` (every event whose `send` returned is included).
    pub fn get(&self, id: &K) -> Result<Option<M::State>, Error> {
        Ok(self.snapshot(id)?.map(|s| s.state))
    }

    /// The stored snapshot (state and `seq`) of machine `id`.
    pub fn snapshot(&self, id: &K) -> Result<Option<Snapshot<M::State>>, Error> {
        let core = &self.shared.core;
        let key = id.to_key_bytes();
        match core.store.get(&key)? {
            None => Ok(None),
            Some(bytes) => decode(&key, &bytes, core.config.max_state_bytes).map(Some),
        }
    }

    /// Whether machine `id` exists (running or final).
    pub fn has(&self, id: &K) -> Result<bool, Error> {
        Ok(self.shared.core.store.get(&id.to_key_bytes())?.is_some())
    }

    /// Every stored machine (running or final) for which `filter` returns true, in key order.
    pub fn list(
        &self,
        mut filter: impl FnMut(&K, &M::State) -> bool,
    ) -> Result<Vec<(K, M::State)>, Error> {
        let max = self.shared.core.config.max_state_bytes;
        let mut out = Vec::new();
        let mut failure = None;
        self.shared.core.store.scan(&mut |key, value| {
            let Some(id) = K::from_key_bytes(key) else {
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

    /// The number of running (non-final) machines.
    pub fn live(&self) -> usize {
        lock(&self.shared.registry).machines.len()
    }

    /// A new subscriber; it hears of everything that happens after this call.
    pub fn subscribe(&self) -> Subscription<K, M::State, M::Event> {
        Subscription {
            rx: self.shared.core.notify.subscribe(),
        }
    }

    /// The machine description.
    pub fn machine(&self) -> &M {
        &self.shared.core.machine
    }

    /// Stops the group: new calls fail with [`Error::Closed`], running entry actions are
    /// cancelled at their next await point, queued events are not applied (their senders get
    /// [`Error::Closed`]). Returns when every machine task has ended. An event being written is
    /// finished first, so the store is consistent; reopening resumes every non-final machine.
    ///
    /// After `close` no task of the group holds the store any more; once the last `Group`
    /// handle is dropped too, the database handle is released (so the same process, or
    /// another one, can open it again).
    pub async fn close(&self) {
        {
            let mut registry = lock(&self.shared.registry);
            registry.closed = true;
            registry.machines.clear();
        }
        self.shared.shutdown.send_replace(true);
        lock(&self.shared.alive_tx).take();
        let mut alive = self.shared.alive_rx.lock().await;
        while alive.recv().await.is_some() {}
        // No machine task is left to write. Closing the committer's inbox lets it finish the
        // writes it was handed (e.g. by a `begin` racing with `close`) and end, dropping its
        // handle on the store, so the database is released when `close` returns.
        lock(&self.shared.core.committer).take();
        let committer = lock(&self.shared.committer_task).take();
        if let Some(task) = committer {
            let _ = task.await;
        }
    }
}

/// Starts the task of one machine; false if the group is closing.
fn spawn<M: Machine, K: Key>(
    shared: &Arc<Shared<M, K>>,
    id: K,
    key: Vec<u8>,
    snapshot: Snapshot<M::State>,
    rx: mpsc::Receiver<Cmd<M>>,
    resumed: bool,
) -> bool {
    let Some(alive) = lock(&shared.alive_tx).clone() else {
        lock(&shared.registry).machines.remove(&id);
        return false;
    };
    let task = Task {
        core: shared.core.clone(),
        group: Arc::downgrade(shared),
        id,
        key,
        snapshot,
        rx,
        shutdown: shared.shutdown.subscribe(),
        internal: VecDeque::new(),
        _alive: alive,
    };
    tokio::spawn(task.run(resumed));
    true
}

/// The outcome of one applied batch.
enum Flow {
    Enter,
    Idle,
    Finish,
}

/// One event's result, delivered after the batch is persisted.
struct Done<M: Machine, K: Key> {
    reply: Option<Reply<M::State>>,
    /// `Ok(Some(_))` when applied and someone waits for the snapshot, `Ok(None)` when applied
    /// and nobody does.
    result: Result<Option<Snapshot<M::State>>, Error>,
    note: Option<Note<M, K>>,
}

struct Task<M: Machine, K: Key> {
    core: Arc<Core<M, K>>,
    group: Weak<Shared<M, K>>,
    id: K,
    key: Vec<u8>,
    snapshot: Snapshot<M::State>,
    rx: mpsc::Receiver<Cmd<M>>,
    shutdown: watch::Receiver<bool>,
    /// Events triggered by entry actions, applied before the inbox.
    internal: VecDeque<M::Event>,
    _alive: mpsc::Sender<()>,
}

/// Resolves when the group is closed or dropped.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|closed| *closed).await;
}

impl<M: Machine, K: Key> Task<M, K> {
    async fn run(mut self, resumed: bool) {
        if self.core.machine.is_final(&self.snapshot.state) {
            self.finish();
            return;
        }
        let mut enter = true;
        let mut resumed = resumed;
        loop {
            if enter {
                if !self.enter(resumed).await {
                    return;
                }
                resumed = false;
            }
            let Some(first) = self.next_cmd().await else {
                return;
            };
            match self.apply(first).await {
                Flow::Enter => enter = true,
                Flow::Idle => enter = false,
                Flow::Finish => {
                    self.finish();
                    return;
                }
            }
        }
    }

    /// Runs the entry action of the current state; false if the group is closing.
    async fn enter(&mut self, resumed: bool) -> bool {
        let limit = self.core.config.max_triggers;
        let mut ctx = Context {
            id: self.id.clone(),
            resumed,
            triggered: Vec::new(),
            room: limit.saturating_sub(self.internal.len()),
            limit,
            group: self.group.clone(),
        };
        let action = AssertUnwindSafe(self.core.actions.on_entry(&mut ctx, &self.snapshot.state))
            .catch_unwind();
        tokio::select! {
            biased;
            () = stopped(&mut self.shutdown) => return false,
            result = action => {
                if result.is_err() {
                    tracing::error!(id = ?self.id, state = ?self.snapshot.state, "entry action panicked");
                }
            }
        }
        self.internal.extend(ctx.triggered);
        true
    }

    async fn next_cmd(&mut self) -> Option<Cmd<M>> {
        if let Some(event) = self.internal.pop_front() {
            return Some(Cmd { event, reply: None });
        }
        tokio::select! {
            biased;
            () = stopped(&mut self.shutdown) => None,
            cmd = self.rx.recv() => cmd,
        }
    }

    fn try_next_cmd(&mut self) -> Option<Cmd<M>> {
        if let Some(event) = self.internal.pop_front() {
            return Some(Cmd { event, reply: None });
        }
        self.rx.try_recv().ok()
    }

    /// Applies `first` and, while the events only record, more queued ones; persists the
    /// result in one write; then publishes and answers in order.
    async fn apply(&mut self, first: Cmd<M>) -> Flow {
        let core = self.core.clone();
        let subscribed = core.notify.receiver_count() > 0;
        let mut next: Option<Snapshot<M::State>> = None;
        let mut value = None;
        let mut effect = Effect::Record;
        let mut done: Vec<Done<M, K>> = Vec::new();
        let mut cmd = first;
        loop {
            let current = next.as_ref().unwrap_or(&self.snapshot);
            let Cmd { event, reply } = cmd;
            match step(&core.machine, current, &event) {
                Ok(step) => match encode(&step.snapshot, core.config.max_state_bytes) {
                    Ok(bytes) => {
                        value = Some(bytes);
                        effect = step.effect;
                        done.push(Done {
                            result: Ok(reply.is_some().then(|| step.snapshot.clone())),
                            reply,
                            note: subscribed.then(|| Notification::Applied {
                                id: self.id.clone(),
                                event,
                                snapshot: step.snapshot.clone(),
                            }),
                        });
                        next = Some(step.snapshot);
                    }
                    Err(e) => {
                        tracing::warn!(id = ?self.id, error = %e, "event not applied");
                        done.push(Done {
                            reply,
                            result: Err(e),
                            note: None,
                        });
                    }
                },
                Err(Rejection::Invalid(invalid)) => {
                    tracing::debug!(id = ?self.id, error = %invalid, "invalid event");
                    if reply.is_none() && !subscribed {
                        tracing::warn!(id = ?self.id, error = %invalid, "invalid triggered event");
                    }
                    done.push(Done {
                        reply,
                        result: Err(Error::Invalid(invalid.clone())),
                        note: subscribed.then(|| Notification::Invalid {
                            id: self.id.clone(),
                            event,
                            error: invalid,
                        }),
                    });
                }
                Err(Rejection::Final) => {
                    done.push(Done {
                        reply,
                        result: Err(Error::Final(format!("{:?}", self.id))),
                        note: None,
                    });
                    effect = Effect::Finish;
                }
            }
            if effect != Effect::Record || done.len() >= core.config.max_coalesce.max(1) {
                break;
            }
            match self.try_next_cmd() {
                Some(more) => cmd = more,
                None => break,
            }
        }

        if let Some(bytes) = value {
            let mut batch = Batch::new();
            batch.put(self.key.clone(), bytes);
            if let Err(e) = persist(&core, batch).await {
                tracing::error!(id = ?self.id, error = %e, "writing state failed; events not applied");
                // Senders hear of the failure; events triggered by an entry action have no
                // sender, so the entry action runs again (after a pause) to re-trigger them
                // instead of leaving the machine idle in a state whose work was dropped.
                let lost_triggered = done.iter().any(|d| d.reply.is_none() && d.result.is_ok());
                for d in &mut done {
                    if d.result.is_ok() {
                        d.result = Err(Error::Store(e.clone()));
                        d.note = None;
                    }
                }
                next = None;
                effect = Effect::Record;
                if lost_triggered {
                    tokio::time::sleep(STORE_RETRY_PAUSE).await;
                    effect = Effect::Enter;
                }
            }
        }
        if let Some(snapshot) = next {
            self.snapshot = snapshot;
        }
        for d in done {
            if let Some(note) = d.note {
                let _ = core.notify.send(note);
            }
            if let Some(reply) = d.reply {
                let _ = reply.send(d.result.and_then(|s| s.ok_or(Error::Closed)));
            }
        }
        match effect {
            Effect::Enter => Flow::Enter,
            Effect::Record => Flow::Idle,
            Effect::Finish => Flow::Finish,
        }
    }

    /// The machine is final: unregister it and refuse whatever is still queued.
    fn finish(&mut self) {
        if let Some(shared) = self.group.upgrade() {
            lock(&shared.registry).machines.remove(&self.id);
        }
        self.rx.close();
        for event in self.internal.drain(..) {
            tracing::warn!(id = ?self.id, ?event, "triggered event refused: machine is final");
        }
        while let Ok(cmd) = self.rx.try_recv() {
            if let Some(reply) = cmd.reply {
                let _ = reply.send(Err(Error::Final(format!("{:?}", self.id))));
            }
        }
    }
}

/// Writes `batch` as the group's durability mode demands.
async fn persist<M: Machine, K: Key>(core: &Core<M, K>, batch: Batch) -> Result<(), StoreError> {
    match core.config.durability {
        Durability::NoSync => core.store.write(&batch, false),
        Durability::SyncEachEvent => {
            let store = core.store.clone();
            tokio::task::spawn_blocking(move || store.write(&batch, true))
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
        }
        Durability::GroupCommit { .. } => {
            let stopped = || StoreError::Task("group committer stopped".to_owned());
            let Some(committer) = lock(&core.committer).clone() else {
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

/// Collects writes from all machines of a group into synced batches.
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
        let store = store.clone();
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
