//! The example machine shared by the tests: a job that starts, makes progress, pauses, and
//! ends done or failed. Plus an independent reference model and a store wrapper that
//! counts or fails writes.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rm_fsm::{Batch, Dest, HasStatus, Rule, Source, Store, StoreError, Table};
use serde::{Deserialize, Serialize};

rm_fsm::named_enum! {
    /// A job's status.
    pub enum St: Status { Idle, Running, Paused, Done, Failed }
}

rm_fsm::named_enum! {
    /// A job event's kind.
    pub enum K: Kind { Start, Progress, Tick, Pause, Resume, Finish, Fail, Poke }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub status: St,
    pub progress: u64,
    /// A hash of every applied event, so two different histories give different states.
    pub trail: u64,
    pub note: String,
}

impl Job {
    pub fn new() -> Self {
        Job {
            status: St::Idle,
            progress: 0,
            trail: 0,
            note: String::new(),
        }
    }

    pub fn is_final(&self) -> bool {
        matches!(self.status, St::Done | St::Failed)
    }
}

impl HasStatus for Job {
    type Status = St;

    fn status(&self) -> St {
        self.status
    }

    fn set_status(&mut self, status: St) {
        self.status = status;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Start,
    Progress(u64),
    Tick,
    Pause,
    Resume,
    Finish,
    Fail(String),
    Poke,
}

impl rm_fsm::Event for Ev {
    type Kind = K;
    fn kind(&self) -> K {
        match self {
            Ev::Start => K::Start,
            Ev::Progress(_) => K::Progress,
            Ev::Tick => K::Tick,
            Ev::Pause => K::Pause,
            Ev::Resume => K::Resume,
            Ev::Finish => K::Finish,
            Ev::Fail(_) => K::Fail,
            Ev::Poke => K::Poke,
        }
    }
}

fn code(ev: &Ev) -> u64 {
    match ev {
        Ev::Start => 1,
        Ev::Progress(n) => 2 ^ n.wrapping_mul(16),
        Ev::Tick => 3,
        Ev::Pause => 4,
        Ev::Resume => 5,
        Ev::Finish => 6,
        Ev::Fail(m) => 7 ^ (m.len() as u64).wrapping_mul(16),
        Ev::Poke => 8,
    }
}

pub fn mark(job: &mut Job, ev: &Ev) {
    job.trail = job.trail.wrapping_mul(1_000_003) ^ code(ev);
}

fn act(job: &mut Job, ev: &Ev) -> Result<(), String> {
    mark(job, ev);
    Ok(())
}

fn progress(job: &mut Job, ev: &Ev) -> Result<(), String> {
    let Ev::Progress(n) = ev else {
        return Err("not a Progress event".into());
    };
    if *n == 0 {
        return Err("zero progress".into());
    }
    job.progress = job.progress.saturating_add(*n);
    mark(job, ev);
    Ok(())
}

fn fail(job: &mut Job, ev: &Ev) -> Result<(), String> {
    let Ev::Fail(reason) = ev else {
        return Err("not a Fail event".into());
    };
    job.note = reason.clone();
    mark(job, ev);
    Ok(())
}

pub type Jobs = Table<Job, Ev>;

pub fn table() -> Jobs {
    use St::*;
    Table::new(
        vec![
            Rule::new(K::Start, Source::one(Idle), Dest::To(Running)).action(act),
            Rule::new(K::Progress, Source::one(Running), Dest::Stay)
                .action(progress)
                .doc("progress += n; refuses 0"),
            Rule::new(K::Tick, Source::of([Running, Paused]), Dest::Stay).action(act),
            Rule::new(K::Pause, Source::one(Running), Dest::To(Paused)).action(act),
            Rule::new(K::Resume, Source::one(Paused), Dest::To(Running)).action(act),
            Rule::new(K::Finish, Source::one(Running), Dest::To(Done)).action(act),
            Rule::new(K::Fail, Source::any(), Dest::To(Failed))
                .action(fail)
                .doc("note = reason"),
            Rule::new(K::Poke, Source::any(), Dest::Stay).action(act),
            Rule::new(K::Poke, Source::one(Paused), Dest::To(Running)).action(act),
        ],
        [Done, Failed],
    )
    .expect("the example table is valid")
}

/// The reference model, written independently of the table: the next job, or `None` if
/// the event is refused (invalid, or the job is final).
pub fn model(job: &Job, ev: &Ev) -> Option<Job> {
    use St::*;
    if job.is_final() {
        return None;
    }
    let mut next = job.clone();
    let to = match (job.status, ev) {
        (Idle, Ev::Start) => Running,
        (Running, Ev::Progress(n)) if *n > 0 => {
            next.progress = next.progress.saturating_add(*n);
            Running
        }
        (Running | Paused, Ev::Tick) => job.status,
        (Running, Ev::Pause) => Paused,
        (Paused, Ev::Resume) => Running,
        (Running, Ev::Finish) => Done,
        (_, Ev::Fail(reason)) => {
            next.note = reason.clone();
            Failed
        }
        (Paused, Ev::Poke) => Running,
        (_, Ev::Poke) => job.status,
        _ => return None,
    };
    mark(&mut next, ev);
    next.status = to;
    Some(next)
}

/// Waits (bounded: 10 s) until `cond` is true.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A store wrapper that counts writes and can be told to fail.
#[derive(Clone)]
pub struct Counting<S> {
    pub inner: S,
    pub synced: Arc<AtomicUsize>,
    pub unsynced: Arc<AtomicUsize>,
    pub fail: Arc<AtomicBool>,
}

impl<S: Store> Counting<S> {
    pub fn new(inner: S) -> Self {
        Counting {
            inner,
            synced: Arc::default(),
            unsynced: Arc::default(),
            fail: Arc::default(),
        }
    }

    pub fn synced(&self) -> usize {
        self.synced.load(Ordering::SeqCst)
    }

    pub fn unsynced(&self) -> usize {
        self.unsynced.load(Ordering::SeqCst)
    }
}

impl<S: Store> Store for Counting<S> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn write(&self, batch: &Batch, sync: bool) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Db(rm_store::Error::Backend(
                "injected failure".into(),
            )));
        }
        if sync {
            self.synced.fetch_add(1, Ordering::SeqCst);
        } else {
            self.unsynced.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.write(batch, sync)
    }

    fn scan(&self, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        self.inner.scan(visit)
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.scan_prefix(prefix, visit)
    }
}

/// The RocksDB database at `path` with keyspace `jobs`.
#[cfg(feature = "rocksdb")]
pub fn open_db(path: &std::path::Path) -> rm_store::Db {
    rm_store::Db::open(path, &["jobs"], &rm_store::Options::default()).unwrap()
}

/// A fresh RocksDB database with keyspace `jobs` in a temporary directory.
#[cfg(feature = "rocksdb")]
pub fn temp_db() -> (tempfile::TempDir, rm_store::Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    (dir, db)
}

pub fn rocks(db: &rm_store::Db) -> rm_store::Keyspace {
    db.keyspace("jobs").unwrap()
}
