//! Interleaved, adaptive timing rounds over the four variants of a comparison.

use std::time::{Duration, Instant};

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::session::Variant;
use super::MeasureOptions;
use crate::estimate::bootstrap_median_ci;

/// Index of each variant in the slice passed to [`run_rounds`].
pub(crate) const UNFUSED: usize = 0;
pub(crate) const CONTROL: usize = 1;
pub(crate) const EXTENDED: usize = 2;
pub(crate) const ALL: usize = 3;

/// Fewest rounds before the time budget may stop a measurement (a CI needs a few points).
const MIN_ROUNDS_HARD: usize = 3;
/// Resamples used by the stopping rule (the reported CIs use more).
const CHECK_RESAMPLES: usize = 400;

/// Per-iteration seconds of each variant, one entry per round.
pub(crate) struct Rounds {
    pub times: [Vec<f64>; 4],
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

/// Warm up, pick iterations per slice, then run shuffled rounds until both fused speedups are tight enough,
/// the budget runs out, or `max_rounds`.
pub(crate) fn run_rounds(variants: &[Variant; 4], opts: &MeasureOptions) -> Result<Rounds> {
    let start = Instant::now();
    let (warm_runs, warm_time, slice) =
        if opts.quick { (3, Duration::from_millis(30), Duration::from_millis(2)) } else { (5, Duration::from_millis(60), Duration::from_millis(4)) };
    let mut fastest = f64::INFINITY;
    for v in variants {
        fastest = fastest.min(warm_up(v, warm_runs, warm_time)?);
    }
    // Every slice (k back-to-back runs of one variant) lasts at least `slice`, so timer and switching overheads
    // stay small against it.
    let iters = ((slice.as_secs_f64() / fastest.max(1e-9)).ceil() as usize).clamp(1, 100_000);

    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ 0x0072_6f75_6e64);
    let mut order = [UNFUSED, CONTROL, EXTENDED, ALL];
    let mut rounds = Rounds { times: Default::default(), iters, budget_exhausted: false };
    let mut next_check = opts.min_rounds.max(2);
    let max_rounds = opts.max_rounds.max(opts.min_rounds).max(1);
    let mut exp_raw: Vec<String> = Vec::new();
    loop {
        order.shuffle(&mut rng);
        for &i in &order {
            let v = &variants[i];
            let cs0 = exp_nivcsw();
            let t = Instant::now();
            let mut its = Vec::with_capacity(iters);
            for _ in 0..iters {
                let ti = Instant::now();
                v.run_bound()?;
                its.push(ti.elapsed().as_secs_f64());
            }
            let tot = t.elapsed().as_secs_f64();
            rounds.times[i].push(tot / iters as f64);
            exp_raw.push(format!("[{i},{tot},{},{:?}]", exp_nivcsw() - cs0, its));
        }
        let n = rounds.times[0].len();
        if n >= max_rounds {
            break;
        }
        if n >= next_check {
            // Stride grows with n so the bootstrap costs little next to the timing.
            next_check = n + (n / 50).max(1);
            let tight = |den: usize| bootstrap_median_ci(&rounds.ratios(UNFUSED, den), CHECK_RESAMPLES, opts.seed).rel_half_width() <= opts.target_rel_ci;
            if n >= opts.min_rounds && tight(EXTENDED) && tight(ALL) {
                break;
            }
        }
        if start.elapsed() >= opts.budget && n >= MIN_ROUNDS_HARD {
            rounds.budget_exhausted = true;
            break;
        }
    }
    if let Ok(p) = std::env::var("FUSEVAL_EXP_DUMP") {
        let s: Vec<String> = rounds.times.iter().map(|v| format!("{:?}", v)).collect();
        let _ = std::fs::write(format!("{p}.{}", opts.seed), format!("[{}]", s.join(",")));
        let _ = std::fs::write(format!("{p}.{}.raw", opts.seed), format!("[{}]", exp_raw.join(",")));
    }
    Ok(rounds)
}

fn exp_nivcsw() -> i64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
    u.ru_nivcsw as i64
}
