//! Report: everything fuseval prints or writes. One results type (`CalibrationFile`, from `bench`; or
//! `InspectReport`, from `inspect`) and one exporter per file:
//!
//! - `inspect`: the `fuseval inspect` text and JSON;
//! - `catalog`: `fuseval inspect --patterns`, every pattern with its forms and fused kernels;
//! - `summary`: the text block `fuseval bench` prints;
//! - `warnings`: what the user should do about the results;
//! - `graph_json`, `dot`, `onnx`: `graph.json`, `graph.dot` and `annotated.onnx`;
//! - `html`: `report.html`, the page a person opens (`fuseval report` rebuilds it).
//!
//! `write_outputs` writes the four files of a bench run, each atomically.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::calibration::{CalibrationFile, FusionCalibration, LevelResult, Status};
use crate::estimate::{Estimate, Verdict};
use crate::graph::ModelGraph;
use crate::load::Loaded;
use crate::patterns::Detection;

pub mod agreement;
pub mod catalog;
pub mod dot;
pub mod graph_json;
pub mod hardware;
pub mod html;
pub mod inspect;
pub mod onnx;
pub mod precisions;
pub mod summary;
pub mod warnings;

pub const CALIBRATION_JSON: &str = "calibration.json";
pub const GRAPH_JSON: &str = "graph.json";
pub const GRAPH_DOT: &str = "graph.dot";
pub const ANNOTATED_ONNX: &str = "annotated.onnx";

/// The files `write_outputs` writes, in order.
/// The recommended ORT configuration, when the run verified one (`bench` with the attribution).
pub const ORT_CONFIG_JSON: &str = "ort-config.json";
pub const OUTPUT_FILES: [&str; 6] =
    [CALIBRATION_JSON, GRAPH_JSON, GRAPH_DOT, ANNOTATED_ONNX, ORT_CONFIG_JSON, html::REPORT_HTML];

/// Write `bytes` to `path` without ever leaving a half-written file: write a temp file in the same
/// directory, fsync it, rename it over `path`, then fsync the directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().with_context(|| format!("cannot write {}: it names no file", path.display()))?;
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = dir.join(format!(".{}.{}.{nanos}.tmp", name.to_string_lossy(), std::process::id()));
    let written = (|| -> Result<()> {
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // make the rename itself durable; not every platform lets a directory be opened, so best effort
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Refuse to run when `dir` already holds any of the output files, unless `force`.
pub fn check_outputs_free(dir: &Path, force: bool) -> Result<()> {
    check_files_free(dir, &OUTPUT_FILES, force)
}

/// Refuse to run when `dir` already holds any of `files`, unless `force`.
pub fn check_files_free(dir: &Path, files: &[&str], force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    for &f in files {
        let path = dir.join(f);
        if path.exists() {
            // a run that was cut short: say how to finish it
            let unfinished = f == CALIBRATION_JSON
                && crate::calibration::read::read(&path).and_then(|s| s.into_bench()).is_ok_and(|c| !c.complete);
            let resume = if unfinished {
                format!(" It holds an unfinished run: continue it with `fuseval bench --resume {}`.", dir.display())
            } else {
                String::new()
            };
            return Err(crate::error::user(format!(
                "{} already exists: pass --force to overwrite it, or choose another output directory with -o.{resume}",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Create `dir` and write `calibration.json`, `graph.json`, `graph.dot`, `annotated.onnx`,
/// `ort-config.json` (when a configuration was verified) and `report.html` into it, each atomically. Returns the paths written, in that order.
pub fn write_outputs(
    dir: &Path,
    cal: &CalibrationFile,
    loaded: &Loaded,
    g: &ModelGraph,
    det: &Detection,
) -> Result<Vec<PathBuf>> {
    write_outputs_with(dir, cal, loaded, g, det, false)
}

/// [`write_outputs`]; with `slim`, annotated.onnx refers to the model file's weights instead of copying
/// them ([`onnx::annotated_model_slim`]).
pub fn write_outputs_with(
    dir: &Path,
    cal: &CalibrationFile,
    loaded: &Loaded,
    g: &ModelGraph,
    det: &Detection,
    slim: bool,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating output directory {}", dir.display()))?;
    let mut written = vec![];
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        let path = dir.join(name);
        atomic_write(&path, bytes)?;
        written.push(path);
        Ok(())
    };
    let json = serde_json::to_vec_pretty(cal).context("serialising calibration.json")?;
    put(CALIBRATION_JSON, &json)?;
    let graph = serde_json::to_value(graph_json::graph_json(cal, g, det)).context("serialising graph.json")?;
    put(GRAPH_JSON, &serde_json::to_vec_pretty(&graph)?)?;
    put(GRAPH_DOT, dot::graph_dot(cal, g, det).as_bytes())?;
    let annotated =
        if slim { onnx::annotated_model_slim(cal, loaded, g) } else { onnx::annotated_model(cal, loaded, g) };
    let annotated = annotated.with_context(|| {
        format!(
            "{CALIBRATION_JSON}, {GRAPH_JSON} and {GRAPH_DOT} were written to {}, but {ANNOTATED_ONNX} was not",
            dir.display()
        )
    })?;
    put(ANNOTATED_ONNX, &annotated)?;
    if let Some(r) = &cal.recommended_config {
        let mut v = serde_json::to_value(r).context("serialising ort-config.json")?;
        if let Some(o) = v.as_object_mut() {
            o.insert("model".into(), cal.metadata.model.clone().into());
            o.insert("snippets".into(), crate::calibration::attribution::snippets(r).into());
            o.insert("fuseval_commit".into(), cal.metadata.provenance.fuseval_commit.clone().into());
            o.insert("date".into(), cal.metadata.date.clone().into());
        }
        put(ORT_CONFIG_JSON, &serde_json::to_vec_pretty(&v)?)?;
    }
    let page =
        html::ReportGraph::from_value(graph).and_then(|rg| html::bench_page(cal, Some(&rg))).with_context(|| {
            format!("the other outputs were written to {}, but {} was not", dir.display(), html::REPORT_HTML)
        })?;
    put(html::REPORT_HTML, page.as_bytes())?;
    Ok(written)
}

/// The transformers of the whole-model attribution that consume each of the model's nodes, by node name.
pub(crate) fn consumed_by(
    cal: &CalibrationFile,
) -> HashMap<&str, Vec<&crate::calibration::attribution::TransformerAttribution>> {
    let mut m: HashMap<&str, Vec<_>> = HashMap::new();
    if let Some(a) = cal.whole_model.as_ref().and_then(|w| w.attribution.as_ref()) {
        for t in a.transformers.iter().filter(|t| t.fires) {
            for n in &t.consumed {
                m.entry(n.as_str()).or_default().push(t);
            }
        }
    }
    m
}

/// `ConvBNFusion (fusion): in context +0.20 ms [0.19 ms, 0.22 ms], helps`.
pub(crate) fn consumed_line(t: &crate::calibration::attribution::TransformerAttribution) -> String {
    let saving = match &t.saving_ms {
        Some(e) => format!(
            "in context {}{} [{}, {}]",
            if e.point >= 0.0 { "+" } else { "" },
            fmt_ms(e.point),
            fmt_ms(e.lo),
            fmt_ms(e.hi)
        ),
        None => "not timed".into(),
    };
    format!("{} ({}): {saving}, {}", t.name, t.kind.name(), t.verdict)
}

/// Which calibration record, if any, covers each instance, keyed by the instance's node names.
pub(crate) struct Links<'a> {
    by_nodes: HashMap<&'a [String], usize>,
}

impl<'a> Links<'a> {
    pub(crate) fn new(cal: &'a CalibrationFile) -> Links<'a> {
        let mut by_nodes = HashMap::new();
        for (i, p) in cal.fusion_profiles.iter().enumerate() {
            for names in &p.instances {
                by_nodes.entry(names.as_slice()).or_insert(i);
            }
        }
        Links { by_nodes }
    }

    /// Index into `fusion_profiles` of the record for the instance with these node names.
    pub(crate) fn index(&self, names: &[String]) -> Option<usize> {
        self.by_nodes.get(names).copied()
    }
}

/// `123.1 s (ceilings 5 s, whole model 34 s, ...)`: a run's wall time with its phases, when recorded.
pub(crate) fn wall_time(m: &crate::calibration::Metadata) -> String {
    if m.phases.is_empty() {
        return m.measured.clone();
    }
    let parts: Vec<String> =
        m.phases.iter().map(|p| format!("{} {:.0} s", p.name.replace('_', " "), p.wall_s)).collect();
    format!("{} ({})", m.measured, parts.join(", "))
}

/// `2.34 ms`, `845 µs`, `12.1 ms`: three significant digits or so.
pub(crate) fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "n/a".into();
    }
    let a = ms.abs();
    if a >= 100.0 {
        format!("{ms:.0} ms")
    } else if a >= 10.0 {
        format!("{ms:.1} ms")
    } else if a >= 0.1 || a == 0.0 {
        format!("{ms:.2} ms")
    } else if a >= 0.01 {
        format!("{:.1} µs", ms * 1e3)
    } else {
        format!("{:.2} µs", ms * 1e3)
    }
}

/// `1.23`: a ratio to two decimals (`n/a` when not finite).
pub(crate) fn fmt_ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "n/a".into()
    }
}

/// `2.63× [2.58, 2.69]`.
pub(crate) fn fmt_speedup(e: &Estimate) -> String {
    format!("{}× [{}, {}]", fmt_ratio(e.point), fmt_ratio(e.lo), fmt_ratio(e.hi))
}

/// `2.34 ms [2.30 ms, 2.39 ms]`.
pub(crate) fn fmt_ms_estimate(e: &Estimate) -> String {
    format!("{} [{}, {}]", fmt_ms(e.point), fmt_ms(e.lo), fmt_ms(e.hi))
}

/// `1.00 [0.99, 1.01]`.
pub(crate) fn fmt_estimate(e: &Estimate) -> String {
    format!("{} [{}, {}]", fmt_ratio(e.point), fmt_ratio(e.lo), fmt_ratio(e.hi))
}

/// An A/A control: like `fmt_estimate`, with three decimals when two would round a bound of a control
/// that misses 1.00 to `1.00`.
pub(crate) fn fmt_aa(e: &Estimate) -> String {
    let near = |x: f64| fmt_ratio(x) == "1.00";
    if !crate::measure::aa_consistent(e) && (near(e.lo) || near(e.hi)) {
        format!("{:.3} [{:.3}, {:.3}]", e.point, e.lo, e.hi)
    } else {
        fmt_estimate(e)
    }
}

/// An absolute error: `3e-6`, `0`, or `incomparable` for the measure module's `f64::MAX` marker.
pub(crate) fn fmt_err(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if !x.is_finite() || x >= f64::MAX / 2.0 {
        "incomparable".into()
    } else {
        format!("{x:.0e}")
    }
}

pub(crate) fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Faster => "faster",
        Verdict::Slower => "slower",
        Verdict::WithinNoise => "within noise",
    }
}

/// The name of an ORT level in text: `extended`, or `full` for `all`.
pub(crate) fn level_name(level: &str) -> &str {
    match level {
        "all" => "full",
        other => other,
    }
}

/// The headline level's result and the other level's, with the other level's name.
pub(crate) fn levels(p: &FusionCalibration) -> (Option<&LevelResult>, Option<(&'static str, &LevelResult)>) {
    if p.headline_level == "all" {
        (p.all.as_ref(), p.extended.as_ref().map(|l| ("extended", l)))
    } else {
        (p.extended.as_ref(), p.all.as_ref().map(|l| ("all", l)))
    }
}

/// Why a measured record should not be believed, in words; empty when it can be.
pub(crate) fn distrust(p: &FusionCalibration) -> Vec<String> {
    let mut why = vec![];
    if p.status != Status::Measured {
        return why;
    }
    if !p.equivalent {
        let failed: Vec<&str> = [("extended", &p.extended), ("full", &p.all)]
            .iter()
            .filter(|(_, l)| l.as_ref().is_some_and(|l| !l.equivalence.passed))
            .map(|(n, _)| *n)
            .collect();
        let at = if failed.is_empty() { String::new() } else { format!(" at the {} level", failed.join(" and ")) };
        why.push(format!("outputs disagree{at}"));
    }
    if aa_off(p) {
        let aa = p.aa_control.as_ref().map(fmt_aa).unwrap_or_else(|| "missing".into());
        let failed: Vec<String> = p
            .replicates
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.aa_ok)
            .map(|(i, r)| format!("replicate {} read {} after {} attempts", i + 1, fmt_aa(&r.aa_control), r.attempts))
            .collect();
        if failed.is_empty() {
            why.push(format!("A/A control {aa} is off 1.00"));
        } else {
            why.push(format!("A/A control {aa}: {} (off 1.00, or wider than the noise band)", failed.join(", ")));
        }
    }
    why
}

/// Whether a measured record's A/A control failed ([`FusionCalibration::aa_failed`]).
pub(crate) fn aa_off(p: &FusionCalibration) -> bool {
    p.aa_failed()
}

/// The largest max-abs-error over both fused levels.
pub(crate) fn max_abs_err(p: &FusionCalibration) -> f64 {
    [&p.extended, &p.all].iter().filter_map(|l| l.as_ref().map(|l| l.equivalence.max_abs_err)).fold(0.0, f64::max)
}

/// `MemoryBound → Balanced`: the record's bottleneck unfused and fused, when it is on a roofline.
pub(crate) fn bottleneck_text(p: &FusionCalibration) -> Option<String> {
    p.roofline.as_ref().map(|r| format!("{:?} → {:?}", r.unfused.bottleneck, r.fused.bottleneck))
}

/// Short description of the shapes: `1x64x56x56 → 1x64x56x56`.
pub(crate) fn shapes_text(p: &FusionCalibration) -> String {
    let join = |m: &std::collections::BTreeMap<String, Vec<usize>>| -> String {
        if m.is_empty() {
            return "?".into();
        }
        m.values().map(|s| crate::load::dims_string(s)).collect::<Vec<_>>().join(", ")
    };
    let input = if p.input_shape.is_empty() && p.input_shapes.is_empty() {
        "?".to_string()
    } else if p.input_shapes.len() <= 1 {
        crate::load::dims_string(&p.input_shape)
    } else {
        // the first input first, then the others
        let mut v = vec![crate::load::dims_string(&p.input_shape)];
        let mut rest = p.input_shapes.values().map(|s| crate::load::dims_string(s)).collect::<Vec<_>>();
        if let Some(pos) = rest.iter().position(|s| *s == v[0]) {
            rest.remove(pos);
        }
        v.extend(rest);
        v.join(", ")
    };
    format!("{input} → {}", join(&p.output_shapes))
}

/// `["3x3", "stride 2", "group 32"]` or `["W 64x128"]`, from a record's `extra_params`.
pub(crate) fn params_list(extra: &std::collections::BTreeMap<String, serde_json::Value>) -> Vec<String> {
    let ints = |k: &str| -> Option<Vec<i64>> { extra.get(k)?.as_array()?.iter().map(|x| x.as_i64()).collect() };
    let dims = |v: &[i64]| v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
    let mut v = vec![];
    if let Some(k) = ints("kernel") {
        v.push(dims(&k));
    }
    if let Some(st) = ints("strides").filter(|st| st.iter().any(|&x| x != 1)) {
        v.push(format!("stride {}", dims(&st)));
    }
    if let Some(grp) = extra.get("group").and_then(|x| x.as_i64()).filter(|&x| x > 1) {
        v.push(format!("group {grp}"));
    }
    if let Some(w) = ints("weight") {
        v.push(format!("W {}", dims(&w)));
    }
    v
}

/// The headline speedup with its CI (from the level result, or the flat fields when it is missing).
pub(crate) fn headline_speedup(p: &FusionCalibration) -> Estimate {
    levels(p).0.map(|l| l.speedup).unwrap_or(Estimate {
        point: p.speedup_factor,
        lo: p.speedup_ci_low,
        hi: p.speedup_ci_high,
    })
}

/// One-line result of a record: `2.63× [2.58, 2.69] faster`, `skipped: <reason>`, `speedup not
/// reported (outputs disagree ...)`, with what makes it untrustworthy.
pub(crate) fn result_line(p: &FusionCalibration) -> String {
    if p.status != Status::Measured {
        return format!("skipped: {}", p.skip_reason.as_deref().unwrap_or("no reason given"));
    }
    let why = distrust(p);
    if !p.equivalent {
        return format!("speedup not reported ({})", why.join("; "));
    }
    let verdict = p.verdict.map(verdict_word).unwrap_or("no verdict");
    let mut s = format!("{} {verdict}", fmt_speedup(&headline_speedup(p)));
    if !why.is_empty() {
        s.push_str(&format!(" (untrustworthy: {})", why.join("; ")));
    }
    if let Some(e) = &p.precision_error {
        let beyond = if e.passed() { "" } else { ", beyond its tolerance" };
        s.push_str(&format!("; {} vs fp32 error {}{beyond}", e.precision.name(), fmt_err(e.rel_err())));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_ms(2.3449), "2.34 ms");
        assert_eq!(fmt_ms(12.34), "12.3 ms");
        assert_eq!(fmt_ms(123.4), "123 ms");
        assert_eq!(fmt_ms(0.0456), "45.6 µs");
        assert_eq!(fmt_ms(0.00456), "4.56 µs");
        assert_eq!(fmt_ms(f64::NAN), "n/a");
        assert_eq!(fmt_err(3.2e-6), "3e-6");
        assert_eq!(fmt_err(f64::MAX), "incomparable");
        assert_eq!(fmt_aa(&Estimate { point: 0.91, lo: 0.82, hi: 0.998 }), "0.910 [0.820, 0.998]");
        assert_eq!(fmt_aa(&Estimate { point: 0.93, lo: 0.90, hi: 0.96 }), "0.93 [0.90, 0.96]");
        assert_eq!(fmt_speedup(&Estimate { point: 2.634, lo: 2.581, hi: 2.69 }), "2.63× [2.58, 2.69]");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.txt");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(atomic_write(&dir.path().join("missing/x.txt"), b"x").is_err());
    }
}
