//! Crash test: a child process applies events and is killed with SIGKILL at random moments;
//! after each kill the store must hold, for every machine, the state after a prefix of the
//! events the child sent, never a torn or reordered state.
//!
//! The child is this same test binary, re-run with `--exact` on the same test and an
//! environment variable that tells it to play the child.

mod common;

/// Named `rm_fsm` so `cargo test --workspace --all-targets -- rm_fsm::` selects these tests.
mod rm_fsm {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::time::Duration;

    use crate::common::{Ev, Job, Jobs, model, rocks};
    use rm_fsm::{Config, Durability, Error, Group, Snapshot};

    const TEST_NAME: &str = "rm_fsm::sigkill_leaves_every_machine_at_a_prefix_of_its_events";
    const CHILD_DIR: &str = "RM_FSM_CRASH_CHILD_DIR";
    const CHILD_ROUND: &str = "RM_FSM_CRASH_CHILD_ROUND";
    const READY: &str = "rm-fsm crash child: ready";
    const DONE: &str = "rm-fsm crash child: done";
    const MACHINES: u64 = 4;
    const EVENTS: u64 = 4000;
    const ROUNDS: u64 = 8;

    fn splitmix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// The events the child sends to machine `id` in `round`: valid and invalid ones mixed,
    /// none final, so every machine keeps going.
    fn events(round: u64, id: u64) -> impl Iterator<Item = Ev> {
        (0..EVENTS).map(
            move |i| match splitmix((round << 40) ^ (id << 20) ^ i) % 10 {
                x @ 0..=3 => Ev::Progress(x + 1),
                4 => Ev::Tick,
                5 => Ev::Pause,
                6 => Ev::Resume,
                7 => Ev::Poke,
                8 => Ev::Progress(0),
                _ => Ev::Start,
            },
        )
    }

    fn config(round: u64) -> Config {
        // Process crashes must be survived in every mode, the default (no fsync) included.
        Config::default().with_durability(match round % 3 {
            0 => Durability::NoSync,
            1 => Durability::group_commit(),
            _ => Durability::SyncEachEvent,
        })
    }

    async fn open(dir: &str, round: u64) -> Group<Jobs, u64> {
        let db = crate::common::open_db(std::path::Path::new(dir));
        Group::open(crate::common::table(), (), rocks(&db), config(round))
            .await
            .unwrap()
    }

    /// The child: sends this round's events to every machine until it is killed.
    fn child(dir: &str, round: u64) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let group = open(dir, round).await;
            println!("{READY}");
            std::io::stdout().flush().unwrap();
            let mut tasks = Vec::new();
            for id in 0..MACHINES {
                let group = group.clone();
                tasks.push(tokio::spawn(async move {
                    if id % 2 == 0 {
                        for ev in events(round, id) {
                            match group.send(&id, ev).await {
                                Ok(_) | Err(Error::Invalid(_)) => {}
                                Err(e) => panic!("child: {e}"),
                            }
                        }
                    } else {
                        // Pipelined: queued record-only events get coalesced into one write.
                        let mut receipts = Vec::new();
                        for ev in events(round, id) {
                            receipts.push(group.enqueue(&id, ev).await.unwrap());
                        }
                        for r in receipts {
                            let _ = r.await;
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            println!("{DONE}");
            std::io::stdout().flush().unwrap();
            // The parent kills us; do not outlive it for long if it does not.
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
    }

    /// Every snapshot machine `id` may be in after `round`, starting from `start`: one per
    /// prefix of the round's events.
    fn reachable(start: &Snapshot<Job>, round: u64, id: u64) -> Vec<Snapshot<Job>> {
        let mut out = vec![start.clone()];
        let mut current = start.clone();
        for ev in events(round, id) {
            if let Some((state, _)) = model(&current.state, &ev) {
                current = Snapshot {
                    seq: current.seq + 1,
                    state,
                };
                out.push(current.clone());
            }
        }
        out
    }

    async fn read_all(dir: &str, round: u64) -> Vec<Snapshot<Job>> {
        let group = open(dir, round).await;
        let snapshots = (0..MACHINES)
            .map(|id| group.snapshot(&id).unwrap().expect("machine exists"))
            .collect();
        group.close().await;
        snapshots
    }

    #[test]
    fn sigkill_leaves_every_machine_at_a_prefix_of_its_events() {
        if let Ok(dir) = std::env::var(CHILD_DIR) {
            let round = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
            child(&dir, round);
            return;
        }

        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_str().unwrap().to_owned();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let group = open(&dir, 0).await;
            for id in 0..MACHINES {
                group.begin(id, Job::new()).await.unwrap();
            }
            group.close().await;
        });
        let mut current: Vec<Snapshot<Job>> = (0..MACHINES)
            .map(|_| Snapshot {
                seq: 0,
                state: Job::new(),
            })
            .collect();
        let exe = std::env::current_exe().unwrap();
        let mut applied_total = 0;
        let mut interrupted = 0;
        for round in 0..ROUNDS {
            let mut child = Command::new(&exe)
                .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD_DIR, &dir)
                .env(CHILD_ROUND, round.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            // Wait until the child is sending, then kill it at a pseudo-random moment.
            loop {
                match rx.recv_timeout(Duration::from_secs(120)) {
                    // libtest prints "test <name> ... " before the output, on the same line.
                    Ok(line) if line.contains(READY) => break,
                    Ok(_) => {}
                    Err(e) => {
                        let _ = child.kill();
                        panic!("child never became ready: {e}");
                    }
                }
            }
            let delay = splitmix(round ^ 0xc0ffee) % (5 + round * 15);
            std::thread::sleep(Duration::from_millis(delay));
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
            reader.join().unwrap();
            let finished = rx.try_iter().any(|line| line.contains(DONE));

            let stored = rt.block_on(read_all(&dir, round));
            for id in 0..MACHINES {
                let i = id as usize;
                let options = reachable(&current[i], round, id);
                let s = &stored[i];
                let step = s
                    .seq
                    .checked_sub(current[i].seq)
                    .unwrap_or_else(|| panic!("round {round} machine {id}: seq went back"));
                let expected = options.get(step as usize).unwrap_or_else(|| {
                    panic!(
                        "round {round} machine {id}: seq {} beyond the events sent",
                        s.seq
                    )
                });
                assert_eq!(s, expected, "round {round} machine {id}: not a prefix");
                applied_total += step;
                if (step as usize) < options.len() - 1 {
                    interrupted += 1;
                }
            }
            eprintln!(
                "crash round {round}: killed after {delay} ms, finished = {finished}, seqs = {:?}",
                stored.iter().map(|s| s.seq).collect::<Vec<_>>()
            );
            current = stored;
        }
        eprintln!(
            "crash test: {applied_total} events applied, {interrupted} machines cut mid-stream"
        );
        assert!(applied_total > 0, "the children applied nothing");
    }
}
