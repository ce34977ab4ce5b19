//! Interleaved, adaptive timing rounds over the variants of a comparison (four, or five with an explicit-fused
//! model).
//!
//! The round loop runs over two small traits, so that its statistics, stopping rule and failure handling can be
//! tested without ONNX Runtime and without the machine's clock: [`Timed`] (one run of a variant; the real one is
//! an ORT session through its I/O binding) and [`Clock`] (the time the loop reads; the real one is
//! [`WallClock`]). A fake variant that advances a fake clock by scripted durations makes a run deterministic.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::session::Variant;
use super::MeasureOptions;
use crate::estimate::median_ci;

/// One variant the rounds time: a single run, e.g. one ORT inference. The loop reads the [`Clock`] around
/// back-to-back runs, never inside one.
pub trait Timed {
    fn run(&mut self) -> Result<()>;
}

impl Timed for Variant {
    /// The timed call: one run through the I/O binding.
    #[inline]
    fn run(&mut self) -> Result<()> {
        self.run_bound()
    }
}

/// What the round loop reads the time from: the warm-up's length, each sub-slice's length and the budget.
pub trait Clock {
    /// Time elapsed since a fixed origin (monotonic).
    fn now(&self) -> Duration;
}

/// The machine's monotonic clock, from the moment it was created.
#[derive(Clone, Copy, Debug)]
pub struct WallClock(Instant);

impl WallClock {
    pub fn new() -> Self {
        WallClock(Instant::now())
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for WallClock {
    #[inline]
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Time since `t` (a reading of `clock`), in seconds.
#[inline]
fn since(clock: &impl Clock, t: Duration) -> f64 {
    clock.now().saturating_sub(t).as_secs_f64()
}

/// Index of each variant in the slice passed to [`run_rounds`].
pub const UNFUSED: usize = 0;
pub const CONTROL: usize = 1;
pub const EXTENDED: usize = 2;
pub const ALL: usize = 3;
pub const EXPLICIT: usize = 4;

/// Fewest rounds before the time budget may stop a measurement (a CI needs a few points).
pub const MIN_ROUNDS_HARD: usize = 3;
/// Resamples used by the stopping rule (the reported CIs use more).
pub const CHECK_RESAMPLES: usize = 400;

/// Per-iteration seconds of each variant, one entry per round.
#[derive(Clone, Debug, PartialEq)]
pub struct Rounds {
    pub times: Vec<Vec<f64>>,
    pub iters: usize,
    pub budget_exhausted: bool,
}

impl Rounds {
    /// Per-round ratio `times[num] / times[den]`.
    pub fn ratios(&self, num: usize, den: usize) -> Vec<f64> {
        self.times[num].iter().zip(&self.times[den]).map(|(a, b)| a / b).collect()
    }

    /// Rounds run (every variant has one time per round).
    pub fn len(&self) -> usize {
        self.times.first().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Warm a variant up (at least `min_runs` runs and `min_time`); returns the median seconds per run.
fn warm_up(v: &mut impl Timed, clock: &impl Clock, min_runs: usize, min_time: Duration) -> Result<f64> {
    let start = clock.now();
    let mut times = Vec::new();
    while times.len() < min_runs || clock.now().saturating_sub(start) < min_time {
        let t = clock.now();
        v.run()?;
        times.push(since(clock, t));
    }
    // Median of the second half: the first runs pay one-off costs.
    let tail = &times[times.len() / 2..];
    Ok(crate::estimate::median(tail))
}

/// How a round is cut: each variant runs `subs` sub-slices of `sub_iters` back-to-back iterations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub sub_iters: usize,
    pub subs: usize,
}

impl Plan {
    /// Sub-slices last at least `sub_min` (timer overhead < 0.1%); a slice (all sub-slices of one variant)
    /// lasts at least `slice`; and there are at least 3 sub-slices per slice when that keeps the slice under
    /// `slice_max`, so the median can drop an interrupted one.
    pub fn new(per_iter: f64, sub_min: Duration, slice: Duration, slice_max: Duration) -> Plan {
        let t = per_iter.max(1e-9);
        let sub_iters = (ceil(sub_min.as_secs_f64() / t) as usize).clamp(1, 100_000);
        let sub = sub_iters as f64 * t;
        let want = ceil(slice.as_secs_f64() / sub) as usize;
        let affordable = (slice_max.as_secs_f64() / sub).floor() as usize;
        let subs = want.max(affordable.min(3)).clamp(1, 10_000);
        Plan { sub_iters, subs }
    }

    /// The plan [`run_rounds`] makes for a fastest warm-up median of `per_iter` seconds under `opts`.
    pub fn for_options(per_iter: f64, opts: &MeasureOptions) -> Plan {
        let slice = Duration::from_millis(if opts.quick { 2 } else { 4 });
        Plan::new(per_iter, Duration::from_micros(50), slice, Duration::from_millis(60))
    }

    pub fn iters(&self) -> usize {
        self.sub_iters * self.subs
    }
}

/// Ceiling that ignores float noise (25.000000000000004 is 25).
fn ceil(x: f64) -> f64 {
    (x - 1e-9).ceil()
}

/// How long the warm-up lasts under `opts`: at least this many runs and this much time per variant.
pub fn warm_up_length(opts: &MeasureOptions) -> (usize, Duration) {
    let (mut warm_runs, mut warm_time) =
        if opts.quick { (3, Duration::from_millis(30)) } else { (5, Duration::from_millis(60)) };
    if matches!(opts.ep, crate::runtime::Ep::Cuda { .. }) {
        // cuDNN's algorithm search, lazy workspace allocation, a CUDA graph's capture and the GPU's clocks
        // settle over the first runs: keep them all out of the numbers
        warm_runs = warm_runs.max(if opts.quick { 20 } else { 50 });
        warm_time = warm_time.max(Duration::from_millis(if opts.quick { 200 } else { 500 }));
    }
    (warm_runs, warm_time)
}

/// A run that failed during timing, and which variant (index into the slice) it was.
#[derive(Debug)]
pub struct RunFailure {
    pub variant: usize,
    pub error: anyhow::Error,
}

/// Warm up, plan the slices, then run shuffled rounds until the fused speedups and the A/A control are tight
/// enough (a noisy control means the host was disturbed: keep measuring), the budget runs out, or `max_rounds`.
/// `wait_for` lists the fused variants whose ratio CI must be tight; every variant is timed either way.
/// `variants` are indexed by [`UNFUSED`], [`CONTROL`], [`EXTENDED`], [`ALL`] and, optionally, [`EXPLICIT`].
///
/// A round runs every variant once, in a freshly shuffled order. A variant's time for the round is the median,
/// over its sub-slices, of the sub-slice time divided by its iterations: a sub-slice the OS preempted (or that
/// another process disturbed) is an outlier the median drops, while each sub-slice is long enough that the timer
/// costs nothing. On the shared 2-core development host a fifth of the slices were preempted; plain slice means
/// made the per-round ratios 3-8 times noisier.
///
/// The stopping rule, checked after each round from `max(min_rounds, 2)` on (every `n / 50` rounds past 100):
/// stop once `n >= min_rounds` and the CI ([`median_ci`] with [`CHECK_RESAMPLES`] resamples, seeded with
/// `opts.seed`) of the per-round ratios unfused / control and unfused / each of `wait_for` is within
/// ± `opts.target_rel_ci` of its point. Otherwise stop at `max_rounds`, or once `clock` has run the budget
/// ([`stretched_budget`]) since the call (warm-up included) and at least [`MIN_ROUNDS_HARD`] rounds are in
/// ([`Rounds::budget_exhausted`]).
pub fn run_rounds<T: Timed>(
    variants: &mut [T],
    wait_for: &[usize],
    opts: &MeasureOptions,
    clock: &impl Clock,
) -> std::result::Result<Rounds, RunFailure> {
    let fail = |variant: usize| move |error: anyhow::Error| RunFailure { variant, error };
    let start = clock.now();
    let (warm_runs, warm_time) = warm_up_length(opts);
    let mut warm = vec![];
    for (i, v) in variants.iter_mut().enumerate() {
        warm.push(warm_up(v, clock, warm_runs, warm_time).map_err(fail(i))?);
    }
    let fastest = warm.iter().copied().fold(f64::INFINITY, f64::min);
    let plan = Plan::for_options(fastest, opts);
    let budget = stretched_budget(opts, warm.iter().sum::<f64>() * plan.iters() as f64);

    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x0072_6f75_6e64);
    let mut order: Vec<usize> = (0..variants.len()).collect();
    let mut rounds = Rounds { times: vec![Vec::new(); variants.len()], iters: plan.iters(), budget_exhausted: false };
    let mut next_check = opts.min_rounds.max(2);
    let max_rounds = opts.max_rounds.max(opts.min_rounds).max(1);
    let mut subs = vec![0.0; plan.subs];
    loop {
        order.shuffle(&mut rng);
        for &i in &order {
            let v = &mut variants[i];
            for s in subs.iter_mut() {
                let t = clock.now();
                for _ in 0..plan.sub_iters {
                    v.run().map_err(fail(i))?;
                }
                *s = since(clock, t) / plan.sub_iters as f64;
            }
            rounds.times[i].push(crate::estimate::median(&subs));
        }
        let n = rounds.times[0].len();
        if n >= max_rounds {
            break;
        }
        if n >= next_check {
            // Stride grows with n so the bootstrap costs little next to the timing.
            next_check = n + (n / 50).max(1);
            let tight = |den: usize| {
                median_ci(&rounds.ratios(UNFUSED, den), CHECK_RESAMPLES, opts.seed).rel_half_width()
                    <= opts.target_rel_ci
            };
            if n >= opts.min_rounds && tight(CONTROL) && wait_for.iter().all(|&i| tight(i)) {
                break;
            }
        }
        if clock.now().saturating_sub(start) >= budget && n >= MIN_ROUNDS_HARD {
            rounds.budget_exhausted = true;
            break;
        }
    }
    Ok(rounds)
}

/// The budget of a set of rounds: `opts.budget`, stretched to afford [`MeasureOptions::rounds_in_budget`]
/// rounds of `round_s` seconds (at most [`super::ROUNDS_BUDGET_MAX`]).
pub fn stretched_budget(opts: &MeasureOptions, round_s: f64) -> Duration {
    let want = Duration::from_secs_f64((opts.rounds_in_budget as f64 * round_s.max(0.0)).min(1e6));
    opts.budget.max(want.min(super::ROUNDS_BUDGET_MAX))
}

/// [`run_rounds`] with the explicit variant's failure handled: when the variant at [`EXPLICIT`] fails, its error
/// is returned beside rounds of the other four, timed again from the start (warm-up and budget included) without
/// it; any other variant's failure fails the whole timing.
pub fn time_variants<T: Timed>(
    variants: &mut [T],
    wait_for: &[usize],
    opts: &MeasureOptions,
    clock: &impl Clock,
) -> Result<(Rounds, Option<anyhow::Error>)> {
    match run_rounds(variants, wait_for, opts, clock) {
        Ok(r) => Ok((r, None)),
        Err(f) if f.variant == EXPLICIT => {
            let rounds = run_rounds(&mut variants[..EXPLICIT], &[EXTENDED, ALL], opts, clock)
                .map_err(|f| f.error)
                .context("timing rounds")?;
            Ok((rounds, Some(f.error)))
        }
        Err(f) => Err(f.error.context("timing rounds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        // 0.6 ms iterations: one per sub-slice, 7 sub-slices fill 4 ms.
        assert_eq!(Plan::new(600e-6, us(50), ms(4), ms(60)), Plan { sub_iters: 1, subs: 7 });
        // 2 us iterations: 25 per sub-slice, 80 sub-slices.
        assert_eq!(Plan::new(2e-6, us(50), ms(4), ms(60)), Plan { sub_iters: 25, subs: 80 });
        // 15 ms: still 3 sub-slices (45 ms) so the median can drop one.
        assert_eq!(Plan::new(15e-3, us(50), ms(4), ms(60)), Plan { sub_iters: 1, subs: 3 });
        // 100 ms: one run per slice.
        assert_eq!(Plan::new(0.1, us(50), ms(4), ms(60)), Plan { sub_iters: 1, subs: 1 });
    }
}
