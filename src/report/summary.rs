//! The text block `fuseval bench` prints: one entry per distinct pattern instance (measured or skipped,
//! with what makes a result untrustworthy said in words), then totals and the whole-model line.

use std::fmt::Write;

use crate::calibration::{CalibrationFile, FusionCalibration, Status, Variant};
use crate::estimate::Verdict;
use crate::load::dims_string;
use crate::patterns::Pattern;

use super::{
    aa_off, distrust, fmt_aa, fmt_err, fmt_ms, fmt_ratio, fmt_speedup, headline_speedup, level_name, levels,
    max_abs_err, params_list, shapes_text, verdict_word,
};

const WIDTH: usize = 80;

/// The summary of a calibration file, as text.
pub fn summary_text(cal: &CalibrationFile) -> String {
    let m = &cal.metadata;
    let mut s = String::new();
    let rule = "=".repeat(WIDTH);
    let _ = writeln!(s, "{rule}");
    let _ = writeln!(
        s,
        "Fusion Pattern Calibration: {} · ONNX Runtime {} · {} · {} thread{}",
        m.hardware.cpu_model,
        m.ort_version,
        m.execution_provider,
        m.threads,
        if m.threads == 1 { "" } else { "s" }
    );
    let _ = writeln!(s, "{rule}");
    let inputs: Vec<String> = m.model_inputs.iter().map(|(n, d)| format!("{n}={}", dims_string(d))).collect();
    let _ =
        writeln!(s, "Model: {} ({})", m.model, if inputs.is_empty() { "no inputs".into() } else { inputs.join(", ") });
    if let Some(c) = &m.provenance.fuseval_commit {
        let _ = writeln!(
            s,
            "Made by: fuseval {} at {c}{}{}",
            m.fuseval_version,
            m.provenance.ort_library.as_ref().map(|l| format!(", ORT {l}")).unwrap_or_default(),
            if m.provenance.command_line.is_empty() {
                String::new()
            } else {
                format!("\nCommand: {}", m.provenance.command_line.join(" "))
            }
        );
    }
    let mode = if m.quick { "--quick" } else { "full" };
    let _ = writeln!(
        s,
        "Mode: {mode}: CI target ±{}%, budget {} s per pattern, seed {}; headline level: {}{}",
        pct(m.target_rel_ci),
        fmt_num(m.budget_per_instance_s),
        m.seed,
        level_name(&m.headline_level),
        m.precision.map(|p| format!("; precision {p}")).unwrap_or_default()
    );
    if !m.phases.is_empty() {
        let _ = writeln!(s, "Wall time: {}", super::wall_time(m));
    }
    if !cal.patterns_found_all.is_empty() {
        let found: Vec<String> = cal
            .patterns_found_all
            .iter()
            .map(|(k, all)| format!("{k} {}/{all}", cal.patterns_found_longest.get(k).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(s, "Found (longest match / all matches): {}", found.join(", "));
    }
    let _ = writeln!(s);

    let measured_instances = cal.instances_measured();
    if !measured_instances {
        let _ = writeln!(s, "--whole-model-only: the pattern instances were not measured.");
    } else if cal.fusion_profiles.is_empty() {
        let _ = writeln!(s, "No fusible pattern instances were found in this model: nothing was measured.");
    }
    for p in &cal.fusion_profiles {
        entry(&mut s, p, m.target_rel_ci);
        let _ = writeln!(s);
    }
    totals(&mut s, cal);
    s
}

/// One record.
fn entry(s: &mut String, p: &FusionCalibration, target: f64) {
    let title = Pattern::from_key(&p.fusion_pattern).map(|p| p.title()).unwrap_or_else(|| p.fusion_pattern.clone());
    let n = p.instances.len();
    let _ = writeln!(s, "{title} ({}{}, ×{n} instance{}):", shapes_text(p), params(p), if n == 1 { "" } else { "s" });
    if p.status != Status::Measured {
        let _ = writeln!(s, "  Skipped: {}", p.skip_reason.as_deref().unwrap_or("no reason given"));
        return;
    }
    let (_, other) = levels(p);
    let _ = writeln!(s, "  Unfused: {}{}", fmt_ms(p.unfused_latency_ms), gflops(p.unfused_gflops));
    let ort = if p.ort_fused_into.is_empty() { "(no ops)".to_string() } else { p.ort_fused_into.join(", ") };
    let not_fused = if p.fused_by_ort { "" } else { " (not fused)" };
    let _ = writeln!(
        s,
        "  Fused:   {}{}   ORT: {ort}{not_fused}   [{}]",
        fmt_ms(p.fused_latency_ms),
        gflops(p.fused_gflops),
        level_name(&p.headline_level)
    );
    let _ = writeln!(s, "  {}", explicit_line(p));

    let mut speed = if p.equivalent {
        format!(
            "  Speedup: {}  {}",
            fmt_speedup(&headline_speedup(p)),
            p.verdict.map(verdict_word).unwrap_or("no verdict")
        )
    } else {
        "  Speedup: not reported (outputs disagree)".to_string()
    };
    if let Some((name, o)) = other {
        if o.equivalence.passed {
            let _ = write!(
                speed,
                "     {} level: {} ({})",
                level_name(name),
                fmt_speedup(&o.speedup),
                o.ort_ops.join(", ")
            );
        } else {
            let _ = write!(speed, "     {} level: not reported (outputs disagree)", level_name(name));
        }
    }
    let _ = write!(speed, "     best: {}", p.best_variant);
    let _ = writeln!(s, "{speed}");

    let aa = p.aa_control.as_ref().map(fmt_aa).unwrap_or_else(|| "n/a".into());
    let agree = if p.equivalent { "outputs agree" } else { "OUTPUTS DISAGREE" };
    let _ = writeln!(
        s,
        "  Memory reduction: {}%   A/A control {aa}   {agree} (max abs err {})",
        fmt_pct(p.memory_reduction),
        fmt_err(max_abs_err(p))
    );

    for why in distrust(p) {
        let hint = if why.starts_with("outputs") {
            "the fused kernels compute something else: this speedup is not reported"
        } else {
            "the host was noisy while this was timed: do not trust these numbers"
        };
        let _ = writeln!(s, "  ! untrustworthy: {why}: {hint}");
    }
    if p.budget_exhausted {
        let _ = writeln!(
            s,
            "  ! the time budget ran out before the CI reached ±{}% ({} rounds of {} iterations)",
            pct(target),
            p.rounds,
            p.iters_per_round
        );
    }
}

/// `Explicit: 0.81 ms  com.microsoft.FusedConv  1.40× [1.37, 1.43]  outputs agree`, or why there is none.
pub(crate) fn explicit_line(p: &FusionCalibration) -> String {
    let Some(x) = &p.explicit else {
        return match &p.explicit_unavailable {
            Some(why) if why.is_failed() => format!("Explicit: {why}"),
            Some(why) => format!("Explicit: none — {why}"),
            None => "Explicit: none".into(),
        };
    };
    let kernels = if p.explicit_kernels.is_empty() { &x.ort_ops } else { &p.explicit_kernels };
    let kernels = if kernels.is_empty() { "(no ops)".to_string() } else { kernels.join(", ") };
    let mut line = format!("Explicit: {}  {kernels}  ", fmt_ms(x.latency.median_ms));
    if x.equivalence.passed {
        let _ = write!(line, "{}  outputs agree", fmt_speedup(&x.speedup));
    } else {
        let _ =
            write!(line, "speedup not reported: OUTPUTS DISAGREE (max abs err {})", fmt_err(x.equivalence.max_abs_err));
    }
    if let Some(note) = &p.explicit_note {
        let _ = write!(line, "  ({note})");
    }
    line
}

/// `, 3x3, stride 2, MatMul+Add`: what distinguishes instances of a pattern beyond their shapes.
fn params(p: &FusionCalibration) -> String {
    let mut v = params_list(&p.extra_params);
    // conv forms are the op names spelled out; the linear and elementwise forms say which ops matched
    if !p.fusion_pattern.starts_with("Conv2d") && !p.form.is_empty() {
        v.push(p.form.clone());
    }
    v.iter().map(|x| format!(", {x}")).collect()
}

/// ` (219.2 GFLOPS)`, or nothing when the FLOPs are unknown.
fn gflops(g: f64) -> String {
    if !(g.is_finite() && g > 0.0) {
        String::new()
    } else if g >= 1.0 {
        format!(" ({g:.1} GFLOPS)")
    } else {
        format!(" ({g:.3} GFLOPS)")
    }
}

/// `80.0` from 0.8.
fn fmt_pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.1}", x * 100.0)
    } else {
        "n/a".into()
    }
}

/// `2` from 0.02, `2.5` from 0.025.
pub(crate) fn pct(x: f64) -> String {
    fmt_num(x * 100.0)
}

/// A number without trailing zeros: `10`, `1.5`.
fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Counts, the A/A range, the whole-model line and which level is the headline.
fn totals(s: &mut String, cal: &CalibrationFile) {
    let _ = writeln!(s, "{}", "-".repeat(WIDTH));
    let profiles = &cal.fusion_profiles;
    let measured: Vec<&FusionCalibration> = profiles.iter().filter(|p| p.status == Status::Measured).collect();
    let skipped: Vec<&FusionCalibration> = profiles.iter().filter(|p| p.status != Status::Measured).collect();
    let instances = |v: &[&FusionCalibration]| v.iter().map(|p| p.instances.len()).sum::<usize>();
    let untrusted = measured.iter().filter(|p| !distrust(p).is_empty()).count();
    let _ = writeln!(
        s,
        "Instances: {} measured ({} distinct), {} skipped{}{}",
        instances(&measured),
        measured.len(),
        instances(&skipped),
        if skipped.is_empty() { String::new() } else { format!(" ({} distinct)", skipped.len()) },
        if untrusted > 0 { format!("; {untrusted} distinct untrustworthy") } else { String::new() }
    );
    if !cal.complete {
        let _ = writeln!(s, "Incomplete: the run was interrupted; only the instances it finished are listed");
    }
    // only records whose outputs agree and whose A/A control passed count
    let counted: Vec<&FusionCalibration> = measured.iter().copied().filter(|p| p.counts()).collect();
    let count = |v: Verdict| counted.iter().filter(|p| p.verdict == Some(v)).count();
    if !measured.is_empty() {
        let _ = writeln!(
            s,
            "Verdicts ({} level, ±{}% noise band widened by each A/A offset; {} of {} distinct counted): {} faster, {} within noise, {} slower",
            level_name(&cal.metadata.headline_level),
            pct(crate::calibration::NOISE),
            counted.len(),
            measured.len(),
            count(Verdict::Faster),
            count(Verdict::WithinNoise),
            count(Verdict::Slower)
        );
    }
    if let Some(a) = &cal.aa_check {
        if !a.failed.is_empty() {
            let _ = writeln!(
                s,
                "Left out: {} distinct whose A/A control still failed after re-measurement (no verdict, best variant or prediction uses them): {}",
                a.failed.len(),
                a.failed.join("; ")
            );
        }
    }
    if !measured.is_empty() {
        let with_kernel = measured.iter().filter(|p| p.explicit.is_some()).count();
        let agree = measured.iter().filter(|p| p.explicit_agrees()).count();
        let best: Vec<String> = Variant::ALL
            .iter()
            .map(|&b| format!("{b} {}", counted.iter().filter(|p| p.best_variant == b).count()))
            .collect();
        let _ = writeln!(
            s,
            "Explicit-fused: {with_kernel} of {} distinct measured ({agree} with outputs that agree); best variant: {}",
            measured.len(),
            best.join(", ")
        );
    }
    let aa: Vec<&crate::estimate::Estimate> = measured.iter().filter_map(|p| p.aa_control.as_ref()).collect();
    if !aa.is_empty() {
        let lo = aa.iter().map(|e| e.point).fold(f64::INFINITY, f64::min);
        let hi = aa.iter().map(|e| e.point).fold(f64::NEG_INFINITY, f64::max);
        let off = measured.iter().filter(|p| aa_off(p)).count();
        let _ = writeln!(
            s,
            "A/A control: {} to {} over {} measured result{} ({})",
            fmt_ratio(lo),
            fmt_ratio(hi),
            aa.len(),
            if aa.len() == 1 { "" } else { "s" },
            if off == 0 { "all passed".to_string() } else { format!("{off} failed") }
        );
    }
    if let Some(a) = &cal.aa_check {
        let most = measured.iter().map(|p| p.replicates.len()).max().unwrap_or(0);
        let fewer = measured.iter().filter(|p| p.replicates.len() < most).count();
        let reps = if fewer == 0 {
            format!("{most} per instance")
        } else {
            format!(
                "{most} for {} of {} distinct instances, 1 for the rest (--quick; their CIs take the pooled spread)",
                measured.len() - fewer,
                measured.len()
            )
        };
        let noise = cal
            .session_noise
            .map(|n| {
                use crate::measure::replicates::Ratio;
                let sd = |r: Ratio| 100.0 * n.of(r).rel_sd();
                format!(
                    "; session-to-session spread A/A ±{:.1}%, extended ±{:.1}%, full ±{:.1}%, explicit ±{:.1}% (pooled, {} df)",
                    sd(Ratio::AaControl),
                    sd(Ratio::Extended),
                    sd(Ratio::All),
                    sd(Ratio::Explicit),
                    n.df
                )
            });
        let _ = writeln!(
            s,
            "Replicates: {reps}{}; A/A below 1.00 in {} of {} replicates (binomial p = {:.2}{}); {} re-measured for a failed control",
            noise.unwrap_or_default(),
            a.below_one,
            a.points,
            a.p_value,
            if a.p_value < 0.05 { ": one copy is favoured, check the build order" } else { ", consistent with one half" },
            a.remeasured
        );
    }
    if let Some(c) = &cal.metadata.gpu_clock_check {
        let _ = writeln!(
            s,
            "GPU clock: fuseval's host clock (a sync per run) vs CUDA events on the measured stream (no sync per run), per run: median {:+.1}%, largest {:+.1}% over {} records",
            100.0 * c.median_host_vs_events,
            100.0 * c.max_host_vs_events,
            c.checked
        );
    }
    let head = &cal.metadata.headline_level;
    match &cal.whole_model {
        Some(w) => {
            let wm = &w.measurement;
            let saving = if head == "all" { w.saving_all_ms } else { w.saving_extended_ms };
            let explains = match w.explained_fraction {
                Some(f) if f.is_finite() => format!("explains {:.0}%", f * 100.0),
                _ => "no whole-model saving to explain".into(),
            };
            if cal.instances_measured() {
                let _ = writeln!(
                    s,
                    "Whole model: disabled {}, extended {}, full {} → measured saving {}; sum of pattern savings {} ({explains})",
                    fmt_ms(wm.disabled.median_ms),
                    fmt_ms(wm.extended.median_ms),
                    fmt_ms(wm.all.median_ms),
                    fmt_ms(saving),
                    fmt_ms(w.sum_pattern_saving_ms)
                );
            } else {
                let ci = super::fmt_ms_estimate;
                let _ = writeln!(
                    s,
                    "Whole model: disabled {}, extended {} ({}), full {} ({}); A/A {}",
                    ci(&wm.disabled.ci_ms),
                    ci(&wm.extended.ci_ms),
                    super::fmt_speedup(&wm.speedup_extended),
                    ci(&wm.all.ci_ms),
                    super::fmt_speedup(&wm.speedup_all),
                    super::fmt_aa(&wm.aa_control)
                );
            }
            if let Some(p) = &w.prediction {
                let _ = writeln!(
                    s,
                    "Prediction (unfused {} minus the per-pattern savings of {} instances{}):",
                    fmt_ms(p.unfused_ms),
                    p.instances_used,
                    if p.instances_left_out > 0 {
                        format!(", {} left out: skipped or not equivalent", p.instances_left_out)
                    } else {
                        String::new()
                    }
                );
                let line = |s: &mut String, name: &str, l: &crate::calibration::LevelPrediction| {
                    let _ = writeln!(
                        s,
                        "  {name:<28} predicted {} [{}, {}] vs measured {} ({:+.1}%; \"fusion changes nothing\" {})",
                        fmt_ms(l.predicted_ms),
                        fmt_ms(l.predicted_low_ms),
                        fmt_ms(l.predicted_high_ms),
                        fmt_ms(l.measured_ms),
                        100.0 * l.error,
                        l.no_change_error.map(|e| format!("{:+.1}%", 100.0 * e)).unwrap_or_else(|| "n/a".into())
                    );
                    if let (Some(p), Some(m)) = (&l.predicted_saving, &l.measured_saving) {
                        let explained = match &l.explained {
                            Some(x) => format!(
                                "explains {:.0}% [{:.0}%, {:.0}%] of it",
                                100.0 * x.point,
                                100.0 * x.lo,
                                100.0 * x.hi
                            ),
                            None => "the measured saving is within the whole model's noise of zero".into(),
                        };
                        let _ = writeln!(
                            s,
                            "  {:<28} saving predicted {} [{}, {}], measured {} [{}, {}]: {explained}",
                            "",
                            fmt_ms(p.point),
                            fmt_ms(p.lo),
                            fmt_ms(p.hi),
                            fmt_ms(m.point),
                            fmt_ms(m.lo),
                            fmt_ms(m.hi)
                        );
                    }
                    if l.beats_no_change() == Some(false) {
                        let _ = writeln!(
                            s,
                            "  {:<28} the prediction is no better than assuming fusion changes nothing",
                            ""
                        );
                    }
                };
                for l in &p.levels {
                    let name = match l.level.as_str() {
                        "extended" => "extended level",
                        "all" => "full level",
                        "best" => "best variant (what-if)",
                        other => other,
                    };
                    line(s, name, l);
                }
                if let Some(c) = &p.from_calibration {
                    line(s, "calibration only, extended", &c.prediction);
                    let src: Vec<String> = c.sources.iter().map(|(k, v)| format!("{v} {k}")).collect();
                    let _ = writeln!(s, "    ({}; lookups: {})", c.calibration, src.join(", "));
                }
            }
        }
        None => {
            let _ = writeln!(s, "Whole model: not timed");
        }
    }
    if let Some(a) = cal.whole_model.as_ref().and_then(|w| w.attribution.as_ref()) {
        attribution(s, a);
    }
    if let Some(r) = &cal.recommended_config {
        let _ = writeln!(s, "Recommended configuration: {}", r.verdict);
        if !r.is_default() {
            for line in crate::calibration::attribution::snippets(r) {
                let _ = writeln!(s, "  {line}");
            }
        }
        if let Some(e) = &r.speedup_vs_extended {
            let _ = writeln!(s, "  against ORT_ENABLE_EXTENDED: {:.3}x [{:.3}, {:.3}]", e.point, e.lo, e.hi);
        }
    }
    if head == "extended" {
        let _ = writeln!(
            s,
            "Headline level: extended (ORT_ENABLE_EXTENDED). The full level (ORT_ENABLE_ALL) also converts\n\
             convolutions to the NCHWc layout and adds ReorderInput/ReorderOutput at a carved model's\n\
             boundaries; a whole model pays those reorders once, a carved pattern every time, so the\n\
             full level is shown beside the headline, not as it."
        );
    } else {
        let _ = writeln!(s, "Headline level: {}.", level_name(head));
    }
}

/// The whole model, transformer by transformer: the baseline, the table and the explained fraction.
fn attribution(s: &mut String, a: &crate::calibration::attribution::Attribution) {
    let ci = super::fmt_ms_estimate;
    let b = &a.baseline;
    let lat = |t: &Option<crate::calibration::attribution::Timed>| {
        t.as_ref().map(|t| fmt_ms(t.latency.median_ms)).unwrap_or_else(|| "n/a".into())
    };
    let _ = writeln!(
        s,
        "In context (ORT's default = {}): disable {}, fusion-off {}, extended {}, default {}",
        a.level,
        lat(&b.disable),
        lat(&b.fusion_off),
        lat(&b.extended),
        fmt_ms(b.default.latency.median_ms)
    );
    if let Some(f) = &a.fusion_saving_ms {
        let _ = writeln!(s, "  fusion saving (fusion-off → default): {}", ci(f));
    }
    if let Some(f) = &a.non_fusion_saving_ms {
        let _ = writeln!(s, "  non-fusion saving (disable → fusion-off): {}", ci(f));
    }
    let _ = writeln!(
        s,
        "  {:<32} {:<16} {:>5} {:>28} {:>12} {:>8}  verdict",
        "transformer", "kind", "nodes", "in-context saving [CI]", "carved", "context"
    );
    for t in a.transformers.iter().filter(|t| t.fires) {
        let _ = writeln!(
            s,
            "  {:<32} {:<16} {:>5} {:>28} {:>12} {:>8}  {}",
            t.name,
            t.kind.name(),
            t.nodes_consumed,
            t.saving_ms.as_ref().map(ci).unwrap_or_else(|| "n/a".into()),
            t.carved_saving_ms.map(fmt_ms).unwrap_or_else(|| "-".into()),
            t.context_factor.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into()),
            t.verdict
        );
    }
    match (&a.explained_fraction, &a.interaction_ms) {
        (Some(f), Some(i)) => {
            let _ = writeln!(
                s,
                "  the fusions one by one explain {:.0}% [{:.0}%, {:.0}%] of the fusion saving; interaction remainder {}",
                100.0 * f.point,
                100.0 * f.lo,
                100.0 * f.hi,
                ci(i)
            );
        }
        (None, Some(i)) => {
            let _ = writeln!(s, "  interaction remainder {}", ci(i));
        }
        _ => {}
    }
    if let (Some(c), Some(f)) = (a.carved_saving_ms, &a.fusion_saving_ms) {
        let explained = match &a.carved_explained_fraction {
            Some(x) => format!("explain {:.0}% [{:.0}%, {:.0}%] of it", 100.0 * x.point, 100.0 * x.lo, 100.0 * x.hi),
            None => "the fusion saving is within noise of zero".into(),
        };
        let _ = writeln!(
            s,
            "  the carved pattern savings ({}, extended) against the fusion saving ({}): {explained}",
            fmt_ms(c),
            fmt_ms(f.point)
        );
    }
    let quiet: Vec<&str> = a.transformers.iter().filter(|t| !t.fires).map(|t| t.name.as_str()).collect();
    if !quiet.is_empty() {
        let _ = writeln!(s, "  tried, no effect on this model: {}", quiet.join(", "));
    }
    for (name, msg) in &a.failed {
        let _ = writeln!(s, "  {name}: could not be measured: {msg}");
    }
    for n in &a.notes {
        let _ = writeln!(s, "  note: {n}");
    }
    let _ = writeln!(
        s,
        "  ({:.0} s: finding what acts {:.0} s, timing {:.0} s)",
        a.wall_s,
        a.discovery_s,
        a.wall_s - a.discovery_s
    );
}
