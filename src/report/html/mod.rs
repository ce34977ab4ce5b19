//! `report.html`: one self-contained page a person opens in a browser. Inline SVG (charts by plotters,
//! the graph by Graphviz's `dot`) and CSS, a little inline JavaScript (sorting the table); nothing is
//! fetched. Top to bottom: the run and its warnings, the whole model, the per-pattern forest plot, the
//! roofline, the annotated graph and the instance table.
//!
//! A small contract for tools and tests: the instance table is `<table id="instances">` with one `<tbody>`
//! row per distinct instance carrying `data-signature`; the forest plot is `<svg id="forest">` with one
//! element per instance carrying `data-signature`; every instance drawn in the graph is a `<g>` whose id
//! starts with `inst-`; `body[data-ready]` is set when the script ran, and `#js-errors` collects errors.

use std::fmt::Write;

use anyhow::Result;

use crate::calibration::hardware::HardwareCalibration;
use crate::calibration::{CalibrationFile, FusionCalibration, Status};
use crate::estimate::{Estimate, Verdict};
use crate::report::{
    distrust, fmt_aa, fmt_ms, fmt_speedup, headline_speedup, level_name, levels, result_line, shapes_text, verdict_word,
};

pub mod charts;
pub mod graph;

pub use graph::ReportGraph;

pub const REPORT_HTML: &str = "report.html";
/// The most a page may weigh (BERT-base's included).
pub const MAX_BYTES: usize = 5 << 20;
/// Grey: within noise, untrustworthy.
pub const GREY: &str = "#e0e0e0";

/// `&`, `<`, `>`, `"` and `'` escaped for HTML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The diverging scale: white at 1.00, green towards 1.5× and beyond, red towards 1/1.5 and below.
pub fn speedup_colour(s: f64) -> String {
    let t = if s.is_finite() && s > 0.0 { (s.ln() / 1.5f64.ln()).clamp(-1.0, 1.0) } else { 0.0 };
    let (r, g, b) = if t >= 0.0 { (46.0, 125.0, 50.0) } else { (198.0, 40.0, 40.0) };
    let t = 0.15 + 0.85 * t.abs();
    let mix = |c: f64| (255.0 + (c - 255.0) * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(r), mix(g), mix(b))
}

const CSS: &str = r#"
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1100px;padding:0 16px 40px;color:#222;line-height:1.4}
h1{font-size:1.5em;margin:18px 0 2px}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:28px}
.sub{color:#666;margin:0 0 10px}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f6f6;position:sticky;top:0}
table.kv th{background:none;font-weight:600;width:200px;position:static}
#instances th{cursor:pointer;user-select:none}#instances th:hover{background:#e8e8e8}
#instances td.num{text-align:right;font-variant-numeric:tabular-nums}
tr:target{outline:2px solid #1565c0;background:#e3f2fd}
tr.grey td{color:#888}
.banner{background:#fff3e0;border:1px solid #ef6c00;padding:8px 12px;margin:10px 0;font-weight:600}
.warnings li{margin:2px 0}.warnings{background:#fffde7;border:1px solid #e0d890;padding:6px 10px 6px 28px}
.recommend{background:#e8f5e9;border:1px solid #a5d6a7;padding:8px 12px;margin:10px 0}
pre{background:#f5f5f5;padding:8px;overflow-x:auto;font-size:12px}
.chart{max-width:100%;height:auto}
.graphbox{overflow:auto;max-height:900px;border:1px solid #ddd}
.legend span.sw{display:inline-block;width:28px;height:12px;border:1px solid #999;vertical-align:middle;margin:0 2px 0 10px}
.note{color:#555;font-size:13px}
#js-errors:empty{display:none}#js-errors{color:#b71c1c}
"#;

const JS: &str = r#"
window.addEventListener('error',function(e){var p=document.getElementById('js-errors');if(p){p.textContent+=(e.message||'error')+'\n';}});
document.addEventListener('DOMContentLoaded',function(){
  document.querySelectorAll('table.sortable').forEach(function(t){
    var heads=t.tHead?t.tHead.rows[0].cells:[];
    Array.prototype.forEach.call(heads,function(th,col){
      th.title='sort';
      th.addEventListener('click',function(){
        var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
        var dir=th.dataset.dir==='asc'?-1:1;th.dataset.dir=dir===1?'asc':'desc';
        rows.sort(function(a,b){
          var x=a.cells[col],y=b.cells[col];
          var xa=x.dataset.sort!==undefined?parseFloat(x.dataset.sort):NaN,ya=y.dataset.sort!==undefined?parseFloat(y.dataset.sort):NaN;
          if(!isNaN(xa)&&!isNaN(ya)){return dir*(xa-ya);}
          return dir*x.textContent.localeCompare(y.textContent);
        });
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  document.body.dataset.ready='1';
});
"#;

/// The page around the sections.
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{CSS}</style>\n<script>{JS}</script>\n</head>\n<body>\n<pre id=\"js-errors\"></pre>\n{body}\n</body>\n</html>\n",
        escape(title)
    )
}

fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

fn kv(s: &mut String, k: &str, v: &str) {
    let _ = writeln!(s, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
}

fn hardware_text(h: &crate::runtime::Hardware) -> String {
    let mut t = format!(
        "{}, {} logical cores, {:.0} GiB, {}",
        h.cpu_model,
        h.logical_cores,
        h.memory_bytes as f64 / (1u64 << 30) as f64,
        h.os
    );
    if let Some(g) = &h.gpu {
        t = format!("{} ({t})", g.name);
    }
    t
}

/// The bench run: model, inputs, hardware, runtime, and how it was measured.
fn run_section(cal: &CalibrationFile) -> String {
    let m = &cal.metadata;
    let mut s = String::from("<section id=\"run\"><h2>The run</h2><table class=\"kv\">");
    kv(&mut s, "Model", &m.model);
    let inputs: Vec<String> = m
        .model_inputs
        .iter()
        .map(|(k, d)| format!("{k} = {}", d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("×")))
        .collect();
    kv(&mut s, "Inputs", &inputs.join(", "));
    kv(&mut s, "Hardware", &hardware_text(&m.hardware));
    kv(
        &mut s,
        "ONNX Runtime",
        &format!("{} ({})", m.ort_version, m.provenance.ort_library.as_deref().unwrap_or("library not recorded")),
    );
    kv(
        &mut s,
        "Execution provider",
        &format!("{}{}", m.execution_provider, if m.cuda_graph { ", CUDA-graph replays" } else { "" }),
    );
    kv(&mut s, "Threads", &m.threads.to_string());
    let precision = match m.precision {
        Some(crate::runtime::Precision::Fp16) => "fp16: the model converted by fuseval (fp32 inputs and outputs)",
        Some(crate::runtime::Precision::Tf32) => "tf32: fp32 MatMul and Conv on TF32 tensor cores (ORT's CUDA default)",
        Some(crate::runtime::Precision::Fp32) => "fp32",
        None => "the model's own element types (not recorded: fp32 on the CPU, TF32 on CUDA)",
    };
    kv(&mut s, "Precision", precision);
    kv(
        &mut s,
        "Measurement",
        &format!(
            "{}: CI target ±{:.0}%, {} s per pattern, {} replicate(s), seed {}; headline level {}",
            if m.quick { "--quick" } else { "full" },
            100.0 * m.target_rel_ci,
            m.budget_per_instance_s,
            m.replicates,
            m.seed,
            level_name(&m.headline_level)
        ),
    );
    kv(&mut s, "Wall time", &crate::report::wall_time(m));
    let commit = m.provenance.fuseval_commit.as_deref().unwrap_or("not recorded");
    kv(&mut s, "fuseval", &format!("{} at {commit}", m.fuseval_version));
    if !m.provenance.command_line.is_empty() {
        kv(&mut s, "Command", &m.provenance.command_line.join(" "));
    }
    kv(&mut s, "Date", &m.date);
    s.push_str("</table></section>\n");
    s
}

/// The warnings, first, in plain words; an incomplete run gets a banner.
fn warnings_section(complete: bool, warnings: &[String]) -> String {
    let mut s = String::new();
    if !complete {
        s.push_str(
            "<div class=\"banner\" id=\"incomplete\">Incomplete run: it was cut short, so some instances or the whole \
             model are missing. Finish it with <code>fuseval bench --resume DIR</code>.</div>\n",
        );
    }
    if !warnings.is_empty() {
        s.push_str("<section id=\"warnings\"><h2>Warnings</h2><ul class=\"warnings\">");
        for w in warnings {
            let _ = write!(s, "<li>{}</li>", escape(w));
        }
        s.push_str("</ul></section>\n");
    }
    s
}

/// The whole model: a waterfall from Disable through fusion-off to ORT's default, each transformer's
/// in-context saving a step; the recommended configuration. Without the attribution, the three levels.
fn whole_model_section(cal: &CalibrationFile) -> Result<String> {
    let mut s = String::from("<section id=\"whole-model\"><h2>The whole model</h2>\n");
    let Some(w) = &cal.whole_model else {
        s.push_str("<p class=\"note\">The whole model was not timed in this run (<code>--no-whole-model</code>, or it was cut short).</p></section>\n");
        return Ok(s);
    };
    let m = &w.measurement;
    match &w.attribution {
        Some(a) => {
            let b = &a.baseline;
            let mut steps = vec![];
            let ci = |e: &Estimate| Some((e.lo, e.hi));
            let total = |label: &str, t: &crate::calibration::attribution::Timed| charts::Step {
                label: label.into(),
                from: 0.0,
                to: t.latency.median_ms,
                ci: Some((t.latency.ci_ms.lo, t.latency.ci_ms.hi)),
                total: true,
                tooltip: format!("{label}: {}", fmt_ms(t.latency.median_ms)),
            };
            let mut cur = match &b.disable {
                Some(d) => {
                    steps.push(total("ORT_DISABLE_ALL", d));
                    d.latency.median_ms
                }
                None => b.default.latency.median_ms,
            };
            let fires = |fusion: bool| {
                a.transformers
                    .iter()
                    .filter(move |t| t.fires && (t.kind == crate::measure::optimizers::Kind::Fusion) == fusion)
            };
            let step = |steps: &mut Vec<charts::Step>,
                        cur: &mut f64,
                        label: String,
                        saving: f64,
                        ci: Option<(f64, f64)>,
                        tip: String| {
                steps.push(charts::Step { label, from: *cur, to: *cur - saving, ci, total: false, tooltip: tip });
                *cur -= saving;
            };
            for t in fires(false) {
                if let Some(e) = &t.saving_ms {
                    step(
                        &mut steps,
                        &mut cur,
                        format!("− {} ({})", t.name, t.kind.name()),
                        e.point,
                        ci(e),
                        crate::report::consumed_line(t),
                    );
                }
            }
            if let Some(fo) = &b.fusion_off {
                let rest = cur - fo.latency.median_ms;
                step(
                    &mut steps,
                    &mut cur,
                    "− the rest of the non-fusion work".into(),
                    rest,
                    None,
                    "constant folding, eliminations and what no single transformer's leave-one-out explains".into(),
                );
                steps.push(total("fusion-off", fo));
                cur = fo.latency.median_ms;
                for t in fires(true) {
                    if let Some(e) = &t.saving_ms {
                        step(
                            &mut steps,
                            &mut cur,
                            format!("− {}", t.name),
                            e.point,
                            ci(e),
                            crate::report::consumed_line(t),
                        );
                    }
                }
            }
            let rest = cur - b.default.latency.median_ms;
            let tip = match &a.interaction_ms {
                Some(i) => format!(
                    "what the leave-one-outs do not add up to: interaction {}",
                    crate::report::fmt_ms_estimate(i)
                ),
                None => "what the leave-one-outs do not add up to".into(),
            };
            step(
                &mut steps,
                &mut cur,
                "− interaction (not attributed)".into(),
                rest,
                a.interaction_ms.as_ref().and_then(ci),
                tip,
            );
            steps.push(total("ORT's default", &b.default));
            s.push_str(&charts::waterfall(&steps)?);
            let _ = write!(
                s,
                "<p class=\"note\">Each step is one transformer switched off alone in ORT's default configuration, timed in the same \
                 rounds as the default (its 95% CI as the whisker); the interaction step is what the steps do not add up to. \
                 Fusion saving (fusion-off → default): {}; non-fusion saving (Disable → fusion-off): {}; explained by the \
                 leave-one-outs: {}.</p>",
                a.fusion_saving_ms.as_ref().map(crate::report::fmt_ms_estimate).unwrap_or_else(|| "n/a".into()),
                a.non_fusion_saving_ms.as_ref().map(crate::report::fmt_ms_estimate).unwrap_or_else(|| "n/a".into()),
                a.explained_fraction
                    .as_ref()
                    .map(|f| format!("{:.0}% [{:.0}%, {:.0}%]", 100.0 * f.point, 100.0 * f.lo, 100.0 * f.hi))
                    .unwrap_or_else(|| "not given (the fusion saving is within noise of zero)".into())
            );
            s.push_str("<table class=\"sortable\" id=\"transformers\"><thead><tr><th>transformer</th><th>kind</th><th>nodes</th><th>in-context saving [95% CI]</th><th>carved prediction</th><th>verdict</th></tr></thead><tbody>");
            for t in a.transformers.iter().filter(|t| t.fires) {
                let _ = write!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\" data-sort=\"{}\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                    escape(&t.name),
                    t.kind.name(),
                    t.nodes_consumed,
                    t.saving_ms.map_or(f64::NAN, |e| e.point),
                    t.saving_ms.as_ref().map(crate::report::fmt_ms_estimate).unwrap_or_else(|| "not timed".into()),
                    t.carved_saving_ms.map(fmt_ms).unwrap_or_else(|| "–".into()),
                    escape(&t.verdict)
                );
            }
            s.push_str("</tbody></table>\n");
        }
        None => {
            let total = |label: &str, l: &crate::measure::Latency| charts::Step {
                label: label.into(),
                from: 0.0,
                to: l.median_ms,
                ci: Some((l.ci_ms.lo, l.ci_ms.hi)),
                total: true,
                tooltip: format!("{label}: {}", fmt_ms(l.median_ms)),
            };
            let steps = vec![
                total("ORT_DISABLE_ALL", &m.disabled),
                total("ORT_ENABLE_EXTENDED", &m.extended),
                total("ORT_ENABLE_ALL", &m.all),
            ];
            s.push_str(&charts::waterfall(&steps)?);
            let _ = write!(
                s,
                "<p class=\"note\">The whole model at ORT's three levels (no attribution to single transformers in this run). \
                 Speedup over Disable: extended {}, full {}.</p>",
                fmt_speedup(&m.speedup_extended),
                fmt_speedup(&m.speedup_all)
            );
        }
    }
    if let Some(r) = &cal.recommended_config {
        let _ = write!(
            s,
            "<div class=\"recommend\" id=\"recommended\"><b>Recommended configuration:</b> {}",
            escape(&r.verdict)
        );
        if let Some(e) = &r.speedup_vs_extended {
            let _ = write!(s, "; against ORT_ENABLE_EXTENDED: {}", fmt_speedup(e));
        }
        s.push_str("<pre>");
        for line in crate::calibration::attribution::snippets(r) {
            let _ = writeln!(s, "{}", escape(&line));
        }
        s.push_str("</pre></div>\n");
    }
    s.push_str("</section>\n");
    Ok(s)
}

fn record_label(p: &FusionCalibration) -> String {
    let n = p.instances.len().max(1);
    format!("{} {}{}", p.fusion_pattern, shapes_text(p), if n > 1 { format!(" ×{n}") } else { String::new() })
}

/// Why a record is drawn grey, or `None`.
fn grey_reason(p: &FusionCalibration) -> Option<String> {
    if p.status != Status::Measured {
        return Some("skipped".into());
    }
    if !p.equivalent {
        return Some("outputs differ".into());
    }
    let why = distrust(p);
    (!why.is_empty()).then(|| format!("untrustworthy: {}", why.join("; ")))
}

fn forest_row(k: usize, p: &FusionCalibration) -> charts::ForestRow {
    let measured = p.status == Status::Measured;
    charts::ForestRow {
        signature: p.signature.clone(),
        anchor: format!("row-{k}"),
        label: record_label(p),
        runtime: (measured && p.equivalent).then(|| headline_speedup(p)),
        explicit: p.explicit.as_ref().filter(|x| x.equivalence.passed).map(|x| x.speedup),
        aa: p.aa_control,
        band: p.noise_band,
        grey: grey_reason(p),
        faster: match p.verdict {
            Some(Verdict::Faster) => Some(true),
            Some(Verdict::Slower) => Some(false),
            _ => None,
        },
        other: None,
        tooltip: format!("{}: {}", p.fusion_pattern, result_line(p)),
    }
}

/// The forest plot of a run's records.
fn forest_section(profiles: &[FusionCalibration], instances_measured: bool) -> Result<String> {
    let mut s = String::from("<section id=\"per-pattern\"><h2>Per-pattern speedups</h2>\n");
    if !instances_measured {
        s.push_str("<p class=\"note\">--whole-model-only: the pattern instances were not measured.</p>");
    } else if profiles.is_empty() {
        s.push_str("<p class=\"note\">No fusible pattern instance was found: nothing to plot.</p>");
    }
    let rows: Vec<charts::ForestRow> = profiles.iter().enumerate().map(|(k, p)| forest_row(k, p)).collect();
    s.push_str(&charts::forest(&rows, ("", ""))?);
    s.push_str(
        "<p class=\"note\">One row per distinct instance (identical pattern, shapes and attributes; ×n instances). \
         Grey rows are skipped, untrustworthy (a failed A/A control) or have outputs that differ from unfused: their \
         speedups count nowhere. Click a row for its table entry.</p></section>\n",
    );
    Ok(s)
}

fn roofline_section(cal: &CalibrationFile) -> Result<String> {
    let mut s = String::from("<section id=\"roofline-section\"><h2>The roofline</h2>\n");
    let points: Vec<charts::RoofPoint> = cal
        .fusion_profiles
        .iter()
        .filter(|p| p.status == Status::Measured && p.equivalent)
        .filter_map(|p| {
            let r = p.roofline.as_ref()?;
            Some(charts::RoofPoint {
                signature: p.signature.clone(),
                label: format!("{}: {}", record_label(p), result_line(p)),
                unfused: (r.unfused.arithmetic_intensity, r.unfused.achieved_gflops),
                fused: (r.fused.arithmetic_intensity, r.fused.achieved_gflops),
                faster: if p.trustworthy {
                    match p.verdict {
                        Some(Verdict::Faster) => Some(true),
                        Some(Verdict::Slower) => Some(false),
                        _ => None,
                    }
                } else {
                    None
                },
            })
        })
        .collect();
    match (&cal.ceilings, points.is_empty()) {
        (Some(c), false) => {
            s.push_str(&charts::roofline(&points, c.peak_gflops, c.bandwidth_gbs)?);
            let _ = write!(s, "<p class=\"note\">Ceilings measured on this machine ({}).</p>", escape(&c.source));
        }
        (None, _) => {
            s.push_str("<p class=\"note\">No ceilings were measured in this run, so there is no roofline.</p>")
        }
        (_, true) => s.push_str("<p class=\"note\">No measured instance to place.</p>"),
    }
    s.push_str("</section>\n");
    Ok(s)
}

fn graph_section(cal: &CalibrationFile, g: Option<&ReportGraph>) -> String {
    let mut s = String::from("<section id=\"graph\"><h2>The annotated graph</h2>\n");
    let Some(g) = g else {
        s.push_str(
            "<p class=\"note\">No graph.json beside the calibration file: the graph cannot be drawn.</p></section>\n",
        );
        return s;
    };
    let style = |k: usize| graph::record_style(&cal.fusion_profiles[k]);
    let (src, drawn, collapsed) = graph::dot_source(g, cal.fusion_profiles.len(), &style);
    s.push_str("<p class=\"legend\">Instances coloured by their headline speedup:");
    for x in [1.0 / 1.5, 0.8, 1.0, 1.25, 1.5] {
        let _ = write!(s, "<span class=\"sw\" style=\"background:{}\"></span>{x:.2}×", speedup_colour(x));
    }
    let _ = write!(s, "<span class=\"sw\" style=\"background:{GREY}\"></span>within noise, untrustworthy or not measured. Click an instance for its table row.</p>");
    if collapsed {
        let _ = write!(
            s,
            "<p class=\"note\">{} nodes: collapsed to the {} instances drawn and their neighbours; every other stretch of \
             nodes is one dashed box that counts its ops.</p>",
            g.nodes.len(),
            drawn.len()
        );
    }
    match graph::render(&src) {
        Ok(svg) => {
            s.push_str("<div class=\"graphbox\">");
            s.push_str(&svg);
            s.push_str("</div>");
        }
        Err(why) => {
            let _ = write!(s, "<p class=\"banner\" id=\"no-dot\">The graph is not drawn: {}.</p>", escape(&why));
        }
    }
    s.push_str("</section>\n");
    s
}

/// The instance table: one `<tbody>` row per record, sortable.
fn table_section(profiles: &[FusionCalibration]) -> String {
    // tf32 and fp16 runs: the error against strict fp32 (`measure::reference`)
    let with_err = profiles.iter().any(|p| p.precision_error.is_some());
    let mut s = format!(
        "<section id=\"table\"><h2>Instances</h2>\n<table id=\"instances\" class=\"sortable\"><thead><tr>\
         <th>pattern</th><th>shapes</th><th>×n</th><th>unfused</th><th>fused</th><th>speedup [95% CI]</th>\
         <th>ORT fused into</th><th>explicit kernel</th><th>verdict</th><th>A/A</th><th>bottleneck</th>{}</tr></thead><tbody>\n",
        if with_err { "<th title=\"largest error against strict fp32 over the largest reference value\">error vs fp32</th>" } else { "" }
    );
    for (k, p) in profiles.iter().enumerate() {
        let grey = grey_reason(p);
        let measured = p.status == Status::Measured;
        let (head, _) = levels(p);
        let e = headline_speedup(p);
        let fused_ms = head.map_or(p.fused_latency_ms, |l| l.latency.median_ms);
        let explicit = match (&p.explicit, &p.explicit_unavailable) {
            (Some(x), _) => format!("{} {}", p.explicit_kernels.join(", "), fmt_speedup(&x.speedup)),
            (None, Some(u)) => format!("none ({u})"),
            _ => "–".into(),
        };
        let bottleneck = crate::report::bottleneck_text(p).unwrap_or_else(|| "–".into());
        let verdict = if !measured {
            format!("skipped: {}", p.skip_reason.as_deref().unwrap_or(""))
        } else {
            let v = p.verdict.map(verdict_word).unwrap_or("no verdict").to_string();
            match &grey {
                Some(g) => format!("{v} ({g})"),
                None => v,
            }
        };
        let _ = writeln!(
            s,
            "<tr id=\"row-{k}\" data-signature=\"{}\"{}><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\" data-sort=\"{}\">{}</td><td class=\"num\" data-sort=\"{}\">{}</td><td class=\"num\" data-sort=\"{}\" style=\"background:{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}</tr>",
            escape(&p.signature),
            if grey.is_some() { " class=\"grey\"" } else { "" },
            escape(&p.fusion_pattern),
            escape(&shapes_text(p)),
            p.instances.len().max(1),
            p.unfused_latency_ms,
            if measured { fmt_ms(p.unfused_latency_ms) } else { "–".into() },
            fused_ms,
            if measured { fmt_ms(fused_ms) } else { "–".into() },
            if measured && p.equivalent { e.point } else { f64::NAN },
            if grey.is_some() || !measured { GREY.to_string() } else { speedup_colour(e.point) },
            if measured && p.equivalent { fmt_speedup(&e) } else { "–".into() },
            escape(&p.ort_fused_into.join(", ")),
            escape(&explicit),
            escape(&verdict),
            p.aa_control.as_ref().map(fmt_aa).unwrap_or_else(|| "–".into()),
            escape(&bottleneck),
            match (&p.precision_error, with_err) {
                (_, false) => String::new(),
                (None, true) => "<td class=\"num\" data-sort=\"NaN\">–</td>".into(),
                (Some(e), true) => format!(
                    "<td class=\"num\" data-sort=\"{}\">{}{}</td>",
                    e.rel_err(),
                    crate::report::fmt_err(e.rel_err()),
                    if e.passed() { "" } else { " (beyond its tolerance)" }
                ),
            }
        );
    }
    s.push_str("</tbody></table></section>\n");
    s
}

fn footer(provenance: &crate::runtime::Provenance, version: &str) -> String {
    format!(
        "<footer class=\"note\"><hr>Made by fuseval {} at {}. Rebuild this page with <code>fuseval report DIR</code>.</footer>",
        escape(version),
        escape(provenance.fuseval_commit.as_deref().unwrap_or("an unrecorded commit"))
    )
}

/// The report of a `fuseval bench` run (`graph`: its graph.json, when there is one).
pub fn bench_page(cal: &CalibrationFile, g: Option<&ReportGraph>) -> Result<String> {
    let m = &cal.metadata;
    let mut body = format!(
        "<header><h1>fuseval: {}</h1><p class=\"sub\">{} · ONNX Runtime {} · {} · {} thread(s) · {}</p></header>\n",
        escape(file_name(&m.model)),
        escape(&hardware_text(&m.hardware)),
        escape(&m.ort_version),
        escape(&m.execution_provider),
        m.threads,
        escape(&m.date)
    );
    body.push_str(&warnings_section(cal.complete, &crate::report::warnings::warnings(cal)));
    body.push_str(&run_section(cal));
    body.push_str(&whole_model_section(cal)?);
    body.push_str(&forest_section(&cal.fusion_profiles, cal.instances_measured())?);
    body.push_str(&roofline_section(cal)?);
    body.push_str(&graph_section(cal, g));
    body.push_str(&table_section(&cal.fusion_profiles));
    body.push_str(&footer(&m.provenance, &m.fuseval_version));
    Ok(page(&format!("fuseval: {}", file_name(&m.model)), &body))
}

/// Two bench runs side by side, instances matched by signature.
pub fn compare_page(a: (&str, &CalibrationFile), b: (&str, &CalibrationFile)) -> Result<String> {
    let (an, ac) = a;
    let (bn, bc) = b;
    let mut body = format!(
        "<header><h1>fuseval: {} against {}</h1><p class=\"sub\">A = {}, B = {}</p></header>\n",
        escape(an),
        escape(bn),
        escape(&format!(
            "{} on {} ({})",
            file_name(&ac.metadata.model),
            hardware_text(&ac.metadata.hardware),
            ac.metadata.execution_provider
        )),
        escape(&format!(
            "{} on {} ({})",
            file_name(&bc.metadata.model),
            hardware_text(&bc.metadata.hardware),
            bc.metadata.execution_provider
        )),
    );
    let mut warnings = vec![];
    for (n, c) in [(an, ac), (bn, bc)] {
        for w in crate::report::warnings::warnings(c) {
            warnings.push(format!("{n}: {w}"));
        }
    }
    body.push_str(&warnings_section(ac.complete && bc.complete, &warnings));
    body.push_str("<section id=\"run\"><h2>The runs</h2><table class=\"kv\"><tr><th></th><th>A</th><th>B</th></tr>");
    let row = |s: &mut String, k: &str, f: &dyn Fn(&CalibrationFile) -> String| {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td><td>{}</td></tr>", escape(k), escape(&f(ac)), escape(&f(bc)));
    };
    row(&mut body, "Folder", &|c| if std::ptr::eq(c, ac) { an.to_string() } else { bn.to_string() });
    row(&mut body, "Model", &|c| c.metadata.model.clone());
    row(&mut body, "Hardware", &|c| hardware_text(&c.metadata.hardware));
    row(&mut body, "ONNX Runtime", &|c| c.metadata.ort_version.clone());
    row(&mut body, "Execution provider", &|c| c.metadata.execution_provider.clone());
    row(&mut body, "Threads", &|c| c.metadata.threads.to_string());
    row(&mut body, "Mode", &|c| if c.metadata.quick { "--quick".into() } else { "full".into() });
    row(&mut body, "fuseval", &|c| c.metadata.provenance.fuseval_commit.clone().unwrap_or_default());
    row(&mut body, "Date", &|c| c.metadata.date.clone());
    row(&mut body, "Whole model (Disable / extended / full)", &|c| {
        c.whole_model
            .as_ref()
            .map(|w| {
                let m = &w.measurement;
                format!(
                    "{} / {} / {}",
                    fmt_ms(m.disabled.median_ms),
                    fmt_ms(m.extended.median_ms),
                    fmt_ms(m.all.median_ms)
                )
            })
            .unwrap_or_else(|| "not timed".into())
    });
    body.push_str("</table></section>\n");

    // the union of signatures: A's order, then B's instances A lacks
    let mut sigs: Vec<&str> = ac.fusion_profiles.iter().map(|p| p.signature.as_str()).collect();
    for p in &bc.fusion_profiles {
        if !sigs.contains(&p.signature.as_str()) {
            sigs.push(&p.signature);
        }
    }
    let find = |c: &'_ CalibrationFile, sig: &str| -> Option<usize> {
        c.fusion_profiles.iter().position(|p| p.signature == sig)
    };
    let mut rows = vec![];
    for (k, sig) in sigs.iter().enumerate() {
        let pa = find(ac, sig).map(|i| &ac.fusion_profiles[i]);
        let pb = find(bc, sig).map(|i| &bc.fusion_profiles[i]);
        let p = pa.or(pb).expect("a signature from one of the runs");
        let mut r = forest_row(k, p);
        r.runtime = pa.filter(|p| p.status == Status::Measured && p.equivalent).map(headline_speedup);
        r.explicit = None;
        r.aa = None;
        r.other = pb.filter(|p| p.status == Status::Measured && p.equivalent).map(headline_speedup);
        r.grey = match (pa, pb) {
            (Some(_), None) => Some(format!("only in {an}")),
            (None, Some(_)) => Some(format!("only in {bn}")),
            _ => pa.and_then(grey_reason).or_else(|| pb.and_then(grey_reason)),
        };
        r.tooltip = format!(
            "{}: {an} {}; {bn} {}",
            p.fusion_pattern,
            pa.map(result_line).unwrap_or_else(|| "absent".into()),
            pb.map(result_line).unwrap_or_else(|| "absent".into())
        );
        rows.push((r, pa, pb));
    }
    body.push_str("<section id=\"per-pattern\"><h2>Per-pattern speedups</h2>\n");
    let forest_rows: Vec<charts::ForestRow> = rows.iter().map(|(r, _, _)| r.clone()).collect();
    body.push_str(&charts::forest(&forest_rows, (an, bn))?);
    body.push_str("<p class=\"note\">● A's headline speedup, ■ B's, each with its 95% CI.</p></section>\n");
    body.push_str(
        "<section id=\"table\"><h2>Instances</h2>\n<table id=\"instances\" class=\"sortable\"><thead><tr><th>pattern</th><th>shapes</th>\
         <th>×n</th><th>A speedup</th><th>B speedup</th><th>B / A</th><th>A verdict</th><th>B verdict</th></tr></thead><tbody>\n",
    );
    for (k, (r, pa, pb)) in rows.iter().enumerate() {
        let p = pa.or(*pb).expect("one of the runs");
        let cell = |e: Option<Estimate>| match e {
            Some(e) => format!(
                "<td class=\"num\" data-sort=\"{}\" style=\"background:{}\">{}</td>",
                e.point,
                speedup_colour(e.point),
                fmt_speedup(&e)
            ),
            None => "<td class=\"num\">–</td>".into(),
        };
        let ratio = match (r.runtime, r.other) {
            (Some(x), Some(y)) => format!("{:.2}", y.point / x.point),
            _ => "–".into(),
        };
        let _ = writeln!(
            body,
            "<tr id=\"row-{k}\" data-signature=\"{}\"{}><td>{}</td><td>{}</td><td class=\"num\">{}</td>{}{}<td class=\"num\">{ratio}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.signature),
            if r.grey.is_some() { " class=\"grey\"" } else { "" },
            escape(&p.fusion_pattern),
            escape(&shapes_text(p)),
            p.instances.len().max(1),
            cell(r.runtime),
            cell(r.other),
            escape(&pa.map(result_line).unwrap_or_else(|| "absent".into())),
            escape(&pb.map(result_line).unwrap_or_else(|| "absent".into()))
        );
    }
    body.push_str("</tbody></table></section>\n");
    body.push_str(&footer(&crate::runtime::Provenance::current(), env!("CARGO_PKG_VERSION")));
    Ok(page(&format!("fuseval: {an} against {bn}"), &body))
}

/// The report of a `fuseval calibrate` hardware calibration: the ceilings, speedup against size per
/// pattern with where fusion pays, the fusion-rule table, then the forest and table of every size.
pub fn hardware_page(hw: &HardwareCalibration) -> Result<String> {
    let m = &hw.metadata;
    let mut body = format!(
        "<header><h1>fuseval: hardware calibration of {}</h1><p class=\"sub\">{} · ONNX Runtime {} · {} · {} thread(s) · {}</p></header>\n",
        escape(&m.hardware_name),
        escape(&hardware_text(&m.hardware)),
        escape(&m.ort_version),
        escape(&m.execution_provider),
        m.threads,
        escape(&m.date)
    );
    let mut warnings = hw.warnings.clone();
    if m.quick {
        warnings.insert(0, format!("--quick: CIs are wider (target ±{:.0}%) and three sizes per pattern; rerun without --quick before relying on these numbers", 100.0 * m.target_rel_ci));
    }
    body.push_str(&warnings_section(hw.complete, &warnings));
    body.push_str("<section id=\"run\"><h2>The run</h2><table class=\"kv\">");
    kv(&mut body, "Hardware", &hardware_text(&m.hardware));
    kv(
        &mut body,
        "ONNX Runtime",
        &format!("{} ({})", m.ort_version, m.provenance.ort_library.as_deref().unwrap_or("library not recorded")),
    );
    kv(&mut body, "Execution provider", &m.execution_provider);
    kv(&mut body, "Threads", &m.threads.to_string());
    kv(&mut body, "Precision", "fp32");
    kv(&mut body, "Patterns", &m.patterns.join(", "));
    kv(&mut body, "Measurement", &format!("{}; CI target ±{:.0}%", m.measurement, 100.0 * m.target_rel_ci));
    kv(
        &mut body,
        "Ceilings",
        &format!(
            "{:.1} GFLOP/s, {:.1} GB/s measured{}",
            hw.measured_peak_gflops,
            hw.measured_bandwidth_gbps,
            match (hw.peak_efficiency, hw.bandwidth_efficiency) {
                (Some(p), Some(b)) => format!(" ({:.0}% and {:.0}% of the theoretical)", 100.0 * p, 100.0 * b),
                _ => String::new(),
            }
        ),
    );
    kv(
        &mut body,
        "fuseval",
        &format!("{} at {}", m.fuseval_version, m.provenance.fuseval_commit.as_deref().unwrap_or("not recorded")),
    );
    kv(&mut body, "Wall time", &m.measured);
    body.push_str("</table></section>\n");

    body.push_str("<section id=\"sweeps\"><h2>Speedup against size</h2>\n");
    let band = crate::estimate::NOISE;
    for (i, c) in hw.crossovers.iter().enumerate() {
        let pts: Vec<charts::SweepPoint> = c
            .points
            .iter()
            .filter_map(|p| {
                Some(charts::SweepPoint {
                    size: p.size.clone(),
                    flops: p.flops as f64,
                    speedup: p.speedup?,
                    grey: !p.trustworthy,
                })
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        body.push_str(&charts::sweep(&format!("sweep-{i}"), &c.label(), &pts, band)?);
        let _ = write!(body, "<p class=\"note\">{}: {}</p>", escape(&c.label()), escape(&c.summary));
    }
    body.push_str("</section>\n");

    if !hw.fusion_rules.is_empty() {
        body.push_str("<section id=\"rules\"><h2>Fusion rules</h2><table class=\"sortable\" id=\"fusion-rules\"><thead><tr><th>first</th><th>second</th><th>from</th><th>t1</th><th>t2</th><th>fused block</th><th>saving</th><th>threshold</th><th>rule says</th></tr></thead><tbody>");
        for r in &hw.fusion_rules {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&r.first),
                escape(&r.second),
                escape(&r.from),
                fmt_ms(r.t1_ms),
                fmt_ms(r.t2_ms),
                fmt_ms(r.t_block_ms),
                fmt_ms(r.saving_ms),
                fmt_ms(r.threshold_ms),
                if r.rule_says_fused { "fuse" } else { "keep apart" }
            );
        }
        body.push_str("</tbody></table></section>\n");
    }
    if !hw.operation_profiles.is_empty() {
        body.push_str("<section id=\"operations\"><h2>Operations</h2><table class=\"sortable\"><thead><tr><th>operation</th><th>shape</th><th>latency</th><th>GFLOP/s</th><th>GB/s</th></tr></thead><tbody>");
        for o in &hw.operation_profiles {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.1}</td></tr>",
                escape(&o.operation),
                escape(&o.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")),
                o.latency.as_ref().map(|l| fmt_ms(l.median_ms)).unwrap_or_else(|| "–".into()),
                o.measured_gflops,
                o.achieved_bandwidth_gbps
            );
        }
        body.push_str("</tbody></table></section>\n");
    }
    body.push_str(&forest_section(&hw.fusion_profiles, true)?);
    body.push_str(&table_section(&hw.fusion_profiles));
    body.push_str(&footer(&m.provenance, &m.fuseval_version));
    Ok(page(&format!("fuseval: {}", m.hardware_name), &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_colours() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(speedup_colour(1.0), "#e0ece0", "a pale tint at 1.00");
        // faster is green-ish, slower red-ish, saturating at 1.5x either way
        let g = speedup_colour(1.5);
        let r = speedup_colour(1.0 / 1.5);
        assert_eq!(g, "#2e7d32");
        assert_eq!(r, "#c62828");
        assert_eq!(speedup_colour(3.0), g);
        assert_ne!(speedup_colour(1.1), speedup_colour(1.2));
    }
}
