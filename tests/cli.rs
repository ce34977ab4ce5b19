//! The command line end to end: `inspect` and `bench --quick` on bundled real models, the four outputs
//! parsed back, and bad input answered with exit code 2, a message naming the culprit, and no output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fuseval::calibration::{CalibrationFile, Status};

fn fuseval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fuseval")).args(args).output().expect("run fuseval")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fuseval-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn inspect_json_counts_light_resnet50() {
    let o = fuseval(&["inspect", "fixtures/light_resnet50.onnx", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let longest = &v["patterns_longest"];
    assert_eq!(longest["Conv2d_BN_ReLU_MaxPool"], 1);
    assert_eq!(longest["Conv2d_BN_ReLU"], 32);
    // the 16 residual blocks: Conv+BN+Sum+Relu, one FusedConv with Z in ORT (issue 10's worked example);
    // before Conv2d_Add_ReLU they counted as 16 more Conv2d_BN (20) and 16 Add_ReLU
    assert_eq!(longest["Conv2d_Add_ReLU"], 16);
    assert_eq!(longest["Conv2d_BN"], 4);
    assert!(longest.get("Add_ReLU").is_none(), "{longest}");
    assert_eq!(v["patterns_all"]["Add_ReLU"], 16);
    assert_eq!(longest["Linear_Bias"], 1);
    assert_eq!(v["patterns_all"]["Conv2d_BN"], 53);
    assert_eq!(v["patterns_all"]["Conv2d_BN_ReLU"], 33);
}

#[test]
fn inspect_text_lists_patterns_and_ops() {
    let o = fuseval(&["inspect", "fixtures/tiny_bert_legacy.onnx", "--input", "input_ids=1x32"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("Linear_Bias_GELU"), "{s}");
    assert!(s.contains("Add_LayerNorm"), "{s}");
    assert!(s.contains("MatMul"), "{s}");
    assert!(s.contains("1x32"), "{s}");
}

#[test]
fn bench_quick_writes_four_outputs() {
    let out = tmp("bench");
    let o = fuseval(&[
        "bench",
        "fixtures/tiny_bert_dynamo.onnx",
        "--input",
        "input_ids=1x32",
        "--quick",
        "--threads",
        "1",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(summary.contains("Fusion Pattern Calibration"), "{summary}");
    assert!(summary.contains("Whole model"), "{summary}");

    // calibration.json: the design's fields, with CIs and metadata
    let cal: CalibrationFile = serde_json::from_slice(&std::fs::read(out.join("calibration.json")).unwrap()).unwrap();
    assert_eq!(cal.metadata.ort_version, "1.31.1");
    assert_eq!(cal.metadata.execution_provider, "cpu");
    // traceable: the commit the binary was built from, the command line, the library that ran it
    let commit = cal.metadata.provenance.fuseval_commit.as_deref().expect("the commit is recorded");
    assert!(commit.len() >= 40 && commit[..40].chars().all(|c| c.is_ascii_hexdigit()), "{commit}");
    assert!(
        cal.metadata.provenance.command_line.iter().any(|a| a == "--quick"),
        "{:?}",
        cal.metadata.provenance.command_line
    );
    assert!(
        cal.metadata.provenance.ort_library.as_deref().is_some_and(|l| l.contains("libonnxruntime")),
        "{:?}",
        cal.metadata.provenance.ort_library
    );
    assert_eq!(cal.metadata.replicates, 2);
    let aa = cal.aa_check.as_ref().expect("the A/A check");
    assert!(aa.points >= 2 * cal.fusion_profiles.len(), "{aa:?}");
    assert_eq!(cal.metadata.threads, 1);
    assert!(cal.metadata.quick);
    assert_eq!(cal.metadata.model_inputs["input_ids"], [1, 32]);
    // per layer (2 layers): one attention block with its output linear, one FFN GELU, two Add+LayerNorm;
    // plus the FFN's second linear per layer and the pooler
    assert_eq!(cal.patterns_found_longest["MultiHead_Linear"], 2);
    assert_eq!(cal.patterns_found_longest["Linear_Bias"], 3);
    assert_eq!(cal.patterns_found_longest["Linear_Bias_GELU"], 2);
    assert_eq!(cal.patterns_found_longest["Add_LayerNorm"], 5);
    let longest: usize = cal.patterns_found_longest.values().sum();
    assert_eq!(longest, 12);
    // every longest-match instance is covered by exactly one distinct result
    let covered: usize = cal.fusion_profiles.iter().map(|p| p.instances.len()).sum();
    assert_eq!(covered, longest);
    assert!(cal.fusion_profiles.len() < longest, "identical instances are measured once");
    for p in &cal.fusion_profiles {
        assert_eq!(p.status, Status::Measured, "{}: {:?}", p.fusion_pattern, p.skip_reason);
        assert!(p.unfused_latency_ms > 0.0 && p.fused_latency_ms > 0.0);
        // a real interval: positive, finite and of some width (a degenerate CI would claim certainty)
        assert!(p.speedup_ci_low > 0.0 && p.speedup_ci_high.is_finite(), "{p:?}");
        assert!(p.speedup_ci_high - p.speedup_ci_low >= 0.005 * p.speedup_factor, "{p:?}");
        assert!(p.equivalent, "{}: outputs disagree", p.fusion_pattern);
        assert!(p.aa_control.is_some());
        assert!(!p.ort_fused_into.is_empty());
        assert!(p.unfused_memory_bytes >= p.fused_memory_bytes);
        // two replicates, each at least the quick minimum of 7 rounds, each with its own build order
        assert_eq!(p.replicates.len(), 2, "{}", p.fusion_pattern);
        assert!(p.rounds >= 2 * 7, "{}: {} rounds", p.fusion_pattern, p.rounds);
        assert!(p.replicates.iter().all(|r| r.build_order.len() >= 4 && r.attempts >= 1));
        assert_ne!(p.replicates[0].seed, p.replicates[1].seed);
    }
    let wm = cal.whole_model.as_ref().expect("whole model timed");
    assert!(wm.measurement.disabled.median_ms > 0.0);

    // graph.json: nodes, edges and groups linked to their measurements
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("graph.json")).unwrap()).unwrap();
    assert!(g["nodes"].as_array().unwrap().len() > 100);
    assert!(!g["edges"].as_array().unwrap().is_empty());
    let groups = g["groups"].as_array().unwrap();
    assert!(groups.iter().filter(|x| !x["measurement"].is_null()).count() >= longest);

    // graph.dot: one cluster per measured instance
    let dot = std::fs::read_to_string(out.join("graph.dot")).unwrap();
    assert!(dot.starts_with("digraph"));
    assert!(dot.matches("subgraph cluster_").count() >= longest);

    // annotated.onnx: loads back in ONNX Runtime, with results on the nodes
    let annotated = out.join("annotated.onnx");
    assert_loads_in_ort(&annotated);
    let bytes = std::fs::read(&annotated).unwrap();
    let m: fuseval_pb::ModelProto = prost::Message::decode(bytes.as_slice()).unwrap();
    let g = m.graph.unwrap();
    assert!(g.node.iter().filter(|n| n.doc_string.contains("fuseval")).count() >= longest * 2);
    assert!(m.metadata_props.iter().any(|p| p.key == "fuseval.summary"));

    // a second run into the same directory is refused without --force
    let again = fuseval(&["bench", "fixtures/tiny_bert_dynamo.onnx", "--quick", "-o", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("--force"));
    let _ = std::fs::remove_dir_all(&out);
}

use tract_onnx::pb as fuseval_pb;

fn assert_loads_in_ort(path: &Path) {
    let env = fuseval::runtime::environment().unwrap();
    let inputs = load_in_ort(env, path).unwrap_or_else(|e| panic!("{} must load in ONNX Runtime: {e}", path.display()));
    assert_eq!(inputs, 3);
}

fn load_in_ort(env: &ort::environment::Environment, path: &Path) -> ort::Result<usize> {
    use ort::session::{builder::GraphOptimizationLevel, Session};
    let s = Session::builder(env)?.with_optimization_level(GraphOptimizationLevel::Disable)?.commit_from_file(path)?;
    Ok(s.inputs().len())
}

fn assert_user_error(args: &[&str], names: &[&str]) {
    let o = fuseval(args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
    for n in names {
        assert!(t.contains(n), "{args:?}: message must name `{n}`: {t}");
    }
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = tmp("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.onnx");
    assert_user_error(&["inspect", missing.to_str().unwrap()], &["missing.onnx"]);
    let empty = dir.join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    assert_user_error(&["inspect", empty.to_str().unwrap()], &["empty.onnx", "empty"]);
    let truncated = dir.join("truncated.onnx");
    let full = std::fs::read("fixtures/patterns/mlp.onnx").unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    assert_user_error(&["inspect", truncated.to_str().unwrap()], &["truncated.onnx", "not a valid ONNX model"]);
    assert_user_error(&["inspect", "README.md"], &["README.md"]);
    assert_user_error(
        &["inspect", "fixtures/tiny_bert_legacy.onnx", "--input", "input_ids=1xq"],
        &["input_ids=1xq", "NAME=DIMS"],
    );
    assert_user_error(&["inspect", "fixtures/tiny_bert_legacy.onnx", "--input", "ids=1x8"], &["ids", "input_ids"]);
    assert_user_error(
        &["inspect", "fixtures/tiny_bert_legacy.onnx", "--input", "input_ids=1x8x3"],
        &["input_ids", "rank"],
    );
    let out = dir.join("out");
    assert_user_error(&["bench", missing.to_str().unwrap(), "-o", out.to_str().unwrap()], &["missing.onnx"]);
    assert!(!out.join("calibration.json").exists(), "no output on bad input");
    // the CPU computes fp32 only: another precision is refused before anything is written
    for p in ["fp16", "tf32"] {
        let args = ["bench", "fixtures/patterns/mlp.onnx", "--precision", p, "-o", out.to_str().unwrap()];
        assert_user_error(&args, &[&format!("--precision {p}"), "CPU provider computes in fp32 only", "--ep cuda"]);
        assert!(!out.exists(), "no output on bad input");
    }
    assert_user_error(
        &["calibrate", "--hardware", "x", "--precision", "fp16", "-o", out.join("hw.json").to_str().unwrap()],
        &["--precision fp16", "fp32 only"],
    );
    // a --precision all folder is resumed one precision at a time
    let all = dir.join("all");
    std::fs::create_dir_all(all.join("fp16")).unwrap();
    std::fs::write(all.join("fp16").join("calibration.json"), "{}").unwrap();
    assert_user_error(&["bench", "--resume", all.to_str().unwrap()], &["--precision all folder", "fp16"]);
    // the matrix needs CUDA too; validate and plan take one precision
    let args = ["bench", "fixtures/patterns/mlp.onnx", "--precision", "all", "-o", out.to_str().unwrap()];
    assert_user_error(&args, &["--precision all", "fp32 only"]);
    assert!(!out.exists(), "no output on bad input");
    assert_user_error(
        &["plan", "fixtures/patterns/mlp.onnx", "--precision", "all", "-o", out.join("plan.json").to_str().unwrap()],
        &["--precision all is for bench and calibrate"],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether this machine has a usable CUDA provider (ORT's CUDA library and a device).
fn cuda_present() -> bool {
    fuseval::pipeline::check_ep(fuseval::runtime::Ep::Cuda { device_id: 0 }).is_ok()
}

/// `--ep cuda`: without a GPU a clear error (exit 2, no output); with one, a measurement.
#[test]
fn cuda_without_a_gpu_is_a_clear_error() {
    let out = tmp("cuda");
    let o =
        fuseval(&["bench", "fixtures/patterns/add_relu.onnx", "--ep", "cuda", "--quick", "-o", out.to_str().unwrap()]);
    let t = text(&o);
    if cuda_present() {
        assert!(o.status.success(), "{t}");
        assert!(out.join("calibration.json").exists(), "{t}");
        let _ = std::fs::remove_dir_all(&out);
        return;
    }
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("CUDA"), "{t}");
    assert!(!out.join("calibration.json").exists());
}

#[test]
fn cuda_without_a_gpu_is_a_clear_error_for_every_measuring_command() {
    let dir = tmp("cuda-all");
    std::fs::create_dir_all(&dir).unwrap();
    let cal = dir.join("cal.json");
    let plan = dir.join("plan.json");
    let bench_out = dir.join("b");
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "calibrate",
            "--hardware",
            "x",
            "--ep",
            "cuda",
            "--quick",
            "--patterns",
            "Add_ReLU",
            "-o",
            cal.to_str().unwrap(),
        ],
        vec!["calibrate", "--hardware", "x", "--ep", "cuda", "--cuda-graph", "--quick", "-o", cal.to_str().unwrap()],
        vec![
            "validate",
            "fixtures/tiny_bert_legacy.onnx",
            "--input",
            "input_ids=1x32",
            "--plan",
            "fixtures/plans/tiny_bert_plan.json",
            "--ep",
            "cuda",
            "--quick",
        ],
        vec![
            "plan",
            "fixtures/tiny_bert_legacy.onnx",
            "--input",
            "input_ids=1x32",
            "--ep",
            "cuda",
            "--quick",
            "-o",
            plan.to_str().unwrap(),
        ],
        vec![
            "bench",
            "fixtures/patterns/add_relu.onnx",
            "--ep",
            "cuda",
            "--device-id",
            "3",
            "--cuda-graph",
            "--quick",
            "-o",
            bench_out.to_str().unwrap(),
        ],
    ];
    let gpu = cuda_present();
    for args in cases {
        let o = fuseval(&args);
        let t = text(&o);
        assert!(!t.contains("panicked"), "{args:?}: {t}");
        // with a GPU each command measures, but for a device that is not there
        if gpu && o.status.success() {
            continue;
        }
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains("CUDA"), "{args:?}: {t}");
    }
    if !gpu {
        assert!(!cal.exists() && !plan.exists() && !bench_out.join("calibration.json").exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `bench --quick` of one single-pattern fixture; returns its calibration file and printed summary.
fn bench_fixture(fixture: &str, name: &str) -> (CalibrationFile, String) {
    let out = tmp(name);
    let o = fuseval(&["bench", fixture, "--quick", "--threads", "1", "--no-whole-model", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let cal: CalibrationFile = serde_json::from_slice(&std::fs::read(out.join("calibration.json")).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&out);
    (cal, String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn bench_measures_the_explicit_fused_kernel() {
    let (cal, summary) = bench_fixture("fixtures/patterns/conv_bn_relu.onnx", "explicit-conv");
    let p = cal.fusion_profiles.iter().find(|p| p.fusion_pattern == "Conv2d_BN_ReLU").expect("Conv2d_BN_ReLU measured");
    assert_eq!(p.status, Status::Measured, "{:?}", p.skip_reason);
    assert!(p.explicit_unavailable.is_none(), "{:?}", p.explicit_unavailable);
    assert!(p.explicit_kernels.contains(&"com.microsoft.FusedConv".to_string()), "{:?}", p.explicit_kernels);
    let x = p.explicit.as_ref().expect("explicit variant measured");
    assert!(x.ort_ops.contains(&"com.microsoft.FusedConv".to_string()), "{:?}", x.ort_ops);
    assert!(x.equivalence.passed, "{:?}", x.equivalence);
    assert!(x.latency.median_ms > 0.0 && x.speedup.lo > 0.0 && x.speedup.hi - x.speedup.lo > 0.0, "{:?}", x.speedup);
    // the best variant is one that reads faster beyond the record's band, or unfused when none does
    let faster = |l: &fuseval::calibration::LevelResult| {
        l.equivalence.passed
            && fuseval::estimate::verdict(&l.speedup, p.noise_band) == fuseval::estimate::Verdict::Faster
    };
    match p.variant(p.best_variant) {
        Some(l) => assert!(faster(l), "{} is best but not faster: {:?}", p.best_variant, l.speedup),
        None => assert!(
            [&p.extended, &p.all, &p.explicit].iter().all(|l| l.as_ref().is_none_or(|l| !faster(l))),
            "unfused is best although a variant is faster: {p:?}"
        ),
    }
    assert!(summary.contains("  Explicit: ") && summary.contains("com.microsoft.FusedConv"), "{summary}");
    assert!(summary.contains("best: "), "{summary}");
}

#[test]
fn bench_says_when_there_is_no_fused_kernel() {
    let (cal, summary) = bench_fixture("fixtures/patterns/add_relu.onnx", "explicit-add-relu");
    let p = cal.fusion_profiles.iter().find(|p| p.fusion_pattern == "Add_ReLU").expect("Add_ReLU measured");
    assert_eq!(p.status, Status::Measured, "{:?}", p.skip_reason);
    assert!(p.explicit.is_none());
    let why = p.explicit_unavailable.as_deref().expect("explicit_unavailable says why");
    assert!(!why.starts_with("failed"), "no kernel is not a failure: {why}");
    assert!(summary.contains(&format!("  Explicit: none — {why}")), "{summary}");
    // the runtime numbers are still there
    assert!(p.unfused_latency_ms > 0.0 && p.fused_latency_ms > 0.0);
}

#[test]
fn inspect_patterns_lists_the_catalog() {
    let o = fuseval(&["inspect", "--patterns", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let entries = v.as_array().unwrap();
    assert_eq!(entries.len(), 19);
    let keys: Vec<&str> = entries.iter().map(|e| e["key"].as_str().unwrap()).collect();
    let want: Vec<&str> = fuseval::patterns::Pattern::ALL.iter().map(|p| p.key()).collect();
    assert_eq!(keys, want);
    for e in entries {
        assert!(!e["forms"].as_array().unwrap().is_empty(), "{e}");
        assert!(!e["kernel_cpu"].as_str().unwrap().is_empty() && !e["kernel_cuda"].as_str().unwrap().is_empty(), "{e}");
    }
    let cbr = entries.iter().find(|e| e["key"] == "Conv2d_BN_ReLU").unwrap();
    assert!(cbr["kernel_cpu"].as_str().unwrap().contains("FusedConv"), "{cbr}");

    let o = fuseval(&["inspect", "--patterns"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.starts_with("Pattern catalog: 19 patterns"), "{s}");
    for k in want {
        assert!(s.contains(&format!("\n{k} (")), "{k} missing in\n{s}");
    }
    assert_eq!(s.matches("  kernel: CPU ").count(), 19, "{s}");

    // no model and no --patterns is a usage error
    let o = fuseval(&["inspect"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn slim_annotated_model_points_at_the_original_weights() {
    let out = tmp("slim");
    let model = "fixtures/mini_resnet50_legacy.onnx";
    let o = fuseval(&[
        "bench",
        model,
        "--quick",
        "--threads",
        "1",
        "--no-whole-model",
        "--slim-annotated",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let annotated = out.join("annotated.onnx");
    let size = std::fs::metadata(&annotated).unwrap().len();
    let model_size = std::fs::metadata(model).unwrap().len();
    assert!(size < model_size, "{size} vs {model_size}");
    use prost::Message;
    let proto = fuseval_pb::ModelProto::decode(&*std::fs::read(&annotated).unwrap()).unwrap();
    let inits = &proto.graph.as_ref().unwrap().initializer;
    let external: Vec<_> = inits.iter().filter(|t| t.data_location == Some(1)).collect();
    assert!(external.len() > 50, "{}", external.len());
    let referenced: u64 = external
        .iter()
        .flat_map(|t| t.external_data.iter().filter(|e| e.key == "length").map(|e| e.value.parse::<u64>().unwrap()))
        .sum();
    // the weights are referenced, not copied: the file plus what it points at is the model's size
    assert!(
        referenced > model_size / 4 && size + referenced >= model_size * 9 / 10,
        "{size} + {referenced} vs {model_size}"
    );
    for t in &external {
        assert!(t.raw_data.is_empty());
        assert!(
            t.external_data.iter().any(|e| e.key == "location" && e.value == "mini_resnet50_legacy.onnx"),
            "{}",
            t.name
        );
    }
    // beside the model it is a complete model again: same patterns, and ONNX Runtime runs it
    std::fs::copy(model, out.join("mini_resnet50_legacy.onnx")).unwrap();
    let a = fuseval::pipeline::prepare(&annotated, &[]).unwrap();
    let b = fuseval::pipeline::prepare(std::path::Path::new(model), &[]).unwrap();
    assert_eq!(a.detection.counts(true), b.detection.counts(true));
    let specs = fuseval::pipeline::model_input_specs(&a.loaded, &a.graph).unwrap();
    let opts = fuseval::measure::MeasureOptions {
        budget: std::time::Duration::from_millis(200),
        min_rounds: 3,
        max_rounds: 10,
        ..fuseval::measure::MeasureOptions::new(fuseval::runtime::Ep::Cpu, 1, true)
    };
    let c = fuseval::measure::compare(fuseval::measure::ModelSource::Path(&annotated), &specs, &opts).unwrap();
    assert!(c.equivalence_all.passed);
    let _ = std::fs::remove_dir_all(&out);
}

/// `bench --whole-model-only`: the whole model at ORT's levels with its replicates, no instance, no
/// ceilings, no attribution, no prediction; recorded for `--resume`; two such runs compared by
/// `fuseval agreement`; it does not go with `--no-whole-model`.
#[test]
fn whole_model_only_times_just_the_whole_model() {
    let (a, b) = (tmp("wmo-a"), tmp("wmo-b"));
    for out in [&a, &b] {
        let args = ["bench", "fixtures/patterns/conv_bn_relu.onnx", "--quick", "--threads", "1", "--whole-model-only"];
        let o = fuseval(&[&args[..], &["-o", out.to_str().unwrap()]].concat());
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("--whole-model-only: the pattern instances were not measured"), "{}", text(&o));
        let cal: CalibrationFile =
            serde_json::from_slice(&std::fs::read(out.join("calibration.json")).unwrap()).unwrap();
        assert!(cal.fusion_profiles.is_empty() && cal.ceilings.is_none());
        let run = cal.metadata.run.as_ref().expect("run options");
        assert!(!run.instances && !run.attribution && run.whole_model);
        let w = cal.whole_model.as_ref().expect("the whole model");
        assert!(w.attribution.is_none() && w.prediction.is_none());
        // --quick with no instance to pool noise from: every replicate
        assert_eq!(w.measurement.replicates.len(), cal.metadata.replicates);
        let page = std::fs::read_to_string(out.join("report.html")).unwrap();
        assert!(page.contains("--whole-model-only: the pattern instances were not measured."));
    }
    let o = fuseval(&["agreement", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("whole model: ") && text(&o).contains("speedup extended"), "{}", text(&o));
    // three runs: each pair's summary and the whole model's spread
    let o = fuseval(&["agreement", a.to_str().unwrap(), b.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(text(&o).matches("Run A: ").count(), 3, "{}", text(&o));
    assert!(text(&o).contains("Whole model over 3 runs: largest difference between two runs"), "{}", text(&o));
    let o = fuseval(&["bench", "fixtures/patterns/conv_bn_relu.onnx", "--whole-model-only", "--no-whole-model"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // a --precision all folder (here one precision's) against a single run: exit 2, naming the way out;
    // two such folders: compared precision by precision
    let all = tmp("wmo-all");
    std::fs::create_dir_all(all.join("fp32")).unwrap();
    std::fs::copy(b.join("calibration.json"), all.join("fp32").join("calibration.json")).unwrap();
    let o = fuseval(&["agreement", all.to_str().unwrap(), a.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--precision all folder") && text(&o).contains("fp32"), "{}", text(&o));
    let o = fuseval(&["agreement", all.to_str().unwrap(), all.to_str().unwrap()]);
    assert!(o.status.success() && text(&o).contains("== fp32"), "{}", text(&o));
    // runs of another model are compared with a warning
    let other = tmp("wmo-other");
    let args = ["bench", "fixtures/patterns/add_relu.onnx", "--quick", "--threads", "1", "--whole-model-only", "-o"];
    let o = fuseval(&[&args[..], &[other.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let o = fuseval(&["agreement", a.to_str().unwrap(), other.to_str().unwrap()]);
    assert!(o.status.success() && text(&o).contains("warning: the runs are of different models"), "{}", text(&o));
    for d in [&a, &b, &all, &other] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A command that only prints, whose reader goes away (`| head`), ends quietly: no panic.
#[test]
fn printing_into_a_closed_pipe_does_not_panic() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_fuseval"))
        .args(["inspect", "--patterns"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fuseval");
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("wait for fuseval");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    // it either finished writing before the pipe closed, or SIGPIPE ended it
    use std::os::unix::process::ExitStatusExt;
    assert!(o.status.success() || o.status.signal() == Some(13), "{:?} {err}", o.status);
}
