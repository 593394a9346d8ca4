//! Property test: random sequences of valid and invalid events, with the store closed and
//! reopened at random points, always match an independent reference model.

mod common;

/// Named `rm_fsm` so `cargo test --workspace --all-targets -- rm_fsm::` selects these tests.
mod rm_fsm {
    use std::collections::BTreeMap;

    use crate::common::{Ev, Job, Jobs, Recorder, model, rocks, table, temp_db};
    use proptest::prelude::*;
    use rm_fsm::{Config, Durability, Error, Group, Snapshot};

    const MACHINES: u64 = 3;

    #[derive(Debug, Clone)]
    enum Op {
        Send(u64, Ev),
        Reopen,
    }

    fn event() -> impl Strategy<Value = Ev> {
        prop_oneof![
            3 => Just(Ev::Start),
            4 => (0u64..4).prop_map(Ev::Progress),
            2 => Just(Ev::Tick),
            2 => Just(Ev::Pause),
            2 => Just(Ev::Resume),
            1 => Just(Ev::Finish),
            1 => "[a-z]{0,3}".prop_map(Ev::Fail),
            2 => Just(Ev::Poke),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            20 => (0..MACHINES, event()).prop_map(|(id, ev)| Op::Send(id, ev)),
            1 => Just(Op::Reopen),
        ]
    }

    fn durability() -> impl Strategy<Value = Durability> {
        prop_oneof![
            Just(Durability::NoSync),
            Just(Durability::SyncEachEvent),
            Just(Durability::group_commit()),
        ]
    }

    fn fail(e: impl std::fmt::Display) -> TestCaseError {
        TestCaseError::fail(e.to_string())
    }

    async fn open(
        db: &rm_store::Db,
        config: &Config,
        live: usize,
    ) -> Result<Group<Jobs, u64>, TestCaseError> {
        let rec = Recorder::default();
        let group = Group::open(table(), rec.clone(), rocks(db), config.clone())
            .await
            .map_err(fail)?;
        prop_assert_eq!(group.live(), live, "non-final machines are loaded");
        // Every loaded machine is resumed: its entry action runs once, flagged as resumed.
        rec.wait_for("resumed entry actions", |e| e.len() == live)
            .await;
        prop_assert!(rec.entries().iter().all(|e| e.resumed));
        Ok(group)
    }

    async fn run(ops: Vec<Op>, durability: Durability) -> Result<(), TestCaseError> {
        let (_dir, db) = temp_db();
        let config = Config::default().with_durability(durability);
        let mut reference: BTreeMap<u64, Snapshot<Job>> = BTreeMap::new();
        let live =
            |r: &BTreeMap<u64, Snapshot<Job>>| r.values().filter(|s| !s.state.is_final()).count();

        let mut group = open(&db, &config, 0).await?;
        for id in 0..MACHINES {
            group.begin(id, Job::new()).await.map_err(fail)?;
            reference.insert(
                id,
                Snapshot {
                    seq: 0,
                    state: Job::new(),
                },
            );
        }
        for op in ops {
            match op {
                Op::Reopen => {
                    group.close().await;
                    group = open(&db, &config, live(&reference)).await?;
                }
                Op::Send(id, ev) => {
                    let before = reference[&id].clone();
                    let result = group.send(&id, ev.clone()).await;
                    match model(&before.state, &ev) {
                        Some((next, _)) => {
                            let after = Snapshot {
                                seq: before.seq + 1,
                                state: next,
                            };
                            prop_assert_eq!(result.map_err(fail)?, after.clone());
                            reference.insert(id, after);
                        }
                        None if before.state.is_final() => {
                            // Final states absorb nothing.
                            prop_assert_eq!(result, Err(Error::Final(id.to_string())));
                        }
                        None => {
                            prop_assert!(
                                matches!(result, Err(Error::Invalid(_))),
                                "{:?} on {:?}: {:?}",
                                ev,
                                before.state,
                                result
                            );
                        }
                    }
                    // Invalid or not, the store holds exactly the reference snapshot.
                    prop_assert_eq!(
                        group.snapshot(&id).map_err(fail)?,
                        Some(reference[&id].clone())
                    );
                }
            }
        }
        group.close().await;
        drop(group);

        let group = open(&db, &config, live(&reference)).await?;
        for (id, expected) in &reference {
            prop_assert_eq!(group.snapshot(id).map_err(fail)?, Some(expected.clone()));
        }
        group.close().await;
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn random_events_match_the_reference_model_across_reopens(
            ops in prop::collection::vec(op(), 0..60),
            durability in durability(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run(ops, durability))?;
        }
    }
}
