//! Tests of the report module: the four output files, the summary, the warnings and `inspect`.
//! Calibration files are built by hand around real fixtures (loaded, graphed and detected, never timed),
//! so these tests need no ONNX Runtime.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::made::{metadata, CPU};
use fuseval::calibration::{CalibrationFile, FusionCalibration, Status, WholeModelResult, SCHEMA_VERSION};
use fuseval::estimate::{Estimate, Verdict};
use fuseval::measure::{aa_ok, Comparison, Equivalence, ExplicitResult, Latency, WholeModel};
use fuseval::patterns::{Instance, Pattern};
use fuseval::pipeline::{prepare, Prepared};
use fuseval::report::{self, dot, inspect, summary, warnings};
use fuseval::runtime::Ep;
use prost::Message;
use tract_onnx::pb;

const SKIP_REASON: &str = "carving failed: no reason at all";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

fn prepared(path: &Path) -> Prepared {
    prepare(path, &[]).unwrap_or_else(|e| panic!("loading {}: {e:#}", path.display()))
}

// ---------- hand-made measurements ----------

fn est(point: f64, half: f64) -> Estimate {
    Estimate { point, lo: point - half, hi: point + half }
}

fn latency(ms: f64) -> Latency {
    Latency { median_ms: ms, ci_ms: est(ms, ms * 0.01), min_ms: ms * 0.95, samples: 40 }
}

fn equivalence(passed: bool, err: f64) -> Equivalence {
    Equivalence { passed, max_abs_err: err, max_rel_err: err, atol: 1e-4, rtol: 1e-3, outputs_compared: 1 }
}

/// What one hand-made comparison looks like.
#[derive(Clone, Copy)]
struct Shape {
    speedup: f64,
    /// Speedup at the full level.
    all: f64,
    aa: Estimate,
    agree: bool,
    budget_exhausted: bool,
    /// The explicit-fused variant: its speedup and whether its outputs agree; `None`: no kernel.
    explicit: Option<(f64, bool)>,
    /// The explicit session failed (overrides `explicit`).
    explicit_error: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            speedup: 2.5,
            all: 2.2,
            aa: est(1.0, 0.01),
            agree: true,
            budget_exhausted: false,
            explicit: Some((2.7, true)),
            explicit_error: false,
        }
    }
}

const NO_KERNEL: &str = "ORT has no fused Conv+BN+ReLU kernel on CPU";
const EXPLICIT_NOTE: &str = "BN folded into the Conv weights";

fn comparison(unfused_ms: f64, s: Shape) -> Comparison {
    let fused = unfused_ms / s.speedup;
    Comparison {
        unfused: latency(unfused_ms),
        unfused_control: latency(unfused_ms),
        fused_extended: latency(fused),
        fused_all: latency(unfused_ms / s.all),
        speedup_extended: est(s.speedup, 0.05),
        speedup_all: est(s.all, 0.05),
        aa_ok: aa_ok(&s.aa),
        aa_control: s.aa,
        equivalence_extended: equivalence(s.agree, if s.agree { 3e-6 } else { 0.2 }),
        equivalence_all: equivalence(true, 4e-6),
        fused_ops_extended: vec!["com.microsoft.FusedConv".into()],
        fused_ops_all: vec!["ReorderInput".into(), "com.microsoft.nchwc.Conv".into(), "ReorderOutput".into()],
        unfused_ops: vec!["Conv".into(), "BatchNormalization".into(), "Relu".into()],
        explicit: s.explicit.filter(|_| !s.explicit_error).map(|(speedup, agree)| ExplicitResult {
            latency: latency(unfused_ms / speedup),
            speedup: est(speedup, 0.05),
            equivalence: equivalence(agree, if agree { 2e-6 } else { 0.5 }),
            ops: vec!["com.microsoft.FusedConv".into()],
        }),
        explicit_error: s.explicit_error.then(|| "creating explicit fused session: no kernel for NoSuchOp".into()),
        cpu_fallback: vec![],
        rounds: 30,
        iters_per_round: 8,
        budget_exhausted: s.budget_exhausted,
        wall_s: 2.0,
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

fn counts(p: &Prepared, longest: bool) -> BTreeMap<String, usize> {
    p.detection.counts(longest).into_iter().map(|(k, v)| (k.key().to_string(), v)).collect()
}

/// One record per detected instance: the longest-match instances measured with `shape`, the
/// sub-matches skipped.
fn calibration(p: &Prepared, shape: Shape) -> CalibrationFile {
    let g = &p.graph;
    let longest: Vec<usize> = p.detection.longest.clone();
    let mut profiles = vec![];
    for (i, inst) in p.detection.all.iter().enumerate() {
        let group: Vec<&Instance> = vec![inst];
        let rec = if longest.contains(&i) {
            let c = comparison(1.0, shape);
            let rec = FusionCalibration::new(g, &group, Ok(&c), inst.signature(g));
            if shape.explicit.is_some() {
                rec.with_explicit(vec!["com.microsoft.FusedConv".into()], Some(EXPLICIT_NOTE.into()), None)
            } else {
                rec.with_explicit(vec![], None, Some(NO_KERNEL.into()))
            }
        } else {
            FusionCalibration::new(g, &group, Err(SKIP_REASON.into()), inst.signature(g))
        };
        profiles.push(rec);
    }
    let whole = WholeModel::from(comparison(10.0, Shape::default()));
    let whole = WholeModelResult {
        saving_all_ms: whole.disabled.median_ms - whole.all.median_ms,
        saving_extended_ms: whole.disabled.median_ms - whole.extended.median_ms,
        sum_pattern_saving_ms: 0.6,
        explained_fraction: Some(0.1),
        prediction: None,
        attribution: None,
        measurement: whole,
    };
    CalibrationFile {
        schema_version: SCHEMA_VERSION,
        metadata: metadata(p, false),
        patterns_found_longest: counts(p, true),
        patterns_found_all: counts(p, false),
        fusion_profiles: profiles,
        whole_model: Some(whole),
        ceilings: None,
        warnings: vec!["a warning from loading".into()],
        session_noise: None,
        aa_check: None,
        complete: true,
        recommended_config: None,
    }
}

fn conv_bn_relu() -> Prepared {
    prepared(&fixture("patterns/conv_bn_relu.onnx"))
}

fn decode(path: &Path) -> pb::ModelProto {
    pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

// ---------- write_outputs and its files ----------

#[test]
fn write_outputs_writes_its_files_and_calibration_json_parses_back() {
    let p = conv_bn_relu();
    assert_eq!(p.detection.all.len(), 2, "Conv+BN+ReLU and its Conv+BN sub-match");
    let cal = calibration(&p, Shape::default());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/out");
    let written = report::write_outputs(&out, &cal, &p.loaded, &p.graph, &p.detection).unwrap();
    let names: Vec<String> = written.iter().map(|w| w.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["calibration.json", "graph.json", "graph.dot", "annotated.onnx", "report.html"]);
    for w in &written {
        assert!(w.starts_with(&out));
        assert!(std::fs::metadata(w).unwrap().len() > 0, "{} is empty", w.display());
    }
    // nothing else: no temp files left behind
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 5);

    let text = std::fs::read_to_string(out.join("calibration.json")).unwrap();
    let back: CalibrationFile = serde_json::from_str(&text).unwrap();
    assert_eq!(back.schema_version, SCHEMA_VERSION);
    assert_eq!(back.fusion_profiles.len(), 2);
    let measured = back.fusion_profiles.iter().find(|f| f.status == Status::Measured).unwrap();
    assert_eq!(measured.fusion_pattern, "Conv2d_BN_ReLU");
    assert_eq!(measured.speedup_factor, 2.5);
    assert_eq!(measured.verdict, Some(Verdict::Faster));
    assert_eq!(measured.instances, vec![vec!["/conv/Conv", "/bn/BatchNormalization", "/Relu"]]);
    let skipped = back.fusion_profiles.iter().find(|f| f.status == Status::Skipped).unwrap();
    assert_eq!(skipped.fusion_pattern, "Conv2d_BN");
    assert_eq!(skipped.skip_reason.as_deref(), Some(SKIP_REASON));
    assert_eq!(back.whole_model.as_ref().unwrap().sum_pattern_saving_ms, 0.6);
    // the round trip keeps everything (floats to the last bit or two: serde_json's default parser)
    json_close(&serde_json::to_value(&back).unwrap(), &serde_json::to_value(&cal).unwrap(), "$");
}

/// Equal JSON values, numbers within a relative 1e-14.
fn json_close(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!((x - y).abs() <= 1e-14 * x.abs().max(y.abs()), "{at}: {x} != {y}");
        }
        (Array(x), Array(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (i, (x, y)) in x.iter().zip(y).enumerate() {
                json_close(x, y, &format!("{at}[{i}]"));
            }
        }
        (Object(x), Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{at}");
            for (k, v) in x {
                json_close(v, &y[k], &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[test]
fn graph_json_links_measurements_to_groups() {
    let p = conv_bn_relu();
    let cal = calibration(&p, Shape::default());
    let dir = tempfile::tempdir().unwrap();
    report::write_outputs(dir.path(), &cal, &p.loaded, &p.graph, &p.detection).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("graph.json")).unwrap()).unwrap();

    assert_eq!(v["model"], cal.metadata.model.as_str());
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    let cbr = groups.iter().find(|g| g["pattern"] == "Conv2d_BN_ReLU").unwrap();
    assert_eq!(cbr["longest"], true);
    assert_eq!(cbr["nodes"], serde_json::json!(["/conv/Conv", "/bn/BatchNormalization", "/Relu"]));
    assert_eq!(cbr["measurement"]["fusion_pattern"], "Conv2d_BN_ReLU");
    assert_eq!(cbr["measurement"]["speedup_factor"], 2.5);
    let profile = cbr["profile"].as_u64().unwrap() as usize;
    assert_eq!(cal.fusion_profiles[profile].fusion_pattern, "Conv2d_BN_ReLU");
    let cb = groups.iter().find(|g| g["pattern"] == "Conv2d_BN").unwrap();
    assert_eq!(cb["longest"], false);
    assert_eq!(cb["measurement"]["status"], "skipped");

    let nodes = v["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["/conv/Conv", "/bn/BatchNormalization", "/Relu"]);
    assert_eq!(nodes[1]["pattern_groups"].as_array().unwrap().len(), 2, "BN is in both matches");
    assert_eq!(nodes[2]["pattern_groups"], serde_json::json!([cbr["id"]]));

    let edges = v["edges"].as_array().unwrap();
    let input = edges.iter().find(|e| e["from"].is_null()).unwrap();
    assert_eq!(input["to"], "/conv/Conv");
    assert_eq!(input["shape"], serde_json::json!([1, 8, 16, 16]));
    assert_eq!(input["dtype"], "f32");
    assert_eq!(input["bytes"], 8 * 16 * 16 * 4, "f32 bytes of 1x8x16x16");
    let output = edges.iter().find(|e| e["to"].is_null()).unwrap();
    assert_eq!(output["from"], "/Relu");
    assert!(edges.iter().any(|e| e["from"] == "/conv/Conv" && e["to"] == "/bn/BatchNormalization"));
    assert!(v["tensors"].as_array().unwrap().iter().any(|t| t["name"] == "x" && t["graph_input"] == true));
}

/// The cluster header and attribute line of `graph.dot` for the cluster whose label starts with `label`.
fn cluster_attrs<'a>(dot: &'a str, label: &str) -> &'a str {
    let at = dot.find(&format!("label=\"{label}")).unwrap_or_else(|| panic!("no cluster labelled {label} in\n{dot}"));
    let start = dot[..at].rfind("subgraph cluster_").unwrap();
    &dot[start..at + label.len() + 8]
}

#[test]
fn graph_dot_colours_clusters_by_verdict() {
    let p = conv_bn_relu();
    let cases = [(2.5, "faster", dot::FASTER.0), (0.5, "slower", dot::SLOWER.0), (1.0, "within noise", dot::NOISE.0)];
    for (speedup, word, colour) in cases {
        let cal = calibration(&p, Shape { speedup, ..Default::default() });
        let text = dot::graph_dot(&cal, &p.graph, &p.detection);
        assert!(text.starts_with("digraph "));
        let head = cluster_attrs(&text, "Conv2d_BN_ReLU");
        assert!(head.contains(&format!("color=\"{colour}\"")), "{word}: {head}");
        assert!(!head.contains("dashed"), "{word}: {head}");
        assert!(text.contains(&format!(
            "Conv2d_BN_ReLU {speedup:.2}× [{:.2}, {:.2}] {word}",
            speedup - 0.05,
            speedup + 0.05
        )));
        // the skipped sub-match nests inside, dashed grey
        let inner = cluster_attrs(&text, "Conv2d_BN: skipped");
        assert!(inner.contains("dashed") && inner.contains(dot::NOISE.0), "{inner}");
        assert_eq!(text.matches("subgraph cluster_").count(), 2);
        // every node is declared exactly once
        for n in 0..3 {
            assert_eq!(text.matches(&format!("  n{n} [label=")).count(), 1, "node n{n} in\n{text}");
        }
        assert!(text.contains("n0 -> n1 [label=\"1x16x16x16\"]"));
    }
    // an untrustworthy result is dashed, in its verdict's colour
    let cal = calibration(&p, Shape { aa: est(0.93, 0.03), ..Default::default() });
    let text = dot::graph_dot(&cal, &p.graph, &p.detection);
    let head = cluster_attrs(&text, "Conv2d_BN_ReLU");
    assert!(head.contains("dashed") && head.contains(dot::FASTER.0), "{head}");
    assert!(text.contains("untrustworthy: A/A control 0.93 [0.90, 0.96]"));
}

/// conv_bn_relu.onnx with node and input names full of characters DOT must escape.
fn awkward_names_model(dir: &Path) -> PathBuf {
    let mut m = decode(&fixture("patterns/conv_bn_relu.onnx"));
    let g = m.graph.as_mut().unwrap();
    let input = "in:\"x\"\\0";
    let old = g.input[0].name.clone();
    g.input[0].name = input.into();
    for (i, n) in g.node.iter_mut().enumerate() {
        n.name = format!("/block.{i}/say \"hi\"\\ {{x}} ;: -> op");
        for x in n.input.iter_mut().filter(|x| **x == old) {
            *x = input.into();
        }
    }
    let path = dir.join("awkward.onnx");
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    path
}

#[test]
fn graph_dot_escapes_names_and_parses_with_graphviz_when_installed() {
    let dir = tempfile::tempdir().unwrap();
    let p = prepared(&awkward_names_model(dir.path()));
    let cal = calibration(&p, Shape::default());
    let text = dot::graph_dot(&cal, &p.graph, &p.detection);
    assert!(text.contains(r#"label="Conv\n/block.0/say \"hi\"\\ {x} ;: -> op""#), "{text}");
    assert!(text.contains(r#"in:\"x\"\\0"#));
    assert_eq!(dot::quote("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
    // `dot` is optional: check the syntax when it is there
    let file = dir.path().join("g.dot");
    std::fs::write(&file, &text).unwrap();
    match std::process::Command::new("dot").arg("-Tplain").arg(&file).output() {
        Ok(out) => {
            assert!(out.status.success(), "dot rejected graph.dot: {}", String::from_utf8_lossy(&out.stderr));
            let plain = String::from_utf8_lossy(&out.stdout);
            assert_eq!(plain.lines().filter(|l| l.starts_with("node ")).count(), 3 + 2, "3 ops, 1 input, 1 output");
        }
        Err(_) => eprintln!("graphviz not installed: graph.dot syntax not checked"),
    }
}

#[test]
fn annotated_onnx_carries_results_and_nothing_else_changes() {
    let p = conv_bn_relu();
    let cal = calibration(&p, Shape::default());
    let dir = tempfile::tempdir().unwrap();
    report::write_outputs(dir.path(), &cal, &p.loaded, &p.graph, &p.detection).unwrap();
    let original = decode(&fixture("patterns/conv_bn_relu.onnx"));
    let annotated = decode(&dir.path().join("annotated.onnx"));

    let nodes = &annotated.graph.as_ref().unwrap().node;
    assert_eq!(nodes.len(), original.graph.as_ref().unwrap().node.len());
    for n in nodes {
        assert!(
            n.doc_string.contains("fuseval: Conv2d_BN_ReLU 2.50× [2.45, 2.55] faster; ORT extended → com.microsoft.FusedConv; unfused 1.00 ms, fused 0.40 ms"),
            "{}: {}",
            n.name,
            n.doc_string
        );
        assert!(n.doc_string.contains("A/A 1.00"));
    }
    // Conv and BN are also in the skipped Conv+BN sub-match; Relu is not
    let skipped = format!("fuseval: Conv2d_BN skipped: {SKIP_REASON}");
    assert_eq!(nodes.iter().filter(|n| n.doc_string.contains(&skipped)).count(), 2);

    let meta: BTreeMap<&str, &str> =
        annotated.metadata_props.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect();
    assert_eq!(meta["fuseval.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(meta["fuseval.ort_version"], "1.31.1");
    assert_eq!(meta["fuseval.date"], "2026-01-02T03:04:05Z");
    assert!(meta["fuseval.hardware"].starts_with(CPU));
    assert!(meta["fuseval.summary"].contains("Conv2d_BN_ReLU ×1 (1x8x16x16 → 1x16x16x16): 2.50× [2.45, 2.55] faster"));
    assert_eq!(meta.keys().filter(|k| !k.starts_with("fuseval.")).count(), 0);

    // the rest is the original, weights included
    let mut stripped = annotated.clone();
    for n in &mut stripped.graph.as_mut().unwrap().node {
        n.doc_string.clear();
    }
    stripped.metadata_props.retain(|e| !e.key.starts_with("fuseval."));
    let mut orig = original.clone();
    for n in &mut orig.graph.as_mut().unwrap().node {
        n.doc_string.clear();
    }
    assert!(orig.graph.as_ref().unwrap().initializer.iter().any(|t| !t.raw_data.is_empty()));
    assert_eq!(stripped, orig);
}

#[test]
fn annotating_twice_replaces_the_earlier_annotations() {
    let p = conv_bn_relu();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    report::write_outputs(&first, &calibration(&p, Shape::default()), &p.loaded, &p.graph, &p.detection).unwrap();
    // annotate the annotated model again, with a slower result
    let again = prepared(&first.join("annotated.onnx"));
    let cal = calibration(&again, Shape { speedup: 0.5, ..Default::default() });
    let second = dir.path().join("second");
    report::write_outputs(&second, &cal, &again.loaded, &again.graph, &again.detection).unwrap();
    let m = decode(&second.join("annotated.onnx"));
    for n in &m.graph.as_ref().unwrap().node {
        assert!(n.doc_string.contains("0.50× [0.45, 0.55] slower"), "{}", n.doc_string);
        assert!(!n.doc_string.contains("faster"), "{}", n.doc_string);
    }
    let versions = m.metadata_props.iter().filter(|e| e.key == "fuseval.version").count();
    assert_eq!(versions, 1);
}

/// The NodeProto fields tract's protobuf types leave out (`metadata_props` is field 9).
#[derive(Clone, PartialEq, prost::Message)]
struct RawNode {
    #[prost(string, tag = "3")]
    name: String,
    #[prost(message, repeated, tag = "9")]
    metadata_props: Vec<pb::StringStringEntryProto>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct RawGraph {
    #[prost(message, repeated, tag = "1")]
    node: Vec<RawNode>,
}
#[derive(Clone, PartialEq, prost::Message)]
struct RawModel {
    #[prost(message, optional, tag = "7")]
    graph: Option<RawGraph>,
}

#[test]
fn annotated_onnx_keeps_fields_fuseval_does_not_read() {
    let path = fixture("mini_resnet50_dynamo.onnx");
    let p = prepared(&path);
    let cal = calibration(&p, Shape::default());
    let dir = tempfile::tempdir().unwrap();
    report::write_outputs(dir.path(), &cal, &p.loaded, &p.graph, &p.detection).unwrap();
    let raw = |f: &Path| RawModel::decode(std::fs::read(f).unwrap().as_slice()).unwrap().graph.unwrap().node;
    let before = raw(&path);
    let after = raw(&dir.path().join("annotated.onnx"));
    assert!(before.iter().any(|n| !n.metadata_props.is_empty()), "the dynamo fixture has node metadata_props");
    assert_eq!(before, after);
    let annotated = decode(&dir.path().join("annotated.onnx"));
    let with_doc = annotated.graph.unwrap().node.iter().filter(|n| n.doc_string.contains("fuseval: ")).count();
    let in_patterns: std::collections::BTreeSet<&String> =
        cal.fusion_profiles.iter().flat_map(|f| f.instances.iter().flatten()).collect();
    assert_eq!(with_doc, in_patterns.len());
    assert!(with_doc > 100);
}

#[test]
fn annotated_onnx_of_an_external_data_model_is_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = decode(&fixture("patterns/conv_bn_relu.onnx"));
    let original = m.clone();
    let mut data = vec![];
    for t in &mut m.graph.as_mut().unwrap().initializer {
        let kv = |k: &str, v: String| pb::StringStringEntryProto { key: k.into(), value: v };
        t.external_data = vec![
            kv("location", "weights.bin".into()),
            kv("offset", data.len().to_string()),
            kv("length", t.raw_data.len().to_string()),
        ];
        data.extend_from_slice(&std::mem::take(&mut t.raw_data));
        t.data_location = Some(pb::tensor_proto::DataLocation::External as i32);
    }
    assert!(!data.is_empty());
    std::fs::write(dir.path().join("weights.bin"), &data).unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::write(&model, m.encode_to_vec()).unwrap();

    let p = prepared(&model);
    let cal = calibration(&p, Shape::default());
    let out = dir.path().join("out");
    report::write_outputs(&out, &cal, &p.loaded, &p.graph, &p.detection).unwrap();
    let annotated = decode(&out.join("annotated.onnx"));
    let inits = &annotated.graph.as_ref().unwrap().initializer;
    let want = &original.graph.as_ref().unwrap().initializer;
    assert_eq!(inits.len(), want.len());
    for (a, b) in inits.iter().zip(want) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.raw_data, b.raw_data, "{} inlined", a.name);
        assert!(a.external_data.is_empty() && a.data_location != Some(pb::tensor_proto::DataLocation::External as i32));
    }
    assert!(annotated.graph.unwrap().node.iter().all(|n| n.doc_string.contains("fuseval: Conv2d_BN_ReLU")));
}

// ---------- check_outputs_free and atomic_write ----------

#[test]
fn check_outputs_free_refuses_existing_outputs_without_force() {
    let dir = tempfile::tempdir().unwrap();
    report::check_outputs_free(dir.path(), false).unwrap();
    report::check_outputs_free(&dir.path().join("does/not/exist"), false).unwrap();
    for name in report::OUTPUT_FILES {
        let d = dir.path().join(format!("case-{name}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), b"old").unwrap();
        let e = report::check_outputs_free(&d, false).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains(name) && msg.contains("--force") && msg.contains("-o"), "{msg}");
        assert!(fuseval::error::is_user_error(&e));
        report::check_outputs_free(&d, true).unwrap();
    }
}

#[test]
fn atomic_write_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("calibration.json");
    report::atomic_write(&f, b"first").unwrap();
    report::atomic_write(&f, b"second, longer").unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), b"second, longer");
    // a failing write (the target is a directory) removes its temp file too
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("keep"), b"x").unwrap();
    assert!(report::atomic_write(&sub, b"data").is_err());
    let mut left: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["calibration.json", "sub"]);
    assert!(report::atomic_write(&dir.path().join("missing/x"), b"x").is_err());
}

// ---------- summary and warnings ----------

#[test]
fn summary_reports_results_skips_totals_and_the_whole_model() {
    let p = conv_bn_relu();
    let cal = calibration(&p, Shape::default());
    let s = summary::summary_text(&cal);
    let expect = [
        "Fusion Pattern Calibration: Test CPU @ 3.0GHz · ONNX Runtime 1.31.1 · cpu · 2 threads",
        "Conv2d + BatchNorm + ReLU (1x8x16x16 → 1x16x16x16, 3x3, ×1 instance):",
        "  Unfused: 1.00 ms (",
        "  Fused:   0.40 ms (",
        "ORT: com.microsoft.FusedConv   [extended]",
        "  Speedup: 2.50× [2.45, 2.55]  faster     full level: 2.20× [2.15, 2.25] (ReorderInput, com.microsoft.nchwc.Conv, ReorderOutput)",
        "A/A control 1.00 [0.99, 1.01]   outputs agree (max abs err 4e-6)",
        "Conv2d + BatchNorm (1x8x16x16 → 1x16x16x16, 3x3, ×1 instance):\n  Skipped: carving failed: no reason at all",
        "Instances: 1 measured (1 distinct), 1 skipped (1 distinct)",
        "Verdicts (extended level, ±2% noise band widened by each A/A offset; 1 of 1 distinct counted): 1 faster, 0 within noise, 0 slower",
        "A/A control: 1.00 to 1.00 over 1 measured result (all passed)",
        "Whole model: disabled 10.0 ms, extended 4.00 ms, full 4.55 ms → measured saving 6.00 ms; sum of pattern savings 0.60 ms (explains 10%)",
        "Headline level: extended",
        "NCHWc",
    ];
    for e in expect {
        assert!(s.contains(e), "missing {e:?} in\n{s}");
    }
    assert!(!s.contains("untrustworthy"), "{s}");
    let w = warnings::warnings(&cal);
    assert_eq!(w.last().map(String::as_str), Some("a warning from loading"));
    assert!(
        w.iter().any(|w| w.contains("1 instance (1 distinct) could not be measured") && w.contains(SKIP_REASON)),
        "{w:#?}"
    );
    assert!(!w.iter().any(|w| w.contains("A/A") || w.contains("budget") || w.contains("--quick")), "{w:#?}");
}

#[test]
fn untrustworthy_results_are_flagged_in_words() {
    let p = conv_bn_relu();

    let noisy = calibration(&p, Shape { aa: est(0.93, 0.03), ..Default::default() });
    let s = summary::summary_text(&noisy);
    assert!(s.contains("! untrustworthy: A/A control 0.93 [0.90, 0.96] is off 1.00"), "{s}");
    assert!(s.contains("; 1 distinct untrustworthy"), "{s}");
    let w = warnings::warnings(&noisy);
    assert!(
        w.iter().any(|w| w.starts_with("the A/A control of Conv2d_BN_ReLU at `/conv/Conv` is 0.93 [0.90, 0.96]: another process may be using the CPU; close it and rerun")),
        "{w:#?}"
    );

    let wrong = calibration(&p, Shape { agree: false, ..Default::default() });
    let s = summary::summary_text(&wrong);
    assert!(s.contains("  Speedup: not reported (outputs disagree)"), "{s}");
    assert!(s.contains("OUTPUTS DISAGREE (max abs err 2e-1)"), "{s}");
    assert!(!s.contains("2.50× [2.45, 2.55]"), "{s}");
    assert!(
        s.contains(
            "Verdicts (extended level, ±2% noise band widened by each A/A offset; 0 of 1 distinct counted): 0 faster"
        ),
        "{s}"
    );
    let w = warnings::warnings(&wrong);
    assert!(
        w.iter().any(|w| w == "outputs of Conv2d_BN_ReLU at `/conv/Conv` disagree (extended level max abs err 2e-1): this speedup is not reported"),
        "{w:#?}"
    );

    let cut = calibration(&p, Shape { budget_exhausted: true, ..Default::default() });
    let s = summary::summary_text(&cut);
    assert!(s.contains("! the time budget ran out before the CI reached ±2% (30 rounds of 8 iterations)"), "{s}");
    let w = warnings::warnings(&cut);
    assert!(w.iter().any(|w| w.starts_with("1 result hit the time budget before its CI reached ±2%")), "{w:#?}");

    let mut quick = calibration(&p, Shape { budget_exhausted: true, ..Default::default() });
    quick.metadata = metadata(&p, true);
    let w = warnings::warnings(&quick);
    assert!(w.iter().any(|w| w.starts_with("--quick: CIs are wider (target ±5%")), "{w:#?}");
    assert!(w.iter().any(|w| w.contains("±5%: rerun without --quick")), "{w:#?}");
}

#[test]
fn reports_survive_odd_input() {
    let p = conv_bn_relu();
    let mut cal = calibration(&p, Shape { speedup: f64::NAN, aa: est(f64::INFINITY, f64::NAN), ..Default::default() });
    // a record that names nodes the graph does not have, and one with no instances at all
    let mut stray = cal.fusion_profiles[0].clone();
    stray.instances = vec![vec!["nope".into(), "\"also\\nope\"".into()]];
    stray.fusion_pattern = "Not_A_Pattern".into();
    stray.extended = None;
    stray.all = None;
    cal.fusion_profiles.push(stray);
    let mut empty = cal.fusion_profiles[0].clone();
    empty.instances.clear();
    empty.status = Status::Skipped;
    empty.skip_reason = None;
    cal.fusion_profiles.push(empty);
    cal.whole_model.as_mut().unwrap().explained_fraction = None;
    cal.metadata.execution_provider = "weird:ep".into();

    let s = summary::summary_text(&cal);
    assert!(s.contains("n/a"), "{s}");
    assert!(s.contains("Not_A_Pattern"));
    assert!(s.contains("no whole-model saving to explain"));
    let _ = warnings::warnings(&cal);
    let d = dot::graph_dot(&cal, &p.graph, &p.detection);
    assert!(d.trim_end().ends_with('}'));
    let dir = tempfile::tempdir().unwrap();
    report::write_outputs(dir.path(), &cal, &p.loaded, &p.graph, &p.detection).unwrap();

    // a file with nothing measured at all
    cal.fusion_profiles.clear();
    cal.whole_model = None;
    let s = summary::summary_text(&cal);
    assert!(s.contains("No fusible pattern instances were found"));
    assert!(s.contains("Whole model: not timed"));
    assert!(warnings::measurement_warnings(&cal).is_empty());
    report::write_outputs(&dir.path().join("empty"), &cal, &p.loaded, &p.graph, &p.detection).unwrap();
}

// ---------- inspect ----------

#[test]
fn inspect_counts_longest_and_all_matches() {
    let p = prepared(&fixture("tiny_bert_legacy.onnx"));
    let r = inspect::inspect_report(&p.loaded, &p.graph, &p.detection);
    // per layer: one attention block (its Q/K/V and output linears inside), one FFN GELU, two
    // Add+LayerNorm; plus the embeddings' Add+LayerNorm, each layer's second FFN linear and the pooler
    let want: BTreeMap<String, usize> =
        [("Add_LayerNorm", 5), ("Linear_Bias", 3), ("Linear_Bias_GELU", 2), ("MultiHead_Linear", 2)]
            .map(|(k, v)| (k.to_string(), v))
            .into();
    assert_eq!(r.patterns_longest, want);
    // the GELU layers and the attention blocks hold Linear+Bias sub-matches, the blocks an attention head
    assert_eq!(r.patterns_all["Linear_Bias"], 13);
    assert_eq!(r.patterns_all["Attention_Head"], 2);
    assert_eq!(r.instances.len(), r.patterns_all.values().sum::<usize>());
    assert_eq!(r.instances.iter().filter(|i| i.longest).count(), 12);
    assert!(r.instances.iter().all(|i| i.measurable));
    assert_eq!(r.num_nodes, 335);
    assert_eq!(r.opset, 14);
    assert_eq!(r.inputs.len(), 3);
    assert_eq!(r.inputs[0].dims, vec![1, 128]);
    assert_eq!(r.op_histogram[0], ("Constant".to_string(), 107));
    let gelu = r.instances.iter().find(|i| i.pattern == "Linear_Bias_GELU").unwrap();
    assert_eq!(gelu.nodes.len(), 7);
    assert_eq!(gelu.output_shapes[0].shape, Some(vec![1, 128, 128]));

    let t = inspect::inspect_text(&r);
    for e in [
        "Model: ",
        "input_ids  i64  1x128",
        "Constant 107",
        "Linear + Bias (Linear_Bias): 3 longest-match / 13 all matches, 2 distinct",
        "Linear + Bias + GELU (Linear_Bias_GELU): 2 longest-match / 2 all matches, 1 distinct",
        "Add + LayerNorm (Add_LayerNorm): 5 longest-match / 5 all matches, 2 distinct",
        "×2 1x128x128 → 1x128x64  (W 128x64, MatMul+Add)",
        "+ 10 inside longer matches (2 distinct; measured only with --all-patterns)",
        "MultiHead(Q,K,V) + Linear (MultiHead_Linear): 2 longest-match / 2 all matches",
        "/m/encoder/layer.0/intermediate/dense/MatMul, ... (+5), /m/encoder/layer.0/intermediate/intermediate_act_fn/Mul_1",
        "... and 1 more",
        "Total: 12 longest-match instances (7 distinct, what `fuseval bench` measures) / 28 all matches",
        "warning: input `input_ids` axis 0",
    ] {
        assert!(t.contains(e), "missing {e:?} in\n{t}");
    }
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["patterns_longest"]["Linear_Bias"], 3);
    assert_eq!(json["instances"][0]["input_shapes"][0]["shape"], serde_json::json!([1, 128, 64]));
}

#[test]
fn inspect_resnet_counts() {
    let p = prepared(&fixture("light_resnet50.onnx"));
    let r = inspect::inspect_report(&p.loaded, &p.graph, &p.detection);
    let longest = |k: Pattern| r.patterns_longest.get(k.key()).copied().unwrap_or(0);
    assert_eq!(longest(Pattern::ConvBnReluMaxPool), 1);
    assert_eq!(longest(Pattern::ConvBnRelu), 32);
    // the residual blocks are Conv2d_Add_ReLU in the cover (issue 10); before it, 16 more Conv2d_BN (20)
    // and 16 Add_ReLU
    assert_eq!(longest(Pattern::ConvBn), 4);
    assert_eq!(longest(Pattern::ConvAddRelu), 16);
    assert_eq!(longest(Pattern::AddRelu), 0);
    assert_eq!(longest(Pattern::LinearBias), 1);
    // every Conv+BN+ReLU(+MaxPool) also holds a Conv+BN
    assert_eq!(r.patterns_all["Conv2d_BN"], 20 + 32 + 1);
    let t = inspect::inspect_text(&r);
    assert!(t.contains("Conv2d + BatchNorm (Conv2d_BN): 4 longest-match / 53 all matches"), "{t}");
    assert!(t.contains("(7x7, stride 2x2, Conv+BatchNormalization+Relu+MaxPool)"), "{t}");
}

/// `write_outputs` on a real-size model (`models/bert-base.onnx`, 440 MB, when present):
/// `cargo test --release --test report -- --ignored`.
#[test]
#[ignore = "needs models/bert-base.onnx: python3 models/make_models.py (PyTorch)"]
fn write_outputs_on_bert_base() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/bert-base.onnx");
    assert!(path.exists(), "{} is missing: make it with python3 models/make_models.py", path.display());
    let t = std::time::Instant::now();
    let p = prepared(&path);
    let loaded_s = t.elapsed().as_secs_f64();
    let cal = calibration(&p, Shape::default());
    let dir = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    report::write_outputs(dir.path(), &cal, &p.loaded, &p.graph, &p.detection).unwrap();
    eprintln!("load {loaded_s:.1} s, write_outputs {:.1} s", t.elapsed().as_secs_f64());
    let size = |f: &str| std::fs::metadata(dir.path().join(f)).unwrap().len();
    assert!(size("annotated.onnx") >= std::fs::metadata(&path).unwrap().len());
    // the report stays small: the graph is collapsed around the instances
    let page = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(page.len() <= report::html::MAX_BYTES, "report.html is {} bytes", page.len());
    assert!(page.contains("collapsed to the") || !page.contains("<svg id=\"graph-svg\""));
    let _ = summary::summary_text(&cal);
}

// ---------- the explicit-fused variant and the best variant ----------

#[test]
fn explicit_variant_in_summary_dot_onnx_and_json() {
    let p = conv_bn_relu();
    let cal = calibration(&p, Shape::default());
    let rec = cal.fusion_profiles.iter().find(|f| f.status == Status::Measured).unwrap();
    assert_eq!(rec.best_variant, "explicit", "2.7× beats 2.5× and 2.2×");
    assert_eq!(rec.explicit_kernels, ["com.microsoft.FusedConv"]);
    assert_eq!(rec.explicit_note.as_deref(), Some(EXPLICIT_NOTE));
    assert!(rec.explicit_unavailable.is_none());
    let x = rec.explicit.as_ref().unwrap();
    assert_eq!(x.ort_ops, ["com.microsoft.FusedConv"]);
    assert!(x.fused_by_ort && x.equivalence.passed);
    // the headline stays the runtime extended level
    assert_eq!(rec.speedup_factor, 2.5);

    let s = summary::summary_text(&cal);
    for e in [
        "  Explicit: 0.37 ms  com.microsoft.FusedConv  2.70× [2.65, 2.75]  outputs agree  (BN folded into the Conv weights)",
        "best: explicit",
        "Explicit-fused: 1 of 1 distinct measured (1 with outputs that agree); best variant: explicit 1, runtime_extended 0, runtime_all 0, unfused 0",
    ] {
        assert!(s.contains(e), "missing {e:?} in\n{s}");
    }
    // the explicit line is the third line of the entry
    let entry: Vec<&str> = s.lines().skip_while(|l| !l.starts_with("Conv2d + BatchNorm + ReLU")).take(4).collect();
    assert!(
        entry[1].starts_with("  Unfused:") && entry[2].starts_with("  Fused:") && entry[3].starts_with("  Explicit:"),
        "{entry:#?}"
    );

    let dot = dot::graph_dot(&cal, &p.graph, &p.detection);
    assert!(dot.contains("explicit FusedConv 2.70× [2.65, 2.75]; best explicit"), "{dot}");

    let doc = report::onnx::doc_line(rec);
    assert!(
        doc.contains("; explicit com.microsoft.FusedConv 2.70× [2.65, 2.75], 0.37 ms; best explicit; A/A 1.00"),
        "{doc}"
    );

    // graph.json groups embed the record, so they carry all three variants and the best
    let g = serde_json::to_value(report::graph_json::graph_json(&cal, &p.graph, &p.detection)).unwrap();
    let group = g["groups"].as_array().unwrap().iter().find(|x| x["pattern"] == "Conv2d_BN_ReLU").unwrap();
    let m = &group["measurement"];
    assert_eq!(m["best_variant"], "explicit");
    for k in ["extended", "all", "explicit"] {
        assert!(m[k]["latency"]["median_ms"].as_f64().unwrap() > 0.0, "{k}: {m}");
    }
    assert_eq!(m["explicit"]["ort_ops"], serde_json::json!(["com.microsoft.FusedConv"]));
}

#[test]
fn no_kernel_says_so_and_best_is_runtime() {
    let p = conv_bn_relu();
    let cal = calibration(&p, Shape { explicit: None, ..Default::default() });
    let rec = cal.fusion_profiles.iter().find(|f| f.status == Status::Measured).unwrap();
    assert!(rec.explicit.is_none());
    assert_eq!(rec.explicit_unavailable.as_deref(), Some(NO_KERNEL));
    assert_eq!(rec.best_variant, "runtime_extended", "0.40 ms beats the full level's 0.45 ms");
    let s = summary::summary_text(&cal);
    assert!(s.contains(&format!("  Explicit: none — {NO_KERNEL}")), "{s}");
    assert!(s.contains("best: runtime_extended"), "{s}");
    assert!(dot::graph_dot(&cal, &p.graph, &p.detection).contains("explicit: none; best runtime_extended"));
    assert!(report::onnx::doc_line(rec).contains(&format!("explicit: none ({NO_KERNEL}); best runtime_extended")));
    // no kernel is not a problem to warn about
    assert!(!warnings::warnings(&cal).iter().any(|w| w.contains("explicit")), "{:#?}", warnings::warnings(&cal));
}

#[test]
fn explicit_that_disagrees_is_reported_not_a_speedup() {
    let p = conv_bn_relu();
    let cal = calibration(&p, Shape { explicit: Some((5.0, false)), ..Default::default() });
    let rec = cal.fusion_profiles.iter().find(|f| f.status == Status::Measured).unwrap();
    assert!(!rec.explicit_agrees());
    assert_eq!(rec.best_variant, "runtime_extended", "a wrong kernel is never best, however fast");
    // the runtime levels still agree: the record itself stays trustworthy
    assert!(rec.equivalent && rec.trustworthy);
    let s = summary::summary_text(&cal);
    assert!(
        s.contains(
            "  Explicit: 0.20 ms  com.microsoft.FusedConv  speedup not reported: OUTPUTS DISAGREE (max abs err 5e-1)"
        ),
        "{s}"
    );
    assert!(!s.contains("5.00×"), "{s}");
    let w = warnings::warnings(&cal);
    assert!(
        w.iter().any(|w| w.starts_with(
            "the explicit-fused model of Conv2d_BN_ReLU at `/conv/Conv` computes something else (max abs err 5e-1)"
        )),
        "{w:#?}"
    );
    assert!(dot::graph_dot(&cal, &p.graph, &p.detection)
        .contains("explicit FusedConv outputs disagree; best runtime_extended"));
    assert!(report::onnx::doc_line(rec).contains("explicit com.microsoft.FusedConv outputs disagree"));
}

#[test]
fn explicit_session_failure_is_recorded_and_warned() {
    let p = conv_bn_relu();
    let cal = calibration(&p, Shape { explicit_error: true, ..Default::default() });
    let rec = cal.fusion_profiles.iter().find(|f| f.status == Status::Measured).unwrap();
    assert!(rec.explicit.is_none());
    let why = rec.explicit_unavailable.as_deref().unwrap();
    assert!(why.starts_with("failed: ") && why.contains("NoSuchOp"), "{why}");
    // the kernels the rewrite used are still recorded
    assert_eq!(rec.explicit_kernels, ["com.microsoft.FusedConv"]);
    assert_eq!(rec.best_variant, "runtime_extended");
    let s = summary::summary_text(&cal);
    assert!(s.contains("  Explicit: failed: creating explicit fused session"), "{s}");
    let w = warnings::warnings(&cal);
    assert!(
        w.iter().any(|w| w.starts_with("1 explicit-fused variant could not be measured; the first, Conv2d_BN_ReLU at `/conv/Conv`: creating explicit")),
        "{w:#?}"
    );
}

#[test]
fn best_is_unfused_when_nothing_is_faster_beyond_noise() {
    let p = conv_bn_relu();
    let cal = calibration(&p, Shape { speedup: 1.01, all: 0.9, explicit: Some((1.0, true)), ..Default::default() });
    let rec = cal.fusion_profiles.iter().find(|f| f.status == Status::Measured).unwrap();
    assert_eq!(rec.best_variant, "unfused");
    // a skipped record has nothing faster either
    let skipped = cal.fusion_profiles.iter().find(|f| f.status == Status::Skipped).unwrap();
    assert_eq!(skipped.best_variant, "unfused");
    assert!(skipped.explicit.is_none());
}

#[test]
fn calibration_json_without_explicit_fields_still_parses() {
    let p = conv_bn_relu();
    let cal = calibration(&p, Shape::default());
    let mut v = serde_json::to_value(&cal).unwrap();
    for rec in v["fusion_profiles"].as_array_mut().unwrap() {
        let o = rec.as_object_mut().unwrap();
        for k in ["explicit", "explicit_kernels", "explicit_note", "explicit_unavailable", "best_variant"] {
            assert!(o.remove(k).is_some(), "{k} is written");
        }
    }
    let back: CalibrationFile = serde_json::from_value(v).unwrap();
    assert!(back.fusion_profiles.iter().all(|r| r.explicit.is_none() && r.best_variant == "unfused"));
}

/// `fuseval agreement`: instances matched by signature, a difference inside the combined CI counts as
/// agreeing, one outside does not, and a record that does not count in one run is not compared.
#[test]
fn agreement_compares_matched_instances_within_their_combined_ci() {
    use fuseval::report::agreement::{agreement, agreement_text};
    let p = prepared(&fixture("mini_resnet50_legacy.onnx"));
    let mut a = calibration(&p, Shape::default());
    // one record per distinct instance, as bench writes them
    let mut seen = std::collections::HashSet::new();
    a.fusion_profiles.retain(|r| seen.insert(r.signature.clone()));
    let mut b = a.clone();
    let counted: Vec<usize> = (0..b.fusion_profiles.len()).filter(|&i| b.fusion_profiles[i].counts()).collect();
    assert!(counted.len() >= 3, "the fixture should give three measured records, got {}", counted.len());
    let distinct = |c: &CalibrationFile| {
        let mut s: Vec<&str> = c.fusion_profiles.iter().filter(|r| r.counts()).map(|r| r.signature.as_str()).collect();
        s.sort();
        s.dedup();
        s.len()
    };
    // run B: the first record reads 2% higher (inside √(h1² + h2²) with ±5% each), the second 20% higher
    // with a tight CI (outside), the third failed its control
    let set = |r: &mut FusionCalibration, s: Estimate| r.extended.as_mut().expect("extended").speedup = s;
    let a0 = a.fusion_profiles[counted[0]].extended.as_ref().unwrap().speedup;
    let a1 = a.fusion_profiles[counted[1]].extended.as_ref().unwrap().speedup;
    set(&mut b.fusion_profiles[counted[0]], est(a0.point * 1.02, 0.05));
    set(
        &mut b.fusion_profiles[counted[1]],
        Estimate { point: a1.point * 1.2, lo: a1.point * 1.19, hi: a1.point * 1.21 },
    );
    b.fusion_profiles[counted[2]].trustworthy = false;
    b.fusion_profiles[counted[2]].aa_ok = Some(false);
    // the whole model: Disable 5% slower in run B with a tight CI, the rest the same
    let d = &mut b.whole_model.as_mut().expect("a whole model").measurement.disabled;
    let x = d.ci_ms.point;
    d.ci_ms = Estimate { point: x * 1.05, lo: x * 1.049, hi: x * 1.051 };
    let sig = |i: usize| a.fusion_profiles[counted[i]].signature.clone();

    let g = agreement(&a, &b);
    assert_eq!(g.matched, distinct(&a) - 1, "the record left out of run B is not matched");
    assert_eq!(g.only_in_a, 1);
    assert_eq!(g.only_in_b, 0);
    let pair = |s: &str| g.pairs.iter().find(|x| x.signature == s && x.variant == "extended").expect("a pair");
    assert!(pair(&sig(0)).within_combined_ci);
    assert!((pair(&sig(0)).rel_diff - 0.02).abs() < 1e-9);
    assert!(!pair(&sig(1)).within_combined_ci);
    assert!(g.pairs.iter().all(|x| x.signature != sig(2)));
    let ext = g.variants.iter().find(|v| v.variant == "extended").expect("extended");
    assert_eq!(ext.instances, g.matched);
    assert_eq!(ext.within_combined_ci, g.matched - 1);
    assert!((ext.max_abs_rel_diff - 0.2).abs() < 1e-9);
    assert_eq!(ext.within_3pct, g.matched - 1);
    let whole: Vec<(&str, bool)> = g.whole_model.iter().map(|x| (x.variant.as_str(), x.within_combined_ci)).collect();
    assert_eq!(
        whole,
        [
            ("Disable ms", false),
            ("extended ms", true),
            ("full ms", true),
            ("speedup extended", true),
            ("speedup full", true)
        ]
    );
    assert!((g.whole_model[0].rel_diff - 0.05).abs() < 1e-9);
    let text = agreement_text(&g, "A", "B");
    assert!(text.contains("outside the combined CI"), "{text}");
    assert!(text.contains("4 of 5 figures within their combined CI; |difference| max 5.0% (NOT within 3%)"), "{text}");
    // over three runs: each figure's range and largest pairwise difference (B's Disable 5% above A's)
    let c = a.clone();
    let spread = fuseval::report::agreement::whole_model_spread(&[&a, &b, &c]);
    assert_eq!(spread.len(), 5);
    assert!((spread[0].max_pairwise_rel_diff - 0.05).abs() < 1e-9 && spread[0].points.len() == 3);
    assert!(spread[1..].iter().all(|x| x.max_pairwise_rel_diff.abs() < 1e-12));
    let t = fuseval::report::agreement::spread_text(&spread);
    assert!(
        t.contains("Whole model over 3 runs: largest difference between two runs 5.0% (NOT every figure within 3%)"),
        "{t}"
    );
    // a run without the whole model: nothing to compare
    b.whole_model = None;
    assert!(agreement(&a, &b).whole_model.is_empty());
    assert!(fuseval::report::agreement::whole_model_spread(&[&a, &b]).is_empty());
}

/// With an attribution, every output marks the nodes a transformer consumes with its in-context saving,
/// and bench writes ort-config.json with the lines to paste.
#[test]
fn outputs_mark_the_nodes_each_transformer_consumes() {
    use fuseval::calibration::attribution::{Attribution, Baseline, RecommendedConfig, Timed, TransformerAttribution};
    use fuseval::measure::optimizers::Kind;
    use fuseval::measure::{Level, SessionConfig};
    let p = conv_bn_relu();
    let mut cal = calibration(&p, Shape::default());
    let t = |name: &str, kind: Kind, consumed: &[&str], saving: f64| TransformerAttribution {
        name: name.into(),
        kind,
        fires: true,
        nodes_consumed: consumed.len(),
        consumed: consumed.iter().map(|s| s.to_string()).collect(),
        ops_changed: Default::default(),
        saving_ms: Some(Estimate { point: saving, lo: saving - 0.01, hi: saving + 0.01 }),
        saving_fraction: None,
        carved_saving_ms: None,
        context_factor: None,
        instances: vec![],
        verdict: "helps".into(),
    };
    let default = Timed {
        config: SessionConfig::level(Level::All),
        latency: latency(1.0),
        ratio_to_default: Estimate::exact(1.0),
        outputs_agree: true,
        aa_ok: true,
    };
    let a = Attribution {
        level: Level::All,
        baseline: Baseline { disable: None, fusion_off: None, extended: None, default },
        fusion_transformers: vec!["ConvBNFusion".into(), "ConvActivationFusion".into()],
        fusion_saving_ms: Some(est(0.3, 0.05)),
        non_fusion_saving_ms: None,
        explained_fraction: None,
        interaction_ms: None,
        carved_saving_ms: None,
        carved_explained_fraction: None,
        transformers: vec![
            t("ConvBNFusion", Kind::Fusion, &["/bn/BatchNormalization"], 0.2),
            t("ConvActivationFusion", Kind::Fusion, &["/Relu"], 0.1),
        ],
        no_effect: vec![],
        failed: vec![],
        wall_s: 1.0,
        discovery_s: 0.5,
        notes: vec![],
    };
    cal.whole_model.as_mut().unwrap().attribution = Some(a);
    cal.recommended_config = Some(RecommendedConfig {
        level: Level::All,
        disabled_optimizers: vec!["ConvActivationFusion".into(), "NchwcTransformer".into()],
        speedup_vs_default: est(1.1, 0.02),
        speedup_vs_extended: None,
        outputs_agree: true,
        verdict: "all without ConvActivationFusion, NchwcTransformer is 1.100x".into(),
        threads: 2,
        execution_provider: "cpu".into(),
        ort_version: "1.31.1".into(),
        hardware: CPU.into(),
    });
    let dir = tempfile::tempdir().unwrap();
    report::write_outputs(dir.path(), &cal, &p.loaded, &p.graph, &p.detection).unwrap();

    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("graph.json")).unwrap()).unwrap();
    let node = |name: &str| v["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap().clone();
    assert_eq!(node("/bn/BatchNormalization")["consumed_by"][0]["transformer"], "ConvBNFusion");
    assert_eq!(node("/Relu")["consumed_by"][0]["transformer"], "ConvActivationFusion");
    assert!(node("/conv/Conv")["consumed_by"].as_array().unwrap().is_empty());
    let dot = std::fs::read_to_string(dir.path().join("graph.dot")).unwrap();
    assert!(dot.contains("⇢ ConvBNFusion +0.200 ms"), "{dot}");
    let m = decode(&dir.path().join("annotated.onnx"));
    let relu = m.graph.as_ref().unwrap().node.iter().find(|n| n.name == "/Relu").unwrap();
    assert!(relu.doc_string.contains("consumed by ConvActivationFusion (fusion)"), "{}", relu.doc_string);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ort-config.json")).unwrap()).unwrap();
    assert_eq!(cfg["disabled_optimizers"], serde_json::json!(["ConvActivationFusion", "NchwcTransformer"]));
    let snippets = cfg["snippets"].to_string();
    assert!(snippets.contains("ConvActivationFusion;NchwcTransformer"), "{snippets}");
    let text = summary::summary_text(&cal);
    assert!(text.contains("ConvBNFusion") && text.contains("Recommended configuration"), "{text}");
}
