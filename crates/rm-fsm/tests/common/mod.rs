//! The example machine shared by the tests: a job that starts, makes progress, pauses, and
//! ends done or failed. Plus an independent reference model, recording entry actions and
//! store wrappers that count or fail writes.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rm_fsm::{
    Actions, Batch, Context, Dest, EventKind, HasStatus, Rule, Source, Store, StoreError, Table,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum St {
    Idle,
    Running,
    Paused,
    Done,
    Failed,
}

impl rm_fsm::Status for St {
    fn name(&self) -> &'static str {
        match self {
            St::Idle => "Idle",
            St::Running => "Running",
            St::Paused => "Paused",
            St::Done => "Done",
            St::Failed => "Failed",
        }
    }
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

impl EventKind for Ev {
    fn kind(&self) -> &'static str {
        match self {
            Ev::Start => "Start",
            Ev::Progress(_) => "Progress",
            Ev::Tick => "Tick",
            Ev::Pause => "Pause",
            Ev::Resume => "Resume",
            Ev::Finish => "Finish",
            Ev::Fail(_) => "Fail",
            Ev::Poke => "Poke",
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
            Rule::new("Start", Source::one(Idle), Dest::To(Running)).action(act),
            Rule::new("Progress", Source::one(Running), Dest::JustRecord)
                .action(progress)
                .doc("progress += n; refuses 0"),
            Rule::new("Tick", Source::of([Running, Paused]), Dest::NoChange).action(act),
            Rule::new("Pause", Source::one(Running), Dest::To(Paused)).action(act),
            Rule::new("Resume", Source::one(Paused), Dest::To(Running)).action(act),
            Rule::new("Finish", Source::one(Running), Dest::To(Done)).action(act),
            Rule::new("Fail", Source::any(), Dest::To(Failed))
                .action(fail)
                .doc("note = reason"),
            Rule::new("Poke", Source::any(), Dest::JustRecord).action(act),
            Rule::new("Poke", Source::one(Paused), Dest::To(Running)).action(act),
        ],
        [Done, Failed],
    )
    .expect("the example table is valid")
}

/// The reference model, written independently of the table: the next job and whether its
/// entry action runs, or `None` if the event is refused (invalid, or the job is final).
pub fn model(job: &Job, ev: &Ev) -> Option<(Job, bool)> {
    use St::*;
    if job.is_final() {
        return None;
    }
    let mut next = job.clone();
    let (to, entry) = match (job.status, ev) {
        (Idle, Ev::Start) => (Running, true),
        (Running, Ev::Progress(n)) if *n > 0 => {
            next.progress = next.progress.saturating_add(*n);
            (Running, false)
        }
        (Running | Paused, Ev::Tick) => (job.status, true),
        (Running, Ev::Pause) => (Paused, true),
        (Paused, Ev::Resume) => (Running, true),
        (Running, Ev::Finish) => (Done, false),
        (_, Ev::Fail(reason)) => {
            next.note = reason.clone();
            (Failed, false)
        }
        (Paused, Ev::Poke) => (Running, true),
        (_, Ev::Poke) => (job.status, false),
        _ => return None,
    };
    mark(&mut next, ev);
    next.status = to;
    Some((next, entry))
}

/// One run of an entry action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entered {
    pub id: u64,
    pub status: St,
    pub progress: u64,
    pub resumed: bool,
}

type Hook = Arc<dyn Fn(&mut Context<Jobs, u64>, &Job) + Send + Sync>;

/// Entry actions for the tests: record every run, optionally wait at a gate, then run a hook.
#[derive(Clone, Default)]
pub struct Recorder {
    pub log: Arc<Mutex<Vec<Entered>>>,
    /// Machines whose entry actions wait for a permit of their semaphore.
    pub gates: Arc<Mutex<HashMap<u64, Arc<tokio::sync::Semaphore>>>>,
    pub hook: Option<Hook>,
}

impl Recorder {
    pub fn with_hook(hook: impl Fn(&mut Context<Jobs, u64>, &Job) + Send + Sync + 'static) -> Self {
        Recorder {
            hook: Some(Arc::new(hook)),
            ..Recorder::default()
        }
    }

    /// Entry actions of `id` block until [`Recorder::open_gate`] gives them permits.
    pub fn close_gate(&self, id: u64) -> Arc<tokio::sync::Semaphore> {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        self.gates.lock().unwrap().insert(id, gate.clone());
        gate
    }

    pub fn entries(&self) -> Vec<Entered> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded: 10 s) until `pred` holds for the recorded entries.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Entered]) -> bool) {
        for _ in 0..10_000 {
            if pred(&self.log.lock().unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!(
            "timed out waiting for {what}; entries: {:?}",
            self.entries()
        );
    }
}

impl Actions<Jobs, u64> for Recorder {
    async fn on_entry(&self, ctx: &mut Context<Jobs, u64>, job: &Job) {
        self.log.lock().unwrap().push(Entered {
            id: *ctx.id(),
            status: job.status,
            progress: job.progress,
            resumed: ctx.resumed(),
        });
        let gate = self.gates.lock().unwrap().get(ctx.id()).cloned();
        if let Some(gate) = gate
            && let Ok(permit) = gate.acquire().await
        {
            permit.forget();
        }
        if let Some(hook) = &self.hook {
            hook(ctx, job);
        }
    }
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
}

/// A fresh RocksDB database with column family `jobs` in a temporary directory.
pub fn temp_db() -> (tempfile::TempDir, rm_store::Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    (dir, db)
}

/// The RocksDB database at `path` with keyspace `jobs`.
pub fn open_db(path: &std::path::Path) -> rm_store::Db {
    rm_store::Db::open(path, &["jobs"], &rm_store::Options::default()).unwrap()
}

pub fn rocks(db: &rm_store::Db) -> rm_store::Keyspace {
    db.keyspace("jobs").unwrap()
}
