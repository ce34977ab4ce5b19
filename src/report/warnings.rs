//! Warnings about a calibration file, each saying what to do next: results cut short by the time
//! budget, A/A controls off 1.00, fused outputs that disagree (runtime or explicit), explicit-fused variants
//! that failed, skipped instances, `--quick`.

use crate::calibration::{CalibrationFile, FusionCalibration, Status};
use crate::runtime::Ep;

use super::summary::pct;
use super::{aa_off, fmt_aa, fmt_err, level_name};

/// Individual A/A or disagreement warnings before the rest are counted in one line.
const MAX_LISTED: usize = 3;

/// Every warning for a calibration file: those about its measurements, then the file's own
/// `warnings` (model loading, a whole model that could not be timed).
pub fn warnings(cal: &CalibrationFile) -> Vec<String> {
    let mut v = measurement_warnings(cal);
    for w in &cal.warnings {
        if !v.contains(w) {
            v.push(w.clone());
        }
    }
    v
}

/// `unfused, unfused control sessions` (or `session` for one).
fn sessions(labels: &[String]) -> String {
    format!("{} session{}", labels.join(", "), if labels.len() == 1 { "" } else { "s" })
}

/// The first node of a record's first instance, which names it in messages.
fn first_node(p: &FusionCalibration) -> &str {
    p.instances.first().and_then(|i| i.first()).map(String::as_str).unwrap_or("?")
}

/// Warnings about the measurements alone (not the file's `warnings` list).
pub fn measurement_warnings(cal: &CalibrationFile) -> Vec<String> {
    let m = &cal.metadata;
    let mut v = vec![];
    let measured: Vec<&FusionCalibration> =
        cal.fusion_profiles.iter().filter(|p| p.status == Status::Measured).collect();
    let busy = busy_hint(&m.execution_provider);

    if m.quick {
        v.push(format!(
            "--quick: CIs are wider (target ±{}%, {} s per pattern); rerun without --quick before relying on these numbers",
            pct(m.target_rel_ci),
            m.budget_per_instance_s
        ));
    }

    for p in measured.iter().filter(|p| !p.cpu_fallback.is_empty()) {
        v.push(format!(
            "{} at `{}`: ONNX Runtime kept some nodes on the CPU in the {} (the CUDA provider places shape \
             arithmetic there); its time includes those nodes and any copies they need",
            p.fusion_pattern,
            first_node(p),
            sessions(&p.cpu_fallback)
        ));
    }

    for p in measured.iter().filter(|p| !p.no_cuda_graph.is_empty()) {
        v.push(format!(
            "{} at `{}`: --cuda-graph: ORT could not capture the {} (nodes on the CPU), timed without a graph while \
             the others replayed one: its speedup includes launch overhead the graph removed",
            p.fusion_pattern,
            first_node(p),
            sessions(&p.no_cuda_graph)
        ));
    }

    let cut: Vec<&&FusionCalibration> = measured.iter().filter(|p| p.budget_exhausted).collect();
    if !cut.is_empty() {
        let what = if m.quick {
            "rerun without --quick for a larger budget"
        } else {
            "their CIs are wider than asked; rerun on an idle machine for tighter ones"
        };
        v.push(format!(
            "{} result{} hit the time budget before {} CI reached ±{}%: {what}",
            cut.len(),
            if cut.len() == 1 { "" } else { "s" },
            if cut.len() == 1 { "its" } else { "their" },
            pct(m.target_rel_ci)
        ));
    }

    let off: Vec<&&FusionCalibration> = measured.iter().filter(|p| aa_off(p)).collect();
    for p in off.iter().take(MAX_LISTED) {
        let aa = p.aa_control.as_ref().map(fmt_aa).unwrap_or_else(|| "missing".into());
        v.push(format!("the A/A control of {} is {aa}: {busy}", who(p)));
    }
    if off.len() > MAX_LISTED {
        v.push(format!("{} more A/A controls are off 1.00 (see calibration.json): {busy}", off.len() - MAX_LISTED));
    }

    let wrong: Vec<&&FusionCalibration> = measured.iter().filter(|p| !p.equivalent).collect();
    for p in wrong.iter().take(MAX_LISTED) {
        let detail: Vec<String> = [("extended", &p.extended), ("all", &p.all)]
            .iter()
            .filter_map(|(name, l)| {
                let e = &l.as_ref()?.equivalence;
                (!e.passed).then(|| format!("{} level max abs err {}", level_name(name), fmt_err(e.max_abs_err)))
            })
            .collect();
        let detail = if detail.is_empty() { String::new() } else { format!(" ({})", detail.join(", ")) };
        v.push(format!("outputs of {} disagree{detail}: this speedup is not reported", who(p)));
    }
    if wrong.len() > MAX_LISTED {
        v.push(format!(
            "{} more results have fused outputs that disagree (see calibration.json): their speedups are not reported",
            wrong.len() - MAX_LISTED
        ));
    }

    let wrong_explicit: Vec<&&FusionCalibration> =
        measured.iter().filter(|p| p.explicit.as_ref().is_some_and(|x| !x.equivalence.passed)).collect();
    for p in wrong_explicit.iter().take(MAX_LISTED) {
        let err = p.explicit.as_ref().map(|x| fmt_err(x.equivalence.max_abs_err)).unwrap_or_default();
        v.push(format!(
            "the explicit-fused model of {} computes something else (max abs err {err}): its speedup is not reported; this is a bug in fuseval's rewrite",
            who(p)
        ));
    }
    if wrong_explicit.len() > MAX_LISTED {
        v.push(format!(
            "{} more explicit-fused models disagree with unfused (see calibration.json): their speedups are not reported",
            wrong_explicit.len() - MAX_LISTED
        ));
    }
    let failed: Vec<&&FusionCalibration> =
        measured.iter().filter(|p| p.explicit_unavailable.as_ref().is_some_and(|u| u.is_failed())).collect();
    if let Some(first) = failed.first() {
        v.push(format!(
            "{} explicit-fused variant{} could not be measured; the first, {}: {}",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" },
            who(first),
            first.explicit_unavailable.as_ref().map(|u| u.reason()).unwrap_or_default()
        ));
    }

    let skipped: Vec<&FusionCalibration> =
        cal.fusion_profiles.iter().filter(|p| p.status != Status::Measured).collect();
    if let Some(first) = skipped.first() {
        let n: usize = skipped.iter().map(|p| p.instances.len()).sum();
        v.push(format!(
            "{n} instance{} ({} distinct) could not be measured; the first, {}: {}",
            if n == 1 { "" } else { "s" },
            skipped.len(),
            who(first),
            first.skip_reason.as_deref().unwrap_or("no reason given")
        ));
    }
    if measured.is_empty() && !cal.fusion_profiles.is_empty() {
        v.push("no pattern instance was measured: there is no speedup to report".into());
    }

    if let Some(w) = &cal.whole_model {
        let wm = &w.measurement;
        if !wm.aa_ok {
            v.push(format!("the whole model's A/A control is {}: {busy}", fmt_aa(&wm.aa_control)));
        }
        if !(wm.equivalence_extended.passed && wm.equivalence_all.passed) {
            v.push(format!(
                "the whole model's optimised outputs disagree with the unoptimised ones (max abs err {}): its saving is suspect",
                fmt_err(wm.equivalence_extended.max_abs_err.max(wm.equivalence_all.max_abs_err))
            ));
        }
        if !wm.cpu_fallback.is_empty() {
            v.push(format!(
                "ONNX Runtime kept some of the whole model's nodes on the CPU in the {} (shape arithmetic); its times \
                 include those nodes and any copies they need",
                sessions(&wm.cpu_fallback)
            ));
        }
        if !wm.no_cuda_graph.is_empty() {
            v.push(format!(
                "--cuda-graph: ORT could not capture the whole model in a CUDA graph in the {} (nodes on the CPU), \
                 which were timed without one: their comparison with the captured levels includes the launch \
                 overhead a graph removes",
                sessions(&wm.no_cuda_graph)
            ));
        }
        if wm.budget_exhausted {
            let what = if m.quick { "rerun without --quick for a larger budget" } else { "its CI is wider than asked" };
            v.push(format!(
                "the whole-model timing hit its time budget before its CI reached ±{}%: {what}",
                pct(m.target_rel_ci)
            ));
        }
    }
    v
}

/// ``Conv2d_BN_ReLU at `n4` (and 11 identical instances)``.
fn who(p: &FusionCalibration) -> String {
    let at = p.instances.first().and_then(|n| n.first()).map(|n| format!(" at `{n}`")).unwrap_or_default();
    let more = match p.instances.len() {
        0 | 1 => String::new(),
        2 => " (and 1 identical instance)".into(),
        n => format!(" (and {} identical instances)", n - 1),
    };
    format!("{}{at}{more}", p.fusion_pattern)
}

/// What a failed A/A control suggests, for the device that was timed.
fn busy_hint(ep: &str) -> &'static str {
    match ep.parse::<Ep>() {
        Ok(Ep::Cuda { .. }) => {
            "another process may be using the GPU or the CPU feeding it; close it and rerun (these numbers are untrustworthy)"
        }
        _ => "another process may be using the CPU; close it and rerun (these numbers are untrustworthy)",
    }
}
