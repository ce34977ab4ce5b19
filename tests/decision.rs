//! The one decision rule (`fuseval::calibration::decision::decide`) at its boundaries, and the cost
//! model, validate's verdicts and plan's eligibility agreeing on it. Pure arithmetic: no ONNX Runtime,
//! no files.

use fuseval::calibration::cost_model::{Choice, CostModelOptions, FusionCostModel, Workload};
use fuseval::calibration::decision::{decide, Ground, Judgement, Rule, Verdict};
use fuseval::calibration::FusionCalibration;
use fuseval::calibration::NOISE;
use fuseval::drivers::plan::assess::rule;
use fuseval::estimate::Estimate;
use fuseval::runtime::Precision;

fn est(point: f64, lo: f64, hi: f64) -> Estimate {
    Estimate { point, lo, hi }
}

/// Equivalent, trustworthy, at `threshold` with the standard noise band.
fn at(threshold: f64, s: Estimate) -> Judgement {
    decide(&s, true, true, Rule::new(threshold))
}

#[test]
fn the_noise_band_is_the_calibration_one() {
    assert_eq!(Rule::new(1.2), Rule { threshold: 1.2, noise: NOISE });
    assert_eq!(NOISE, 0.02);
}

#[test]
fn the_issue_example_is_marginal_everywhere() {
    // 1.25× [1.15, 1.35] at 1.2: the point clears the threshold, the CI's low end does not
    let s = est(1.25, 1.15, 1.35);
    let j = at(1.2, s);
    assert_eq!((j.verdict, j.fuse, j.ground), (Verdict::Marginal, false, Ground::UnderThreshold));
    assert!(j.rule.contains("under the 1.20× threshold") && j.rule.contains("CI low 1.150"), "{}", j.rule);
    // validate's verdict is the same
    assert_eq!(rule(&s, true, true, 1.2).0, Verdict::Marginal);
    // and so is the cost model's (should_fuse, plan --calibration)
    assert_eq!(Choice::of(&j), Choice::Marginal);
}

#[test]
fn keep_needs_the_whole_ci_above_the_threshold() {
    let j = at(1.2, est(1.5, 1.4, 1.6));
    assert_eq!((j.verdict, j.fuse, j.ground), (Verdict::Keep, true, Ground::ClearsThreshold));
    assert_eq!(Choice::of(&j), Choice::Fuse);
    // the threshold exactly at the low end: keep (≥)
    let j = at(1.2, est(1.3, 1.2, 1.4));
    assert_eq!((j.verdict, j.fuse), (Verdict::Keep, true));
    assert!(j.rule.contains("CI low 1.200 ≥ threshold 1.200"), "{}", j.rule);
    // a hair below: marginal
    let j = at(1.2, est(1.3, 1.2 - 1e-9, 1.4));
    assert_eq!((j.verdict, j.ground), (Verdict::Marginal, Ground::UnderThreshold));
    // an exact speedup at the threshold (the cost model's AssumeBeneficial fallback) is kept
    assert_eq!(at(1.2, Estimate::exact(1.2)).verdict, Verdict::Keep);
}

#[test]
fn keep_also_needs_the_ci_above_the_noise_band() {
    // at the lowest threshold, 1.0, the noise band decides: lo must exceed 1 + NOISE
    let j = at(1.0, est(1.05, 1.02, 1.08));
    assert_eq!((j.verdict, j.ground), (Verdict::Marginal, Ground::WithinNoise), "lo = 1 + NOISE touches the band");
    let j = at(1.0, est(1.05, 1.021, 1.08));
    assert_eq!((j.verdict, j.ground), (Verdict::Keep, Ground::ClearsThreshold));
    // a threshold at the band's edge
    assert_eq!(at(1.02, est(1.05, 1.02, 1.08)).verdict, Verdict::Marginal);
    assert_eq!(at(1.02, est(1.05, 1.03, 1.08)).verdict, Verdict::Keep);
}

#[test]
fn ci_touching_the_noise_band_is_marginal() {
    // faster point, CI reaching into the band
    let j = at(1.2, est(1.25, 1.01, 1.5));
    assert_eq!((j.verdict, j.ground), (Verdict::Marginal, Ground::WithinNoise));
    assert_eq!(Choice::of(&j), Choice::Marginal);
    // straddling 1.0 with the point below it: no faster, not harmful either
    let j = at(1.2, est(0.995, 0.97, 1.02));
    assert_eq!((j.verdict, j.ground), (Verdict::Marginal, Ground::NoFaster));
    assert_eq!(Choice::of(&j), Choice::DontFuse);
    // the CI's high end exactly at 1 − NOISE: touches the band, so not shown slower
    let j = at(1.2, est(0.97, 0.96, 1.0 - NOISE));
    assert_eq!((j.verdict, j.ground), (Verdict::Marginal, Ground::NoFaster));
    // exactly 1.0 (the AssumeNeutral fallback)
    assert_eq!(at(1.2, Estimate::exact(1.0)).ground, Ground::NoFaster);
}

#[test]
fn harmful_when_the_whole_ci_is_below_the_noise_band() {
    let j = at(1.2, est(0.9, 0.85, 0.95));
    assert_eq!((j.verdict, j.fuse, j.ground), (Verdict::Harmful, false, Ground::Slower));
    assert!(j.rule.starts_with("slower") && j.rule.contains("no faster"), "{}", j.rule);
    assert_eq!(Choice::of(&j), Choice::DontFuse);
    let j = at(1.2, est(0.97, 0.96, 0.979));
    assert_eq!(j.verdict, Verdict::Harmful);
}

#[test]
fn not_equivalent_is_harmful_whatever_the_speedup() {
    for trustworthy in [true, false] {
        let j = decide(&est(3.0, 2.9, 3.1), false, trustworthy, Rule::new(1.2));
        assert_eq!((j.verdict, j.fuse, j.ground), (Verdict::Harmful, false, Ground::NotEquivalent));
        assert!(j.rule.contains("not equivalent") && j.rule.contains("disagree"), "{}", j.rule);
        assert_eq!(Choice::of(&j), Choice::DontFuse);
    }
    // even with no usable speedup
    assert_eq!(decide(&est(f64::NAN, f64::NAN, f64::NAN), false, true, Rule::new(1.2)).verdict, Verdict::Harmful);
}

#[test]
fn untrustworthy_is_never_keep_nor_harmful() {
    for s in [est(1.5, 1.4, 1.6), est(0.8, 0.75, 0.85), est(1.0, 0.99, 1.01)] {
        let j = decide(&s, true, false, Rule::new(1.2));
        assert_eq!((j.verdict, j.fuse, j.ground), (Verdict::Marginal, false, Ground::Untrustworthy), "{s:?}");
        assert!(j.rule.contains("untrustworthy"), "{}", j.rule);
    }
}

#[test]
fn nan_and_degenerate_intervals_are_marginal_never_keep() {
    let inf = f64::INFINITY;
    for s in [
        est(f64::NAN, 1.4, 1.6),
        est(1.5, f64::NAN, 1.6),
        est(1.5, 1.4, f64::NAN),
        est(inf, inf, inf),
        est(1.5, 1.4, inf),
        est(0.0, 0.0, 0.0),
        est(-1.0, -2.0, 2.0),
        // lo above hi
        est(1.5, 1.6, 1.4),
    ] {
        let j = at(1.2, s);
        assert_eq!((j.verdict, j.fuse, j.ground), (Verdict::Marginal, false, Ground::NoSpeedup), "{s:?}");
        assert_eq!(Choice::of(&j), Choice::DontFuse, "{s:?}");
    }
    // a NaN threshold keeps nothing
    assert!(!decide(&est(1.5, 1.4, 1.6), true, true, Rule { threshold: f64::NAN, noise: NOISE }).fuse);
}

#[test]
fn a_ci_that_misses_its_point_is_widened_to_hold_it() {
    // the point below the CI: judged as [1.1, 1.6], whose low end misses 1.2
    let j = at(1.2, est(1.1, 1.3, 1.6));
    assert_eq!((j.verdict, j.ground), (Verdict::Marginal, Ground::UnderThreshold));
    // the point above the CI: [1.3, 1.5] still clears it
    assert_eq!(at(1.2, est(1.5, 1.3, 1.4)).verdict, Verdict::Keep);
}

#[test]
fn only_keep_fuses() {
    let grid = [0.5, 0.9, 0.98, 1.0, 1.02, 1.1, 1.19, 1.2, 1.21, 1.5, 3.0];
    for &lo in &grid {
        for &point in grid.iter().filter(|&&p| p >= lo) {
            for &hi in grid.iter().filter(|&&h| h >= point) {
                for t in [1.0, 1.05, 1.2, 1.5] {
                    let j = at(t, est(point, lo, hi));
                    assert_eq!(j.fuse, j.verdict == Verdict::Keep);
                    assert_eq!(j.fuse, lo >= t && lo > 1.0 + NOISE, "{point} [{lo}, {hi}] at {t}");
                    assert_eq!(j.verdict == Verdict::Harmful, hi < 1.0 - NOISE, "{point} [{lo}, {hi}] at {t}");
                    assert_eq!(Choice::of(&j) == Choice::Fuse, j.fuse);
                    // validate's shorthand says the same
                    assert_eq!(rule(&est(point, lo, hi), true, true, t).0, j.verdict);
                }
            }
        }
    }
}

/// A measured record of `pattern` at size 1e6 with the headline speedup `s`, serialised as calibration.json holds it.
fn record(pattern: &str, s: Estimate) -> FusionCalibration {
    let level = serde_json::json!({
        "latency": { "median_ms": 1.0 / s.point, "ci_ms": { "point": 1.0 / s.point, "lo": 0.99 / s.point, "hi": 1.01 / s.point }, "min_ms": 0.9 / s.point, "samples": 20 },
        "speedup": s,
        "ort_ops": ["com.microsoft.FusedGemm"],
        "fused_by_ort": true,
        "equivalence": { "passed": true, "max_abs_err": 1e-6, "max_rel_err": 1e-6, "atol": 1e-4, "rtol": 1e-3, "outputs_compared": 1 }
    });
    serde_json::from_value(serde_json::json!({
        "fusion_pattern": pattern, "operators": ["Linear", "Bias"], "num_operators": 2, "form": "MatMul+Add",
        "status": "measured", "skip_reason": null, "unfused_latency_ms": 1.0, "fused_latency_ms": 1.0 / s.point,
        "unfused_gflops": 1.0, "fused_gflops": 1.0, "flops": 1_000_000, "unfused_memory_bytes": 100_000,
        "fused_memory_bytes": 50_000, "speedup_factor": s.point, "speedup_ci_low": s.lo, "speedup_ci_high": s.hi,
        "memory_reduction": 0.5, "input_shape": [1, 64], "input_shapes": {}, "output_shapes": {}, "extra_params": {},
        "num_trials": 160, "rounds": 20, "iters_per_round": 8, "budget_exhausted": false, "headline_level": "extended",
        "ort_fused_into": ["com.microsoft.FusedGemm"], "fused_by_ort": true, "extended": level, "all": level,
        "explicit": null, "best_variant": "runtime_extended", "unfused_ops": ["MatMul", "Add"],
        "aa_control": { "point": 1.0, "lo": 0.99, "hi": 1.01 }, "trustworthy": true, "equivalent": true,
        "verdict": "faster", "instances": [], "signature": pattern
    }))
    .expect("a valid record")
}

#[test]
fn the_cost_model_decides_by_the_same_rule() {
    let cases = [
        ("Add_ReLU", est(1.25, 1.15, 1.35), Choice::Marginal),
        ("Linear_Bias", est(1.5, 1.4, 1.6), Choice::Fuse),
        ("Sigmoid_Mul", est(1.3, 1.2, 1.4), Choice::Fuse),
        ("Conv2d_ReLU", est(0.9, 0.85, 0.95), Choice::DontFuse),
        ("Conv2d_Bias", est(1.25, 1.01, 1.5), Choice::Marginal),
    ];
    let recs: Vec<FusionCalibration> = cases.iter().map(|(p, s, _)| record(p, *s)).collect();
    let m = FusionCostModel::from_calibration(&recs, CostModelOptions::default()).unwrap();
    let w = Workload { flops: 1_000_000, unfused_bytes: 100_000, fused_bytes: 50_000 };
    for (p, s, want) in cases {
        let d = m.should_fuse(p, &w, Precision::Fp32).unwrap();
        assert_eq!(d.choice, want, "{p}: {}", d.reason);
        let j = at(1.2, s);
        assert_eq!(d.fuse, j.fuse, "{p}");
        assert!(d.reason.contains(&j.rule), "{p}: {} lacks {}", d.reason, j.rule);
    }
}
