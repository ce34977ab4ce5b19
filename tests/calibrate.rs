//! `fuseval calibrate --quick` end to end: a valid HardwareCalibration with every catalog pattern at
//! three sizes, read back through `FusionCostModel`, and used by `bench --calibration` to predict a model.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use fuseval::calibration::cost_model::{CostModelOptions, FusionCostModel, Source, Workload};
use fuseval::calibration::hardware::{read, sizes_per_pattern, HardwareCalibration};
use fuseval::calibration::{CalibrationFile, Status};
use fuseval::drivers::calibrate::parse_patterns;
use fuseval::patterns::Pattern;
use fuseval::runtime::Precision;

fn fuseval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fuseval")).args(args).output().expect("run fuseval")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fuseval-calibrate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check_calibration(cal: &HardwareCalibration) {
    assert_eq!(cal.metadata.hardware_name, "ci-cpu");
    assert_eq!(cal.metadata.device_type, "cpu");
    assert_eq!(cal.metadata.execution_provider, "cpu");
    assert!(cal.complete);
    assert!(cal.measured_peak_gflops > 0.1, "{}", cal.measured_peak_gflops);
    assert!(cal.measured_bandwidth_gbps > 0.1, "{}", cal.measured_bandwidth_gbps);
    assert_eq!(cal.ceilings.peak_gflops, cal.measured_peak_gflops);
    assert!(cal.operation_profiles.iter().any(|p| p.operation == "MatMul" && p.dtype == "f32" && p.supported));
    assert!(cal.operation_profiles.iter().any(|p| p.operation == "Add" && p.supported));
    // the theoretical peak given on the command line gives an efficiency
    let eff = cal.peak_efficiency.expect("efficiency");
    assert!((eff - cal.measured_peak_gflops / 1000.0).abs() < 1e-9);

    let sizes = sizes_per_pattern(cal);
    for p in Pattern::ALL {
        assert!(
            sizes.get(p.key()).copied().unwrap_or(0) >= 3,
            "{}: {:?} ({:?})",
            p.key(),
            sizes.get(p.key()),
            cal.warnings
        );
    }
    for r in cal.fusion_profiles.iter().filter(|r| r.status == Status::Measured) {
        assert!(r.unfused_latency_ms > 0.0 && r.fused_latency_ms > 0.0, "{}", r.fusion_pattern);
        assert!(r.extra_params.contains_key("size"), "{}", r.fusion_pattern);
        let rl = r.roofline.as_ref().expect("roofline");
        assert!(rl.unfused.arithmetic_intensity > 0.0 || r.flops == 0);
        assert!(rl.unfused.bytes >= rl.fused.bytes, "{}: {} < {}", r.fusion_pattern, rl.unfused.bytes, rl.fused.bytes);
        assert!(!rl.explanation.is_empty());
    }
    assert_eq!(cal.crossovers.len(), 19);
    assert!(cal.crossovers.iter().all(|c| c.points.len() >= 3 && !c.summary.is_empty()));
    // every pair rule is internally consistent
    assert!(cal.fusion_rules.len() >= 5, "{}", cal.fusion_rules.len());
    for r in &cal.fusion_rules {
        assert!((r.saving_ms - (r.t1_ms + r.t2_ms - r.t_block_ms)).abs() < 1e-9);
        assert_eq!(r.rule_says_fused, r.saving_ms > r.threshold_ms);
    }
    // Conv2d_BN: ORT folds BN into the Conv on CPU, whatever the rule's timing says
    assert!(cal
        .fusion_rules
        .iter()
        .any(|r| r.first == "Conv" && r.second == "BatchNormalization" && r.graph_says_fused));
}

fn check_cost_model(path: &std::path::Path, cal: &HardwareCalibration) {
    let model = FusionCostModel::from_path(path, CostModelOptions::default()).expect("cost model reads the file");
    // every pattern with a usable record (measured, A/A passed) is calibrated; a pattern whose few quick
    // sizes all failed their A/A control on a busy host is left out, and said
    let usable: std::collections::BTreeSet<&str> = cal
        .fusion_profiles
        .iter()
        .filter(|r| r.status == Status::Measured && !r.aa_failed())
        .map(|r| r.fusion_pattern.as_str())
        .collect();
    assert!(usable.len() >= 17, "{usable:?}");
    let calibrated: std::collections::BTreeSet<&str> = model.patterns().iter().map(|p| p.key()).collect();
    assert_eq!(calibrated, usable);
    // at a calibrated size: the measured record itself
    let r = cal
        .fusion_profiles
        .iter()
        .find(|r| r.fusion_pattern == "Linear_Bias_GELU" && r.status == Status::Measured && r.equivalent)
        .expect("a Linear_Bias_GELU record");
    let b = model.fusion_benefit("Linear_Bias_GELU", &Workload::of_record(r), Precision::Fp32).unwrap();
    assert!(matches!(b.source, Source::Measured { .. }), "{:?}", b.source);
    // exactly the record's own speedup at its size (the cost model's default variant: the headline level)
    assert!((b.speedup.point - r.speedup_factor).abs() < 1e-9, "{:?} vs {}", b.speedup, r.speedup_factor);
    assert!((b.speedup.lo - r.speedup_ci_low).abs() < 1e-9 && (b.speedup.hi - r.speedup_ci_high).abs() < 1e-9);
    // the design's partitioner spelling finds the calibrated key
    let d = model
        .should_fuse("Conv2d_BatchNorm2d_ReLU", &Workload::conv(1, 64, 56, 56, 64, 3, 3), Precision::Fp32)
        .unwrap();
    assert_eq!(d.benefit.pattern, Pattern::ConvBnRelu);
    assert!(!matches!(d.benefit.source, Source::Fallback(_)));
    // far above the grid: extrapolation, said so
    let huge = model.fusion_benefit("Add_ReLU", &Workload::elementwise(1 << 30, 2, 2), Precision::Fp32).unwrap();
    assert!(matches!(huge.source, Source::Extrapolated { .. }), "{:?}", huge.source);
    assert!(!huge.warnings.is_empty());
}

/// The calibration's report.html, in Chromium: a speedup-against-size chart per pattern, the fusion
/// rules, and a forest mark and table row per record.
fn check_report(page: &std::path::Path, cal: &HardwareCalibration) {
    use common::browser::{count, dump_dom};
    let dom = dump_dom(page);
    assert!(dom.contains("data-ready=\"1\"") && dom.contains("<pre id=\"js-errors\"></pre>"), "script failed");
    let charts = cal.crossovers.iter().filter(|c| c.points.iter().any(|p| p.speedup.is_some())).count();
    assert_eq!(count(&dom, "<svg id=\"sweep-"), charts);
    assert!(dom.contains("id=\"fusion-rules\""));
    let forest = &dom[dom.find("<svg id=\"forest\"").unwrap()..];
    assert_eq!(count(&forest[..forest.find("</svg>").unwrap()], "data-signature="), cal.fusion_profiles.len());
    assert_eq!(count(&dom, "<tr id=\"row-"), cal.fusion_profiles.len());
    assert!(std::fs::metadata(page).unwrap().len() as usize <= fuseval::report::html::MAX_BYTES);
}

#[test]
fn calibrate_quick_writes_a_hardware_calibration_the_cost_model_reads() {
    let dir = tmp("quick");
    let out = dir.join("cal.json");
    let o = fuseval(&[
        "calibrate",
        "--hardware",
        "ci-cpu",
        "--quick",
        "--threads",
        "1",
        "--peak-gflops",
        "1000",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("Fusion Pattern Calibration: ci-cpu"), "{stdout}");
    assert!(stdout.contains("Where fusion pays"), "{stdout}");
    assert!(stdout.contains("Fusion rules on cpu"), "{stdout}");
    let cal = read(&out).unwrap();
    check_calibration(&cal);
    check_cost_model(&out, &cal);
    check_report(&out.with_extension("html"), &cal);

    // an existing output is refused without --force
    let again = fuseval(&["calibrate", "--hardware", "x", "--quick", "-o", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));

    // bench uses its ceilings for the roofline and its cost model for a whole-model prediction
    let bench_dir = dir.join("bench");
    let o = fuseval(&[
        "bench",
        "fixtures/tiny_bert_legacy.onnx",
        "--input",
        "input_ids=1x32",
        "--quick",
        "--threads",
        "1",
        "--calibration",
        out.to_str().unwrap(),
        "-o",
        bench_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let b: CalibrationFile =
        serde_json::from_slice(&std::fs::read(bench_dir.join("calibration.json")).unwrap()).unwrap();
    assert_eq!(b.ceilings.as_ref(), Some(&cal.ceilings));
    assert!(b.fusion_profiles.iter().filter(|r| r.status == Status::Measured).all(|r| r.roofline.is_some()));
    let pred = b.whole_model.as_ref().and_then(|w| w.prediction.as_ref()).expect("prediction");
    assert_eq!(pred.levels.len(), 3);
    let from_cal = pred.from_calibration.as_ref().expect("prediction from the calibration");
    assert!(from_cal.prediction.predicted_ms > 0.0);
    // the calibration alone speaks for every instance of the cover, whatever this run measured of it
    let cover: usize = b.fusion_profiles.iter().map(|r| r.instances.len()).sum();
    let unlooked = from_cal.warnings.iter().any(|w| w.contains("no measured unfused latency"));
    assert!(
        from_cal.sources.values().sum::<usize>() == cover || unlooked,
        "{:?} {:?}",
        from_cal.sources,
        from_cal.warnings
    );
    // scored at the cost model's level (extended), against the saving, beside "fusion changes nothing"
    let w = b.whole_model.as_ref().unwrap();
    let m = &w.measurement;
    assert!((from_cal.prediction.measured_ms - m.disabled.median_ms / m.speedup_extended.point).abs() < 1e-9);
    assert!(from_cal.prediction.no_change_error.is_some() && from_cal.prediction.measured_saving.is_some());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("calibration only, extended"), "{stdout}");
    assert!(stdout.contains("\"fusion changes nothing\""), "{stdout}");
}

#[test]
fn patterns_flag_takes_families_keys_and_aliases() {
    assert_eq!(parse_patterns("all").unwrap().len(), 19);
    assert_eq!(parse_patterns("linear").unwrap().len(), 5);
    assert_eq!(parse_patterns("conv,attention").unwrap().len(), 10);
    assert_eq!(parse_patterns("elementwise").unwrap().len(), 4);
    assert_eq!(parse_patterns("Conv2d_BatchNorm2d_ReLU,conv_bn_relu").unwrap(), vec![Pattern::ConvBnRelu]);
    let e = parse_patterns("Conv_Softmax").unwrap_err();
    assert!(fuseval::error::is_user_error(&e));
    assert!(format!("{e:#}").contains("Conv_Softmax"), "{e:#}");
    assert!(parse_patterns(",").is_err());
}

#[test]
fn bad_calibrate_flags_exit_2() {
    let o = fuseval(&["calibrate", "--hardware", "x", "--patterns", "nonsense", "-o", "/dev/null/x.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("nonsense"));
    let o = fuseval(&["calibrate", "--hardware", "x", "--preset", "tpu-v9", "-o", "/tmp/fuseval-never.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("h100-sxm"), "{}", text(&o));
}

/// `--preset` gives the datasheet peak of the precision the ceilings are measured in: strict fp32 on
/// the CUDA cores, TF32 or fp16 on the tensor cores; a CPU preset has only fp32.
#[test]
fn presets_give_the_peak_of_the_measured_precision() {
    use fuseval::drivers::calibrate::preset;
    use fuseval::runtime::Precision;
    let peak = |name: &str, q: Precision| preset(name, q).expect("a known preset").0;
    assert_eq!(peak("h200", Precision::Fp32), 66_900.0);
    assert_eq!(peak("h200", Precision::Tf32), 494_700.0);
    assert_eq!(peak("H200", Precision::Fp16), 989_400.0);
    assert_eq!(peak("i7-12700k", Precision::Fp16), 1_152.0);
    let (_, gbs, source) = preset("a100-sxm", Precision::Fp16).unwrap();
    assert_eq!(gbs, 2_039.0);
    assert!(source.contains("fp16 tensor 312.0 TFLOP/s"), "{source}");
    assert!(preset("tpu-v9", Precision::Fp32).is_none());
}

#[test]
fn the_bandwidth_probe_moves_three_times_the_largest_cache() {
    use fuseval::drivers::calibrate::dram_add_numel;
    // 32 MiB of L3: 3 x 32 MiB / 12 bytes per element = 2^23 elements exactly
    assert_eq!(dram_add_numel(Some(32 << 20)), 1 << 23);
    // one byte more needs the next power of two
    assert_eq!(dram_add_numel(Some((32 << 20) + 4)), 1 << 24);
    // small caches still get a probe far out of cache, huge ones are capped, unknown ones get 2^24
    assert_eq!(dram_add_numel(Some(1 << 20)), 1 << 22);
    assert_eq!(dram_add_numel(Some(1 << 40)), 1 << 27);
    assert_eq!(dram_add_numel(None), 1 << 24);
}
