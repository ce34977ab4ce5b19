//! Replicates: one comparison measured several times, each in fresh sessions with its own build order and
//! at a different point of the run, and one estimate from them.
//!
//! Why: rounds inside one set of sessions share that set's luck (where the arena put the buffers, which
//! kernel ORT picked), so a within-replicate CI does not cover what a second run would read. Each replicate
//! gives a point `m_r` per ratio with a within-replicate CI; the estimate is the geometric mean of the
//! points and its CI is built on the log scale from
//!
//! - the within-replicate variance (the mean of the replicates' own CIs, as standard errors), and
//! - the session variance: how much replicate points spread beyond what their own CIs explain. One instance
//!   with two replicates says little about it (one degree of freedom), so it is pooled over every instance
//!   of the run ([`SessionNoise::pooled`]): the session-to-session offset is a property of the machine and
//!   the runtime, which the instances share.
//!
//! The variance of a replicate point is the larger of (session + within) and the instance's own sample
//! variance of its points; the CI is the mean ± t·√(variance / R), with t Student's for the pooled degrees
//! of freedom. docs/measurement.md gives the argument and the run-to-run figures it was checked against.

use serde::{Deserialize, Serialize};

use super::{Comparison, ExplicitResult, Latency};
use crate::estimate::Estimate;

/// How many replicates `bench` measures per instance by default.
pub const DEFAULT_REPLICATES: usize = 2;

/// How many times a replicate whose A/A control fails is measured again (fresh sessions, fresh build order)
/// before the instance is left out of every verdict and prediction.
pub const AA_RETRIES: usize = 2;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_964;

/// The spread of replicate points beyond their own CIs, on the log scale, pooled over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionNoise {
    /// Variance of ln(point) between sessions (0 when the replicates agree within their CIs).
    pub var: f64,
    /// Degrees of freedom behind it: Σ (replicates − 1) over the instances pooled.
    pub df: usize,
}

impl SessionNoise {
    /// Pool the session variance over instances: each entry is one instance's replicates. Every ratio a
    /// replicate reports (A/A, extended, full, explicit when all replicates have it) counts.
    pub fn pooled<'a>(instances: impl IntoIterator<Item = &'a [Comparison]>) -> SessionNoise {
        let (mut sum, mut df) = (0.0, 0usize);
        for reps in instances {
            if reps.len() < 2 {
                continue;
            }
            let kinds = ratios(reps);
            let excess: Vec<f64> = kinds.iter().map(|k| sample_var(k) - within_var(k)).collect();
            let n = reps.len() - 1;
            sum += n as f64 * excess.iter().sum::<f64>() / excess.len() as f64;
            df += n;
        }
        if df == 0 {
            return SessionNoise::default();
        }
        SessionNoise { var: (sum / df as f64).max(0.0), df }
    }

    /// The session-to-session offset as a relative standard deviation (e.g. 0.012 = 1.2%).
    pub fn rel_sd(&self) -> f64 {
        self.var.sqrt()
    }
}

/// Every ratio of a set of replicates, one list per kind, each entry a replicate's estimate.
fn ratios(reps: &[Comparison]) -> Vec<Vec<Estimate>> {
    let mut kinds = vec![
        reps.iter().map(|c| c.aa_control).collect(),
        reps.iter().map(|c| c.speedup_extended).collect(),
        reps.iter().map(|c| c.speedup_all).collect::<Vec<_>>(),
    ];
    if reps.iter().all(|c| c.explicit.is_some()) {
        kinds.push(reps.iter().filter_map(|c| c.explicit.as_ref().map(|x| x.speedup)).collect());
    }
    kinds
}

/// Standard error of ln(point) implied by an estimate's 95% CI.
fn log_se(e: &Estimate) -> f64 {
    if e.lo > 0.0 && e.hi > 0.0 {
        (e.hi.ln() - e.lo.ln()) / (2.0 * Z95)
    } else {
        0.0
    }
}

/// Mean within-replicate variance of ln(point).
fn within_var(es: &[Estimate]) -> f64 {
    es.iter().map(|e| log_se(e).powi(2)).sum::<f64>() / es.len() as f64
}

/// Sample variance of ln(point) (0 for fewer than two).
fn sample_var(es: &[Estimate]) -> f64 {
    if es.len() < 2 {
        return 0.0;
    }
    let logs: Vec<f64> = es.iter().map(|e| e.point.ln()).collect();
    let mean = logs.iter().sum::<f64>() / logs.len() as f64;
    logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (logs.len() - 1) as f64
}

/// One ratio from its replicates: the geometric mean of the points, with the CI of the module docs. A
/// single replicate with no pooled noise keeps its own CI.
pub fn combine_ratio(es: &[Estimate], noise: &SessionNoise) -> Estimate {
    match es {
        [] => Estimate::exact(f64::NAN),
        [e] if noise.df == 0 => *e,
        _ => {
            let r = es.len() as f64;
            let mean = es.iter().map(|e| e.point.ln()).sum::<f64>() / r;
            let var = (noise.var + within_var(es)).max(sample_var(es));
            let df = if noise.df > 0 { noise.df } else { es.len() - 1 };
            let half = t975(df) * (var / r).sqrt();
            Estimate { point: mean.exp(), lo: (mean - half).exp(), hi: (mean + half).exp() }
        }
    }
}

/// One latency from its replicates: the geometric mean of the medians, the CI from the lowest low to the
/// highest high (the sessions' levels differ by more than their rounds say).
pub fn combine_latency(ls: &[Latency]) -> Latency {
    let r = ls.len().max(1) as f64;
    let point = (ls.iter().map(|l| l.median_ms.max(f64::MIN_POSITIVE).ln()).sum::<f64>() / r).exp();
    let lo = ls.iter().map(|l| l.ci_ms.lo).fold(f64::INFINITY, f64::min).min(point);
    let hi = ls.iter().map(|l| l.ci_ms.hi).fold(f64::NEG_INFINITY, f64::max).max(point);
    Latency {
        median_ms: point,
        ci_ms: Estimate { point, lo, hi },
        min_ms: ls.iter().map(|l| l.min_ms).fold(f64::INFINITY, f64::min),
        samples: ls.iter().map(|l| l.samples).sum(),
    }
}

/// What each replicate read, kept in the record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplicateResult {
    pub seed: u64,
    /// The order the sessions were built in (first gets first pick of the arena).
    pub build_order: Vec<String>,
    /// How many times it was measured: 1, or more when its A/A control failed and it was measured again.
    pub attempts: usize,
    pub aa_control: Estimate,
    pub aa_ok: bool,
    pub speedup_extended: Estimate,
    pub speedup_all: Estimate,
    pub speedup_explicit: Option<Estimate>,
    pub unfused_ms: f64,
}

impl ReplicateResult {
    pub fn of(c: &Comparison) -> ReplicateResult {
        ReplicateResult {
            seed: c.seed,
            build_order: c.build_order.clone(),
            attempts: c.attempts,
            aa_control: c.aa_control,
            aa_ok: c.aa_ok,
            speedup_extended: c.speedup_extended,
            speedup_all: c.speedup_all,
            speedup_explicit: c.explicit.as_ref().map(|x| x.speedup),
            unfused_ms: c.unfused.median_ms,
        }
    }
}

/// The comparisons of one instance's replicates as one: ratios by [`combine_ratio`], latencies by
/// [`combine_latency`], equivalence the worst, the A/A control passed only when every replicate's passed
/// and the combined control is consistent with 1.00. `reps` must not be empty.
pub fn combine(reps: &[Comparison], noise: &SessionNoise) -> Comparison {
    let first = &reps[0];
    if reps.len() == 1 && noise.df == 0 {
        let mut c = first.clone();
        c.replicates = vec![ReplicateResult::of(first)];
        return c;
    }
    let ratio = |f: &dyn Fn(&Comparison) -> Estimate| combine_ratio(&reps.iter().map(f).collect::<Vec<_>>(), noise);
    let latency = |f: &dyn Fn(&Comparison) -> Latency| combine_latency(&reps.iter().map(f).collect::<Vec<_>>());
    let merge =
        |f: &dyn Fn(&Comparison) -> super::Equivalence| reps.iter().skip(1).fold(f(first), |a, c| a.merge(f(c)));
    let aa_control = ratio(&|c| c.aa_control);
    let explicit = if reps.iter().all(|c| c.explicit.is_some()) {
        let xs: Vec<&ExplicitResult> = reps.iter().filter_map(|c| c.explicit.as_ref()).collect();
        Some(ExplicitResult {
            latency: combine_latency(&xs.iter().map(|x| x.latency).collect::<Vec<_>>()),
            speedup: combine_ratio(&xs.iter().map(|x| x.speedup).collect::<Vec<_>>(), noise),
            equivalence: xs.iter().skip(1).fold(xs[0].equivalence.clone(), |a, x| a.merge(x.equivalence.clone())),
            ops: xs[0].ops.clone(),
        })
    } else {
        None
    };
    let explicit_error = if explicit.is_some() {
        None
    } else {
        reps.iter().find_map(|c| c.explicit_error.clone()).or_else(|| {
            reps.iter().any(|c| c.explicit.is_some()).then(|| "the explicit variant ran in only some replicates".into())
        })
    };
    let mut cpu_fallback: Vec<String> = reps.iter().flat_map(|c| c.cpu_fallback.iter().cloned()).collect();
    cpu_fallback.sort();
    cpu_fallback.dedup();
    Comparison {
        unfused: latency(&|c| c.unfused),
        unfused_control: latency(&|c| c.unfused_control),
        fused_extended: latency(&|c| c.fused_extended),
        fused_all: latency(&|c| c.fused_all),
        speedup_extended: ratio(&|c| c.speedup_extended),
        speedup_all: ratio(&|c| c.speedup_all),
        aa_ok: reps.iter().all(|c| c.aa_ok) && super::aa_consistent(&aa_control),
        aa_control,
        equivalence_extended: merge(&|c| c.equivalence_extended.clone()),
        equivalence_all: merge(&|c| c.equivalence_all.clone()),
        fused_ops_extended: first.fused_ops_extended.clone(),
        fused_ops_all: first.fused_ops_all.clone(),
        unfused_ops: first.unfused_ops.clone(),
        explicit,
        explicit_error,
        cpu_fallback,
        rounds: reps.iter().map(|c| c.rounds).sum(),
        iters_per_round: first.iters_per_round,
        budget_exhausted: reps.iter().any(|c| c.budget_exhausted),
        wall_s: reps.iter().map(|c| c.wall_s).sum(),
        threads: first.threads,
        ep: first.ep,
        seed: first.seed,
        build_order: first.build_order.clone(),
        attempts: reps.iter().map(|c| c.attempts).sum(),
        replicates: reps.iter().map(ReplicateResult::of).collect(),
        clock_check: first.clock_check,
        clock_check_error: first.clock_check_error.clone(),
    }
}

/// Student's t 0.975 quantile for `df` degrees of freedom (df 0 is treated as 1).
pub fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => T[0],
        d if d <= 30 => T[d - 1],
        // Cornish-Fisher to the second order: within 0.001 of the tables above 30
        d => {
            let d = d as f64;
            let z = Z95;
            z + (z.powi(3) + z) / (4.0 * d) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * d * d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(point: f64, rel: f64) -> Estimate {
        Estimate { point, lo: point * (1.0 - rel), hi: point * (1.0 + rel) }
    }

    #[test]
    fn t_quantiles() {
        assert_eq!(t975(1), 12.706);
        assert_eq!(t975(10), 2.228);
        assert!((t975(40) - 2.021).abs() < 0.002);
        assert!((t975(120) - 1.980).abs() < 0.002);
        assert!((t975(100_000) - 1.960).abs() < 0.001);
    }

    #[test]
    fn one_replicate_without_pooled_noise_is_itself() {
        let x = e(1.2, 0.03);
        assert_eq!(combine_ratio(&[x], &SessionNoise::default()), x);
    }

    #[test]
    fn agreeing_replicates_give_the_mean_with_the_within_width() {
        let c = combine_ratio(&[e(1.2, 0.02), e(1.2, 0.02)], &SessionNoise { var: 0.0, df: 1000 });
        assert!((c.point - 1.2).abs() < 1e-12);
        // two replicates of ±2% each: the mean is ±2%/√2
        assert!((c.rel_half_width() - 0.02 / 2f64.sqrt()).abs() < 0.002, "{c:?}");
    }

    #[test]
    fn disagreeing_replicates_widen_the_interval_to_cover_them() {
        let noise = SessionNoise { var: 0.0, df: 1000 };
        let c = combine_ratio(&[e(1.10, 0.01), e(1.20, 0.01)], &noise);
        assert!((c.point - (1.1f64 * 1.2).sqrt()).abs() < 1e-12);
        // its own spread (one df would be 12.7 t, but the pooled df is used): still wider than the gap/2
        assert!(c.lo < 1.12 && c.hi > 1.18, "{c:?}");
    }

    #[test]
    fn pooled_session_noise_widens_every_instance() {
        let quiet = combine_ratio(&[e(1.2, 0.01), e(1.2, 0.01)], &SessionNoise { var: 0.0, df: 50 });
        let noisy = combine_ratio(&[e(1.2, 0.01), e(1.2, 0.01)], &SessionNoise { var: 0.03f64.powi(2), df: 50 });
        assert!(noisy.rel_half_width() > 2.0 * quiet.rel_half_width(), "{quiet:?} {noisy:?}");
        // ≈ t(50) · √((0.03² + within) / 2)
        assert!((noisy.rel_half_width() - 2.009 * ((0.0009 + 0.0051f64.powi(2)) / 2.0).sqrt()).abs() < 0.005);
    }

    #[test]
    fn latency_union() {
        let l = |m: f64| Latency {
            median_ms: m,
            ci_ms: Estimate { point: m, lo: m * 0.99, hi: m * 1.01 },
            min_ms: m * 0.9,
            samples: 10,
        };
        let c = combine_latency(&[l(1.0), l(4.0)]);
        assert!((c.median_ms - 2.0).abs() < 1e-12);
        assert!((c.ci_ms.lo - 0.99).abs() < 1e-12 && (c.ci_ms.hi - 4.04).abs() < 1e-12);
        assert_eq!(c.samples, 20);
        assert!((c.min_ms - 0.9).abs() < 1e-12);
    }
}
