//! Property tests of the two deal cores against each other, in memory: random terms, DAGs
//! and selectors, random faults, and the invariants of `sim.rs` checked after every step.
//!
//! Each property runs `PROPTEST_CASES` cases (256 unless the environment says otherwise);
//! the totals of injected faults are printed with `--nocapture`.

mod sim;

use std::sync::Mutex;
use std::time::Duration;

use proptest::prelude::*;
use rm_types::Outcome;
use sim::{Faults, Injected, Sim, Terms};

/// Steps of simulated work after which a deal that has not ended is a liveness failure.
const MAX_STEPS: u64 = 200_000;

fn terms() -> impl Strategy<Value = Terms> {
    (
        prop_oneof![Just(0u64), 1u64..5, 100u64..2000],
        prop_oneof![Just(1u64), 1u64..20_000, 20_000u64..200_000],
        0u64..10_000,
        prop_oneof![3 => Just(0u64), 1 => 1u64..100_000],
        prop_oneof![4 => Just(100u64), 1 => 30u64..100, 1 => 100u64..300],
        0usize..40_000,
        prop_oneof![Just(256usize), Just(1024), Just(4096)],
        2usize..8,
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(
                price,
                interval,
                increase,
                unseal,
                budget_percent,
                data_len,
                chunk,
                max_links,
                partial,
            )| {
                Terms {
                    price,
                    interval,
                    increase,
                    unseal,
                    budget_percent,
                    data_len,
                    chunk,
                    max_links,
                    partial,
                }
            },
        )
}

fn honest_faults() -> impl Strategy<Value = Faults> {
    (
        0u32..100,
        0u32..300,
        0u32..100,
        0u32..50,
        0u32..50,
        0u32..20,
        0u32..500,
        0u64..100,
    )
        .prop_map(
            |(loss, delay, cut, crash_client, crash_provider, cancel, slow_node, verify)| Faults {
                loss,
                delay,
                max_delay: Duration::from_millis(300),
                cut,
                crash_client,
                crash_provider,
                max_down: Duration::from_secs(3),
                cancel,
                slow_node,
                lying_provider: 0,
                lying_client: 0,
                max_verify: Duration::from_millis(verify),
            },
        )
}

fn dishonest_faults() -> impl Strategy<Value = Faults> {
    (honest_faults(), 0u32..300, 0u32..300).prop_map(|(mut f, p, c)| {
        f.lying_provider = p;
        f.lying_client = c;
        f
    })
}

/// Totals over every case of a property, printed at the end.
struct Totals {
    name: &'static str,
    cases: u64,
    steps: u64,
    outcomes: [u64; 3],
    injected: Injected,
}

impl Totals {
    const fn new(name: &'static str) -> Self {
        Totals {
            name,
            cases: 0,
            steps: 0,
            outcomes: [0; 3],
            injected: Injected {
                loss: 0,
                delay: 0,
                cut: 0,
                crash_client: 0,
                crash_provider: 0,
                cancel: 0,
                provider_lies: 0,
                client_lies: 0,
                slow_node: 0,
            },
        }
    }

    fn add(&mut self, o: &sim::Outcomes) {
        self.cases += 1;
        self.steps += o.steps;
        let i = match o.client {
            Outcome::Completed => 0,
            Outcome::Cancelled => 1,
            Outcome::Failed => 2,
        };
        self.outcomes[i] += 1;
        self.injected.add(&o.injected);
    }

    fn print(&self, name: &str) {
        println!(
            "pair {name}: {} cases, {} steps; client outcomes completed/cancelled/failed {:?}; injected {:?}",
            self.cases, self.steps, self.outcomes, self.injected
        );
    }
}

fn cases() -> u64 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

fn name_of(totals: &Totals) -> &'static str {
    totals.name
}

static HONEST: Mutex<Totals> = Mutex::new(Totals::new("honest"));
static FAULTY: Mutex<Totals> = Mutex::new(Totals::new("faults"));
static DISHONEST: Mutex<Totals> = Mutex::new(Totals::new("dishonest"));
static READ_AHEAD: Mutex<Totals> = Mutex::new(Totals::new("read ahead"));

fn run(
    seed: u64,
    terms: &Terms,
    faults: Faults,
    totals: &Mutex<Totals>,
) -> Result<sim::Outcomes, TestCaseError> {
    let outcomes = Sim::new(seed, terms, faults)
        .run(MAX_STEPS)
        .map_err(TestCaseError::fail)?;
    let mut totals = totals.lock().unwrap();
    totals.add(&outcomes);
    if totals.cases == cases() {
        totals.print(name_of(&totals));
    }
    Ok(outcomes)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases() as u32,
        ..ProptestConfig::default()
    })]

    /// With no fault at all, every deal completes on both sides and is paid exactly.
    #[test]
    fn honest_deals_complete(seed in any::<u64>(), terms in terms()) {
        let o = run(seed, &terms, Faults::default(), &HONEST)?;
        prop_assert_eq!(o.client, Outcome::Completed);
        prop_assert_eq!(o.provider, Outcome::Completed);
    }

    /// The same while the client's verification takes time, so it reads a response
    /// ahead: still complete on both sides (a provider that ends the stream after its
    /// last response is not a lost stream to a client still verifying).
    #[test]
    fn honest_deals_complete_while_the_client_reads_ahead(
        seed in any::<u64>(),
        terms in terms(),
        verify in 1u64..200,
    ) {
        let faults = Faults { max_verify: Duration::from_millis(verify), ..Faults::default() };
        let o = run(seed, &terms, faults, &READ_AHEAD)?;
        prop_assert_eq!(o.client, Outcome::Completed);
        prop_assert_eq!(o.provider, Outcome::Completed);
    }

    /// Lost and delayed messages, cut streams, crashes of either side and cancels: every
    /// deal ends on both sides, they agree how, and no invariant breaks on the way.
    #[test]
    fn faults_never_break_the_invariants(
        seed in any::<u64>(),
        terms in terms(),
        faults in honest_faults(),
    ) {
        run(seed, &terms, faults, &FAULTY)?;
    }

    /// A dishonest peer (wrong, extra, missing or repeated blocks; lower, replayed,
    /// other-lane or repeated vouchers): the honest side is never paid for bad bytes nor
    /// pays for them, and every deal still ends.
    #[test]
    fn dishonest_peers_get_nothing_free(
        seed in any::<u64>(),
        terms in terms(),
        faults in dishonest_faults(),
    ) {
        run(seed, &terms, faults, &DISHONEST)?;
    }
}

/// Terms of the long-unseal tests: a paid deal of a few blocks.
fn unseal_terms() -> Terms {
    Terms {
        price: 2,
        interval: 4096,
        increase: 1024,
        unseal: 0,
        budget_percent: 100,
        data_len: 20_000,
        chunk: 1024,
        max_links: 4,
        partial: false,
    }
}

/// An unseal twelve times longer than the client's read deadline, and a client that may
/// not reconnect even once: the provider's periodic `Unsealing` responses keep the stream
/// alive and the deal completes on the one stream it began on.
#[test]
fn a_long_unseal_keeps_the_deal_alive() {
    let o = Sim::new(7, &unseal_terms(), Faults::default())
        .with_unseal_time(Duration::from_secs(60))
        .configure(|c| c.max_reconnects = 0, |_| {})
        .run(MAX_STEPS)
        .unwrap();
    assert_eq!(o.client, Outcome::Completed, "{}", o.client_message);
    assert_eq!(o.provider, Outcome::Completed);
    assert_eq!(o.resumes, 0);
}

/// The control: a provider that stays silent while it unseals loses the client at its
/// read deadline.
#[test]
fn a_silent_unseal_loses_the_client() {
    let o = Sim::new(7, &unseal_terms(), Faults::default())
        .with_unseal_time(Duration::from_secs(60))
        .configure(
            |c| c.max_reconnects = 0,
            |p| p.unsealing_interval = Duration::from_secs(3600),
        )
        .run(MAX_STEPS)
        .unwrap();
    assert_eq!(o.client, Outcome::Failed);
    assert!(
        o.client_message.contains("sent nothing"),
        "{}",
        o.client_message
    );
}

/// With reconnects allowed, the silent provider costs a new stream at each read deadline
/// (the 60 s unseal over 5 s deadlines); the talking one none.
#[test]
fn a_silent_unseal_costs_reconnects() {
    let run = |interval: u64| {
        Sim::new(7, &unseal_terms(), Faults::default())
            .with_unseal_time(Duration::from_secs(60))
            .configure(
                |_| {},
                |p| p.unsealing_interval = Duration::from_secs(interval),
            )
            .run(MAX_STEPS)
            .unwrap()
    };
    let talking = run(2);
    let silent = run(3600);
    assert_eq!(talking.client, Outcome::Completed);
    assert_eq!((talking.streams, talking.resumes), (1, 0));
    assert_eq!(
        silent.client,
        Outcome::Completed,
        "{}",
        silent.client_message
    );
    assert!(silent.streams >= 10, "{} streams", silent.streams);
    assert!(silent.resumes >= 1);
}

/// A provider that says `Unsealing` forever does not hold the deal forever: after
/// `max_unseal_wait` its responses stop counting as progress and the deal fails
/// `progress_timeout` later.
#[test]
fn unsealing_forever_fails_the_deal_in_bounded_time() {
    let o = Sim::new(7, &unseal_terms(), Faults::default())
        .with_unseal_time(Duration::from_secs(100_000))
        .configure(|c| c.max_unseal_wait = Duration::from_secs(300), |_| {})
        .run(MAX_STEPS)
        .unwrap();
    assert_eq!(o.client, Outcome::Failed);
    assert!(
        o.client_message.contains("no progress"),
        "{}",
        o.client_message
    );
}

/// Terms of the write-count tests: `data_len` bytes in 1 KiB blocks (responses of 8 KiB in
/// the pair), paid every 32 KiB at `price`, no unseal price.
fn write_terms(price: u64, data_len: usize) -> Terms {
    Terms {
        price,
        interval: 32 << 10,
        increase: 0,
        unseal: 0,
        budget_percent: 100,
        data_len,
        chunk: 1024,
        max_links: 4,
        partial: false,
    }
}

/// Snapshots written by each side over one honest deal, with progress written every
/// `progress` bytes.
fn writes(terms: &Terms, progress: u64) -> [u64; 2] {
    let o = Sim::new(3, terms, Faults::default())
        .configure(
            |c| c.progress_write_bytes = progress,
            |p| p.progress_write_bytes = progress,
        )
        .run(MAX_STEPS)
        .unwrap();
    assert_eq!(o.client, Outcome::Completed, "{}", o.client_message);
    assert_eq!(o.provider, Outcome::Completed);
    o.writes
}

/// Progress that only counts bytes rides on the writes that happen anyway: a paid deal
/// writes about one snapshot per payment on each side instead of one per response, and
/// a free deal's writes do not grow with its size at all.
#[test]
fn progress_is_written_with_payments_not_with_every_response() {
    let default = rm_client::DealConfig::default().progress_write_bytes;
    assert_eq!(
        default,
        rm_provider::DealConfig::default().progress_write_bytes
    );
    // 200 KB: 25 responses of 8 KiB, 6 payment points.
    let paid = write_terms(1, 200_000);
    let every = writes(&paid, 0);
    let batched = writes(&paid, default);
    println!(
        "paid 200 KB deal, snapshots written (client, provider): every response {every:?}, batched {batched:?}"
    );
    for side in 0..2 {
        assert!(
            batched[side] + 15 <= every[side],
            "side {side}: {} batched, {} every response",
            batched[side],
            every[side]
        );
    }
    let small = writes(&write_terms(0, 100_000), default);
    let large = writes(&write_terms(0, 400_000), default);
    let large_every = writes(&write_terms(0, 400_000), 0);
    println!(
        "free deals, snapshots written: 100 KB {small:?}, 400 KB {large:?}, 400 KB every response {large_every:?}"
    );
    assert_eq!(small, large, "a free deal's writes grow with its size");
    assert!(large_every[0] >= large[0] + 40 && large_every[1] >= large[1] + 40);
}

/// A provider that asks for payment early, halfway through each interval, never stops for
/// a client that pays such requests at once: the voucher arrives while the rest of the
/// interval goes out. A client that waits for the stop is stopped at every interval, as
/// when the provider never asks early. Either way the provider never has more than one
/// interval unpaid (an invariant checked after every step).
#[test]
fn early_payment_requests_keep_blocks_flowing() {
    // 400 KB in 1 KiB blocks, 8 KiB responses, paid every 64 KiB; the provider sends
    // 2 MiB/s, so half an interval takes 16 ms and a voucher 0.2–2 ms.
    let terms = Terms {
        interval: 64 << 10,
        ..write_terms(1, 400_000)
    };
    let run = |pay_early: bool, ask_early_from: Option<u64>| {
        let o = Sim::new(3, &terms, Faults::default())
            .configure(
                |c| c.pay_early = pay_early,
                |p| {
                    p.ask_early_from = ask_early_from;
                    p.max_bytes_per_second = Some(2 << 20);
                },
            )
            .run(MAX_STEPS)
            .unwrap();
        assert_eq!(o.client, Outcome::Completed, "{}", o.client_message);
        assert_eq!(o.provider, Outcome::Completed);
        o
    };
    let early = run(true, Some(0));
    let waits = run(false, Some(0));
    let never = run(true, None);
    println!(
        "stops for payment: paid early {}, client waits {}, never asked early {}",
        early.stops, waits.stops, never.stops
    );
    assert_eq!(early.stops, 0);
    // 400,000 bytes (and the DAG's inner nodes) / 65,536: a stop every interval.
    assert!(never.stops >= 6, "{} stops", never.stops);
    assert_eq!(waits.stops, never.stops);
    // Default: go-fil-markets' 1 MiB first interval is not asked early, 2 MiB ones are.
    let default = rm_provider::DealConfig::default().ask_early_from;
    assert_eq!(default, Some(2 << 20));
    assert!(rm_client::DealConfig::default().pay_early);
}
