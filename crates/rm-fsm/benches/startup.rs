//! Startup with many finished machines: what a node pays at start for the deals it keeps.
//!
//! A RocksDB database holds 100,000 finished machines and 10 running ones (a provider or
//! client after months of deals). Each sample reopens the database, opens the journal and
//! finds the machines to resume with [`Journal::unfinished`], as `rm-provider` and
//! `rm-client` do when they start; for comparison, reading every record
//! ([`Journal::list`]), which is what a startup that scanned all deals would pay. A third
//! case prunes them all (the hourly retention pass) from a fresh copy each sample.
//!
//! Run (release): `cargo bench --workspace --bench startup`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{Ev, Job, Jobs, open_db, rocks, table};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rm_fsm::{Config, Journal};

const FINISHED: u64 = 100_000;
const RUNNING: u64 = 10;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A database with `FINISHED` finished and `RUNNING` running machines.
fn fill(rt: &tokio::runtime::Runtime, path: &std::path::Path) {
    let db = open_db(path);
    rt.block_on(async {
        let journal: Journal<Jobs, u64> = Journal::open(table(), rocks(&db), Config::default());
        let mut tasks = Vec::new();
        for chunk in 0..100u64 {
            let journal = journal.clone();
            tasks.push(tokio::spawn(async move {
                for id in (chunk..FINISHED + RUNNING).step_by(100) {
                    journal.begin(id, Job::new()).await.unwrap();
                    journal.apply(&id, Ev::Start).await.unwrap();
                    journal.apply(&id, Ev::Progress(id + 1)).await.unwrap();
                    if id >= RUNNING {
                        journal.apply(&id, Ev::Finish).await.unwrap();
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        journal.close().await;
    });
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let filled = dir.path().join("filled");
    let started = Instant::now();
    fill(&rt, &filled);
    eprintln!(
        "filled {} machines ({} running) in {:.1?}",
        FINISHED + RUNNING,
        RUNNING,
        started.elapsed()
    );

    let mut g = c.benchmark_group("startup_100k_finished");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("open_and_find_unfinished", |b| {
        b.iter(|| {
            let db = open_db(&filled);
            let journal: Journal<Jobs, u64> = Journal::open(table(), rocks(&db), Config::default());
            let unfinished = journal.unfinished().unwrap();
            assert_eq!(unfinished.len() as u64, RUNNING);
            unfinished
        });
    });
    g.bench_function("open_and_read_every_record", |b| {
        b.iter(|| {
            let db = open_db(&filled);
            let journal: Journal<Jobs, u64> = Journal::open(table(), rocks(&db), Config::default());
            let all = journal.list(|_, _| true).unwrap();
            assert_eq!(all.len() as u64, FINISHED + RUNNING);
            all.len()
        });
    });
    g.bench_function("prune_all_finished", |b| {
        b.iter_batched(
            || {
                let copy = tempfile::tempdir().unwrap();
                copy_dir(&filled, copy.path());
                copy
            },
            |copy| {
                let db = open_db(copy.path());
                let journal: Journal<Jobs, u64> =
                    Journal::open(table(), rocks(&db), Config::default());
                let later = SystemTime::now() + Duration::from_secs(1);
                let pruned = rt
                    .block_on(journal.prune(later, usize::MAX, |n: &mut u64, _, _| *n += 1))
                    .unwrap();
                assert_eq!(pruned as u64, FINISHED);
                assert_eq!(journal.unfinished().unwrap().len() as u64, RUNNING);
                drop(journal);
                drop(db);
                copy
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
