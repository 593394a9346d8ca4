//! The journal: begin, apply and record; durability modes; what a failing store does;
//! unfinished machines; subscriptions; closing.

mod common;

/// Named `rm_fsm` so `cargo test --workspace --all-targets -- rm_fsm::` selects these tests.
mod rm_fsm {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use crate::common::{Counting, Ev, Job, Jobs, St, table};
    use rm_fsm::{
        Batch, Config, Durability, Error, Journal, MemStore, Notification, RecvError, Snapshot,
        Store, StoreError, step,
    };

    fn journal(store: impl Store, config: Config) -> Journal<Jobs, u64> {
        Journal::open(table(), store, config)
    }

    fn running(seq: u64) -> Snapshot<Job> {
        let mut state = Job::new();
        state.status = St::Running;
        crate::common::mark(&mut state, &Ev::Start);
        Snapshot { seq, state }
    }

    #[tokio::test]
    async fn begin_apply_and_read_back() {
        let j = journal(MemStore::new(), Config::default());
        let s = j.begin(7, Job::new()).await.unwrap();
        assert_eq!(s.seq, 0);
        assert_eq!(j.apply(&7, Ev::Start).await.unwrap(), running(1));
        let s = j.apply(&7, Ev::Progress(3)).await.unwrap();
        assert_eq!((s.seq, s.state.progress), (2, 3));
        assert_eq!(j.snapshot(&7).unwrap(), Some(s.clone()));
        assert_eq!(j.get(&7).unwrap(), Some(s.state));
        assert!(j.has(&7).unwrap());
        assert!(!j.has(&8).unwrap());
        assert!(matches!(
            j.begin(7, Job::new()).await,
            Err(Error::Exists(_))
        ));
        assert!(matches!(
            j.apply(&8, Ev::Start).await,
            Err(Error::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn invalid_events_change_nothing_and_final_states_absorb_nothing() {
        let j = journal(MemStore::new(), Config::default());
        j.begin(1, Job::new()).await.unwrap();
        assert!(matches!(
            j.apply(&1, Ev::Pause).await,
            Err(Error::Invalid(_))
        ));
        j.apply(&1, Ev::Start).await.unwrap();
        assert!(matches!(
            j.apply(&1, Ev::Progress(0)).await,
            Err(Error::Invalid(_))
        ));
        assert_eq!(j.snapshot(&1).unwrap(), Some(running(1)));
        j.apply(&1, Ev::Finish).await.unwrap();
        assert!(matches!(j.apply(&1, Ev::Poke).await, Err(Error::Final(_))));
        let done = j.snapshot(&1).unwrap().unwrap();
        assert!(matches!(
            j.record(
                &1,
                &Ev::Poke,
                &Snapshot {
                    seq: done.seq + 1,
                    state: done.state.clone()
                }
            )
            .await,
            Err(Error::Final(_))
        ));
    }

    #[tokio::test]
    async fn prune_deletes_the_oldest_finished_machines_and_keeps_their_totals() {
        #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Totals {
            machines: u64,
            progress: u64,
        }
        let store = MemStore::new();
        let j = journal(store.clone(), Config::default());
        for id in 0..10u64 {
            j.begin(id, Job::new()).await.unwrap();
            j.apply(&id, Ev::Start).await.unwrap();
            j.apply(&id, Ev::Progress(id + 1)).await.unwrap();
            // Even ids finish; odd ones keep running.
            if id % 2 == 0 {
                j.apply(&id, Ev::Finish).await.unwrap();
            }
        }
        let fold = |t: &mut Totals, _: &u64, job: &Job| {
            t.machines += 1;
            t.progress += job.progress;
        };
        // Nothing ended an hour ago.
        let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
        assert_eq!(j.prune(an_hour_ago, usize::MAX, fold).await.unwrap(), 0);
        assert_eq!(j.totals::<Totals>().unwrap(), Totals::default());
        // Everything that ended until now, at most 3 at a time.
        let later = std::time::SystemTime::now() + Duration::from_secs(2);
        assert_eq!(j.prune(later, 3, fold).await.unwrap(), 3);
        assert_eq!(j.prune(later, usize::MAX, fold).await.unwrap(), 2);
        assert_eq!(j.prune(later, usize::MAX, fold).await.unwrap(), 0);
        assert_eq!(
            j.totals::<Totals>().unwrap(),
            Totals {
                machines: 5,
                progress: 1 + 3 + 5 + 7 + 9
            }
        );
        for id in 0..10u64 {
            assert_eq!(j.has(&id).unwrap(), id % 2 == 1, "machine {id}");
        }
        let running: Vec<u64> = j
            .unfinished()
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(running, vec![1, 3, 5, 7, 9]);
        // Nothing is left of the pruned machines but the totals.
        let mut keys = 0;
        store
            .scan(&mut |key, _| {
                keys += 1;
                assert!(key[0] == b'r' || key[0] == b'l' || key == b"t", "{key:?}");
                true
            })
            .unwrap();
        assert_eq!(keys, 5 + 5 + 1);
    }

    #[tokio::test]
    async fn record_persists_a_drivers_own_snapshot_and_refuses_stale_ones() {
        let j = journal(MemStore::new(), Config::default());
        let start = j.begin(1, Job::new()).await.unwrap();
        // A driver applies two events itself and persists only the second.
        let one = step(j.machine(), &start, &Ev::Start).unwrap();
        let two = step(j.machine(), &one, &Ev::Progress(5)).unwrap();
        let mut events = j.subscribe();
        j.publish(&1, &Ev::Start, &one);
        j.record(&1, &Ev::Progress(5), &two).await.unwrap();
        assert_eq!(j.snapshot(&1).unwrap(), Some(two.clone()));
        assert!(matches!(
            j.record(&1, &Ev::Start, &one).await,
            Err(Error::Stale {
                stored: 2,
                given: 1,
                ..
            })
        ));
        // Subscribers heard of both, in order; only the second was written.
        for expected in [1, 2] {
            let note = events.try_recv().unwrap().unwrap();
            assert_eq!(note.snapshot().seq, expected);
        }
    }

    #[tokio::test]
    async fn unfinished_lists_only_machines_that_are_not_final() {
        let j = journal(MemStore::new(), Config::default());
        for id in 0..5u64 {
            j.begin(id, Job::new()).await.unwrap();
        }
        for id in [1u64, 3] {
            j.apply(&id, Ev::Start).await.unwrap();
            j.apply(&id, Ev::Finish).await.unwrap();
        }
        j.apply(&4, Ev::Fail("x".into())).await.unwrap();
        let ids: Vec<u64> = j
            .unfinished()
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, vec![0, 2]);
        assert_eq!(j.list(|_, _| true).unwrap().len(), 5);
        assert_eq!(j.list(|_, s| s.status == St::Done).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn durability_modes_sync_as_they_say() {
        let store = Counting::new(MemStore::new());
        let j = journal(store.clone(), Config::default());
        j.begin(1, Job::new()).await.unwrap();
        j.apply(&1, Ev::Start).await.unwrap();
        assert_eq!((store.synced(), store.unsynced()), (0, 2));

        let store = Counting::new(MemStore::new());
        let j = journal(
            store.clone(),
            Config::default().with_durability(Durability::SyncEachEvent),
        );
        j.begin(1, Job::new()).await.unwrap();
        j.apply(&1, Ev::Start).await.unwrap();
        assert_eq!((store.synced(), store.unsynced()), (2, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_shares_fsyncs_between_machines() {
        let store = Counting::new(MemStore::new());
        let config = Config::default().with_durability(Durability::GroupCommit {
            max_batch: 1024,
            max_delay: Duration::from_millis(5),
        });
        let j = journal(store.clone(), config);
        let machines = 64u64;
        let mut tasks = Vec::new();
        for id in 0..machines {
            let j = j.clone();
            tasks.push(tokio::spawn(async move {
                j.begin(id, Job::new()).await.unwrap();
                j.apply(&id, Ev::Start).await.unwrap();
                for n in 1..=5 {
                    j.apply(&id, Ev::Progress(n)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let writes = machines * 7;
        let syncs = store.synced() as u64;
        assert!(syncs < writes, "{syncs} fsyncs for {writes} writes");
        assert_eq!(store.unsynced(), 0);
        for id in 0..machines {
            assert_eq!(j.snapshot(&id).unwrap().unwrap().state.progress, 15);
        }
        j.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_applies_to_one_machine_lose_nothing() {
        let j = journal(MemStore::new(), Config::default());
        j.begin(1, Job::new()).await.unwrap();
        j.apply(&1, Ev::Start).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let j = j.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    j.apply(&1, Ev::Progress(1)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let s = j.snapshot(&1).unwrap().unwrap();
        assert_eq!((s.seq, s.state.progress), (401, 400));
    }

    #[tokio::test]
    async fn a_failing_store_leaves_the_state_unchanged() {
        let store = Counting::new(MemStore::new());
        let j = journal(store.clone(), Config::default());
        j.begin(1, Job::new()).await.unwrap();
        store.fail.store(true, Ordering::SeqCst);
        assert!(matches!(
            j.apply(&1, Ev::Start).await,
            Err(Error::Store(StoreError::Db(_)))
        ));
        assert!(matches!(j.begin(2, Job::new()).await, Err(Error::Store(_))));
        store.fail.store(false, Ordering::SeqCst);
        assert_eq!(j.snapshot(&1).unwrap().unwrap().seq, 0);
        assert!(!j.has(&2).unwrap());
        j.apply(&1, Ev::Start).await.unwrap();
    }

    #[tokio::test]
    async fn corrupt_and_oversized_records_are_typed_errors() {
        let store = MemStore::new();
        let mut config = Config::default();
        config.max_state_bytes = 200;
        let j = journal(store.clone(), config);
        j.begin(1, Job::new()).await.unwrap();
        let mut batch = Batch::new();
        let mut key = vec![b'r'];
        key.extend(2u64.to_be_bytes());
        batch.put(key.clone(), b"\xff\xff".to_vec());
        store.write(&batch, false).unwrap();
        assert!(matches!(j.snapshot(&2), Err(Error::Decode { .. })));
        assert!(matches!(j.list(|_, _| true), Err(Error::Decode { .. })));
        // A state over the limit is not written.
        j.apply(&1, Ev::Start).await.unwrap();
        let big = Ev::Fail("x".repeat(300));
        assert!(matches!(j.apply(&1, big).await, Err(Error::Encode(_))));
        assert_eq!(j.snapshot(&1).unwrap().unwrap().seq, 1);
    }

    #[tokio::test]
    async fn subscribers_hear_everything_in_order_and_a_slow_one_is_told_it_lagged() {
        let mut config = Config::default();
        config.subscriber_capacity = 4;
        let j = journal(MemStore::new(), config);
        let mut events = j.subscribe();
        j.begin(1, Job::new()).await.unwrap();
        j.apply(&1, Ev::Start).await.unwrap();
        assert!(matches!(
            events.recv().await.unwrap(),
            Notification::Began { id: 1, .. }
        ));
        assert!(matches!(
            events.recv().await.unwrap(),
            Notification::Applied {
                id: 1,
                event: Ev::Start,
                ..
            }
        ));
        for n in 1..=10 {
            j.apply(&1, Ev::Progress(n)).await.unwrap();
        }
        assert!(matches!(events.recv().await, Err(RecvError::Lagged(6))));
        let next = events.recv().await.unwrap();
        assert_eq!(next.snapshot().state.progress, 1 + 2 + 3 + 4 + 5 + 6 + 7);
    }

    #[tokio::test]
    async fn a_closed_journal_writes_nothing() {
        let j = journal(
            MemStore::new(),
            Config::default().with_durability(Durability::group_commit()),
        );
        j.begin(1, Job::new()).await.unwrap();
        j.close().await;
        assert!(matches!(j.apply(&1, Ev::Start).await, Err(Error::Closed)));
        assert!(matches!(j.begin(2, Job::new()).await, Err(Error::Closed)));
        // Reading still works.
        assert_eq!(j.snapshot(&1).unwrap().unwrap().seq, 0);
    }

    #[cfg(feature = "rocksdb")]
    #[tokio::test]
    async fn a_closed_and_dropped_journal_releases_the_database() {
        for durability in [
            Durability::NoSync,
            Durability::SyncEachEvent,
            Durability::group_commit(),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let db = crate::common::open_db(dir.path());
            let config = Config::default().with_durability(durability);
            let j = journal(crate::common::rocks(&db), config);
            drop(db);
            for id in 0..4 {
                j.begin(id, Job::new()).await.unwrap();
                j.apply(&id, Ev::Start).await.unwrap();
            }
            j.close().await;
            drop(j);
            // RocksDB holds a file lock while any handle is alive: none may be left.
            let reopened = rm_store::Db::open(dir.path(), &["jobs"], &Default::default());
            assert!(reopened.is_ok(), "{durability:?}: {reopened:?}");
            let j = journal(crate::common::rocks(&reopened.unwrap()), Config::default());
            assert_eq!(j.unfinished().unwrap().len(), 4);
        }
    }
}
