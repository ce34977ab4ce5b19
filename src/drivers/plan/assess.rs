//! Verdicts: what fusing one group (or one missed pattern) is worth, from a measurement or from the
//! cost model's estimate, by the one decision rule, [`crate::calibration::decision::decide`]
//! (docs/plan.md#verdicts):
//!
//! - `harmful`: the outputs are not equivalent, or the speedup's whole CI lies below 1 − NOISE
//!   (slower), or the group is not legal to fuse;
//! - `keep`: the whole CI clears the threshold (default 1.2×) and the noise band: `lo ≥ threshold`
//!   and `lo > 1 + NOISE`;
//! - `marginal`: anything else: faster but with the CI's low end under the threshold, within noise, or
//!   an untrustworthy measurement (A/A control off), which is never `keep`;
//! - `unmeasured`: no number, and none invented: a legal group fuseval has no pattern for, a skipped
//!   measurement, or `--no-missed-measure`.

use std::collections::HashMap;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

pub use crate::calibration::decision::Verdict;
use crate::calibration::decision::{decide, Rule};
use crate::calibration::roofline::Ceilings;
use crate::calibration::{FusionCalibration, Status, Variant};
use crate::carve::ConstValues;
use crate::estimate::Estimate;
use crate::measure::MeasureOptions;
use crate::patterns::Instance;
use crate::pipeline::{distinct_groups, Prepared, Replicated};

/// Where a number comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Measured now, in ONNX Runtime.
    Measured,
    /// The cost model's estimate from a calibration file.
    Estimated,
    /// No number (illegal, uncatalogued, skipped, or not measured on request).
    None,
}

/// Bottlenecks on the roofline, unfused and fused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bottleneck {
    pub unfused: String,
    pub fused: String,
    /// The roofline's sentence on why the fusion paid or did not.
    pub explanation: String,
}

/// What fusing a group is worth, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    pub verdict: Verdict,
    /// One line: the rule that decided, then what was measured or estimated.
    pub reason: String,
    pub basis: Basis,
    /// Unfused / fused latency with its 95% CI; null when there is no number, or the outputs disagree.
    pub speedup: Option<Estimate>,
    /// With `basis: estimated`: the cost model's source (`measured`, `interpolated`, `extrapolated`,
    /// `fallback`) and how many calibration records it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_used: Option<usize>,
    /// Which measured variant counts: the record's `best_variant` (`runtime_extended`, `runtime_all`,
    /// `explicit`), or `runtime_extended` (the headline) when no variant beats unfused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<Variant>,
    /// That variant's ops, e.g. `["com.microsoft.BiasGelu", "MatMul"]`.
    #[serde(default)]
    pub kernels: Vec<String>,
    /// Whether ORT's own optimizer fused it (headline level), and into what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fused_by_ort: Option<bool>,
    #[serde(default)]
    pub ort_fused_into: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equivalent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trustworthy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unfused_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fused_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottleneck: Option<Bottleneck>,
    /// Warnings from the cost model, or remarks on other variants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Assessment {
    /// No number, with the reason.
    pub fn none(verdict: Verdict, reason: impl Into<String>) -> Assessment {
        Assessment {
            verdict,
            reason: reason.into(),
            basis: Basis::None,
            speedup: None,
            source: None,
            records_used: None,
            variant: None,
            kernels: vec![],
            fused_by_ort: None,
            ort_fused_into: vec![],
            equivalent: None,
            trustworthy: None,
            unfused_ms: None,
            fused_ms: None,
            bottleneck: None,
            notes: vec![],
        }
    }

    /// Time one instance saves when fused, ms (measured only).
    pub fn saved_ms(&self) -> Option<f64> {
        Some(self.unfused_ms? - self.fused_ms?)
    }
}

/// The verdict on a speedup at `threshold` with the standard noise band, given whether the outputs
/// agree and whether the measurement is trustworthy, and the rule that decided: [`decide`].
pub fn rule(s: &Estimate, equivalent: bool, trustworthy: bool, threshold: f64) -> (Verdict, String) {
    let j = decide(s, equivalent, trustworthy, Rule::new(threshold));
    (j.verdict, j.rule)
}

/// A list of ops, long ones shortened: `Reshape, Gemm, Reshape, … (23 ops)`.
pub fn ops_list(ops: &[String]) -> String {
    if ops.len() <= 5 {
        ops.join(", ")
    } else {
        format!("{}, … ({} ops)", ops[..4].join(", "), ops.len())
    }
}

/// Whether ORT's own optimizer fused it, and into what.
pub fn ort_fused(fused: bool, into: &[String]) -> String {
    if fused {
        format!("ORT fused it by itself into {}", ops_list(into))
    } else {
        format!("ORT did not fuse it by itself ({} stay)", ops_list(into))
    }
}

/// The variant a partitioner's fused kernel stands for: the record's best agreeing one, else the headline
/// (runtime, extended level).
pub fn stands_for(rec: &FusionCalibration) -> Variant {
    if rec.best_variant == Variant::Unfused || rec.variant(rec.best_variant).is_none() {
        Variant::RuntimeExtended
    } else {
        rec.best_variant
    }
}

/// The assessment of a measured record. `ceilings` place it on the roofline when the record has no
/// roofline of its own.
pub fn from_record(rec: &FusionCalibration, threshold: f64, ceilings: Option<&Ceilings>) -> Assessment {
    if rec.status == Status::Skipped {
        let why = rec.skip_reason.clone().unwrap_or_else(|| "unknown".into());
        return Assessment::none(Verdict::Unmeasured, format!("not measured: {why}"));
    }
    let variant = stands_for(rec);
    let (speedup, kernels, equivalent, fused_ms) = match rec.variant(variant) {
        Some(l) => (l.speedup, l.ort_ops.clone(), l.equivalence.passed, l.latency.median_ms),
        None => (
            Estimate { point: rec.speedup_factor, lo: rec.speedup_ci_low, hi: rec.speedup_ci_high },
            rec.ort_fused_into.clone(),
            rec.equivalent,
            rec.fused_latency_ms,
        ),
    };
    let aa_ok = rec.aa_control.as_ref().is_some_and(crate::measure::aa_ok);
    let (verdict, head) = rule(&speedup, equivalent, rec.trustworthy, threshold);
    let mut parts = vec![head];
    let mut notes = vec![];
    if equivalent && !rec.trustworthy {
        parts.push(if !aa_ok {
            match rec.aa_control {
                Some(a) => format!(
                    "the A/A control reads {:.2} [{:.2}, {:.2}], not 1.00 (something else was using the machine); measure again",
                    a.point, a.lo, a.hi
                ),
                None => "no A/A control".into(),
            }
        } else {
            "ORT's runtime-fused outputs disagree with the unfused ones".into()
        });
    }
    if !equivalent {
        if let Some(e) = rec.variant(variant).map(|l| &l.equivalence) {
            parts.push(format!("max abs error {:.3e} > atol {:.1e}", e.max_abs_err, e.atol));
        }
    }
    parts.push(match variant {
        Variant::Explicit => format!("{:.2}× with the explicit fused kernel ({})", speedup.point, ops_list(&kernels)),
        Variant::RuntimeAll => format!("{:.2}× runtime-fused (all level)", speedup.point),
        _ => format!("{:.2}× runtime-fused (extended level)", speedup.point),
    });
    parts.push(ort_fused(rec.fused_by_ort, &rec.ort_fused_into));
    if rec.explicit.is_none() {
        if let Some(why) = &rec.explicit_unavailable {
            notes.push(format!("no explicit variant: {why}"));
        }
    } else if !rec.explicit_agrees() {
        notes.push("the explicit fused kernel's outputs disagree with unfused".into());
    }
    let roof = rec.roofline.clone().or_else(|| ceilings.and_then(|c| rec.clone().with_roofline(c).roofline));
    let bottleneck = roof.map(|r| Bottleneck {
        unfused: r.unfused.bottleneck.to_string(),
        fused: r.fused.bottleneck.to_string(),
        explanation: r.explanation.clone(),
    });
    if let Some(b) = &bottleneck {
        parts.push(if b.unfused == b.fused { b.unfused.clone() } else { format!("{} → {}", b.unfused, b.fused) });
    }
    Assessment {
        verdict,
        reason: parts.join("; "),
        basis: Basis::Measured,
        speedup: equivalent.then_some(speedup),
        source: None,
        records_used: None,
        variant: Some(variant),
        kernels,
        fused_by_ort: Some(rec.fused_by_ort),
        ort_fused_into: rec.ort_fused_into.clone(),
        equivalent: Some(equivalent),
        trustworthy: Some(rec.trustworthy),
        unfused_ms: Some(rec.unfused_latency_ms),
        fused_ms: Some(fused_ms),
        bottleneck,
        notes,
    }
}

/// Measure the distinct instances among `insts` (identical ones once, like bench) and return the
/// records by signature.
pub fn measure_instances(
    p: &Prepared,
    insts: &[&Instance],
    mopts: &MeasureOptions,
    progress: bool,
) -> Result<HashMap<String, FusionCalibration>> {
    let g = &p.graph;
    let groups = distinct_groups(g, insts);
    let todo: Vec<&Instance> = groups.iter().filter(|(_, v)| v[0].resolved(g)).map(|(_, v)| v[0]).collect();
    let consts = ConstValues::evaluate(&p.loaded, g, &todo)?;
    let mut runs = Replicated::new(p, &groups, &consts, mopts);
    let schedule = runs.schedule();
    let bar = if progress { ProgressBar::new(schedule.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for (pass, k) in schedule {
        bar.set_message(format!("{}, replicate {}", groups[k].1[0].pattern.key(), pass + 1));
        runs.measure(pass, k);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let noise = runs.noise();
    Ok(groups
        .iter()
        .enumerate()
        .filter_map(|(k, (sig, _))| Some((sig.clone(), runs.record_with(k, &noise)?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(point: f64, lo: f64, hi: f64) -> Estimate {
        Estimate { point, lo, hi }
    }

    #[test]
    fn rules() {
        assert_eq!(rule(&e(1.5, 1.4, 1.6), true, true, 1.2).0, Verdict::Keep);
        assert_eq!(rule(&e(1.1, 1.05, 1.15), true, true, 1.2).0, Verdict::Marginal);
        assert_eq!(rule(&e(1.0, 0.97, 1.03), true, true, 1.2).0, Verdict::Marginal);
        assert_eq!(rule(&e(0.8, 0.75, 0.85), true, true, 1.2).0, Verdict::Harmful);
        assert_eq!(rule(&e(1.5, 1.4, 1.6), false, true, 1.2).0, Verdict::Harmful);
        assert_eq!(rule(&e(1.5, 1.4, 1.6), true, false, 1.2).0, Verdict::Marginal);
        // the point reaches the threshold but the CI touches the noise band
        assert_eq!(rule(&e(1.25, 1.01, 1.5), true, true, 1.2).0, Verdict::Marginal);
    }
}
