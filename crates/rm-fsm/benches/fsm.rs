//! Events applied and persisted per second (RocksDB) through a `Journal`, for 1 machine
//! and for 1,000 machines, unsynced and group-committed. Criterion reports elements/s =
//! events/s.
//!
//! Run (release): `cargo bench --workspace --bench fsm`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Ev, Job, Jobs, rocks, table, temp_db};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rm_fsm::{Config, Durability, Journal};

const MANY: u64 = 1000;

struct Setup {
    rt: tokio::runtime::Runtime,
    group: Journal<Jobs, u64>,
    _dir: tempfile::TempDir,
}

fn setup(durability: Durability, machines: u64) -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (dir, db) = temp_db();
    let group = rt.block_on(async {
        let config = Config::default().with_durability(durability);
        let group = Journal::open(table(), rocks(&db), config);
        for id in 0..machines {
            group.begin(id, Job::new()).await.unwrap();
            group.apply(&id, Ev::Start).await.unwrap();
        }
        group
    });
    Setup {
        rt,
        group,
        _dir: dir,
    }
}

/// `iters` events to machine 0, one after the other.
async fn one_machine(group: Journal<Jobs, u64>, event: Ev, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(group.apply(&0, event.clone()).await.unwrap());
    }
    start.elapsed()
}

/// `iters` events spread over `MANY` machines, each sending its share one after the other.
async fn many_machines(group: Journal<Jobs, u64>, event: Ev, iters: u64) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(MANY as usize);
    for id in 0..MANY {
        let share = iters / MANY + u64::from(id < iters % MANY);
        let group = group.clone();
        let event = event.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                std::hint::black_box(group.apply(&id, event.clone()).await.unwrap());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("fsm");
    g.throughput(Throughput::Elements(1));

    let cases: [(&str, Durability, u64, Ev); 4] = [
        ("1_machine/unsynced", Durability::NoSync, 1, Ev::Tick),
        (
            "1_machine/group_commit",
            Durability::group_commit(),
            1,
            Ev::Tick,
        ),
        ("1000_machines/unsynced", Durability::NoSync, MANY, Ev::Tick),
        (
            "1000_machines/group_commit",
            Durability::group_commit(),
            MANY,
            Ev::Tick,
        ),
    ];
    for (name, durability, machines, event) in cases {
        let s = setup(durability, machines);
        if durability != Durability::NoSync {
            g.sample_size(10);
        } else {
            g.sample_size(30);
        }
        g.bench_function(name, |b| {
            b.to_async(&s.rt).iter_custom(|iters| {
                let group = s.group.clone();
                let event = event.clone();
                async move {
                    if machines == 1 {
                        one_machine(group, event, iters).await
                    } else {
                        many_machines(group, event, iters).await
                    }
                }
            });
        });
        s.rt.block_on(s.group.close());
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
