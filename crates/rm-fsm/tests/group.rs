//! The engine: a group of persistent machines (one test per rule of the issue).

mod common;

/// Named `rm_fsm` so `cargo test --workspace --all-targets -- rm_fsm::` selects these tests.
mod rm_fsm {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::common::{
        Counting, Entered, Ev, Job, Jobs, Recorder, St, eventually, model, rocks, table, temp_db,
    };
    use rm_fsm::{
        Batch, Config, Durability, Error, Group, Invalid, MemStore, Notification, RecvError,
        Snapshot, Store, StoreError,
    };

    type Note = Notification<u64, Job, Ev>;

    async fn open(actions: Recorder, store: impl Store, config: Config) -> Group<Jobs, u64> {
        Group::open(table(), actions, store, config).await.unwrap()
    }

    #[tokio::test]
    async fn begin_persists_the_initial_state_and_runs_its_entry_action() {
        let rec = Recorder::default();
        let group = open(rec.clone(), MemStore::new(), Config::default()).await;
        let mut sub = group.subscribe();
        group.begin(1, Job::new()).await.unwrap();
        assert_eq!(
            group.snapshot(&1).unwrap(),
            Some(Snapshot {
                seq: 0,
                state: Job::new()
            })
        );
        assert_eq!(
            sub.recv().await.unwrap(),
            Notification::Began {
                id: 1,
                snapshot: Snapshot {
                    seq: 0,
                    state: Job::new()
                }
            }
        );
        rec.wait_for("entry of Idle", |e| !e.is_empty()).await;
        assert_eq!(
            rec.entries(),
            vec![Entered {
                id: 1,
                status: St::Idle,
                progress: 0,
                resumed: false
            }]
        );
        assert_eq!(group.live(), 1);
    }

    #[tokio::test]
    async fn begin_of_an_existing_id_fails() {
        let store = MemStore::new();
        let group = open(Recorder::default(), store.clone(), Config::default()).await;
        group.begin(1, Job::new()).await.unwrap();
        assert_eq!(
            group.begin(1, Job::new()).await,
            Err(Error::Exists("1".into()))
        );
        // Also once final, and after reopening.
        group.send(&1, Ev::Fail("stop".into())).await.unwrap();
        assert!(matches!(
            group.begin(1, Job::new()).await,
            Err(Error::Exists(_))
        ));
        group.close().await;
        let group = open(Recorder::default(), store, Config::default()).await;
        assert!(matches!(
            group.begin(1, Job::new()).await,
            Err(Error::Exists(_))
        ));
        assert_eq!(group.get(&1).unwrap().unwrap().status, St::Failed);
    }

    #[tokio::test]
    async fn events_for_unknown_ids_are_not_found() {
        let group = open(Recorder::default(), MemStore::new(), Config::default()).await;
        assert_eq!(
            group.send(&9, Ev::Start).await,
            Err(Error::NotFound("9".into()))
        );
        // Nothing was created for it (go-statemachine would have stored a zero state).
        assert!(!group.has(&9).unwrap());
    }

    #[tokio::test]
    async fn events_of_one_machine_apply_in_order() {
        let mut config = Config::default();
        config.subscriber_capacity = 1000;
        let group = open(Recorder::default(), MemStore::new(), config).await;
        let mut sub = group.subscribe();
        group.begin(1, Job::new()).await.unwrap();
        group.send(&1, Ev::Start).await.unwrap();
        let mut receipts = Vec::new();
        for n in 1..=200u64 {
            receipts.push(group.enqueue(&1, Ev::Progress(n)).await.unwrap());
        }
        let mut job = model(&Job::new(), &Ev::Start).unwrap().0;
        for (i, receipt) in receipts.into_iter().enumerate() {
            let n = i as u64 + 1;
            job = model(&job, &Ev::Progress(n)).unwrap().0;
            let snapshot = receipt.await.unwrap();
            assert_eq!(snapshot.seq, n + 1);
            assert_eq!(snapshot.state, job);
        }
        assert_eq!(job.progress, 200 * 201 / 2);
        assert_eq!(group.get(&1).unwrap(), Some(job));
        // Subscribers saw Began, Start, then the 200 events in order.
        let mut seqs = Vec::new();
        for _ in 0..202 {
            match sub.recv().await.unwrap() {
                Notification::Began { snapshot, .. } | Notification::Applied { snapshot, .. } => {
                    seqs.push(snapshot.seq)
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seqs, (0..=201).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn machines_run_concurrently() {
        let rec = Recorder::default();
        let gate = rec.close_gate(1);
        let group = open(rec.clone(), MemStore::new(), Config::default()).await;
        group.begin(1, Job::new()).await.unwrap();
        rec.wait_for("machine 1 blocked in its entry action", |e| e.len() == 1)
            .await;
        // Machine 1 is stuck in its entry action; machine 2 is not held up by it.
        group.begin(2, Job::new()).await.unwrap();
        group.send(&2, Ev::Start).await.unwrap();
        group.send(&2, Ev::Finish).await.unwrap();
        assert_eq!(group.get(&2).unwrap().unwrap().status, St::Done);
        // Machine 1's event waits until its entry action is done.
        let pending = group.enqueue(&1, Ev::Start).await.unwrap();
        assert_eq!(group.get(&1).unwrap().unwrap().status, St::Idle);
        gate.add_permits(1);
        assert_eq!(pending.await.unwrap().state.status, St::Running);
    }

    #[tokio::test]
    async fn inboxes_are_bounded_and_senders_wait() {
        let rec = Recorder::default();
        let gate = rec.close_gate(1);
        let mut config = Config::default();
        config.queue_capacity = 1;
        let group = open(rec.clone(), MemStore::new(), config).await;
        group.begin(1, Job::new()).await.unwrap();
        rec.wait_for("entry of Idle", |e| e.len() == 1).await;
        // The machine is busy: one event fits in its inbox, the next sender has to wait.
        let first = group.enqueue(&1, Ev::Start).await.unwrap();
        let second = group.enqueue(&1, Ev::Tick);
        tokio::pin!(second);
        assert!(futures::poll!(&mut second).is_pending());
        assert!(futures::poll!(&mut second).is_pending());
        gate.add_permits(100);
        let second = second.await.unwrap();
        assert_eq!(first.await.unwrap().seq, 1);
        assert_eq!(second.await.unwrap().seq, 2);
    }

    #[tokio::test]
    async fn invalid_events_change_nothing_and_are_reported_to_sender_and_subscribers() {
        let group = open(Recorder::default(), MemStore::new(), Config::default()).await;
        group.begin(1, Job::new()).await.unwrap();
        let mut sub = group.subscribe();
        let before = group.snapshot(&1).unwrap();
        assert_eq!(
            group.send(&1, Ev::Pause).await,
            Err(Error::Invalid(Invalid::new(
                "Pause",
                "Idle",
                "no transition"
            )))
        );
        assert_eq!(group.snapshot(&1).unwrap(), before);
        group.send(&1, Ev::Start).await.unwrap();
        let refused = group.send(&1, Ev::Progress(0)).await.unwrap_err();
        assert_eq!(
            refused,
            Error::Invalid(Invalid::new("Progress", "Running", "zero progress"))
        );
        assert_eq!(group.snapshot(&1).unwrap().unwrap().seq, 1);
        let notes: Vec<Note> = vec![
            sub.recv().await.unwrap(),
            sub.recv().await.unwrap(),
            sub.recv().await.unwrap(),
        ];
        assert_eq!(
            notes[0],
            Notification::Invalid {
                id: 1,
                event: Ev::Pause,
                error: Invalid::new("Pause", "Idle", "no transition")
            }
        );
        assert!(matches!(
            notes[1],
            Notification::Applied {
                event: Ev::Start,
                ..
            }
        ));
        assert!(
            matches!(&notes[2], Notification::Invalid { event: Ev::Progress(0), error, .. } if error.reason == "zero progress")
        );
    }

    #[tokio::test]
    async fn final_machines_absorb_nothing_and_stop() {
        let rec = Recorder::default();
        let gate = rec.close_gate(1);
        let group = open(rec.clone(), MemStore::new(), Config::default()).await;
        group.begin(1, Job::new()).await.unwrap();
        rec.wait_for("entry of Idle", |e| e.len() == 1).await;
        // Queue: Start, Finish (final), then two more that must be refused as Final.
        let start = group.enqueue(&1, Ev::Start).await.unwrap();
        gate.add_permits(100);
        start.await.unwrap();
        let finish = group.enqueue(&1, Ev::Finish).await.unwrap();
        let late1 = group.enqueue(&1, Ev::Fail("late".into())).await;
        let late2 = group.enqueue(&1, Ev::Poke).await;
        assert_eq!(finish.await.unwrap().state.status, St::Done);
        for late in [late1, late2] {
            let result = match late {
                Ok(receipt) => receipt.await,
                Err(e) => Err(e),
            };
            assert_eq!(result, Err(Error::Final("1".into())));
        }
        assert_eq!(
            group.send(&1, Ev::Poke).await,
            Err(Error::Final("1".into()))
        );
        eventually("machine 1 stopped", || group.live() == 0).await;
        let stored = group.snapshot(&1).unwrap().unwrap();
        assert_eq!((stored.seq, stored.state.status), (2, St::Done));
        // No entry action ran for the final state.
        assert!(rec.entries().iter().all(|e| e.status != St::Done));
    }

    async fn entry_sees_persisted_state(durability: Durability) {
        let store = Counting::new(MemStore::new());
        let mismatches = Arc::new(AtomicUsize::new(0));
        let checked = Arc::new(AtomicUsize::new(0));
        let (m, c) = (mismatches.clone(), checked.clone());
        let rec = Recorder::with_hook(move |ctx, job| {
            let stored = ctx.group().unwrap().get(ctx.id()).unwrap();
            if stored.as_ref() != Some(job) {
                m.fetch_add(1, Ordering::SeqCst);
            }
            c.fetch_add(1, Ordering::SeqCst);
        });
        let group = open(
            rec.clone(),
            store.clone(),
            Config::default().with_durability(durability),
        )
        .await;
        group.begin(1, Job::new()).await.unwrap();
        for ev in [Ev::Start, Ev::Tick, Ev::Pause, Ev::Tick, Ev::Resume] {
            group.send(&1, ev).await.unwrap();
        }
        rec.wait_for("six entry actions", |e| e.len() == 6).await;
        eventually("hooks ran", || checked.load(Ordering::SeqCst) == 6).await;
        assert_eq!(mismatches.load(Ordering::SeqCst), 0, "{durability:?}");
        match durability {
            Durability::NoSync => assert_eq!((store.synced(), store.unsynced()), (0, 6)),
            _ => assert_eq!((store.synced(), store.unsynced()), (6, 0)),
        }
    }

    #[tokio::test]
    async fn entry_actions_run_after_the_event_is_persisted_in_every_mode() {
        entry_sees_persisted_state(Durability::NoSync).await;
        entry_sees_persisted_state(Durability::SyncEachEvent).await;
        entry_sees_persisted_state(Durability::group_commit()).await;
        entry_sees_persisted_state(Durability::GroupCommit {
            max_batch: 4,
            max_delay: Duration::from_millis(1),
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_commit_batches_writes_of_concurrent_machines_into_one_sync() {
        const MACHINES: u64 = 8;
        const EVENTS: usize = 20;
        let (_dir, db) = temp_db();
        let store = Counting::new(rocks(&db));
        // A batch is written when all 8 machines have a write waiting (or after 30 s), so
        // every sync carries exactly one write of each machine.
        let config = Config::default().with_durability(Durability::GroupCommit {
            max_batch: MACHINES as usize,
            max_delay: Duration::from_secs(30),
        });
        let group = open(Recorder::default(), store.clone(), config.clone()).await;
        let mut tasks = Vec::new();
        for id in 0..MACHINES {
            let group = group.clone();
            tasks.push(tokio::spawn(async move {
                group.begin(id, Job::new()).await.unwrap();
                group.send(&id, Ev::Start).await.unwrap();
                for _ in 1..EVENTS {
                    group.send(&id, Ev::Poke).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(store.unsynced(), 0);
        assert_eq!(store.synced(), EVENTS + 1, "one sync per round of 8 writes");
        group.close().await;
        let group = open(Recorder::default(), rocks(&db), config).await;
        let mut expected = model(&Job::new(), &Ev::Start).unwrap().0;
        for _ in 1..EVENTS {
            expected = model(&expected, &Ev::Poke).unwrap().0;
        }
        for id in 0..MACHINES {
            let s = group.snapshot(&id).unwrap().unwrap();
            assert_eq!((s.seq, &s.state), (EVENTS as u64, &expected));
        }
    }

    #[tokio::test]
    async fn record_only_events_queued_together_share_one_write() {
        let rec = Recorder::default();
        let gate = rec.close_gate(1);
        gate.add_permits(1); // Idle passes; the entry action of Running will wait.
        let store = Counting::new(MemStore::new());
        let group = open(rec.clone(), store.clone(), Config::default()).await;
        group.begin(1, Job::new()).await.unwrap();
        group.send(&1, Ev::Start).await.unwrap();
        rec.wait_for("entry of Running", |e| e.len() == 2).await;
        let writes = store.unsynced();
        // While the entry action runs, ten record-only events queue up.
        let mut receipts = Vec::new();
        for n in 1..=10 {
            receipts.push(group.enqueue(&1, Ev::Progress(n)).await.unwrap());
        }
        gate.add_permits(100);
        let mut seqs = Vec::new();
        for r in receipts {
            seqs.push(r.await.unwrap().seq);
        }
        assert_eq!(seqs, (2..=11).collect::<Vec<_>>());
        assert_eq!(store.unsynced() - writes, 1, "coalesced into one write");
        assert_eq!(group.get(&1).unwrap().unwrap().progress, 55);
    }

    #[tokio::test]
    async fn triggered_events_apply_before_queued_events() {
        let rec = Recorder::with_hook(|ctx, job| {
            if job.status == St::Running && job.progress >= 100 {
                ctx.trigger(Ev::Finish).unwrap();
            }
        });
        let gate = rec.close_gate(1);
        gate.add_permits(2); // Idle, then Running(0).
        let group = open(rec.clone(), MemStore::new(), Config::default()).await;
        let mut sub = group.subscribe();
        group.begin(1, Job::new()).await.unwrap();
        group.send(&1, Ev::Start).await.unwrap();
        group.send(&1, Ev::Progress(100)).await.unwrap();
        group.send(&1, Ev::Tick).await.unwrap();
        rec.wait_for("entry after Tick", |e| e.len() == 3).await;
        // The entry action after Tick is blocked; an outside event queues meanwhile.
        let outside = group.enqueue(&1, Ev::Progress(5)).await.unwrap();
        gate.add_permits(1);
        assert_eq!(outside.await, Err(Error::Final("1".into())));
        let mut kinds = Vec::new();
        while let Ok(Some(note)) = sub.try_recv() {
            if let Notification::Applied { event, .. } = note {
                kinds.push(event);
            }
        }
        assert_eq!(
            kinds,
            vec![Ev::Start, Ev::Progress(100), Ev::Tick, Ev::Finish]
        );
        assert_eq!(group.get(&1).unwrap().unwrap().status, St::Done);
    }

    #[tokio::test]
    async fn entry_actions_may_trigger_a_bounded_number_of_events() {
        let results = Arc::new(Mutex::new(Vec::new()));
        let r = results.clone();
        let rec = Recorder::with_hook(move |ctx, job| {
            if job.status == St::Running {
                for _ in 0..3 {
                    r.lock().unwrap().push(ctx.trigger(Ev::Poke));
                }
            }
        });
        let mut config = Config::default();
        config.max_triggers = 2;
        let group = open(rec.clone(), MemStore::new(), config).await;
        group.begin(1, Job::new()).await.unwrap();
        group.send(&1, Ev::Start).await.unwrap();
        eventually("two pokes applied", || {
            group.snapshot(&1).unwrap().unwrap().seq == 3
        })
        .await;
        assert_eq!(
            *results.lock().unwrap(),
            vec![Ok(()), Ok(()), Err(Error::TriggerLimit(2))]
        );
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_how_much_it_missed_and_never_blocks_the_engine() {
        let mut config = Config::default();
        config.subscriber_capacity = 4;
        let group = open(Recorder::default(), MemStore::new(), config).await;
        let mut slow = group.subscribe();
        group.begin(1, Job::new()).await.unwrap();
        group.send(&1, Ev::Start).await.unwrap();
        for _ in 0..18 {
            group.send(&1, Ev::Poke).await.unwrap();
        }
        // 20 notifications were published; the slow subscriber holds the last 4.
        assert_eq!(slow.recv().await, Err(RecvError::Lagged(16)));
        let mut seqs = Vec::new();
        while let Ok(Some(Notification::Applied { snapshot, .. })) = slow.try_recv() {
            seqs.push(snapshot.seq);
        }
        assert_eq!(seqs, vec![16, 17, 18, 19]);
        group.close().await;
        drop(group);
        assert_eq!(slow.recv().await, Err(RecvError::Closed));
    }

    #[tokio::test]
    async fn opening_a_group_resumes_every_machine_that_is_not_final() {
        let (_dir, db) = temp_db();
        let group = open(Recorder::default(), rocks(&db), Config::default()).await;
        for id in 1..=3 {
            group.begin(id, Job::new()).await.unwrap();
            group.send(&id, Ev::Start).await.unwrap();
        }
        group.send(&2, Ev::Pause).await.unwrap();
        group.send(&3, Ev::Fail("gone".into())).await.unwrap();
        group.close().await;
        drop(group);

        let rec = Recorder::default();
        let group = open(rec.clone(), rocks(&db), Config::default()).await;
        rec.wait_for("two resumed machines", |e| e.len() == 2).await;
        let mut entries = rec.entries();
        entries.sort_by_key(|e| e.id);
        assert_eq!(
            entries,
            vec![
                Entered {
                    id: 1,
                    status: St::Running,
                    progress: 0,
                    resumed: true
                },
                Entered {
                    id: 2,
                    status: St::Paused,
                    progress: 0,
                    resumed: true
                },
            ]
        );
        assert_eq!(group.live(), 2);
        // They continue where they stopped.
        group.send(&2, Ev::Resume).await.unwrap();
        group.send(&1, Ev::Finish).await.unwrap();
        assert_eq!(
            group.send(&3, Ev::Poke).await,
            Err(Error::Final("3".into()))
        );
        rec.wait_for("entry after Resume", |e| e.len() == 3).await;
        assert!(!rec.entries()[2].resumed);
    }

    #[tokio::test]
    async fn a_resumed_machine_finishes_its_work() {
        let (_dir, db) = temp_db();
        let group = open(Recorder::default(), rocks(&db), Config::default()).await;
        group.begin(1, Job::new()).await.unwrap();
        group.send(&1, Ev::Start).await.unwrap();
        group.send(&1, Ev::Progress(150)).await.unwrap();
        group.close().await;
        drop(group);
        // After the "crash", the entry action of Running sees enough progress and finishes.
        let rec = Recorder::with_hook(|ctx, job| {
            if job.status == St::Running && job.progress >= 100 {
                ctx.trigger(Ev::Finish).unwrap();
            }
        });
        let group = open(rec, rocks(&db), Config::default()).await;
        eventually("job done", || {
            group.get(&1).unwrap().unwrap().status == St::Done
        })
        .await;
        eventually("no machine left", || group.live() == 0).await;
    }

    #[tokio::test]
    async fn get_has_and_list_show_stored_machines() {
        let group = open(Recorder::default(), MemStore::new(), Config::default()).await;
        for id in (1..=5).rev() {
            group.begin(id, Job::new()).await.unwrap();
        }
        for id in [2, 4] {
            group
                .send(&id, Ev::Fail(format!("job {id}")))
                .await
                .unwrap();
        }
        assert!(group.has(&3).unwrap());
        assert!(!group.has(&6).unwrap());
        assert_eq!(group.get(&6).unwrap(), None);
        assert_eq!(group.get(&4).unwrap().unwrap().note, "job 4");
        let failed: Vec<u64> = group
            .list(|_, job| job.status == St::Failed)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(failed, vec![2, 4]);
        let all: Vec<u64> = group
            .list(|_, _| true)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(all, vec![1, 2, 3, 4, 5], "key order");
        let odd = group.list(|id, _| id % 2 == 1).unwrap();
        assert_eq!(odd.len(), 3);
    }

    #[tokio::test]
    async fn undecodable_records_fail_open_instead_of_panicking() {
        let cases: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (5u64.to_be_bytes().to_vec(), b"not cbor".to_vec()),
            (5u64.to_be_bytes().to_vec(), vec![0x82, 0x00]), // truncated [seq, state]
            (vec![1, 2, 3], vec![0x80]),                     // not a u64 id
        ];
        for (key, value) in cases {
            let store = MemStore::new();
            let mut batch = Batch::new();
            batch.put(key, value);
            store.write(&batch, false).unwrap();
            let opened = Group::open(table(), Recorder::default(), store, Config::default()).await;
            assert!(matches!(opened, Err(Error::Decode { .. })), "{opened:?}");
        }
        // A record over the size limit is refused before decoding.
        let store = MemStore::new();
        let group = open(Recorder::default(), store.clone(), Config::default()).await;
        group.begin(1, Job::new()).await.unwrap();
        group.close().await;
        let mut tiny = Config::default();
        tiny.max_state_bytes = 4;
        let opened = Group::open(table(), Recorder::default(), store, tiny).await;
        assert!(
            matches!(&opened, Err(Error::Decode { reason, .. }) if reason.contains("limit")),
            "{opened:?}"
        );
    }

    #[tokio::test]
    async fn a_state_over_the_size_limit_is_refused_and_the_state_kept() {
        let mut config = Config::default();
        config.max_state_bytes = 64;
        let group = open(Recorder::default(), MemStore::new(), config).await;
        group.begin(1, Job::new()).await.unwrap();
        let result = group.send(&1, Ev::Fail("x".repeat(100))).await;
        assert!(matches!(result, Err(Error::Encode(_))), "{result:?}");
        assert_eq!(group.snapshot(&1).unwrap().unwrap().seq, 0);
        group.send(&1, Ev::Start).await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_write_applies_nothing() {
        let store = Counting::new(MemStore::new());
        let rec = Recorder::default();
        let group = open(rec.clone(), store.clone(), Config::default()).await;
        group.begin(1, Job::new()).await.unwrap();
        rec.wait_for("entry of Idle", |e| e.len() == 1).await;
        store.fail.store(true, Ordering::SeqCst);
        assert!(matches!(
            group.send(&1, Ev::Start).await,
            Err(Error::Store(StoreError::Db(_)))
        ));
        store.fail.store(false, Ordering::SeqCst);
        assert_eq!(group.snapshot(&1).unwrap().unwrap().seq, 0);
        assert_eq!(
            rec.entries().len(),
            1,
            "no entry action for an unwritten event"
        );
        // The machine still works, from the old state.
        let s = group.send(&1, Ev::Start).await.unwrap();
        assert_eq!((s.seq, s.state.status), (1, St::Running));
        // A failed begin leaves no trace either.
        store.fail.store(true, Ordering::SeqCst);
        assert!(group.begin(2, Job::new()).await.is_err());
        store.fail.store(false, Ordering::SeqCst);
        group.begin(2, Job::new()).await.unwrap();
    }

    #[tokio::test]
    async fn a_panicking_entry_action_does_not_stop_its_machine() {
        let rec = Recorder::with_hook(|_, job| {
            if job.status == St::Paused {
                panic!("entry action bug (expected by this test)");
            }
        });
        let group = open(rec, MemStore::new(), Config::default()).await;
        group.begin(1, Job::new()).await.unwrap();
        group.send(&1, Ev::Start).await.unwrap();
        group.send(&1, Ev::Pause).await.unwrap();
        let s = group.send(&1, Ev::Resume).await.unwrap();
        assert_eq!(s.state.status, St::Running);
    }

    #[tokio::test]
    async fn a_closed_group_refuses_work() {
        let rec = Recorder::default();
        let gate = rec.close_gate(1);
        let group = open(rec.clone(), MemStore::new(), Config::default()).await;
        group.begin(1, Job::new()).await.unwrap();
        rec.wait_for("entry of Idle", |e| e.len() == 1).await;
        let queued = group.enqueue(&1, Ev::Start).await.unwrap();
        // Close cancels the blocked entry action and drops the queued event.
        group.close().await;
        assert_eq!(queued.await, Err(Error::Closed));
        assert_eq!(group.send(&1, Ev::Start).await, Err(Error::Closed));
        assert_eq!(group.begin(2, Job::new()).await, Err(Error::Closed));
        assert_eq!(group.live(), 0);
        assert_eq!(group.get(&1).unwrap().unwrap().status, St::Idle);
        drop(gate);
    }

    #[tokio::test]
    async fn provider_style_keys_persist_and_resume() {
        let (_dir, db) = temp_db();
        let key = (b"12D3KooWpeer".to_vec(), 7u64);
        let group: Group<Jobs, (Vec<u8>, u64)> =
            Group::open(table(), (), rocks(&db), Config::default())
                .await
                .unwrap();
        group.begin(key.clone(), Job::new()).await.unwrap();
        group.send(&key, Ev::Start).await.unwrap();
        group.close().await;
        let group: Group<Jobs, (Vec<u8>, u64)> =
            Group::open(table(), (), rocks(&db), Config::default())
                .await
                .unwrap();
        assert_eq!(group.live(), 1);
        assert_eq!(group.list(|_, _| true).unwrap()[0].0, key);
        group.send(&key, Ev::Finish).await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_and_dropped_group_releases_the_database() {
        for durability in [
            Durability::NoSync,
            Durability::SyncEachEvent,
            Durability::group_commit(),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let db = crate::common::open_db(dir.path());
            let config = Config::default().with_durability(durability);
            let group = open(Recorder::default(), rocks(&db), config).await;
            drop(db);
            for id in 0..4 {
                group.begin(id, Job::new()).await.unwrap();
                group.send(&id, Ev::Start).await.unwrap();
            }
            group.close().await;
            drop(group);
            // RocksDB holds a file lock while any handle is alive: none may be left.
            let reopened = rm_store::Db::open(dir.path(), &["jobs"], &Default::default());
            assert!(reopened.is_ok(), "{durability:?}: {reopened:?}");
        }
    }

    #[test]
    fn a_keyspace_is_a_store_and_keyspaces_are_separate() {
        let (_dir, db) = temp_db();
        let a = rocks(&db);
        let mut batch = Batch::new();
        batch.put(b"k".to_vec(), b"v".to_vec());
        batch.put(b"gone".to_vec(), b"x".to_vec());
        batch.delete(b"gone".to_vec());
        Store::write(&a, &batch, true).unwrap();
        assert_eq!(Store::get(&a, b"k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(Store::get(&a, b"gone").unwrap(), None);
        let other = rm_store::Keyspace::memory("jobs");
        let mut seen = 0;
        other
            .scan(&mut |_, _| {
                seen += 1;
                true
            })
            .unwrap();
        assert_eq!(seen, 0, "another database's keyspace sees nothing");
    }

    #[test]
    fn the_store_trait_works_through_an_arc() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let mut batch = Batch::new();
        batch.put(vec![1], vec![2]);
        store.write(&batch, false).unwrap();
        assert_eq!(store.get(&[1]).unwrap(), Some(vec![2]));
        let flag = AtomicBool::new(false);
        store
            .scan(&mut |k, v| {
                flag.store(k == [1] && v == [2], Ordering::SeqCst);
                false
            })
            .unwrap();
        assert!(flag.load(Ordering::SeqCst));
    }
}
