//! The text summary of a hardware calibration: "Fusion Pattern Calibration: <hardware>".

use crate::calibration::hardware::{size_label, FusionRule, HardwareCalibration};
use crate::calibration::{Status, NOISE};
use crate::estimate::Verdict;
use crate::patterns::Pattern;

pub(crate) fn rule_text(r: &FusionRule) -> String {
    format!(
        "T1 {:.3} + T2 {:.3} − T_block {:.3} = {:+.3} ms vs {:.3}: {} (graph: {})",
        r.t1_ms,
        r.t2_ms,
        r.t_block_ms,
        r.saving_ms,
        r.threshold_ms,
        if r.rule_says_fused { "fused" } else { "not fused" },
        if r.graph_says_fused { "fused" } else { "separate" }
    )
}

/// The design's "Fusion Pattern Calibration: <hardware>" block, plus ceilings, crossovers and rules.
pub fn summary_text(cal: &HardwareCalibration) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let bar = "=".repeat(80);
    let m = &cal.metadata;
    let _ = writeln!(s, "{bar}\nFusion Pattern Calibration: {}\n{bar}", m.hardware_name);
    let _ = writeln!(
        s,
        "{} ({} logical cores, {:.1} GiB), {} threads, ONNX Runtime {} {}, {}",
        m.hardware.cpu_model,
        m.hardware.logical_cores,
        m.hardware.memory_bytes as f64 / (1u64 << 30) as f64,
        m.threads,
        m.ort_version,
        m.execution_provider,
        if m.quick { "quick" } else { "full" }
    );
    let eff = |e: Option<f64>| e.map(|e| format!(" ({:.0}% of theoretical)", 100.0 * e)).unwrap_or_default();
    let _ = writeln!(
        s,
        "Peak MatMul: {:.1} GFLOP/s{}   Bandwidth: {:.1} GB/s{}   Ridge: {:.1} FLOP/B",
        cal.measured_peak_gflops,
        eff(cal.peak_efficiency),
        cal.measured_bandwidth_gbps,
        eff(cal.bandwidth_efficiency),
        cal.ceilings.ridge()
    );
    for p in cal.operation_profiles.iter().filter(|p| !p.supported) {
        let _ = writeln!(s, "  {} {}: {}", p.operation, p.dtype, p.note);
    }
    let mut current = String::new();
    for r in &cal.fusion_profiles {
        if r.fusion_pattern != current {
            current = r.fusion_pattern.clone();
            let _ = writeln!(s);
        }
        let title = Pattern::from_key(&r.fusion_pattern).map(|p| p.title()).unwrap_or_else(|| r.fusion_pattern.clone());
        let _ = writeln!(s, "{title} ({}):", size_label(r));
        if r.status != Status::Measured {
            let _ = writeln!(s, "  skipped: {}", r.skip_reason.as_deref().unwrap_or("?"));
            continue;
        }
        let _ = writeln!(s, "  Unfused: {:.3} ms ({:.1} GFLOPS)", r.unfused_latency_ms, r.unfused_gflops);
        let _ = writeln!(
            s,
            "  Fused:   {:.3} ms ({:.1} GFLOPS)  ORT {} → {}",
            r.fused_latency_ms,
            r.fused_gflops,
            r.headline_level,
            short_ops(&r.ort_fused_into)
        );
        let word = match r.verdict {
            Some(Verdict::Faster) => "faster",
            Some(Verdict::Slower) => "slower",
            _ => "within noise",
        };
        let _ = writeln!(
            s,
            "  Speedup: {:.2}× [{:.2}, {:.2}] {word}{}",
            r.speedup_factor,
            r.speedup_ci_low,
            r.speedup_ci_high,
            if r.trustworthy { "" } else { " (untrustworthy: A/A off or outputs disagree)" }
        );
        match (&r.explicit, &r.explicit_unavailable) {
            (Some(x), _) => {
                let _ = writeln!(
                    s,
                    "  Explicit {}: {:.3} ms, {:.2}× [{:.2}, {:.2}]{}",
                    short_ops(&r.explicit_kernels),
                    x.latency.median_ms,
                    x.speedup.point,
                    x.speedup.lo,
                    x.speedup.hi,
                    if x.equivalence.passed { "" } else { " (outputs disagree)" }
                );
            }
            (None, Some(why)) => {
                let _ = writeln!(s, "  Explicit: none ({why})");
            }
            _ => {}
        }
        let _ = writeln!(s, "  Memory reduction: {:.1}%", 100.0 * r.memory_reduction);
        if let Some(rl) = &r.roofline {
            let _ =
                writeln!(s, "  Bottleneck: {} → {}; {}", rl.unfused.bottleneck, rl.fused.bottleneck, rl.explanation);
        }
    }
    if !cal.crossovers.is_empty() {
        let _ = writeln!(s, "\nWhere fusion pays (best agreeing variant, beyond ±{:.0}% noise):", NOISE * 100.0);
        for c in &cal.crossovers {
            let _ = writeln!(s, "  {:<37} {}", c.label(), c.summary);
        }
    }
    if !cal.fusion_rules.is_empty() {
        let _ = writeln!(
            s,
            "\nFusion rules on {} (nn-Meter: fused when T1 + T2 − T_block > 0.5·min(T1, T2)):",
            m.execution_provider
        );
        for r in &cal.fusion_rules {
            let _ = writeln!(s, "  {:<20} → {:<20} {}", r.first, r.second, rule_text(r));
        }
    }
    for w in &cal.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

fn short_ops(ops: &[String]) -> String {
    if ops.is_empty() {
        return "—".into();
    }
    ops.iter().map(|o| o.rsplit('.').next().unwrap_or(o)).collect::<Vec<_>>().join(", ")
}
