//! `fuseval agreement A B`: do two runs of the same bench agree? Instances matched by signature; for
//! each speedup (extended, full, explicit) the difference, and whether it lies within the two runs'
//! combined CI, `|s1 − s2| ≤ √(h1² + h2²)` with `h` the half-widths. The whole model the same way: its
//! latency at each of ORT's levels and its two speedups.

use std::fmt::Write;

use serde::Serialize;

use crate::calibration::{CalibrationFile, FusionCalibration};
use crate::estimate::Estimate;
use crate::measure::WholeModel;

/// One speedup of one instance in both runs.
#[derive(Clone, Debug, Serialize)]
pub struct Pair {
    pub label: String,
    pub signature: String,
    pub variant: String,
    pub a: Estimate,
    pub b: Estimate,
    /// (b − a) / a.
    pub rel_diff: f64,
    /// `|a − b| ≤ √(h_a² + h_b²)`.
    pub within_combined_ci: bool,
}

/// Per variant: how many instances agree within their combined CI, and the differences.
#[derive(Clone, Debug, Serialize)]
pub struct VariantAgreement {
    pub variant: String,
    pub instances: usize,
    pub within_combined_ci: usize,
    pub max_abs_rel_diff: f64,
    pub median_abs_rel_diff: f64,
    /// How many differ by at most 3%.
    pub within_3pct: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Agreement {
    pub matched: usize,
    pub only_in_a: usize,
    pub only_in_b: usize,
    pub variants: Vec<VariantAgreement>,
    pub pairs: Vec<Pair>,
    /// The whole model in both runs: latency (ms) at Disable, extended and full, and the two speedups;
    /// empty when a run did not time it.
    pub whole_model: Vec<Pair>,
}

/// The variants compared: ORT's two levels and the explicit kernel, each where both runs have it and its
/// outputs agree, and both records count (measured, trustworthy).
fn variants(r: &FusionCalibration) -> Vec<(&'static str, Estimate)> {
    let mut v = vec![];
    for (name, l) in [("extended", &r.extended), ("full", &r.all), ("explicit", &r.explicit)] {
        if let Some(l) = l.as_ref().filter(|l| l.equivalence.passed) {
            v.push((name, l.speedup));
        }
    }
    v
}

pub fn agreement<'a>(a: &'a CalibrationFile, b: &'a CalibrationFile) -> Agreement {
    let counted = |c: &'a CalibrationFile| -> Vec<&'a FusionCalibration> {
        c.fusion_profiles.iter().filter(|r| r.counts()).collect()
    };
    let (ra, rb) = (counted(a), counted(b));
    let mut pairs = vec![];
    let mut matched = 0;
    for x in &ra {
        let Some(y) = rb.iter().find(|y| y.signature == x.signature) else { continue };
        matched += 1;
        let vy = variants(y);
        for (name, ea) in variants(x) {
            let Some((_, eb)) = vy.iter().find(|(n, _)| *n == name) else { continue };
            pairs.push(pair(&x.label(), &x.signature, name, ea, *eb));
        }
    }
    let variants = ["extended", "full", "explicit"]
        .iter()
        .filter_map(|&v| {
            let ps: Vec<&Pair> = pairs.iter().filter(|p| p.variant == v).collect();
            if ps.is_empty() {
                return None;
            }
            let diffs: Vec<f64> = ps.iter().map(|p| p.rel_diff.abs()).collect();
            Some(VariantAgreement {
                variant: v.into(),
                instances: ps.len(),
                within_combined_ci: ps.iter().filter(|p| p.within_combined_ci).count(),
                max_abs_rel_diff: diffs.iter().copied().fold(0.0, f64::max),
                median_abs_rel_diff: crate::estimate::median(&diffs),
                within_3pct: diffs.iter().filter(|&&d| d <= 0.03).count(),
            })
        })
        .collect();
    let sig_in = |rs: &[&FusionCalibration], s: &str| rs.iter().any(|r| r.signature == s);
    let whole_model = match (&a.whole_model, &b.whole_model) {
        (Some(wa), Some(wb)) => WHOLE_FIGURES
            .iter()
            .map(|(v, f)| pair("whole model", "whole model", v, f(&wa.measurement), f(&wb.measurement)))
            .collect(),
        _ => vec![],
    };
    Agreement {
        matched,
        only_in_a: ra.iter().filter(|r| !sig_in(&rb, &r.signature)).count(),
        only_in_b: rb.iter().filter(|r| !sig_in(&ra, &r.signature)).count(),
        variants,
        pairs,
        whole_model,
    }
}

/// One figure of a whole model.
type Figure = fn(&WholeModel) -> Estimate;

/// The whole model's figures compared: latency at ORT's three levels, and the two speedups.
const WHOLE_FIGURES: [(&str, Figure); 5] = [
    ("Disable ms", |m| m.disabled.ci_ms),
    ("extended ms", |m| m.extended.ci_ms),
    ("full ms", |m| m.all.ci_ms),
    ("speedup extended", |m| m.speedup_extended),
    ("speedup full", |m| m.speedup_all),
];

/// One figure in both runs: the difference and whether it lies within the combined CI.
fn pair(label: &str, signature: &str, variant: &str, a: Estimate, b: Estimate) -> Pair {
    let half = |e: &Estimate| (e.hi - e.lo) / 2.0;
    let combined = (half(&a).powi(2) + half(&b).powi(2)).sqrt();
    Pair {
        label: label.into(),
        signature: signature.into(),
        variant: variant.into(),
        a,
        b,
        rel_diff: (b.point - a.point) / a.point,
        within_combined_ci: (a.point - b.point).abs() <= combined,
    }
}

pub fn agreement_text(g: &Agreement, a: &str, b: &str) -> String {
    let mut s = agreement_summary(g, a, b);
    tables(&mut s, g);
    s
}

/// The head of [`agreement_text`]: the runs, and per variant and for the whole model how many agree.
pub fn agreement_summary(g: &Agreement, a: &str, b: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Run A: {a}\nRun B: {b}");
    let _ = writeln!(
        s,
        "Distinct instances counted in both: {} (only in A: {}, only in B: {}; untrustworthy or skipped records are not compared)",
        g.matched, g.only_in_a, g.only_in_b
    );
    for v in &g.variants {
        let _ = writeln!(
            s,
            "  {:<9} {} of {} within their combined CI ({:.0}%); |difference| median {:.1}%, max {:.1}%; {} of {} within 3%",
            v.variant,
            v.within_combined_ci,
            v.instances,
            100.0 * v.within_combined_ci as f64 / v.instances as f64,
            100.0 * v.median_abs_rel_diff,
            100.0 * v.max_abs_rel_diff,
            v.within_3pct,
            v.instances
        );
    }
    if !g.whole_model.is_empty() {
        let w = &g.whole_model;
        let within = w.iter().filter(|p| p.within_combined_ci).count();
        let max = w.iter().map(|p| p.rel_diff.abs()).fold(0.0, f64::max);
        let _ = writeln!(
            s,
            "  whole model: {within} of {} figures within their combined CI; |difference| max {:.1}% ({})",
            w.len(),
            100.0 * max,
            if max <= 0.03 { "within 3%" } else { "NOT within 3%" }
        );
    }
    s
}

/// The tail of [`agreement_text`]: the whole model's figures and every instance's, A against B.
fn tables(s: &mut String, g: &Agreement) {
    if !g.whole_model.is_empty() {
        let w = &g.whole_model;
        let _ = writeln!(s, "\n{:<20} {:>26} {:>26} {:>7}", "whole model", "A", "B", "Δ%");
        for p in w {
            let _ = writeln!(
                s,
                "{:<20} {:>26} {:>26} {:>+6.1}{}",
                p.variant,
                est(&p.a),
                est(&p.b),
                100.0 * p.rel_diff,
                outside(p)
            );
        }
    }
    if !g.pairs.is_empty() {
        let _ = writeln!(s, "\n{:<58} {:<9} {:>20} {:>20} {:>7}", "instance", "variant", "A", "B", "Δ%");
    }
    for p in &g.pairs {
        let _ = writeln!(
            s,
            "{:<58} {:<9} {:>20} {:>20} {:>+6.1}{}",
            p.label,
            p.variant,
            est(&p.a),
            est(&p.b),
            100.0 * p.rel_diff,
            outside(p)
        );
    }
}

/// One whole-model figure over several runs.
#[derive(Clone, Debug, Serialize)]
pub struct Spread {
    pub figure: String,
    pub points: Vec<f64>,
    pub min: f64,
    pub max: f64,
    /// The largest difference between two runs, relative to the smaller: max / min − 1.
    pub max_pairwise_rel_diff: f64,
}

/// The whole model's figures over several runs (those that timed it): latency at ORT's three levels and
/// the two speedups, each with its range and largest pairwise difference. Empty when fewer than two
/// runs timed it.
pub fn whole_model_spread(runs: &[&CalibrationFile]) -> Vec<Spread> {
    let ms: Vec<_> = runs.iter().filter_map(|c| c.whole_model.as_ref()).map(|w| &w.measurement).collect();
    if ms.len() < 2 {
        return vec![];
    }
    WHOLE_FIGURES
        .iter()
        .map(|(name, f)| {
            let points: Vec<f64> = ms.iter().map(|m| f(m).point).collect();
            let min = points.iter().copied().fold(f64::INFINITY, f64::min);
            let max = points.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            Spread { figure: name.to_string(), points, min, max, max_pairwise_rel_diff: max / min - 1.0 }
        })
        .collect()
}

/// [`whole_model_spread`] as a table, with whether every figure holds within 3% run to run.
pub fn spread_text(spread: &[Spread]) -> String {
    let mut s = String::new();
    let Some(first) = spread.first() else { return s };
    let worst = spread.iter().map(|x| x.max_pairwise_rel_diff).fold(0.0, f64::max);
    let _ = writeln!(
        s,
        "Whole model over {} runs: largest difference between two runs {:.1}% ({})",
        first.points.len(),
        100.0 * worst,
        if worst <= 0.03 { "every figure within 3%" } else { "NOT every figure within 3%" }
    );
    for x in spread {
        let points: Vec<String> = x.points.iter().map(|p| format!("{p:.3}")).collect();
        let _ = writeln!(
            s,
            "  {:<17} {:>8.3} – {:<8.3} {:>5.1}%   ({})",
            x.figure,
            x.min,
            x.max,
            100.0 * x.max_pairwise_rel_diff,
            points.join(", ")
        );
    }
    s
}

fn est(e: &Estimate) -> String {
    format!("{:.3} [{:.3}, {:.3}]", e.point, e.lo, e.hi)
}

fn outside(p: &Pair) -> &'static str {
    if p.within_combined_ci {
        ""
    } else {
        "  outside the combined CI"
    }
}
