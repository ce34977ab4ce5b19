//! The HTML report, opened in a real browser (headless Chromium): the ResNet-50 fixture's page with
//! hand-made measurements (loaded, graphed and detected for real, never timed), two runs side by side,
//! an incomplete run, a missing Graphviz, and files `fuseval report` must refuse.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::Result;
use common::browser::{count, dump_dom, png_stats, screenshot};
use fuseval::calibration::roofline::Ceilings;
use fuseval::calibration::{CalibrationFile, FusionCalibration, Status, WholeModelResult};
use fuseval::drivers::attribution::{attribute, Context, Timer};
use fuseval::estimate::Estimate;
use fuseval::measure::configs::{ConfigComparison, ConfigResult};
use fuseval::measure::optimizers::{Discovery, Effect, Kind};
use fuseval::measure::{aa_ok, Comparison, Equivalence, ExplicitResult, Latency, Level, SessionConfig, WholeModel};
use fuseval::patterns::Instance;
use fuseval::pipeline::{distinct_groups, prepare, Prepared};
use fuseval::report::{self, html};
use fuseval::runtime::Ep;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

fn fuseval(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fuseval"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run fuseval")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

// ---------- hand-made measurements ----------

fn est(point: f64, half: f64) -> Estimate {
    Estimate { point, lo: point * (1.0 - half), hi: point * (1.0 + half) }
}

fn latency(ms: f64) -> Latency {
    Latency { median_ms: ms, ci_ms: est(ms, 0.02), min_ms: ms * 0.97, samples: 30 }
}

fn equivalence(passed: bool) -> Equivalence {
    serde_json::from_value(serde_json::json!({
        "passed": passed, "max_abs_err": if passed { 2e-6 } else { 0.3 }, "max_rel_err": 1e-6,
        "atol": 1e-4, "rtol": 1e-3, "outputs_compared": 1
    }))
    .unwrap()
}

/// A comparison whose headline speedup is `s`, A/A control `aa`, outputs agreeing or not.
fn comparison(unfused_ms: f64, s: f64, aa: Estimate, agree: bool) -> Comparison {
    Comparison {
        unfused: latency(unfused_ms),
        unfused_control: latency(unfused_ms),
        fused_extended: latency(unfused_ms / s),
        fused_all: latency(unfused_ms / (s * 1.1)),
        speedup_extended: est(s, 0.03),
        speedup_all: est(s * 1.1, 0.03),
        aa_ok: aa_ok(&aa),
        aa_control: aa,
        equivalence_extended: equivalence(agree),
        equivalence_all: equivalence(true),
        fused_ops_extended: vec!["com.microsoft.FusedConv".into()],
        fused_ops_all: vec!["com.microsoft.nchwc.Conv".into()],
        unfused_ops: vec!["Conv".into(), "BatchNormalization".into(), "Relu".into()],
        explicit: Some(ExplicitResult {
            latency: latency(unfused_ms / (s * 1.02)),
            speedup: est(s * 1.02, 0.03),
            equivalence: equivalence(true),
            ops: vec!["com.microsoft.FusedConv".into()],
        }),
        explicit_error: None,
        cpu_fallback: vec![],
        rounds: 30,
        iters_per_round: 4,
        budget_exhausted: false,
        wall_s: 1.0,
        threads: 2,
        ep: Ep::Cpu,
        seed: 42,
        build_order: vec![],
        attempts: 1,
        replicates: vec![],
        clock_check: None,
        clock_check_error: None,
        precision_error: None,
        no_cuda_graph: vec![],
    }
}

/// A fake clock for the attribution: each configuration's latency is the level's plus what each
/// disabled transformer costs.
struct FakeTimer(BTreeMap<String, f64>);

impl FakeTimer {
    fn ms(&self, c: &SessionConfig) -> f64 {
        self.0[&c.level.to_string()]
            + c.disabled.iter().map(|n| self.0.get(n.as_str()).copied().unwrap_or(0.0)).sum::<f64>()
    }
}

impl Timer for FakeTimer {
    fn time(&mut self, configs: &[SessionConfig]) -> Result<ConfigComparison> {
        let reference = self.ms(&configs[0]);
        let result = |c: &SessionConfig| {
            let r = self.ms(c) / reference;
            ConfigResult {
                config: c.clone(),
                latency: latency(self.ms(c)),
                ratio: est(r, 0.01),
                equivalence: equivalence(true),
                nodes: 100,
                cpu_fallback: false,
            }
        };
        Ok(ConfigComparison {
            reference: result(&configs[0]),
            aa_control: est(1.0, 0.01),
            aa_ok: true,
            results: configs[1..].iter().map(result).collect(),
            failed: vec![],
            rounds: 25,
            iters_per_round: 1,
            budget_exhausted: false,
            wall_s: 1.0,
            seed: 1,
            attempts: 1,
        })
    }
}

fn effect(name: &str, kind: Kind, consumed: Vec<String>) -> Effect {
    Effect {
        name: name.into(),
        kind,
        rule: false,
        nodes_without: 120,
        nodes_with: 100,
        ops_changed: BTreeMap::new(),
        consumed,
    }
}

/// The run of a bench on the ResNet-50 fixture, with every kind of record: faster, slower, within noise,
/// untrustworthy (A/A off), outputs that differ, skipped; ceilings, a whole model and its attribution.
fn resnet_run(speedup_scale: f64) -> (Prepared, CalibrationFile) {
    let p = prepare(&fixture("light_resnet50.onnx"), &[]).unwrap();
    let g = &p.graph;
    let chosen: Vec<&Instance> = p.detection.longest_instances().collect();
    let groups = distinct_groups(g, &chosen);
    let ceilings = Ceilings { peak_gflops: 150.0, bandwidth_gbs: 20.0, source: "hand-made".into(), precision: None };
    let mut profiles = vec![];
    for (k, (sig, group)) in groups.iter().enumerate() {
        let (s, aa, agree) = match k % 6 {
            0 => (1.25, est(1.0, 0.01), true),
            1 => (0.85, est(1.0, 0.01), true),
            2 => (1.005, est(1.0, 0.01), true),
            3 => (1.3, est(1.08, 0.01), true),
            4 => (1.2, est(1.0, 0.01), false),
            _ => (1.1, est(1.0, 0.01), true),
        };
        let rec = if k == 5 {
            FusionCalibration::new(g, group, Err("carving failed: a reason".into()), sig.clone())
        } else {
            let c = comparison(1.0 + k as f64 * 0.1, s * speedup_scale, aa, agree);
            FusionCalibration::new(g, group, Ok(&c), sig.clone())
                .with_explicit(vec!["com.microsoft.FusedConv".into()], Some("BN folded".into()), None)
                .with_roofline(&ceilings)
        };
        profiles.push(rec);
    }
    let whole = WholeModel::from(comparison(80.0, 1.3, est(1.0, 0.01), true));
    let consumed: Vec<String> = g.graph.node_indices().take(30).map(|n| g.node(n).name.clone()).collect();
    let discovery = Discovery {
        level: Some(Level::All),
        nodes_original: 120,
        nodes_optimized: 80,
        acting: vec![
            effect("ConvBNFusion", Kind::Fusion, consumed[..10].to_vec()),
            effect("ConvActivationFusion", Kind::Fusion, consumed[10..20].to_vec()),
            effect("NchwcTransformer", Kind::Layout, consumed[20..].to_vec()),
        ],
        no_effect: vec![("GemmSumFusion".into(), "a rewrite rule".into())],
        failed: vec![],
    };
    let clock: BTreeMap<String, f64> = [
        ("all", 60.0),
        ("extended", 80.0),
        ("disable", 90.0),
        ("ConvBNFusion", 4.0),
        ("ConvActivationFusion", 0.5),
        ("NchwcTransformer", 20.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (attribution, recommended) =
        attribute(&discovery, &profiles, &mut FakeTimer(clock), &Context::default()).unwrap();
    let whole = WholeModelResult {
        saving_all_ms: whole.disabled.median_ms - whole.all.median_ms,
        saving_extended_ms: whole.disabled.median_ms - whole.extended.median_ms,
        sum_pattern_saving_ms: 3.0,
        explained_fraction: Some(0.2),
        prediction: None,
        attribution: Some(attribution),
        measurement: whole,
    };
    let name = |m: BTreeMap<fuseval::patterns::Pattern, usize>| -> BTreeMap<String, usize> {
        m.into_iter().map(|(k, v)| (k.key().to_string(), v)).collect()
    };
    let cal = CalibrationFile {
        schema_version: fuseval::calibration::SCHEMA_VERSION,
        metadata: common::made::metadata(&p, false),
        patterns_found_longest: name(p.detection.counts(true)),
        patterns_found_all: name(p.detection.counts(false)),
        fusion_profiles: profiles,
        whole_model: Some(whole),
        ceilings: Some(ceilings),
        warnings: vec!["a warning from loading <with markup>".into()],
        session_noise: None,
        aa_check: None,
        complete: true,
        recommended_config: Some(recommended),
    };
    (p, cal)
}

/// Write a run's outputs (report.html among them) into a fresh folder.
fn write(p: &Prepared, cal: &CalibrationFile, dir: &Path) {
    report::write_outputs(dir, cal, &p.loaded, &p.graph, &p.detection).unwrap();
}

#[test]
fn the_resnet_report_opens_in_chromium_with_every_instance_in_table_forest_and_graph() {
    let (p, cal) = resnet_run(1.0);
    let dir = tempfile::tempdir().unwrap();
    write(&p, &cal, dir.path());
    let page = dir.path().join(html::REPORT_HTML);
    let bytes = std::fs::metadata(&page).unwrap().len() as usize;
    assert!(bytes <= html::MAX_BYTES, "{bytes} bytes");
    let raw = std::fs::read_to_string(&page).unwrap();
    // self-contained: nothing fetched
    for fetch in ["src=\"http", "href=\"http", "<link ", "@import", "url(http"] {
        assert!(!raw.contains(fetch), "the page fetches something: {fetch}");
    }
    assert!(raw.contains("a warning from loading &lt;with markup&gt;"));

    let dom = dump_dom(&page);
    assert!(dom.contains("data-ready=\"1\""), "the page's script did not finish");
    assert!(
        dom.contains("<pre id=\"js-errors\"></pre>"),
        "JavaScript errors: {}",
        &dom[dom.find("js-errors").unwrap()..][..300]
    );

    let distinct = cal.fusion_profiles.len();
    assert!(distinct >= 12, "{distinct}");
    // one table row and one forest mark per distinct instance, carrying its signature
    let table = &dom[dom.find("<table id=\"instances\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    let forest = &dom[dom.find("<svg id=\"forest\"").unwrap()..];
    let forest = &forest[..forest.find("</svg>").unwrap()];
    assert_eq!(count(table, "<tr id=\"row-"), distinct);
    assert_eq!(count(forest, "data-signature="), distinct);
    for r in &cal.fusion_profiles {
        let sig = html::escape(&r.signature);
        assert!(table.contains(&format!("data-signature=\"{sig}\"")), "no table row for {}", r.fusion_pattern);
        assert!(forest.contains(&format!("data-signature=\"{sig}\"")), "no forest mark for {}", r.fusion_pattern);
    }
    // the graph: one coloured cluster per measured instance of the longest-match cover, linked to its row
    let measured: usize =
        cal.fusion_profiles.iter().filter(|r| r.status == Status::Measured).map(|r| r.instances.len()).sum();
    let graph = &dom[dom.find("<section id=\"graph\"").unwrap()..];
    let graph = &graph[..graph.find("</section>").unwrap()];
    assert_eq!(count(graph, "<g id=\"inst-"), measured, "{}", &graph[..500]);
    assert_eq!(count(graph, "<g id=\"inst-5-"), 0, "a skipped record draws no coloured cluster");
    assert!(count(graph, "<g id=\"other-5-") >= 1, "but it is outlined");
    assert!(graph.contains("xlink:href=\"#row-0\"") || graph.contains("href=\"#row-0\""));
    // the sections in order, the waterfall and the recommendation
    let order: Vec<usize> =
        ["id=\"run\"", "id=\"whole-model\"", "id=\"forest\"", "id=\"roofline\"", "id=\"graph\"", "id=\"instances\""]
            .iter()
            .map(|s| dom.find(s).unwrap_or_else(|| panic!("{s} missing")))
            .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(dom.contains("id=\"waterfall\"") && dom.contains("NchwcTransformer") && dom.contains("id=\"recommended\""));
    assert!(!dom.contains("id=\"incomplete\""));

    let png = dir.path().join("report.png");
    screenshot(&page, &png, 1200, 2400);
    let (colours, ink) = png_stats(&png);
    assert!(colours > 20 && ink > 0.05, "a blank screenshot? {colours} colours, {:.1}% ink", 100.0 * ink);
}

#[test]
fn two_runs_side_by_side_match_instances_by_signature() {
    let (p, a) = resnet_run(1.0);
    let (_, mut b) = resnet_run(1.1);
    // B lacks A's first instance
    b.fusion_profiles.remove(0);
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    write(&p, &a, &da);
    write(&p, &b, &db);
    let out = dir.path().join("both.html");
    let o = fuseval(&["report", da.to_str().unwrap(), db.to_str().unwrap(), "-o", out.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let dom = dump_dom(&out);
    assert!(dom.contains("data-ready=\"1\"") && dom.contains("<pre id=\"js-errors\"></pre>"));
    let table = &dom[dom.find("<table id=\"instances\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(count(table, "<tr id=\"row-"), a.fusion_profiles.len());
    // the instance only A has: labelled in the forest, `absent` for B in the table
    let only_a = html::escape(&a.fusion_profiles[0].signature);
    let row = &table[table.find(&format!("data-signature=\"{only_a}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(row.contains("absent") && row.contains("class=\"grey\""), "{row}");
    assert!(dom.contains("only in"));
    // a matched faster instance reads B / A = 1.10
    assert!(table.contains("<td class=\"num\">1.10</td>"), "{}", &table[..2000]);
}

#[test]
fn an_incomplete_run_has_a_banner_and_a_missing_graphviz_is_explained() {
    let (p, mut cal) = resnet_run(1.0);
    cal.complete = false;
    cal.fusion_profiles.truncate(3);
    let dir = tempfile::tempdir().unwrap();
    write(&p, &cal, dir.path());
    let out = dir.path().join("again.html");
    let o = fuseval(
        &["report", dir.path().to_str().unwrap(), "-o", out.to_str().unwrap()],
        &[("FUSEVAL_DOT", "/nonexistent/dot")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let page = std::fs::read_to_string(&out).unwrap();
    assert!(page.contains("id=\"incomplete\""));
    assert!(page.contains("id=\"no-dot\"") && page.contains("apt-get install graphviz"));
    // everything else still renders
    assert_eq!(count(&page, "<tr id=\"row-"), 3);
    assert!(page.contains("<svg id=\"forest\""));
}

#[test]
fn report_refuses_foreign_files_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-tool.json");
    std::fs::write(&other, r#"{"schema": "someone else's", "results": [1, 2, 3]}"#).unwrap();
    let o = fuseval(&["report", other.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("other-tool.json"), "{}", text(&o));
    let not_json = dir.path().join("calibration.json");
    std::fs::write(&not_json, "not json at all").unwrap();
    let o = fuseval(&["report", dir.path().to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("calibration.json"), "{}", text(&o));
    let o = fuseval(&["report", dir.path().join("missing").to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // nothing half-written
    assert!(!dir.path().join("report.html").exists() && !dir.path().join("other-tool.html").exists());
}

#[test]
fn precisions_side_by_side_are_rebuilt_by_report_from_the_precision_folders() {
    use fuseval::measure::reference::PrecisionError;
    use fuseval::runtime::Precision;
    let (p, mut fp32) = resnet_run(1.0);
    let (_, mut fp16) = resnet_run(1.3);
    for r in &mut fp32.fusion_profiles {
        r.precision = Some(Precision::Fp32);
    }
    for r in &mut fp16.fusion_profiles {
        r.precision = Some(Precision::Fp16);
        if r.status == Status::Measured {
            // max |error| 2e-6 (see `equivalence`) over a largest reference value of 0.5: 4e-6
            let eq = equivalence(true);
            r.precision_error = Some(PrecisionError {
                precision: Precision::Fp16,
                unfused: eq.clone(),
                fused: eq,
                explicit: None,
                reference_max_abs: 0.5,
            });
        }
    }
    // fp16 lacks fp32's first instance
    fp16.fusion_profiles.remove(0);
    let dir = tempfile::tempdir().unwrap();
    write(&p, &fp32, &dir.path().join("fp32"));
    write(&p, &fp16, &dir.path().join("fp16"));
    let o = fuseval(&["report", dir.path().to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("Precisions side by side (fp32, fp16)") && out.contains("err 4.0e-6"), "{out}");
    // each precision's whole model with its own A/A control, and the instances' A/A failures
    assert_eq!(out.matches("), A/A ").count(), 2, "{out}");
    assert_eq!(out.matches("; A/A failed ").count(), 2, "{out}");

    // precisions.json: one row per distinct instance, one cell per precision, the missing one null
    let t: fuseval::report::precisions::Table =
        serde_json::from_slice(&std::fs::read(dir.path().join("precisions.json")).unwrap()).unwrap();
    assert_eq!(t.precisions, [Precision::Fp32, Precision::Fp16]);
    assert_eq!(t.rows.len(), fp32.fusion_profiles.len());
    assert!(t.rows[0].cells[1].is_none() && t.rows[0].cells[0].is_some());
    let both = t.rows.iter().find(|r| r.cells.iter().all(|c| c.is_some())).unwrap();
    let (a, b) = (both.cells[0].as_ref().unwrap(), both.cells[1].as_ref().unwrap());
    assert!((b.speedup.point / a.speedup.point - 1.3).abs() < 1e-9);
    assert_eq!((a.rel_err_vs_fp32, b.rel_err_vs_fp32.map(|e| (e * 1e7).round())), (None, Some(40.0)));

    // the page: each precision's report linked, one row per instance with a cell per precision
    let page = dir.path().join(html::REPORT_HTML);
    let dom = dump_dom(&page);
    assert!(dom.contains("data-ready=\"1\"") && dom.contains("<pre id=\"js-errors\"></pre>"));
    assert!(dom.contains("href=\"fp32/report.html\"") && dom.contains("href=\"fp16/report.html\""));
    let table = &dom[dom.find("<table id=\"instances\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(count(table, "data-signature="), fp32.fusion_profiles.len());
    assert_eq!(count(table, ">fp32</th>") + count(table, ">fp16</th>"), 2);

    // each precision's own page: fp16's table has the error against fp32 on every measured row, fp32's
    // has no such column
    let own = |q: &str| std::fs::read_to_string(dir.path().join(q).join(html::REPORT_HTML)).unwrap();
    let (p32, p16) = (own("fp32"), own("fp16"));
    assert!(!p32.contains(">error vs fp32</th>"));
    assert!(p16.contains(">error vs fp32</th>"));
    let measured = fp16.fusion_profiles.iter().filter(|r| r.status == Status::Measured).count();
    assert!(measured > 0);
    assert_eq!(count(&p16, "data-sort=\"0.000004\">4e-6</td>"), measured, "fp16 page");
}
