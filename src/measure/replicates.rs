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
//!   of the run, ratio by ratio ([`SessionNoise::pooled`]): the session-to-session offset is a property of
//!   the machine and of the kernels a ratio compares, which the instances share.
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

/// The spread of one ratio's replicate points beyond their own CIs, on the log scale, pooled over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pooled {
    /// Variance of ln(point) between sessions (0 when the replicates agree within their CIs).
    pub var: f64,
    /// Degrees of freedom behind it: Σ (replicates − 1) over the instances pooled.
    pub df: usize,
}

impl Pooled {
    /// The session-to-session offset as a relative standard deviation (e.g. 0.012 = 1.2%).
    pub fn rel_sd(&self) -> f64 {
        self.var.sqrt()
    }
}

/// Which ratio a session spread belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ratio {
    AaControl,
    Extended,
    All,
    Explicit,
}

/// The session spread of a run: one pooled figure per ratio, because the ratios do not share it. On the
/// 2-core Xeon the A/A control and the extended level moved 1.0–1.4% from session to session and ORT's
/// NCHWc level (`all`) 2.2–4.5%: its layout reorders are more sensitive to where buffers land. `var`/`df`
/// are the mean over the ratios, for the summary line (and the only figure in files from before).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionNoise {
    pub var: f64,
    pub df: usize,
    #[serde(default)]
    pub aa_control: Pooled,
    #[serde(default)]
    pub extended: Pooled,
    #[serde(default)]
    pub all: Pooled,
    #[serde(default)]
    pub explicit: Pooled,
}

impl SessionNoise {
    /// Pool the session variance over instances, ratio by ratio: each entry is one instance's replicates.
    /// The explicit ratio counts where every replicate of the instance has it.
    pub fn pooled<'a>(instances: impl IntoIterator<Item = &'a [Comparison]>) -> SessionNoise {
        SessionNoise::pooled_ratios(instances.into_iter().map(ratios))
    }

    /// [`SessionNoise::pooled`] from each instance's replicate estimates, in [`Ratio`] order.
    pub fn pooled_ratios(instances: impl IntoIterator<Item = [Vec<Estimate>; 4]>) -> SessionNoise {
        let mut acc = [(0.0, 0usize); 4];
        for lists in instances {
            for (k, es) in lists.iter().enumerate().filter(|(_, es)| es.len() >= 2) {
                acc[k].0 += (es.len() - 1) as f64 * (sample_var(es) - within_var(es));
                acc[k].1 += es.len() - 1;
            }
        }
        let pool = |(sum, df): (f64, usize)| {
            if df == 0 {
                Pooled::default()
            } else {
                Pooled { var: (sum / df as f64).max(0.0), df }
            }
        };
        let [aa_control, extended, all, explicit] = acc.map(pool);
        let kinds: Vec<&Pooled> = [&aa_control, &extended, &all, &explicit].into_iter().filter(|p| p.df > 0).collect();
        let var = kinds.iter().map(|p| p.var).sum::<f64>() / kinds.len().max(1) as f64;
        SessionNoise { var, df: extended.df, aa_control, extended, all, explicit }
    }

    /// One ratio's pooled spread; the mean over the ratios where the run has none of its own.
    pub fn of(&self, ratio: Ratio) -> Pooled {
        let own = match ratio {
            Ratio::AaControl => self.aa_control,
            Ratio::Extended => self.extended,
            Ratio::All => self.all,
            Ratio::Explicit => self.explicit,
        };
        if own.df > 0 {
            own
        } else {
            Pooled { var: self.var, df: self.df }
        }
    }

    /// The mean session-to-session offset as a relative standard deviation (e.g. 0.012 = 1.2%).
    pub fn rel_sd(&self) -> f64 {
        self.var.sqrt()
    }
}

/// Every ratio of a set of replicates in [`Ratio`] order, each entry a replicate's estimate; the explicit list
/// is empty unless every replicate has it.
fn ratios(reps: &[Comparison]) -> [Vec<Estimate>; 4] {
    let explicit = if reps.iter().all(|c| c.explicit.is_some()) {
        reps.iter().filter_map(|c| c.explicit.as_ref().map(|x| x.speedup)).collect()
    } else {
        vec![]
    };
    [
        reps.iter().map(|c| c.aa_control).collect(),
        reps.iter().map(|c| c.speedup_extended).collect(),
        reps.iter().map(|c| c.speedup_all).collect(),
        explicit,
    ]
}

/// Standard error of ln(point) implied by an estimate's 95% CI.
fn log_se(e: &Estimate) -> f64 {
    if e.lo > 0.0 && e.hi > 0.0 {
        (e.hi.ln() - e.lo.ln()) / (2.0 * Z95)
    } else {
        0.0
    }
}

/// Mean within-replicate variance of ln(point) (0 for none).
fn within_var(es: &[Estimate]) -> f64 {
    if es.is_empty() {
        return 0.0;
    }
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
pub fn combine_ratio(es: &[Estimate], noise: &Pooled) -> Estimate {
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
    let ratio = |r: Ratio, f: &dyn Fn(&Comparison) -> Estimate| {
        combine_ratio(&reps.iter().map(f).collect::<Vec<_>>(), &noise.of(r))
    };
    let latency = |f: &dyn Fn(&Comparison) -> Latency| combine_latency(&reps.iter().map(f).collect::<Vec<_>>());
    let merge =
        |f: &dyn Fn(&Comparison) -> super::Equivalence| reps.iter().skip(1).fold(f(first), |a, c| a.merge(f(c)));
    let aa_control = ratio(Ratio::AaControl, &|c| c.aa_control);
    let explicit = if reps.iter().all(|c| c.explicit.is_some()) {
        let xs: Vec<&ExplicitResult> = reps.iter().filter_map(|c| c.explicit.as_ref()).collect();
        Some(ExplicitResult {
            latency: combine_latency(&xs.iter().map(|x| x.latency).collect::<Vec<_>>()),
            speedup: combine_ratio(&xs.iter().map(|x| x.speedup).collect::<Vec<_>>(), &noise.of(Ratio::Explicit)),
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
    // session labels any replicate lists, sorted, once each
    let labels = |f: &dyn Fn(&Comparison) -> &Vec<String>| -> Vec<String> {
        let set: std::collections::BTreeSet<&String> = reps.iter().flat_map(f).collect();
        set.into_iter().cloned().collect()
    };
    Comparison {
        unfused: latency(&|c| c.unfused),
        unfused_control: latency(&|c| c.unfused_control),
        fused_extended: latency(&|c| c.fused_extended),
        fused_all: latency(&|c| c.fused_all),
        speedup_extended: ratio(Ratio::Extended, &|c| c.speedup_extended),
        speedup_all: ratio(Ratio::All, &|c| c.speedup_all),
        aa_ok: reps.iter().all(|c| c.aa_ok) && super::aa_consistent(&aa_control),
        aa_control,
        equivalence_extended: merge(&|c| c.equivalence_extended.clone()),
        equivalence_all: merge(&|c| c.equivalence_all.clone()),
        fused_ops_extended: first.fused_ops_extended.clone(),
        fused_ops_all: first.fused_ops_all.clone(),
        unfused_ops: first.unfused_ops.clone(),
        explicit,
        explicit_error,
        cpu_fallback: labels(&|c| &c.cpu_fallback),
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
        precision_error: first.precision_error.clone(),
        no_cuda_graph: labels(&|c| &c.no_cuda_graph),
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
        assert_eq!(combine_ratio(&[x], &Pooled::default()), x);
    }

    #[test]
    fn agreeing_replicates_give_the_mean_with_the_within_width() {
        let c = combine_ratio(&[e(1.2, 0.02), e(1.2, 0.02)], &Pooled { var: 0.0, df: 1000 });
        assert!((c.point - 1.2).abs() < 1e-12);
        // two replicates of ±2% each: the mean is ±2%/√2
        assert!((c.rel_half_width() - 0.02 / 2f64.sqrt()).abs() < 0.002, "{c:?}");
    }

    #[test]
    fn disagreeing_replicates_widen_the_interval_to_cover_them() {
        let noise = Pooled { var: 0.0, df: 1000 };
        let c = combine_ratio(&[e(1.10, 0.01), e(1.20, 0.01)], &noise);
        assert!((c.point - (1.1f64 * 1.2).sqrt()).abs() < 1e-12);
        // its own spread (one df would be 12.7 t, but the pooled df is used): still wider than the gap/2
        assert!(c.lo < 1.12 && c.hi > 1.18, "{c:?}");
    }

    #[test]
    fn pooled_session_noise_widens_every_instance() {
        let quiet = combine_ratio(&[e(1.2, 0.01), e(1.2, 0.01)], &Pooled { var: 0.0, df: 50 });
        let noisy = combine_ratio(&[e(1.2, 0.01), e(1.2, 0.01)], &Pooled { var: 0.03f64.powi(2), df: 50 });
        assert!(noisy.rel_half_width() > 2.0 * quiet.rel_half_width(), "{quiet:?} {noisy:?}");
        // ≈ t(50) · √((0.03² + within) / 2)
        assert!((noisy.rel_half_width() - 2.009 * ((0.0009 + 0.0051f64.powi(2)) / 2.0).sqrt()).abs() < 0.005);
    }

    #[test]
    fn each_ratio_pools_its_own_session_spread() {
        // ten instances: the A/A control and extended agree between replicates, `all` moves ±4%
        let inst = |i: usize| {
            let w = if i.is_multiple_of(2) { 1.04 } else { 1.0 / 1.04 };
            [
                vec![e(1.0, 0.01), e(1.0, 0.01)],
                vec![e(1.2, 0.01), e(1.2, 0.01)],
                vec![e(1.3 * w, 0.01), e(1.3 / w, 0.01)],
                vec![],
            ]
        };
        let n = SessionNoise::pooled_ratios((0..10).map(inst));
        assert_eq!(n.of(Ratio::Extended).var, 0.0);
        assert_eq!(n.of(Ratio::AaControl).var, 0.0);
        assert_eq!(n.all.df, 10);
        // two points ln(1.04) either side of their mean: sample variance 2·ln(1.04)², less the within part
        let within = (0.02f64 / (2.0 * Z95)).powi(2);
        assert!((n.of(Ratio::All).var - (2.0 * 1.04f64.ln().powi(2) - within)).abs() < 1e-6, "{n:?}");
        // no explicit ratio anywhere: it falls back to the mean over the ratios that have one
        assert_eq!(n.explicit.df, 0);
        assert!((n.of(Ratio::Explicit).var - n.all.var / 3.0).abs() < 1e-12);
        // the extended CI is not widened by the other level's spread
        let ext = combine_ratio(&inst(0)[1], &n.of(Ratio::Extended));
        assert!(ext.rel_half_width() < 0.01, "{ext:?}");
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
