//! Interleaved, adaptive timing rounds over the variants of a comparison (four, or five with an explicit-fused
//! model).

use std::time::{Duration, Instant};

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::session::Variant;
use super::MeasureOptions;
use crate::estimate::median_ci;

/// Index of each variant in the slice passed to [`run_rounds`].
pub(crate) const UNFUSED: usize = 0;
pub(crate) const CONTROL: usize = 1;
pub(crate) const EXTENDED: usize = 2;
pub(crate) const ALL: usize = 3;
pub(crate) const EXPLICIT: usize = 4;

/// Fewest rounds before the time budget may stop a measurement (a CI needs a few points).
const MIN_ROUNDS_HARD: usize = 3;
/// Resamples used by the stopping rule (the reported CIs use more).
const CHECK_RESAMPLES: usize = 400;

/// Per-iteration seconds of each variant, one entry per round.
pub(crate) struct Rounds {
    pub times: Vec<Vec<f64>>,
    pub iters: usize,
    pub budget_exhausted: bool,
}

impl Rounds {
    /// Per-round ratio `times[num] / times[den]`.
    pub fn ratios(&self, num: usize, den: usize) -> Vec<f64> {
        self.times[num].iter().zip(&self.times[den]).map(|(a, b)| a / b).collect()
    }
}

/// Warm a variant up (at least `min_runs` runs and `min_time`); returns the median seconds per run.
fn warm_up(v: &Variant, min_runs: usize, min_time: Duration) -> Result<f64> {
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < min_runs || start.elapsed() < min_time {
        let t = Instant::now();
        v.run_bound()?;
        times.push(t.elapsed().as_secs_f64());
    }
    // Median of the second half: the first runs pay one-off costs.
    let tail = &times[times.len() / 2..];
    Ok(crate::estimate::median(tail))
}

/// How a round is cut: each variant runs `subs` sub-slices of `sub_iters` back-to-back iterations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
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

    pub fn iters(&self) -> usize {
        self.sub_iters * self.subs
    }
}

/// Ceiling that ignores float noise (25.000000000000004 is 25).
fn ceil(x: f64) -> f64 {
    (x - 1e-9).ceil()
}

/// A run that failed during timing, and which variant (index into the slice) it was.
pub(crate) struct RunFailure {
    pub variant: usize,
    pub error: anyhow::Error,
}

/// Warm up, plan the slices, then run shuffled rounds until the fused speedups and the A/A control are tight
/// enough (a noisy control means the host was disturbed: keep measuring), the budget runs out, or `max_rounds`.
/// `wait_for` lists the fused variants whose ratio CI must be tight; every variant is timed either way.
///
/// A round runs every variant once, in a freshly shuffled order. A variant's time for the round is the median,
/// over its sub-slices, of the sub-slice time divided by its iterations: a sub-slice the OS preempted (or that
/// another process disturbed) is an outlier the median drops, while each sub-slice is long enough that the timer
/// costs nothing. On the shared 2-core development host a fifth of the slices were preempted; plain slice means
/// made the per-round ratios 3-8 times noisier.
pub(crate) fn run_rounds(
    variants: &[&Variant],
    wait_for: &[usize],
    opts: &MeasureOptions,
) -> std::result::Result<Rounds, RunFailure> {
    let fail = |variant: usize| move |error: anyhow::Error| RunFailure { variant, error };
    let start = Instant::now();
    let (mut warm_runs, mut warm_time, slice) = if opts.quick {
        (3, Duration::from_millis(30), Duration::from_millis(2))
    } else {
        (5, Duration::from_millis(60), Duration::from_millis(4))
    };
    if matches!(opts.ep, crate::runtime::Ep::Cuda { .. }) {
        // cuDNN's algorithm search, lazy workspace allocation, a CUDA graph's capture and the GPU's clocks
        // settle over the first runs: keep them all out of the numbers
        warm_runs = warm_runs.max(if opts.quick { 20 } else { 50 });
        warm_time = warm_time.max(Duration::from_millis(if opts.quick { 200 } else { 500 }));
    }
    let mut fastest = f64::INFINITY;
    for (i, v) in variants.iter().enumerate() {
        fastest = fastest.min(warm_up(v, warm_runs, warm_time).map_err(fail(i))?);
    }
    let plan = Plan::new(fastest, Duration::from_micros(50), slice, Duration::from_millis(60));

    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x0072_6f75_6e64);
    let mut order: Vec<usize> = (0..variants.len()).collect();
    let mut rounds = Rounds { times: vec![Vec::new(); variants.len()], iters: plan.iters(), budget_exhausted: false };
    let mut next_check = opts.min_rounds.max(2);
    let max_rounds = opts.max_rounds.max(opts.min_rounds).max(1);
    let mut subs = vec![0.0; plan.subs];
    loop {
        order.shuffle(&mut rng);
        for &i in &order {
            let v = variants[i];
            for s in subs.iter_mut() {
                let t = Instant::now();
                for _ in 0..plan.sub_iters {
                    v.run_bound().map_err(fail(i))?;
                }
                *s = t.elapsed().as_secs_f64() / plan.sub_iters as f64;
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
        if start.elapsed() >= opts.budget && n >= MIN_ROUNDS_HARD {
            rounds.budget_exhausted = true;
            break;
        }
    }
    Ok(rounds)
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
