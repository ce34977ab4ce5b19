//! The timing harness without ONNX Runtime and without the machine's clock: fake variants whose runs take
//! scripted durations of a fake clock (constant, seeded noise, slow, preempted, failing) drive the real round
//! loop, stopping rule, failure handling and statistics. Every number here is deterministic; nothing sleeps.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use fuseval::estimate::{
    aa_noise, median, median_ci, noise_band, order_stat_median_ci, verdict, Estimate, Verdict, NOISE,
};
use fuseval::measure::timing::{
    run_rounds, time_variants, warm_up_length, Clock, Plan, Rounds, Timed, ALL, CHECK_RESAMPLES, CONTROL, EXPLICIT,
    EXTENDED, MIN_ROUNDS_HARD, UNFUSED,
};
use fuseval::measure::{
    aa_consistent, aa_ok, ratio_estimate, MeasureOptions, Summary, AA_TOLERANCE, RESAMPLES, SESSION_FLOOR,
};
use fuseval::runtime::Ep;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------- the fakes ----------

/// A clock that only the fake variants move.
#[derive(Clone, Default)]
struct FakeClock(Rc<Cell<Duration>>);

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.0.get()
    }
}

/// The duration of a fake's `n`-th run (from 0, warm-up included), or its failure.
type Script = Box<dyn FnMut(usize) -> Result<Duration>>;

/// A variant whose runs advance the fake clock by scripted durations. `log`, when shared, records which
/// variant ran each call.
struct Fake {
    id: usize,
    clock: FakeClock,
    calls: usize,
    script: Script,
    log: Option<Rc<RefCell<Vec<usize>>>>,
}

impl Timed for Fake {
    fn run(&mut self) -> Result<()> {
        let d = (self.script)(self.calls)?;
        self.calls += 1;
        if let Some(log) = &self.log {
            log.borrow_mut().push(self.id);
        }
        self.clock.0.set(self.clock.0.get() + d);
        Ok(())
    }
}

/// `x` milliseconds, to the nanosecond (so that 60 runs of 1 ms are exactly 60 ms).
fn ms(x: f64) -> Duration {
    Duration::from_nanos((x * 1e6).round() as u64)
}

/// Every run takes `d`.
fn constant(d: Duration) -> Script {
    Box::new(move |_| Ok(d))
}

/// Runs take `base` times a uniform factor in `[1 - rel, 1 + rel]`, seeded.
fn noisy(base: Duration, rel: f64, seed: u64) -> Script {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Box::new(move |_| Ok(base.mul_f64(1.0 + rel * (2.0 * rng.random::<f64>() - 1.0))))
}

/// Fakes on one clock, one per script, in [`run_rounds`]'s order (unfused, control, extended, all[, explicit]).
fn fakes(clock: &FakeClock, scripts: Vec<Script>) -> Vec<Fake> {
    scripts
        .into_iter()
        .enumerate()
        .map(|(id, script)| Fake { id, clock: clock.clone(), calls: 0, script, log: None })
        .collect()
}

/// Unfused, control, extended and all, each taking a constant time (ms).
fn constants(clock: &FakeClock, ms_each: [f64; 4]) -> Vec<Fake> {
    fakes(clock, ms_each.iter().map(|&x| constant(ms(x))).collect())
}

fn full() -> MeasureOptions {
    MeasureOptions::new(Ep::Cpu, 1, false)
}

fn quick() -> MeasureOptions {
    MeasureOptions::new(Ep::Cpu, 1, true)
}

fn rounds_of(variants: &mut [Fake], wait_for: &[usize], opts: &MeasureOptions, clock: &FakeClock) -> Rounds {
    match run_rounds(variants, wait_for, opts, clock) {
        Ok(r) => r,
        Err(f) => panic!("variant {} failed: {:#}", f.variant, f.error),
    }
}

/// Whether the stopping rule's check holds after the first `n` rounds.
fn tight(rounds: &Rounds, n: usize, wait_for: &[usize], opts: &MeasureOptions) -> bool {
    let ok = |den: usize| {
        let ratios: Vec<f64> = rounds.ratios(UNFUSED, den)[..n].to_vec();
        median_ci(&ratios, CHECK_RESAMPLES, opts.seed).rel_half_width() <= opts.target_rel_ci
    };
    ok(CONTROL) && wait_for.iter().all(|&i| ok(i))
}

/// The rounds after which the loop checks the stopping rule, up to `n`.
fn check_points(opts: &MeasureOptions, n: usize) -> Vec<usize> {
    let mut at = vec![];
    let mut next = opts.min_rounds.max(2);
    while next <= n {
        at.push(next);
        next += (next / 50).max(1);
    }
    at
}

// ---------- the stopping rule ----------

/// Constant latencies give zero-width ratio CIs: the loop stops at the first check, `min_rounds`, not earlier.
#[test]
fn a_met_target_stops_at_min_rounds() {
    for (opts, want) in [(full(), 15), (quick(), 7)] {
        let clock = FakeClock::default();
        let mut v = constants(&clock, [1.0, 1.0, 0.5, 0.25]);
        let r = rounds_of(&mut v, &[EXTENDED, ALL], &opts, &clock);
        assert_eq!(r.len(), want);
        assert_eq!(r.len(), opts.min_rounds);
        assert!(!r.budget_exhausted);
        assert!(r.times.iter().all(|t| t.len() == want));
        assert!(r.times[UNFUSED].iter().all(|&t| t == 1e-3));
        assert!(r.times[EXTENDED].iter().all(|&t| t == 0.5e-3));
        assert!(r.times[ALL].iter().all(|&t| t == 0.25e-3));
    }
}

/// With seeded noise the loop stops exactly at the first check where the control and every awaited fused ratio
/// have a CI within the target, and not before.
#[test]
fn stops_at_the_first_check_that_meets_the_target() {
    for opts in [full(), quick()] {
        let clock = FakeClock::default();
        let mut v = fakes(
            &clock,
            vec![noisy(ms(1.0), 0.1, 1), noisy(ms(1.0), 0.1, 2), noisy(ms(0.5), 0.1, 3), noisy(ms(0.8), 0.1, 4)],
        );
        let wait_for = [EXTENDED, ALL];
        let r = rounds_of(&mut v, &wait_for, &opts, &clock);
        let n = r.len();
        assert!(!r.budget_exhausted);
        assert!(n > opts.min_rounds, "the noise should take more than min_rounds ({n})");
        let checks = check_points(&opts, n);
        assert_eq!(checks.last(), Some(&n), "stopped at {n}, not a check point");
        assert!(tight(&r, n, &wait_for, &opts));
        for &k in &checks[..checks.len() - 1] {
            assert!(!tight(&r, k, &wait_for, &opts), "the target was met at {k} already, stopped at {n}");
        }
    }
}

/// A noisy A/A control means a disturbed host: the loop keeps measuring, even with exact fused ratios, until
/// the budget (of fake time, warm-up included) runs out; it stops at the end of the round that crossed it.
#[test]
fn a_noisy_control_runs_until_the_budget() {
    let clock = FakeClock::default();
    let mut v = fakes(&clock, vec![constant(ms(1.0)), noisy(ms(1.0), 0.6, 7), constant(ms(0.5)), constant(ms(0.5))]);
    let opts = MeasureOptions { budget: Duration::from_secs(2), ..full() };
    let r = rounds_of(&mut v, &[EXTENDED, ALL], &opts, &clock);
    assert!(r.budget_exhausted);
    assert!(r.len() < opts.max_rounds);
    assert!(!tight(&r, r.len(), &[EXTENDED, ALL], &opts));
    // The last round crossed the budget: at most one round (4 slices of at most 1.6 ms per iteration) past it.
    let round_max = ms(4.0 * 1.6 * r.iters as f64);
    assert!(clock.now() >= opts.budget);
    assert!(clock.now() < opts.budget + round_max, "{:?} after a {:?} budget", clock.now(), opts.budget);
    // A longer budget buys more rounds.
    let clock2 = FakeClock::default();
    let mut v2 = fakes(&clock2, vec![constant(ms(1.0)), noisy(ms(1.0), 0.6, 7), constant(ms(0.5)), constant(ms(0.5))]);
    let r2 =
        rounds_of(&mut v2, &[EXTENDED, ALL], &MeasureOptions { budget: Duration::from_secs(4), ..full() }, &clock2);
    assert!(r2.budget_exhausted && r2.len() > r.len());
}

/// However short the budget, a measurement has at least `MIN_ROUNDS_HARD` rounds.
#[test]
fn a_spent_budget_still_gives_three_rounds() {
    let clock = FakeClock::default();
    let mut v = constants(&clock, [1.0, 1.0, 0.5, 0.5]);
    let r = rounds_of(&mut v, &[EXTENDED, ALL], &MeasureOptions { budget: Duration::ZERO, ..full() }, &clock);
    assert_eq!(r.len(), MIN_ROUNDS_HARD);
    assert!(r.budget_exhausted);
}

/// `max_rounds` caps a measurement that never gets tight (and is raised to `min_rounds` when below it).
#[test]
fn max_rounds_caps_the_rounds() {
    let noisy_control = |clock: &FakeClock| {
        fakes(clock, vec![constant(ms(1.0)), noisy(ms(1.0), 0.6, 9), constant(ms(0.5)), constant(ms(0.5))])
    };
    let long = Duration::from_secs(1000);
    let clock = FakeClock::default();
    let opts = MeasureOptions { max_rounds: 20, budget: long, ..full() };
    let r = rounds_of(&mut noisy_control(&clock), &[], &opts, &clock);
    assert_eq!((r.len(), r.budget_exhausted), (20, false));
    let clock = FakeClock::default();
    let opts = MeasureOptions { min_rounds: 10, max_rounds: 5, budget: long, ..full() };
    let r = rounds_of(&mut noisy_control(&clock), &[], &opts, &clock);
    assert_eq!((r.len(), r.budget_exhausted), (10, false));
}

/// Only the fused ratios in `wait_for` (and the control) must be tight: a noisy variant left out is timed in
/// every round but does not hold the loop.
#[test]
fn wait_for_picks_the_ratios_that_must_be_tight() {
    let scripts = || vec![constant(ms(1.0)), constant(ms(1.0)), noisy(ms(0.5), 0.6, 11), constant(ms(0.5))];
    let opts = MeasureOptions { budget: Duration::from_secs(3), ..full() };
    let clock = FakeClock::default();
    let r = rounds_of(&mut fakes(&clock, scripts()), &[ALL], &opts, &clock);
    assert_eq!((r.len(), r.budget_exhausted), (opts.min_rounds, false));
    assert_eq!(r.times[EXTENDED].len(), opts.min_rounds);
    let clock = FakeClock::default();
    let r = rounds_of(&mut fakes(&clock, scripts()), &[EXTENDED, ALL], &opts, &clock);
    assert!(r.len() > opts.min_rounds);
}

/// Same seed, same fakes: the same rounds, number for number.
#[test]
fn rounds_are_reproducible() {
    let run = || {
        let clock = FakeClock::default();
        let mut v = fakes(
            &clock,
            vec![noisy(ms(1.0), 0.2, 1), noisy(ms(1.0), 0.2, 2), noisy(ms(0.7), 0.2, 3), noisy(ms(0.6), 0.2, 4)],
        );
        (rounds_of(&mut v, &[EXTENDED, ALL], &full(), &clock), clock.now())
    };
    assert_eq!(run(), run());
}

// ---------- warm-up, plan, order, preemption ----------

/// The warm-up runs each variant for at least its minimum runs and time (longer on CUDA), off the record.
#[test]
fn warm_up_length_per_options() {
    let cuda = Ep::Cuda { device_id: 0 };
    let cases = [
        (full(), 60),
        (quick(), 30),
        (MeasureOptions::new(cuda, 1, false), 500),
        (MeasureOptions::new(cuda, 1, true), 200),
    ];
    for (opts, warm) in cases {
        assert_eq!(warm_up_length(&opts).1, ms(warm as f64));
        let clock = FakeClock::default();
        let mut v = constants(&clock, [1.0, 1.0, 1.0, 1.0]);
        let r = rounds_of(&mut v, &[EXTENDED, ALL], &opts, &clock);
        // 1 ms runs: the minimum time, not the minimum count, ends the warm-up.
        for f in &v {
            assert_eq!(f.calls, warm + r.len() * r.iters, "{opts:?}");
        }
    }
    // A slow variant (100 ms a run) stops at the minimum count.
    let clock = FakeClock::default();
    let mut v = constants(&clock, [100.0, 100.0, 100.0, 100.0]);
    let opts = full();
    let r = rounds_of(&mut v, &[], &opts, &clock);
    assert_eq!(warm_up_length(&opts).0, 5);
    assert_eq!(v[UNFUSED].calls, 5 + r.len() * r.iters);
}

/// The plan comes from the fastest variant's warm-up median over the second half of its warm-up runs, so
/// slow first runs (one-off costs) do not count.
#[test]
fn the_plan_follows_the_fastest_warm_up() {
    // 2 us iterations: 25 per sub-slice, 80 sub-slices (full).
    let clock = FakeClock::default();
    let mut v = constants(&clock, [0.01, 0.01, 0.002, 0.004]);
    let r = rounds_of(&mut v, &[EXTENDED, ALL], &full(), &clock);
    assert_eq!(Plan::for_options(2e-6, &full()), Plan { sub_iters: 25, subs: 80 });
    assert_eq!(r.iters, 2000);
    assert!(r.times[EXTENDED].iter().all(|&t| (t - 2e-6).abs() < 1e-15));

    // Three 100 ms runs first, then 1 ms: planned for 1 ms (4 sub-slices of 1).
    let slow_start = || -> Script { Box::new(|n| Ok(if n < 3 { ms(100.0) } else { ms(1.0) })) };
    let clock = FakeClock::default();
    let mut v = fakes(&clock, (0..4).map(|_| slow_start()).collect());
    let r = rounds_of(&mut v, &[EXTENDED, ALL], &full(), &clock);
    assert_eq!(Plan::for_options(1e-3, &full()), Plan { sub_iters: 1, subs: 4 });
    assert_eq!(r.iters, 4);
    assert!(r.times.iter().flatten().all(|&t| t == 1e-3), "the slow warm-up runs leaked into the rounds");
    // Quick: 2 ms slices, still 3 sub-slices.
    assert_eq!(Plan::for_options(1e-3, &quick()), Plan { sub_iters: 1, subs: 3 });
}

/// Each round runs every variant once, as one contiguous slice of `iters` runs, in an order shuffled afresh
/// each round from the seed.
#[test]
fn rounds_run_each_variant_once_in_a_seeded_shuffled_order() {
    let orders = |seed: u64| {
        let clock = FakeClock::default();
        let log = Rc::new(RefCell::new(vec![]));
        let mut v = constants(&clock, [1.0, 1.0, 0.5, 0.5]);
        for f in &mut v {
            f.log = Some(log.clone());
        }
        let opts = MeasureOptions { seed, ..full() };
        let r = rounds_of(&mut v, &[EXTENDED, ALL], &opts, &clock);
        let log = log.borrow();
        // warm-up: 60 runs of unfused and control, 120 of each fused variant (0.5 ms), in variant order
        let warm = [60, 60, 120, 120];
        let mut at = 0;
        for (i, &w) in warm.iter().enumerate() {
            assert!(log[at..at + w].iter().all(|&x| x == i));
            at += w;
        }
        let rounds: Vec<Vec<usize>> = log[at..]
            .chunks(4 * r.iters)
            .map(|round| {
                let slices: Vec<&[usize]> = round.chunks(r.iters).collect();
                assert!(slices.iter().all(|s| s.iter().all(|&x| x == s[0])), "a slice mixes variants");
                slices.iter().map(|s| s[0]).collect()
            })
            .collect();
        assert_eq!(rounds.len(), r.len());
        for order in &rounds {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, vec![0, 1, 2, 3]);
        }
        rounds
    };
    let a = orders(42);
    assert_eq!(a, orders(42));
    assert!(a.iter().any(|o| *o != a[0]), "the order never changed: {a:?}");
    assert!((0..4).all(|i| a.iter().any(|o| o[0] == i)), "some variant never went first: {a:?}");
    assert_ne!(a, orders(43));
}

/// A preempted sub-slice is an outlier the sub-slice median drops; a preempted whole slice spoils one round,
/// which the median over rounds drops.
#[test]
fn preemption_is_dropped_by_the_medians() {
    // One 40 ms run among the unfused variant's 1 ms runs (call 100: in the rounds, past the 60-run warm-up).
    let clock = FakeClock::default();
    let once: Script = Box::new(|n| Ok(if n == 100 { ms(40.0) } else { ms(1.0) }));
    let mut v = fakes(&clock, vec![once, constant(ms(1.0)), constant(ms(0.5)), constant(ms(0.5))]);
    let r = rounds_of(&mut v, &[EXTENDED, ALL], &full(), &clock);
    assert_eq!(r.iters, 8); // 8 sub-slices of one 0.5 ms run
    assert!(r.times[UNFUSED].iter().all(|&t| t == 1e-3), "{:?}", r.times[UNFUSED]);
    assert_eq!(r.len(), 15);

    // The whole of one unfused slice at 40 ms: that round's time is 40 ms, the estimates do not move.
    let clock = FakeClock::default();
    let slice: Script = Box::new(|n| Ok(if (100..108).contains(&n) { ms(40.0) } else { ms(1.0) }));
    let mut v = fakes(&clock, vec![slice, constant(ms(1.0)), constant(ms(0.5)), constant(ms(0.5))]);
    let opts = full();
    let r = rounds_of(&mut v, &[EXTENDED, ALL], &opts, &clock);
    assert_eq!(r.times[UNFUSED].iter().filter(|&&t| t == 40e-3).count(), 1, "{:?}", r.times[UNFUSED]);
    let s = Summary::of(&r, opts.seed);
    assert_eq!(s.speedup_extended.point, 2.0);
    assert_eq!(s.aa_control.point, 1.0);
    assert_eq!(s.unfused.median_ms, 1.0);
    assert_eq!(s.unfused.min_ms, 1.0);
}

// ---------- failures ----------

fn fails_at(k: usize, d: Duration) -> Script {
    Box::new(move |n| if n == k { Err(anyhow!("scripted failure at run {k}")) } else { Ok(d) })
}

/// A run that fails, in the warm-up or in the rounds, stops the timing and names its variant.
#[test]
fn a_failing_run_names_its_variant() {
    for (k, when) in [(2, "warm-up"), (200, "rounds")] {
        let clock = FakeClock::default();
        let mut v = fakes(&clock, vec![constant(ms(1.0)), constant(ms(1.0)), constant(ms(0.5)), fails_at(k, ms(0.5))]);
        let Err(f) = run_rounds(&mut v, &[EXTENDED, ALL], &full(), &clock) else {
            panic!("a failure in the {when} went unnoticed");
        };
        assert_eq!(f.variant, ALL, "{when}");
        assert_eq!(f.error.to_string(), format!("scripted failure at run {k}"));
        assert_eq!(v[ALL].calls, k, "runs after the failure ({when})");
    }
    // Through time_variants, a failure of one of the four fails the timing, with context.
    let clock = FakeClock::default();
    let mut v = fakes(&clock, vec![constant(ms(1.0)), fails_at(150, ms(1.0)), constant(ms(0.5)), constant(ms(0.5))]);
    let e = time_variants(&mut v, &[EXTENDED, ALL], &full(), &clock).unwrap_err();
    assert_eq!(format!("{e:#}"), "timing rounds: scripted failure at run 150");
}

/// An explicit-fused variant that fails mid-run is dropped with its error, and the other four are timed again
/// from scratch, with a fresh budget.
#[test]
fn a_failing_explicit_variant_is_dropped_and_the_rest_retimed() {
    let clock = FakeClock::default();
    let mut v = fakes(
        &clock,
        vec![constant(ms(1.0)), constant(ms(1.0)), constant(ms(0.5)), constant(ms(0.5)), fails_at(323, ms(0.25))],
    );
    // The explicit variant warms up for 240 runs, then runs 16 a round (16 sub-slices of one 0.25 ms run):
    // run 323 is in the sixth round.
    let (r, err) = time_variants(&mut v, &[EXTENDED, ALL, EXPLICIT], &full(), &clock).unwrap();
    assert_eq!(err.map(|e| e.to_string()), Some("scripted failure at run 323".to_string()));
    assert_eq!(r.times.len(), 4);
    assert_eq!((r.len(), r.budget_exhausted), (15, false));
    assert_eq!(v[EXPLICIT].calls, 323);
    // Retimed: a warm-up and five (or six, by the shuffle) rounds of 16 in the first attempt, then a second
    // warm-up and 15 rounds of 8.
    assert_eq!(r.iters, 8);
    assert!([5, 6].map(|k| 2 * 60 + k * 16 + 15 * 8).contains(&v[UNFUSED].calls), "{}", v[UNFUSED].calls);
    let s = Summary::of(&r, 42);
    assert_eq!(s.explicit, None);
    assert_eq!(s.speedup_extended.point, 2.0);

    // A budget mostly spent by the first attempt does not starve the second: it gets its own. The first
    // attempt warms up for 300 ms and fails in its sixth round (~470 ms of a 500 ms budget); sharing the budget,
    // the second would stop after MIN_ROUNDS_HARD rounds.
    let clock = FakeClock::default();
    let mut v = fakes(
        &clock,
        vec![
            constant(ms(1.0)),
            noisy(ms(1.0), 0.6, 5),
            constant(ms(0.5)),
            constant(ms(0.5)),
            fails_at(120 + 8 * 5 + 2, ms(0.5)),
        ],
    );
    let opts = MeasureOptions { budget: Duration::from_millis(500), ..full() };
    let (r, err) = time_variants(&mut v, &[EXTENDED, ALL], &opts, &clock).unwrap();
    assert!(err.is_some());
    assert!(r.budget_exhausted && r.len() > MIN_ROUNDS_HARD, "{} rounds", r.len());
}

// ---------- the statistics of a comparison ----------

/// A variant exactly twice as fast reads 2.00, with the session floor's CI around it; one three times slower
/// reads 0.33 and is `Slower`; the identical control reads 1.00.
#[test]
fn scripted_speedups() {
    let clock = FakeClock::default();
    let mut v = constants(&clock, [1.0, 1.0, 0.5, 3.0]);
    let opts = full();
    let r = rounds_of(&mut v, &[EXTENDED, ALL], &opts, &clock);
    let s = Summary::of(&r, opts.seed);
    let floored = |p: f64| Estimate { point: p, lo: p * (1.0 - SESSION_FLOOR), hi: p * (1.0 + SESSION_FLOOR) };
    assert_eq!(s.speedup_extended, floored(2.0));
    assert!((s.speedup_all.point - 1.0 / 3.0).abs() < 1e-12);
    assert!((s.speedup_all.rel_half_width() - SESSION_FLOOR).abs() < 1e-12);
    assert_eq!(s.aa_control, floored(1.0));
    assert!(s.aa_ok);
    assert_eq!(verdict(&s.speedup_extended, aa_noise(&s.aa_control)), Verdict::Faster);
    assert_eq!(verdict(&s.speedup_all, aa_noise(&s.aa_control)), Verdict::Slower);
    assert_eq!((s.unfused.median_ms, s.fused_extended.median_ms, s.fused_all.median_ms), (1.0, 0.5, 3.0));
    assert_eq!(s.unfused.ci_ms, Estimate::exact(1.0));
    assert_eq!(s.fused_all.samples, 15);
    assert_eq!(s.explicit, None);
}

/// With seeded noise on every run the 2x speedup's CI still contains 2.00, and is within the target.
#[test]
fn a_noisy_2x_speedup_contains_2() {
    let clock = FakeClock::default();
    let mut v = fakes(
        &clock,
        vec![noisy(ms(1.0), 0.1, 21), noisy(ms(1.0), 0.1, 22), noisy(ms(0.5), 0.1, 23), noisy(ms(1.0), 0.1, 24)],
    );
    let opts = full();
    let r = rounds_of(&mut v, &[EXTENDED, ALL], &opts, &clock);
    assert!(!r.budget_exhausted);
    let s = Summary::of(&r, opts.seed);
    assert!(s.speedup_extended.contains(2.0), "{:?}", s.speedup_extended);
    assert!((s.speedup_extended.point / 2.0 - 1.0).abs() <= opts.target_rel_ci, "{:?}", s.speedup_extended);
    assert!(s.speedup_extended.rel_half_width() <= 0.025, "{:?}", s.speedup_extended);
    assert_eq!(verdict(&s.speedup_extended, aa_noise(&s.aa_control)), Verdict::Faster);
    assert!(s.speedup_all.contains(1.0));
    assert_eq!(verdict(&s.speedup_all, aa_noise(&s.aa_control)), Verdict::WithinNoise);
    assert!(s.aa_control.contains(1.0) && s.aa_ok, "{:?}", s.aa_control);
}

/// The fifth, explicit variant is summarised beside the others, with its own seed.
#[test]
fn the_explicit_variant_is_summarised() {
    let clock = FakeClock::default();
    let mut v = fakes(
        &clock,
        vec![constant(ms(1.0)), constant(ms(1.0)), constant(ms(0.5)), constant(ms(0.5)), constant(ms(0.25))],
    );
    let opts = full();
    let (r, err) = time_variants(&mut v, &[EXTENDED, ALL, EXPLICIT], &opts, &clock).unwrap();
    assert!(err.is_none());
    assert_eq!(r.times.len(), 5);
    let (latency, speedup) = Summary::of(&r, opts.seed).explicit.expect("the explicit variant was timed");
    assert_eq!(latency.median_ms, 0.25);
    assert_eq!(speedup.point, 4.0);
}

/// Identical fakes (same distribution, independent noise) read 1.00 on the A/A control; a control 5% slower
/// does not, and `aa_ok` says so; an exact 0.5% bias is within the tolerance.
#[test]
fn the_aa_control() {
    let aa = |control: Script| {
        let clock = FakeClock::default();
        let mut v = fakes(&clock, vec![noisy(ms(1.0), 0.1, 31), control, constant(ms(0.5)), constant(ms(0.5))]);
        let opts = MeasureOptions { budget: Duration::from_secs(5), ..full() };
        let r = rounds_of(&mut v, &[EXTENDED, ALL], &opts, &clock);
        Summary::of(&r, opts.seed)
    };
    let same = aa(noisy(ms(1.0), 0.1, 32));
    assert!(same.aa_control.contains(1.0), "{:?}", same.aa_control);
    assert!((same.aa_control.point - 1.0).abs() < 0.02, "{:?}", same.aa_control);
    assert!(same.aa_ok);

    let biased = aa(noisy(ms(1.05), 0.1, 32));
    assert!(!biased.aa_control.contains(1.0), "{:?}", biased.aa_control);
    assert!(biased.aa_control.hi < 1.0 - AA_TOLERANCE, "{:?}", biased.aa_control);
    assert!(!biased.aa_ok);

    // Exact runs, control 0.5% slower: the CI excludes 1.0 but lies within 1 ± AA_TOLERANCE.
    let clock = FakeClock::default();
    let mut v = constants(&clock, [1.0, 1.005, 0.5, 0.5]);
    let s = Summary::of(&rounds_of(&mut v, &[EXTENDED, ALL], &full(), &clock), 42);
    assert!(!s.aa_control.contains(1.0) && s.aa_ok, "{:?}", s.aa_control);
}

#[test]
fn aa_ok_bounds() {
    let e = |lo: f64, hi: f64| Estimate { point: (lo + hi) / 2.0, lo, hi };
    assert!(aa_ok(&e(0.981, 1.019))); // contains 1.0, narrower than the ±2% verdict band
    assert!(aa_ok(&e(1.002, 1.008))); // misses 1.0 by an irrelevant margin
    assert!(aa_ok(&e(0.99, 0.995))); // bounds included
    assert!(!aa_ok(&e(1.005, 1.02)));
    assert!(!aa_ok(&e(0.95, 0.98)));
    // contains 1.0 but is wider than the band: it cannot tell a 5% speedup from noise
    assert!(!aa_ok(&e(0.97, 1.03)));
    assert!(!aa_ok(&Estimate { point: 0.91, lo: 0.75, hi: 1.14 }));
    // consistent with 1.00 all the same (how a combined control, which carries the session spread, is judged)
    assert!(aa_consistent(&e(0.97, 1.03)) && aa_consistent(&Estimate { point: 0.91, lo: 0.75, hi: 1.14 }));
    assert!(!aa_consistent(&e(0.95, 0.98)));
}

/// Ratio CIs are never narrower than ± SESSION_FLOOR; wider ones are the plain median CI.
#[test]
fn the_session_floor_widens_tight_cis() {
    let exact = vec![1.25; 30];
    let e = ratio_estimate(&exact, 5);
    assert_eq!(e.point, 1.25);
    assert!((e.lo - 1.25 * (1.0 - SESSION_FLOOR)).abs() < 1e-15 && (e.hi - 1.25 * (1.0 + SESSION_FLOOR)).abs() < 1e-15);
    assert!((e.rel_half_width() - SESSION_FLOOR).abs() < 1e-12);
    // Narrower than the floor: widened to it.
    let tight: Vec<f64> = (0..30).map(|i| 1.0 + 0.0005 * (i % 3) as f64).collect();
    let m = median_ci(&tight, RESAMPLES, 5);
    let e = ratio_estimate(&tight, 5);
    assert_eq!(e.point, m.point);
    assert_eq!((e.lo, e.hi), (m.lo.min(m.point * (1.0 - SESSION_FLOOR)), m.hi.max(m.point * (1.0 + SESSION_FLOOR))));
    assert!(e.hi - e.lo > m.hi - m.lo);
    // Wide: untouched.
    let wide: Vec<f64> = (0..30).map(|i| 0.9 + 0.2 * ((i * 7) % 30) as f64 / 30.0).collect();
    assert_eq!(ratio_estimate(&wide, 5), median_ci(&wide, RESAMPLES, 5));
}

// ---------- the estimate functions on known samples ----------

#[test]
fn median_and_cis_on_known_samples() {
    let one_to_15: Vec<f64> = (1..=15).map(f64::from).collect();
    assert_eq!(median(&one_to_15), 8.0);
    assert_eq!(median(&[2.0, 9.0, 4.0, 1.0]), 3.0);
    // n = 15: the order-statistic interval is [x(4), x(12)], and the reported union is no narrower.
    assert_eq!(order_stat_median_ci(&one_to_15), Estimate { point: 8.0, lo: 4.0, hi: 12.0 });
    let u = median_ci(&one_to_15, RESAMPLES, 1);
    assert_eq!(u.point, 8.0);
    assert!(u.lo <= 4.0 && u.hi >= 12.0, "{u:?}");
    assert_eq!(u, median_ci(&one_to_15, RESAMPLES, 1));
    // Below 6 samples no rank reaches 95%: [min, max].
    assert_eq!(order_stat_median_ci(&[5.0, 1.0, 3.0, 2.0, 4.0]), Estimate { point: 3.0, lo: 1.0, hi: 5.0 });
    // Identical samples: a zero-width interval.
    assert_eq!(median_ci(&[0.7; 20], RESAMPLES, 1), Estimate::exact(0.7));
}

#[test]
fn verdicts_against_the_aa_band() {
    let e = |lo: f64, hi: f64| Estimate { point: (lo + hi) / 2.0, lo, hi };
    // the control reads 1.012: the band widens from ±2% to ±3.2%
    let aa = Estimate { point: 1.012, lo: 0.995, hi: 1.03 };
    assert!((aa_noise(&aa) - 0.012).abs() < 1e-12);
    let noise = noise_band(Some(&aa));
    assert!((noise - 0.032).abs() < 1e-12);
    assert_eq!(verdict(&e(1.04, 1.07), noise), Verdict::Faster);
    assert_eq!(verdict(&e(1.025, 1.05), noise), Verdict::WithinNoise); // clears 1.02, not the widened band
    assert_eq!(verdict(&e(1.025, 1.05), NOISE), Verdict::Faster);
    assert_eq!(verdict(&e(0.90, 0.96), noise), Verdict::Slower);
    assert_eq!(verdict(&e(0.90, 0.97), noise), Verdict::WithinNoise);
    // The band's edges are inside it.
    assert_eq!(verdict(&e(1.0 + 0.25, 1.5), 0.25), Verdict::WithinNoise);
    assert_eq!(verdict(&e(0.5, 1.0 - 0.25), 0.25), Verdict::WithinNoise);
    assert_eq!(verdict(&e(1.1, 1.2), -1.0), Verdict::Faster); // negative noise counts as 0
    assert_eq!(verdict(&e(0.99, 1.01), 0.0), Verdict::WithinNoise);
}
