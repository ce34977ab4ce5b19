//! The one decision rule: what fusing a pattern instance is worth, from its speedup.
//!
//! [`decide`] is the only place that says keep, marginal or harmful, and whether to fuse. The cost model
//! (`should_fuse`), `fuseval validate` and `fuseval plan` all call it, with measured or estimated
//! speedups alike, so they never disagree on the same numbers. The rule, in order (docs/cost-model.md
//! and docs/plan.md state it the same way):
//!
//! 1. the fused outputs are not equivalent to the unfused ones: **harmful**;
//! 2. the speedup is no usable interval (a bound or the point not finite, the point not above 0, or
//!    `lo > hi`): **marginal**; a CI that does not hold its point is widened to hold it;
//! 3. the measurement is untrustworthy (its A/A control missed 1.00, or ORT's runtime-fused outputs
//!    disagree): **marginal**, whatever the speedup;
//! 4. the whole CI lies below the noise band, `hi < 1 − noise`: **harmful** (slower);
//! 5. the whole CI clears the threshold and the noise band, `lo ≥ threshold` and `lo > 1 + noise`:
//!    **keep**, and fuse;
//! 6. anything else: **marginal** (faster but with the CI's low end under the threshold, or within noise).
//!
//! Only **keep** fuses. The rule is conservative: 1.25× [1.15, 1.35] at the threshold 1.2 is marginal,
//! since the measurement cannot tell it from 1.15×.

use serde::{Deserialize, Serialize};

use crate::estimate::Estimate;

/// The design's threshold: fuse when fusing is at least 20% faster (`--threshold` of validate and plan,
/// `CostModelOptions::threshold`).
pub const DEFAULT_THRESHOLD: f64 = 1.2;

/// The verdict on fusing one group or pattern instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Fuse it: the whole CI clears the threshold and the noise band.
    Keep,
    /// Not worth fusing, nor shown harmful: under the threshold, within noise, or untrustworthy.
    Marginal,
    /// Fusing is wrong (outputs not equivalent, or an illegal group) or slower.
    Harmful,
    /// No number, and none invented ([`decide`] never gives it: it is for a group with no speedup).
    Unmeasured,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Verdict::Keep => "keep",
            Verdict::Marginal => "marginal",
            Verdict::Harmful => "harmful",
            Verdict::Unmeasured => "unmeasured",
        })
    }
}

/// Which step of the rule decided (see the module header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Ground {
    /// The fused outputs are not equivalent to the unfused ones: harmful.
    NotEquivalent,
    /// No usable speedup interval (a NaN or infinite bound, a point not above 0, `lo > hi`): marginal.
    NoSpeedup,
    /// The A/A control missed 1.00: marginal.
    Untrustworthy,
    /// `hi < 1 − noise`: harmful.
    Slower,
    /// `lo ≥ threshold` and `lo > 1 + noise`: keep.
    ClearsThreshold,
    /// `lo > 1 + noise` but `lo < threshold`: faster, but under the threshold: marginal.
    UnderThreshold,
    /// The CI touches the noise band and the point is above 1.0: marginal.
    WithinNoise,
    /// The CI touches the noise band and the point is at most 1.0: no faster: marginal.
    NoFaster,
}

/// The threshold and the noise band the rule applies.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rule {
    /// Keep only when the CI's low end reaches this speedup ([`DEFAULT_THRESHOLD`] by default).
    pub threshold: f64,
    /// Relative band around 1.00 inside which a speedup is noise (`calibration::NOISE`, 0.02).
    pub noise: f64,
}

impl Default for Rule {
    /// [`DEFAULT_THRESHOLD`] and the standard noise band.
    fn default() -> Rule {
        Rule::new(DEFAULT_THRESHOLD)
    }
}

impl Rule {
    /// The rule at `threshold`, with the standard noise band [`crate::calibration::NOISE`].
    pub fn new(threshold: f64) -> Rule {
        Rule { threshold, noise: crate::calibration::NOISE }
    }
}

/// What [`decide`] says.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Judgement {
    /// `Keep`, `Marginal` or `Harmful`.
    pub verdict: Verdict,
    /// `verdict == Keep`: whether to fuse.
    pub fuse: bool,
    pub ground: Ground,
    /// The rule that decided, as a phrase with its numbers, e.g. `faster, but under the 1.20× threshold:
    /// CI low 1.150 < threshold 1.200`.
    pub rule: String,
}

/// The decision on a speedup (unfused / fused latency, with its 95% CI), given whether the fused
/// outputs are equivalent to the unfused ones and whether the measurement is trustworthy. See the
/// module header for the rule.
pub fn decide(speedup: &Estimate, equivalent: bool, trustworthy: bool, rule: Rule) -> Judgement {
    let Estimate { point, lo, hi } = *speedup;
    let Rule { threshold: t, noise } = rule;
    let band = format!("[{:.2}, {:.2}]", 1.0 - noise, 1.0 + noise);
    let usable = [point, lo, hi, t, noise].iter().all(|x| x.is_finite()) && point > 0.0 && lo <= hi;
    // a CI that does not hold its point is widened to hold it
    let (lo, hi) = (lo.min(point), hi.max(point));
    let (verdict, ground, text) = if !equivalent {
        (
            Verdict::Harmful,
            Ground::NotEquivalent,
            "the fused outputs are not equivalent to the unfused ones (they disagree)".to_string(),
        )
    } else if !usable {
        (
            Verdict::Marginal,
            Ground::NoSpeedup,
            format!(
                "no usable speedup: {:.3} [{:.3}, {:.3}] is not a finite interval with a positive point",
                speedup.point, speedup.lo, speedup.hi
            ),
        )
    } else if !trustworthy {
        (Verdict::Marginal, Ground::Untrustworthy, "untrustworthy measurement".to_string())
    } else if hi < 1.0 - noise {
        (
            Verdict::Harmful,
            Ground::Slower,
            format!("slower: the whole CI lies below the noise band {band} (CI high {hi:.3}), fusing is no faster"),
        )
    } else if lo >= t && lo > 1.0 + noise {
        (
            Verdict::Keep,
            Ground::ClearsThreshold,
            format!("faster: CI low {lo:.3} ≥ threshold {t:.3}, and above the noise band {band}"),
        )
    } else if lo > 1.0 + noise {
        (
            Verdict::Marginal,
            Ground::UnderThreshold,
            format!("faster, but under the {t:.2}× threshold: CI low {lo:.3} < threshold {t:.3}"),
        )
    } else if point > 1.0 {
        (Verdict::Marginal, Ground::WithinNoise, format!("within noise: the CI low {lo:.3} touches the band {band}"))
    } else {
        (
            Verdict::Marginal,
            Ground::NoFaster,
            format!("within noise and no faster ({point:.3} ≤ 1.000): the CI touches the band {band}"),
        )
    };
    Judgement { verdict, fuse: verdict == Verdict::Keep, ground, rule: text }
}
