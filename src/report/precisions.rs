//! `bench --precision all`: one bench folder per precision (`OUT/fp32`, `OUT/tf32`, `OUT/fp16`), and
//! side by side at the top of OUT: `precisions.json`, the text `fuseval` prints, and `report.html`. Each
//! distinct instance (matched by signature: every precision carves the same fp32 model) gets one row with
//! its runtime-fused speedup [95% CI], unfused latency and relative error against strict fp32 per
//! precision; the whole model's levels and the A/A failures per precision close the table.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::calibration::{CalibrationFile, FusionCalibration, Status};
use crate::estimate::Estimate;
use crate::report::html::{escape, speedup_colour, GREY, REPORT_HTML};
use crate::report::{bottleneck_text, fmt_ms, fmt_speedup, headline_speedup, shapes_text};
use crate::runtime::Precision;

pub const PRECISIONS_JSON: &str = "precisions.json";

/// One instance in one precision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub unfused_ms: f64,
    pub fused_ms: f64,
    /// Runtime-fused (the headline level) over unfused.
    pub speedup: Estimate,
    /// Trustworthy: the A/A control passed and the fused outputs agree with the unfused ones.
    pub trustworthy: bool,
    /// The largest error of any variant against strict fp32 over the largest reference value (tf32, fp16).
    pub rel_err_vs_fp32: Option<f64>,
    /// Within the documented tolerance against strict fp32.
    pub within_tolerance: Option<bool>,
    /// `Compute`/`Memory`/... before → after fusion, on this run's roofline.
    pub bottleneck: Option<String>,
}

/// One distinct instance across the precisions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub signature: String,
    pub pattern: String,
    pub shapes: String,
    pub count: usize,
    /// In the order of [`Table::precisions`]; `None`: skipped or absent in that run.
    pub cells: Vec<Option<Cell>>,
}

/// One precision's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub precision: Precision,
    pub dir: String,
    /// ORT_DISABLE_ALL and extended, ms, and extended's speedup, when the whole model was timed.
    pub whole_disabled_ms: Option<f64>,
    pub whole_extended_ms: Option<f64>,
    pub whole_speedup: Option<Estimate>,
    /// The whole model's own A/A control (its two ORT_DISABLE_ALL sessions), and whether it passed.
    #[serde(default)]
    pub whole_aa: Option<Estimate>,
    #[serde(default)]
    pub whole_aa_ok: Option<bool>,
    pub aa_failed: usize,
    pub measured: usize,
}

/// The precisions side by side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub model: String,
    pub execution_provider: String,
    pub precisions: Vec<Precision>,
    pub runs: Vec<RunSummary>,
    pub rows: Vec<Row>,
}

fn cell(p: &FusionCalibration) -> Option<Cell> {
    if p.status != Status::Measured {
        return None;
    }
    Some(Cell {
        unfused_ms: p.unfused_latency_ms,
        fused_ms: p.fused_latency_ms,
        speedup: headline_speedup(p),
        trustworthy: p.trustworthy,
        rel_err_vs_fp32: p.precision_error.as_ref().map(|e| e.rel_err()),
        within_tolerance: p.precision_error.as_ref().map(|e| e.passed()),
        bottleneck: bottleneck_text(p),
    })
}

/// The table of runs of one model in several precisions (`runs` in the order measured).
pub fn table(runs: &[(Precision, PathBuf, CalibrationFile)]) -> Table {
    let mut rows: Vec<Row> = vec![];
    for (k, (_, _, cal)) in runs.iter().enumerate() {
        for p in &cal.fusion_profiles {
            let i = match rows.iter().position(|r| r.signature == p.signature) {
                Some(i) => i,
                None => {
                    rows.push(Row {
                        signature: p.signature.clone(),
                        pattern: p.fusion_pattern.clone(),
                        shapes: shapes_text(p),
                        count: p.instances.len().max(1),
                        cells: vec![None; runs.len()],
                    });
                    rows.len() - 1
                }
            };
            rows[i].cells[k] = cell(p);
        }
    }
    let first = &runs[0].2;
    Table {
        model: first.metadata.model.clone(),
        execution_provider: first.metadata.execution_provider.clone(),
        precisions: runs.iter().map(|r| r.0).collect(),
        runs: runs
            .iter()
            .map(|(q, dir, cal)| {
                let w = cal.whole_model.as_ref().map(|w| &w.measurement);
                RunSummary {
                    precision: *q,
                    dir: dir.display().to_string(),
                    whole_disabled_ms: w.map(|w| w.disabled.median_ms),
                    whole_extended_ms: w.map(|w| w.extended.median_ms),
                    whole_speedup: w.map(|w| w.speedup_extended),
                    whole_aa: w.map(|w| w.aa_control),
                    whole_aa_ok: w.map(|w| w.aa_ok),
                    aa_failed: cal.fusion_profiles.iter().filter(|p| p.aa_failed()).count(),
                    measured: cal.fusion_profiles.iter().filter(|p| p.status == Status::Measured).count(),
                }
            })
            .collect(),
        rows,
    }
}

fn err_text(c: &Cell) -> String {
    match (c.rel_err_vs_fp32, c.within_tolerance) {
        (Some(e), Some(ok)) => format!(" err {e:.1e}{}", if ok { "" } else { " (beyond tolerance)" }),
        _ => String::new(),
    }
}

fn cell_text(c: &Option<Cell>) -> String {
    match c {
        None => "–".into(),
        Some(c) => format!(
            "{}{} {}{}",
            fmt_speedup(&c.speedup),
            if c.trustworthy { "" } else { "?" },
            fmt_ms(c.unfused_ms),
            err_text(c)
        ),
    }
}

/// The median runtime-fused speedup of a precision over the trustworthy instances, and how many.
fn median_speedup(t: &Table, k: usize) -> Option<(f64, usize)> {
    let xs: Vec<f64> =
        t.rows.iter().filter_map(|r| r.cells[k].as_ref()).filter(|c| c.trustworthy).map(|c| c.speedup.point).collect();
    (!xs.is_empty()).then(|| (crate::estimate::median(&xs), xs.len()))
}

/// `12.3 ms → 4.56 ms (2.70× [2.60, 2.80])`, ORT_DISABLE_ALL to extended, or `not timed`.
fn whole_text(r: &RunSummary) -> String {
    match (r.whole_disabled_ms, r.whole_extended_ms, r.whole_speedup) {
        (Some(d), Some(e), Some(sp)) => {
            let aa = match (r.whole_aa, r.whole_aa_ok) {
                (Some(a), Some(ok)) => {
                    format!(", A/A {}{}", crate::report::fmt_aa(&a), if ok { "" } else { " FAILED" })
                }
                _ => String::new(),
            };
            format!("{} → {} ({}){aa}", fmt_ms(d), fmt_ms(e), fmt_speedup(&sp))
        }
        _ => "not timed".into(),
    }
}

/// `A/A failed 2 of 28`, or `no instance measured`.
fn instances_aa_text(r: &RunSummary) -> String {
    if r.measured == 0 {
        "no instance measured".into()
    } else {
        format!("A/A failed {} of {}", r.aa_failed, r.measured)
    }
}

/// `1.18× over 22`, or `–`.
fn median_text(t: &Table, k: usize) -> String {
    median_speedup(t, k).map_or("–".into(), |(m, n)| format!("{m:.2}× over {n}"))
}

/// What `bench --precision all` prints after the runs.
pub fn text(runs: &[(Precision, PathBuf, CalibrationFile)]) -> String {
    let t = table(runs);
    let mut s = String::new();
    let names: Vec<&str> = t.precisions.iter().map(|q| q.name()).collect();
    let _ = writeln!(
        s,
        "\nPrecisions side by side ({}): runtime-fused speedup [95% CI] (? untrustworthy), unfused latency, largest relative error against strict fp32",
        names.join(", ")
    );
    for r in &t.rows {
        let _ = writeln!(s, "  {} ×{} {}", r.pattern, r.count, r.shapes);
        for (q, c) in t.precisions.iter().zip(&r.cells) {
            let _ = writeln!(s, "    {:<5} {}", q.name(), cell_text(c));
        }
    }
    let _ = writeln!(s, "Median speedup over trustworthy instances:");
    for (k, q) in t.precisions.iter().enumerate() {
        let _ = writeln!(s, "  {:<5} {}", q.name(), median_text(&t, k));
    }
    let _ = writeln!(s, "Whole model (ORT_DISABLE_ALL → extended), and the instances' A/A failures:");
    for r in &t.runs {
        let _ = writeln!(s, "  {:<5} {}; {}", r.precision.name(), whole_text(r), instances_aa_text(r));
    }
    s
}

/// Refuse to write over the side-by-side files of an earlier run, unless `force`.
pub fn check_outputs_free(out: &Path, force: bool) -> Result<()> {
    crate::report::check_files_free(out, &[PRECISIONS_JSON, REPORT_HTML], force)
}

/// The side-by-side page.
pub fn page(runs: &[(Precision, PathBuf, CalibrationFile)], out: &Path) -> String {
    let t = table(runs);
    let mut body = format!(
        "<header><h1>fuseval: {} in {}</h1><p class=\"sub\">{} · the precisions side by side; each precision's own report is linked below</p></header>\n",
        escape(t.model.rsplit(['/', '\\']).next().unwrap_or(&t.model)),
        escape(&t.precisions.iter().map(|q| q.name()).collect::<Vec<_>>().join(", ")),
        escape(&t.execution_provider)
    );
    body.push_str("<section id=\"runs\"><h2>Runs</h2><table class=\"kv\"><thead><tr><th>precision</th><th>whole model, ORT_DISABLE_ALL → extended</th><th>median instance speedup</th><th>instances' A/A</th><th>report</th></tr></thead><tbody>\n");
    for (k, r) in t.runs.iter().enumerate() {
        let dir = Path::new(&r.dir);
        let link = dir.strip_prefix(out).unwrap_or(dir).join(REPORT_HTML);
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"{}\">{}</a></td></tr>",
            r.precision.name(),
            escape(&whole_text(r)),
            escape(&median_text(&t, k)),
            escape(&instances_aa_text(r)),
            escape(&link.display().to_string()),
            escape(&link.display().to_string())
        );
    }
    body.push_str("</tbody></table></section>\n");
    body.push_str("<section id=\"table\"><h2>Instances</h2><p class=\"note\">Runtime-fused speedup [95% CI] per precision, coloured; unfused latency and the largest relative error against strict fp32 below it. Grey: untrustworthy (A/A control or outputs).</p>\n<table id=\"instances\" class=\"sortable\"><thead><tr><th>pattern</th><th>shapes</th><th>×n</th>");
    for q in &t.precisions {
        let _ = write!(body, "<th>{}</th>", q.name());
    }
    body.push_str("</tr></thead><tbody>\n");
    for r in &t.rows {
        let _ = write!(
            body,
            "<tr data-signature=\"{}\"><td>{}</td><td>{}</td><td class=\"num\">{}</td>",
            escape(&r.signature),
            escape(&r.pattern),
            escape(&r.shapes),
            r.count
        );
        for c in &r.cells {
            match c {
                None => body.push_str("<td class=\"num\">–</td>"),
                Some(c) => {
                    let colour = if c.trustworthy { speedup_colour(c.speedup.point) } else { GREY.into() };
                    let _ = write!(
                        body,
                        "<td class=\"num\" data-sort=\"{}\" style=\"background:{colour}\">{}<br><span class=\"note\">{}{}</span></td>",
                        c.speedup.point,
                        escape(&fmt_speedup(&c.speedup)),
                        escape(&fmt_ms(c.unfused_ms)),
                        escape(&err_text(c))
                    );
                }
            }
        }
        body.push_str("</tr>\n");
    }
    body.push_str("</tbody></table></section>\n");
    crate::report::html::page(&format!("fuseval: {} precisions", t.model), &body)
}

/// Write `precisions.json` into `out` and the page to `page` (`out/report.html` unless asked otherwise),
/// each atomically; the paths written.
pub fn write(out: &Path, page_path: &Path, runs: &[(Precision, PathBuf, CalibrationFile)]) -> Result<Vec<PathBuf>> {
    let json = out.join(PRECISIONS_JSON);
    let bytes = serde_json::to_vec_pretty(&table(runs)).context("serialising precisions.json")?;
    crate::report::atomic_write(&json, &bytes)?;
    crate::report::atomic_write(page_path, page(runs, out).as_bytes())?;
    Ok(vec![json, page_path.to_path_buf()])
}

/// The runs of a `bench --precision all` folder: each `DIR/<precision>/calibration.json` there, in
/// fp32, tf32, fp16 order; `None` when there is none (not such a folder).
pub fn read_folder(dir: &Path) -> Result<Option<Vec<(Precision, PathBuf, CalibrationFile)>>> {
    let mut runs = vec![];
    for (q, f) in precision_files(dir) {
        runs.push((q, dir.join(q.name()), crate::calibration::read::read(&f)?.into_bench()?));
    }
    Ok((!runs.is_empty()).then_some(runs))
}

/// The precisions a `--precision all` folder holds a run of (`DIR/<precision>/calibration.json`), each
/// with that file; empty for any other folder.
pub fn precision_files(dir: &Path) -> Vec<(Precision, PathBuf)> {
    Precision::ALL
        .into_iter()
        .map(|q| (q, dir.join(q.name()).join(crate::report::CALIBRATION_JSON)))
        .filter(|(_, f)| f.exists())
        .collect()
}
