//! The pure parts: transition tables, the sans-IO `step`, keys.

mod common;

/// Named `rm_fsm` so `cargo test --workspace --all-targets -- rm_fsm::` selects these tests.
mod rm_fsm {
    use crate::common::{Ev, Job, Jobs, K, St, model, table};
    use rm_fsm::{
        Dest, Event, HasStatus, Invalid, Key, Machine, Rejection, Rule, Snapshot, Source, Table,
        TableError, Transition, step,
    };

    fn job(status: St) -> Job {
        Job {
            status,
            ..Job::new()
        }
    }

    #[test]
    fn to_moves() {
        let t = table();
        let next = t.transition(&job(St::Idle), &Ev::Start).unwrap();
        assert!(matches!(next, Transition::To(ref j) if j.status == St::Running));
    }

    #[test]
    fn stay_keeps_status_and_records_data() {
        let t = table();
        let before = job(St::Paused);
        let next = t.transition(&before, &Ev::Tick).unwrap();
        assert!(matches!(next, Transition::Stay(_)));
        assert_eq!(next.state().status, St::Paused);
        assert_ne!(next.state().trail, before.trail, "the action ran");
        let next = t.transition(&job(St::Running), &Ev::Progress(7)).unwrap();
        assert!(matches!(next, Transition::Stay(_)));
        assert_eq!(next.state().progress, 7);
    }

    #[test]
    fn specific_rule_wins_over_any_status_rule() {
        let t = table();
        // Poke: any -> record only, but Paused -> Running.
        let from_paused = t.transition(&job(St::Paused), &Ev::Poke).unwrap();
        assert!(matches!(from_paused, Transition::To(ref j) if j.status == St::Running));
        let from_running = t.transition(&job(St::Running), &Ev::Poke).unwrap();
        assert!(matches!(from_running, Transition::Stay(ref j) if j.status == St::Running));
        // Fail is any-status only.
        let failed = t
            .transition(&job(St::Paused), &Ev::Fail("x".into()))
            .unwrap();
        assert_eq!(failed.state().status, St::Failed);
        assert_eq!(failed.state().note, "x");
    }

    #[test]
    fn missing_rule_is_invalid_with_names() {
        let t = table();
        let err = t.transition(&job(St::Idle), &Ev::Pause).unwrap_err();
        assert_eq!(err, Invalid::new("Pause", "Idle", "no transition"));
        assert_eq!(
            err.to_string(),
            "invalid transition: event `Pause` in state `Idle`: no transition"
        );
    }

    #[test]
    fn action_can_refuse_an_event() {
        let t = table();
        let err = t
            .transition(&job(St::Running), &Ev::Progress(0))
            .unwrap_err();
        assert_eq!(err, Invalid::new("Progress", "Running", "zero progress"));
    }

    #[test]
    fn final_status_has_no_transition() {
        let t = table();
        for status in [St::Done, St::Failed] {
            assert!(t.is_final(&job(status)));
            for ev in [Ev::Poke, Ev::Fail("again".into()), Ev::Start] {
                let err = t.transition(&job(status), &ev).unwrap_err();
                assert_eq!(err.reason, "final state");
            }
        }
        assert!(!t.is_final(&job(St::Paused)));
    }

    #[test]
    fn actions_cannot_change_the_status_of_stay_rules() {
        fn sneaky(job: &mut Job, _: &Ev) -> Result<(), String> {
            job.set_status(St::Done);
            job.progress += 1;
            Ok(())
        }
        let t: Jobs = Table::new(
            vec![
                Rule::new(K::Poke, Source::any(), Dest::Stay).action(sneaky),
                Rule::new(K::Tick, Source::any(), Dest::Stay).action(sneaky),
            ],
            [St::Done],
        )
        .unwrap();
        for ev in [Ev::Poke, Ev::Tick] {
            let next = t.transition(&job(St::Running), &ev).unwrap();
            assert_eq!(next.state().status, St::Running);
            assert_eq!(next.state().progress, 1);
        }
    }

    #[test]
    fn table_rejects_ambiguous_dead_or_empty_rules() {
        let dup: Result<Jobs, _> = Table::new(
            vec![
                Rule::new(
                    K::Start,
                    Source::of([St::Idle, St::Paused]),
                    Dest::To(St::Running),
                ),
                Rule::new(K::Start, Source::one(St::Paused), Dest::Stay),
            ],
            [St::Done],
        );
        assert_eq!(
            dup.unwrap_err(),
            TableError::Duplicate {
                kind: "Start",
                status: "Paused"
            }
        );
        let dup_any: Result<Jobs, _> = Table::new(
            vec![
                Rule::new(K::Fail, Source::any(), Dest::To(St::Failed)),
                Rule::new(K::Fail, Source::any(), Dest::To(St::Done)),
            ],
            [St::Done, St::Failed],
        );
        assert!(matches!(
            dup_any,
            Err(TableError::Duplicate { status: "*", .. })
        ));
        let from_final: Result<Jobs, _> = Table::new(
            vec![Rule::new(
                K::Start,
                Source::one(St::Done),
                Dest::To(St::Running),
            )],
            [St::Done],
        );
        assert_eq!(
            from_final.unwrap_err(),
            TableError::FromFinal {
                kind: "Start",
                status: "Done"
            }
        );
        let empty: Result<Jobs, _> =
            Table::new(vec![Rule::new(K::Start, Source::of([]), Dest::Stay)], []);
        assert_eq!(empty.unwrap_err(), TableError::Empty("Start"));
    }

    #[test]
    fn the_check_finds_dead_ends_unreachable_statuses_and_unused_kinds() {
        assert_eq!(table().check(St::Idle), Ok(()));
        // Paused can be entered and never left; Done is never reached; most kinds have no
        // rule.
        let t: Jobs = Table::new(
            vec![
                Rule::new(K::Start, Source::one(St::Idle), Dest::To(St::Running)),
                Rule::new(K::Pause, Source::one(St::Running), Dest::To(St::Paused)),
                Rule::new(K::Fail, Source::one(St::Running), Dest::To(St::Failed)),
            ],
            [St::Done, St::Failed],
        )
        .unwrap();
        let problems = t.check(St::Idle).unwrap_err();
        assert!(
            problems.contains(&TableError::NoWayOut("Paused")),
            "{problems:?}"
        );
        assert!(
            problems.contains(&TableError::Unreachable("Done")),
            "{problems:?}"
        );
        assert!(
            problems.contains(&TableError::UnusedKind("Tick")),
            "{problems:?}"
        );
        assert!(
            !problems.contains(&TableError::NoWayOut("Running")),
            "{problems:?}"
        );
    }

    #[test]
    fn rows_and_markdown_describe_the_table() {
        let t = table();
        let rows = t.rows();
        assert_eq!(rows.len(), t.rules().len());
        assert_eq!(rows[1].event, "Progress");
        assert_eq!(rows[1].from, "Running");
        assert_eq!(rows[1].to, "(same)");
        assert_eq!(rows[1].doc, "progress += n; refuses 0");
        assert_eq!(rows[2].from, "Running, Paused");
        assert_eq!(rows[2].to, "(same)");
        assert_eq!(rows[6].from, "*");
        assert_eq!(rows[6].to, "Failed");
        let md = t.to_markdown();
        assert!(md.starts_with("| Event | From | To | Action |\n|---|---|---|---|\n"));
        assert!(md.contains("| Progress | Running | (same) | progress += n; refuses 0 |\n"));
        assert!(md.contains("| Tick | Running, Paused | (same) |  |\n"));
        assert!(md.ends_with("\nFinal states: Done, Failed.\n"));
        assert_eq!(t.finals(), &[St::Done, St::Failed]);
        assert_eq!(Ev::Progress(3).kind(), K::Progress);
        assert!(t.rules()[1].has_action());
        assert!(t.rules()[0].description().is_empty());
    }

    #[test]
    fn table_agrees_with_the_reference_model_on_every_status_and_event() {
        let t = table();
        let events = [
            Ev::Start,
            Ev::Progress(0),
            Ev::Progress(5),
            Ev::Tick,
            Ev::Pause,
            Ev::Resume,
            Ev::Finish,
            Ev::Fail("why".into()),
            Ev::Poke,
        ];
        for status in [St::Idle, St::Running, St::Paused, St::Done, St::Failed] {
            for ev in &events {
                let state = job(status);
                let by_table = t.transition(&state, ev).ok().map(Transition::into_state);
                assert_eq!(by_table, model(&state, ev), "{status:?} {ev:?}");
            }
        }
    }

    #[test]
    fn step_counts_applied_events_and_final_states_absorb_nothing() {
        let t = table();
        let start = Snapshot {
            seq: 4,
            state: job(St::Idle),
        };
        let s = step(&t, &start, &Ev::Start).unwrap();
        assert_eq!(s.seq, 5);
        let running = step(&t, &s, &Ev::Progress(1)).unwrap();
        assert_eq!(running.seq, 6);
        assert!(matches!(
            step(&t, &running, &Ev::Resume),
            Err(Rejection::Invalid(_))
        ));
        let done = step(&t, &running, &Ev::Finish).unwrap();
        assert_eq!(done.seq, 7);
        // A final state absorbs nothing, not even an any-status event.
        assert_eq!(
            step(&t, &done, &Ev::Fail("again".into())),
            Err(Rejection::Final)
        );
    }

    #[test]
    fn named_enums_serialise_as_their_names() {
        let bytes = serde_ipld_dagcbor::to_vec(&St::Paused).unwrap();
        assert_eq!(bytes, serde_ipld_dagcbor::to_vec(&"Paused").unwrap());
        assert_eq!(
            serde_ipld_dagcbor::from_slice::<St>(&bytes).unwrap(),
            St::Paused
        );
        let other = serde_ipld_dagcbor::to_vec(&"Sleeping").unwrap();
        assert!(serde_ipld_dagcbor::from_slice::<St>(&other).is_err());
        assert_eq!(St::Paused.to_string(), "Paused");
    }

    #[test]
    fn keys_round_trip_and_u64_keys_sort_numerically() {
        for id in [0u64, 1, 255, 256, u64::MAX] {
            assert_eq!(u64::from_key_bytes(&id.to_key_bytes()), Some(id));
        }
        assert!(1u64.to_key_bytes() < 256u64.to_key_bytes());
        assert_eq!(u64::from_key_bytes(&[1, 2, 3]), None);
        let provider = (b"peer-id-bytes".to_vec(), 42u64);
        assert_eq!(
            <(Vec<u8>, u64)>::from_key_bytes(&provider.to_key_bytes()),
            Some(provider)
        );
        let empty_peer = (Vec::new(), 7u64);
        assert_eq!(
            <(Vec<u8>, u64)>::from_key_bytes(&empty_peer.to_key_bytes()),
            Some(empty_peer)
        );
        assert_eq!(<(Vec<u8>, u64)>::from_key_bytes(&[0; 7]), None);
        assert_eq!(
            String::from_key_bytes(&"deal".to_string().to_key_bytes()),
            Some("deal".to_string())
        );
        assert_eq!(String::from_key_bytes(&[0xff]), None);
        assert_eq!(Vec::<u8>::from_key_bytes(&[1, 2]), Some(vec![1, 2]));
    }
}
