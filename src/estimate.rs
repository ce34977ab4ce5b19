//! Criterion-style estimates: medians, percentile-bootstrap confidence intervals, and verdicts.
//!
//! Every number fuseval reports as a speedup or a latency is an [`Estimate`]: a point (the sample median)
//! and a 95% confidence interval from a seeded percentile bootstrap, so a run can be reproduced exactly.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A point estimate with its 95% confidence interval `[lo, hi]`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    pub point: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Estimate {
    /// An estimate with no uncertainty (`lo == hi == point`).
    pub fn exact(x: f64) -> Self {
        Estimate { point: x, lo: x, hi: x }
    }

    /// Whether `x` lies inside the interval (bounds included).
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    /// Half the interval's width relative to the point: 0.02 means roughly ±2%.
    /// Infinite when the point is zero and the interval is not.
    pub fn rel_half_width(&self) -> f64 {
        let half = (self.hi - self.lo) / 2.0;
        if half == 0.0 {
            0.0
        } else {
            half / self.point.abs()
        }
    }

    /// Multiply point and bounds by `k` (e.g. seconds to milliseconds).
    pub fn scale(&self, k: f64) -> Self {
        let (a, b) = (self.lo * k, self.hi * k);
        Estimate { point: self.point * k, lo: a.min(b), hi: a.max(b) }
    }
}

/// Median of `xs` (mean of the two middle values for an even count). NaN for an empty slice.
/// NaN values sort last; callers should not pass them.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    median_in_place(&mut v)
}

/// Median that reorders `v` (selection, O(n)). `v` must be non-empty.
fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    let mid = n / 2;
    let (lower, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if n % 2 == 1 {
        m
    } else {
        let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (below + m) / 2.0
    }
}

/// `q`-quantile (0..=1) of sorted data, linear interpolation between order statistics.
fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 1 {
        return sorted[0];
    }
    let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let i = pos.floor() as usize;
    let frac = pos - i as f64;
    if i + 1 >= n {
        sorted[n - 1]
    } else {
        sorted[i] + frac * (sorted[i + 1] - sorted[i])
    }
}

/// Percentile bootstrap of the median: the point is the sample median, the interval the 2.5% and 97.5%
/// quantiles of the medians of `resamples` resamples drawn with replacement (ChaCha8 seeded with `seed`).
///
/// An empty slice gives NaN everywhere; a single value or `resamples == 0` gives a zero-width interval.
pub fn bootstrap_median_ci(xs: &[f64], resamples: usize, seed: u64) -> Estimate {
    let point = median(xs);
    if xs.len() <= 1 || resamples == 0 {
        return Estimate::exact(point);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = xs.len();
    let mut buf = vec![0.0; n];
    let mut medians = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for slot in buf.iter_mut() {
            *slot = xs[rng.random_range(0..n)];
        }
        medians.push(median_in_place(&mut buf));
    }
    medians.sort_by(f64::total_cmp);
    let lo = quantile_sorted(&medians, 0.025);
    let hi = quantile_sorted(&medians, 0.975);
    // The percentile interval can exclude the point for tiny samples; widen it so it never does.
    Estimate { point, lo: lo.min(point), hi: hi.max(point) }
}

/// Distribution-free 95% CI for the median from order statistics: `[x(k), x(n+1-k)]` with `k` the largest rank
/// such that `P(Bin(n, 1/2) < k) <= 2.5%`, which covers the true median at least 95% of the time for independent
/// samples, whatever their distribution. Below 6 samples no rank reaches 95%: the interval is `[min, max]`.
/// The point is the sample median; an empty slice gives NaN.
pub fn order_stat_median_ci(xs: &[f64]) -> Estimate {
    let point = median(xs);
    let n = xs.len();
    if n <= 1 {
        return Estimate::exact(point);
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let k = median_rank(n, 0.025).max(1);
    Estimate { point, lo: v[k - 1].min(point), hi: v[n - k].max(point) }
}

/// Largest `k` with `P(Bin(n, 1/2) <= k - 1) <= alpha` (0 if none). Computed in log space, so any `n` works.
fn median_rank(n: usize, alpha: f64) -> usize {
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0.0; // ln C(n, j)
    let mut cdf = 0.0;
    for j in 0..=n / 2 {
        if j > 0 {
            ln_choose += ((n - j + 1) as f64).ln() - (j as f64).ln();
        }
        cdf += (ln_choose + ln_half_n).exp();
        if cdf > alpha {
            return j;
        }
    }
    n / 2
}

/// The median CI fuseval reports: the union of the percentile bootstrap and the order-statistic interval.
/// On a noisy host the bootstrap alone covered identical-session ratios only ~90% of the time at 15 rounds;
/// the union restores the nominal 95%.
pub fn median_ci(xs: &[f64], resamples: usize, seed: u64) -> Estimate {
    let b = bootstrap_median_ci(xs, resamples, seed);
    let o = order_stat_median_ci(xs);
    Estimate { point: b.point, lo: b.lo.min(o.lo), hi: b.hi.max(o.hi) }
}

/// What a speedup estimate says, given a noise band around 1.0.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Faster,
    Slower,
    WithinNoise,
}

/// Verdict for a speedup (`unfused time / fused time`, so > 1 is faster) against a noise band
/// `[1 - noise, 1 + noise]` (`noise` is a fraction, e.g. 0.01; negative values count as 0):
///
/// - `Faster` when the whole CI lies above the band (`lo > 1 + noise`);
/// - `Slower` when the whole CI lies below it (`hi < 1 - noise`);
/// - `WithinNoise` otherwise: the CI touches the band (which includes every CI containing 1.0).
pub fn verdict(speedup: &Estimate, noise: f64) -> Verdict {
    let noise = if noise.is_finite() { noise.max(0.0) } else { f64::INFINITY };
    if speedup.lo > 1.0 + noise {
        Verdict::Faster
    } else if speedup.hi < 1.0 - noise {
        Verdict::Slower
    } else {
        Verdict::WithinNoise
    }
}

/// Relative band around 1.00 inside which a speedup is called noise, before the A/A control widens it.
pub const NOISE: f64 = 0.02;

/// What an A/A control says two identical sessions disagree by: the distance of its point from 1.00. Its
/// CI's width is not added: the speedups' own CIs already carry the random part (and, combined over
/// replicates, the session-to-session part).
pub fn aa_noise(aa_control: &Estimate) -> f64 {
    (aa_control.point - 1.0).abs()
}

/// The verdict band of a result: [`NOISE`] widened by its A/A control's [`aa_noise`].
pub fn noise_band(aa_control: Option<&Estimate>) -> f64 {
    NOISE + aa_control.map(aa_noise).filter(|x| x.is_finite()).unwrap_or(0.0)
}

/// Two-sided exact binomial test of `k` successes in `n` trials against one half: the probability of a
/// count at least as far from n/2. 1 for `n == 0`.
pub fn binomial_half_p(k: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    // P(X <= j) for X ~ Bin(n, 1/2), in log space
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0.0;
    let mut pmf = Vec::with_capacity(n + 1);
    for j in 0..=n {
        if j > 0 {
            ln_choose += ((n - j + 1) as f64).ln() - (j as f64).ln();
        }
        pmf.push((ln_choose + ln_half_n).exp());
    }
    let low: f64 = pmf[..=k.min(n)].iter().sum();
    let high: f64 = pmf[k.min(n)..].iter().sum();
    (2.0 * low.min(high)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[5.0]), 5.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_median() {
        let xs: Vec<f64> = (0..101).map(|i| 1.0 + (i as f64 * 0.37).sin() * 0.05).collect();
        let a = bootstrap_median_ci(&xs, 1000, 7);
        let b = bootstrap_median_ci(&xs, 1000, 7);
        assert_eq!(a, b);
        assert_eq!(a.point, median(&xs));
        assert!(a.lo <= a.point && a.point <= a.hi);
        assert!(a.hi - a.lo > 0.0);
        assert!(a.rel_half_width() < 0.05);
    }

    #[test]
    fn bootstrap_ci_narrows_with_more_data() {
        let gen = |n: usize| -> Vec<f64> { (0..n).map(|i| ((i * 7919) % 1000) as f64 / 1000.0).collect() };
        let small = bootstrap_median_ci(&gen(20), 2000, 1);
        let large = bootstrap_median_ci(&gen(2000), 2000, 1);
        assert!(large.hi - large.lo < small.hi - small.lo);
    }

    #[test]
    fn bootstrap_degenerate_inputs() {
        assert_eq!(bootstrap_median_ci(&[2.0], 100, 0), Estimate::exact(2.0));
        assert_eq!(bootstrap_median_ci(&[1.0, 3.0], 0, 0), Estimate::exact(2.0));
        assert!(bootstrap_median_ci(&[], 100, 0).point.is_nan());
    }

    #[test]
    fn order_statistic_ranks() {
        // n = 15: [x(4), x(12)]; n = 100: [x(40), x(61)] (standard tables).
        assert_eq!(median_rank(15, 0.025), 4);
        assert_eq!(median_rank(100, 0.025), 40);
        assert_eq!(median_rank(5, 0.025), 0);
        assert_eq!(median_rank(6, 0.025), 1);
        let xs: Vec<f64> = (1..=15).map(|i| i as f64).collect();
        assert_eq!(order_stat_median_ci(&xs), Estimate { point: 8.0, lo: 4.0, hi: 12.0 });
        let few = order_stat_median_ci(&[3.0, 1.0, 2.0]);
        assert_eq!((few.lo, few.hi), (1.0, 3.0));
        // Huge n does not overflow.
        let big: Vec<f64> = (0..200_001).map(|i| i as f64).collect();
        let e = order_stat_median_ci(&big);
        assert!(e.lo < 100_000.0 && e.hi > 100_000.0 && e.hi - e.lo < 1000.0);
    }

    #[test]
    fn median_ci_is_the_union() {
        let xs: Vec<f64> = (0..15).map(|i| 1.0 + ((i * 37) % 15) as f64 * 0.001).collect();
        let b = bootstrap_median_ci(&xs, 500, 3);
        let o = order_stat_median_ci(&xs);
        let u = median_ci(&xs, 500, 3);
        assert_eq!(u.point, median(&xs));
        assert_eq!(u.lo, b.lo.min(o.lo));
        assert_eq!(u.hi, b.hi.max(o.hi));
    }

    #[test]
    fn binomial_test_against_one_half() {
        assert_eq!(binomial_half_p(5, 10), 1.0);
        // 2 of 10: P(X <= 2) = 56/1024, doubled
        assert!((binomial_half_p(2, 10) - 112.0 / 1024.0).abs() < 1e-12);
        assert!((binomial_half_p(8, 10) - 112.0 / 1024.0).abs() < 1e-12);
        // the H100 run: copy A faster in 21 of 29 failed controls
        assert!(binomial_half_p(21, 29) < 0.05);
        assert!(binomial_half_p(15, 29) > 0.5);
        assert_eq!(binomial_half_p(0, 0), 1.0);
        assert!(binomial_half_p(0, 1000) < 1e-100);
    }

    #[test]
    fn contains_and_width() {
        let e = Estimate { point: 1.0, lo: 0.98, hi: 1.02 };
        assert!(e.contains(1.0) && e.contains(0.98) && !e.contains(1.03));
        assert!((e.rel_half_width() - 0.02).abs() < 1e-12);
        assert_eq!(Estimate::exact(0.0).rel_half_width(), 0.0);
    }

    #[test]
    fn verdicts() {
        let e = |lo, hi| Estimate { point: (lo + hi) / 2.0, lo, hi };
        assert_eq!(verdict(&e(1.10, 1.20), 0.01), Verdict::Faster);
        assert_eq!(verdict(&e(0.80, 0.90), 0.01), Verdict::Slower);
        assert_eq!(verdict(&e(0.99, 1.05), 0.0), Verdict::WithinNoise);
        // Clears 1.0 but not the noise band.
        assert_eq!(verdict(&e(1.005, 1.02), 0.01), Verdict::WithinNoise);
        assert_eq!(verdict(&e(0.98, 0.995), 0.01), Verdict::WithinNoise);
        assert_eq!(verdict(&e(1.005, 1.02), 0.0), Verdict::Faster);
        assert_eq!(verdict(&e(1.5, 2.0), f64::NAN), Verdict::WithinNoise);
    }

    #[test]
    fn aa_noise_widens_the_band_by_the_control_offset() {
        let aa = Estimate { point: 1.013, lo: 0.995, hi: 1.03 };
        assert!((aa_noise(&aa) - 0.013).abs() < 1e-12);
        assert!((noise_band(Some(&aa)) - 0.033).abs() < 1e-12);
        assert_eq!(noise_band(None), NOISE);
        // a speedup that clears 1.02 but not the widened band is noise
        let s = Estimate { point: 1.04, lo: 1.025, hi: 1.06 };
        assert_eq!(verdict(&s, NOISE), Verdict::Faster);
        assert_eq!(verdict(&s, noise_band(Some(&aa))), Verdict::WithinNoise);
    }
}
