//! Tests of the cost model (src/cost_model.rs): pattern keys and aliases, the size scalar, lookup
//! (exact, interpolated, extrapolated), combining records, equivalence, the fallback, the threshold and
//! the three choices, and reading calibration files. Records are built by hand (JSON, or a real
//! fixture's record with made-up timings), so nothing here runs ONNX Runtime.

#![recursion_limit = "256"]

use std::path::{Path, PathBuf};

use fuseval::calibration::cost_model::{
    resolve_pattern, Choice, CostModelOptions, Fallback, FusionCostModel, Source, VariantChoice, Workload, ALIASES,
};
use fuseval::calibration::FusionCalibration;
use fuseval::estimate::Estimate;
use fuseval::patterns::Pattern;
use fuseval::pipeline::{prepare, Prepared};
use fuseval::runtime::Precision;
use serde_json::{json, Value};

// ---------- helpers ----------

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn assert_est(got: Estimate, point: f64, lo: f64, hi: f64) {
    assert!(
        close(got.point, point) && close(got.lo, lo) && close(got.hi, hi),
        "got {got:?}, want {point} [{lo}, {hi}]"
    );
}

fn est(point: f64, lo: f64, hi: f64) -> Estimate {
    Estimate { point, lo, hi }
}

/// A hand-made record, serialised the way calibration.json holds it.
#[derive(Clone)]
struct Rec {
    pattern: &'static str,
    /// FLOPs; bytes are a tenth, so `Workload::size` is this.
    flops: u64,
    speedup: Estimate,
    equivalent: bool,
    aa: Estimate,
    measured: bool,
    /// The explicit variant's speedup and whether its outputs agree; `None`: no kernel.
    explicit: Option<(Estimate, bool)>,
    best_variant: &'static str,
}

impl Rec {
    fn new(pattern: &'static str, flops: u64, speedup: Estimate) -> Rec {
        Rec {
            pattern,
            flops,
            speedup,
            equivalent: true,
            aa: est(1.0, 0.99, 1.01),
            measured: true,
            explicit: None,
            best_variant: "runtime_extended",
        }
    }

    fn json(&self) -> Value {
        let level = |s: Estimate, passed: bool| {
            json!({
                "latency": { "median_ms": 1.0 / s.point, "ci_ms": { "point": 1.0 / s.point, "lo": 0.99 / s.point, "hi": 1.01 / s.point }, "min_ms": 0.9 / s.point, "samples": 20 },
                "speedup": s,
                "ort_ops": ["com.microsoft.FusedGemm"],
                "fused_by_ort": true,
                "equivalence": { "passed": passed, "max_abs_err": 1e-6, "max_rel_err": 1e-6, "atol": 1e-4, "rtol": 1e-3, "outputs_compared": 1 }
            })
        };
        let m = self.measured;
        json!({
            "fusion_pattern": self.pattern,
            "operators": ["Linear", "Bias"],
            "num_operators": 2,
            "form": "MatMul+Add",
            "status": if m { "measured" } else { "skipped" },
            "skip_reason": if m { Value::Null } else { json!("carving failed") },
            "unfused_latency_ms": if m { 1.0 } else { 0.0 },
            "fused_latency_ms": if m { 1.0 / self.speedup.point } else { 0.0 },
            "unfused_gflops": 1.0,
            "fused_gflops": 1.0,
            "flops": self.flops,
            "unfused_memory_bytes": self.flops / 10,
            "fused_memory_bytes": self.flops / 20,
            "speedup_factor": if m { self.speedup.point } else { 0.0 },
            "speedup_ci_low": if m { self.speedup.lo } else { 0.0 },
            "speedup_ci_high": if m { self.speedup.hi } else { 0.0 },
            "memory_reduction": 0.5,
            "input_shape": [1, 64],
            "input_shapes": { "x": [1, 64] },
            "output_shapes": { "y": [1, 64] },
            "extra_params": { "dtype": "f32" },
            "num_trials": 160,
            "rounds": 20,
            "iters_per_round": 8,
            "budget_exhausted": false,
            "headline_level": "extended",
            "ort_fused_into": ["com.microsoft.FusedGemm"],
            "fused_by_ort": true,
            "extended": if m { level(self.speedup, self.equivalent) } else { Value::Null },
            "all": if m { level(self.speedup, self.equivalent) } else { Value::Null },
            "explicit": match self.explicit { Some((s, ok)) if m => level(s, ok), _ => Value::Null },
            "explicit_kernels": [],
            "explicit_unavailable": if self.explicit.is_none() { json!("ORT has no fused Add+ReLU kernel on CPU") } else { Value::Null },
            "best_variant": self.best_variant,
            "unfused_ops": ["MatMul", "Add"],
            "aa_control": if m { json!(self.aa) } else { Value::Null },
            "trustworthy": m && self.equivalent && self.aa.contains(1.0),
            "equivalent": m && self.equivalent,
            "verdict": if m { json!("faster") } else { Value::Null },
            "instances": [["/fc/MatMul", "/fc/Add"]],
            "signature": format!("{}|{}", self.pattern, self.flops)
        })
    }

    fn record(&self) -> FusionCalibration {
        serde_json::from_value(self.json()).expect("a valid FusionCalibration record")
    }
}

fn model(recs: &[Rec], opts: CostModelOptions) -> FusionCostModel {
    let profiles: Vec<FusionCalibration> = recs.iter().map(Rec::record).collect();
    FusionCostModel::from_calibration(&profiles, opts).unwrap()
}

/// A workload whose size is exactly `size` (its FLOPs; it moves fewer bytes).
fn at(size: u64) -> Workload {
    Workload { flops: size, unfused_bytes: size / 10, fused_bytes: size / 20 }
}

/// Linear_Bias at 1e6 (1.1 [1.05, 1.15]) and 1e8 (1.5 [1.4, 1.6]).
fn two_sizes() -> Vec<Rec> {
    vec![
        Rec::new("Linear_Bias", 1_000_000, est(1.1, 1.05, 1.15)),
        Rec::new("Linear_Bias", 100_000_000, est(1.5, 1.4, 1.6)),
    ]
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

fn prepared(name: &str) -> Prepared {
    let path = fixture(name);
    prepare(&path, &[]).unwrap_or_else(|e| panic!("loading {}: {e:#}", path.display()))
}

// ---------- keys and names ----------

/// The stable keys, exactly as `Pattern::key()` returns them. Changing one breaks every calibration
/// file written before: this list must not change.
const GOLDEN_KEYS: [(&str, Pattern); 19] = [
    ("Linear_Bias", Pattern::LinearBias),
    ("Linear_Bias_ReLU", Pattern::LinearBiasRelu),
    ("Linear_Bias_ReLU_Dropout", Pattern::LinearBiasReluDropout),
    ("Linear_Bias_GELU", Pattern::LinearBiasGelu),
    ("Linear_Bias_ReLU_Linear_Bias", Pattern::Mlp),
    ("Conv2d_Bias", Pattern::ConvBias),
    ("Conv2d_BN", Pattern::ConvBn),
    ("Conv2d_BN_ReLU", Pattern::ConvBnRelu),
    ("Conv2d_ReLU", Pattern::ConvRelu),
    ("Conv2d_BN_ReLU_MaxPool", Pattern::ConvBnReluMaxPool),
    ("Conv2d_Add_ReLU", Pattern::ConvAddRelu),
    ("QK_Softmax", Pattern::QkSoftmax),
    ("Softmax_V", Pattern::SoftmaxV),
    ("Attention_Head", Pattern::AttentionHead),
    ("MultiHead_Linear", Pattern::MultiHeadLinear),
    ("Add_ReLU", Pattern::AddRelu),
    ("Add_LayerNorm", Pattern::AddLayerNorm),
    ("Mul_Add_ReLU", Pattern::MulAddRelu),
    ("Sigmoid_Mul", Pattern::SigmoidMul),
];

#[test]
fn stable_keys_are_the_golden_list() {
    assert_eq!(Pattern::ALL.len(), GOLDEN_KEYS.len());
    let all_keys: Vec<&str> = Pattern::ALL.iter().map(|p| p.key()).collect();
    let golden: Vec<&str> = GOLDEN_KEYS.iter().map(|(k, _)| *k).collect();
    assert_eq!(all_keys, golden, "Pattern::ALL order or keys changed");
    for (key, p) in GOLDEN_KEYS {
        assert_eq!(p.key(), key);
        assert_eq!(p.to_string(), key);
        assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{key}\""));
        assert_eq!(serde_json::from_str::<Pattern>(&format!("\"{key}\"")).unwrap(), p);
        assert_eq!(Pattern::from_key(key), Some(p));
        assert_eq!(resolve_pattern(key).unwrap(), p);
        // any case and separator style
        assert_eq!(resolve_pattern(&key.to_ascii_lowercase()).unwrap(), p, "{key} lower case");
        assert_eq!(resolve_pattern(&key.to_ascii_uppercase()).unwrap(), p, "{key} upper case");
        assert_eq!(resolve_pattern(&format!("  {}  ", key.replace('_', "+"))).unwrap(), p, "{key} with +");
        assert_eq!(resolve_pattern(&key.replace('_', "-")).unwrap(), p, "{key} with -");
        // the Rust variant name and the operator list
        assert_eq!(resolve_pattern(&format!("{p:?}")).unwrap(), p, "{p:?}");
        assert_eq!(resolve_pattern(&p.operators().join("+")).unwrap(), p, "{}", p.operators().join("+"));
        assert_eq!(resolve_pattern(&p.title()).unwrap(), p, "{}", p.title());
    }
}

#[test]
fn every_alias_resolves_to_its_pattern() {
    let expected: &[(&str, &str)] = &[
        // the design's own failure: partitioner and calibration spelled it differently
        ("Conv2d_BatchNorm2d_ReLU", "Conv2d_BN_ReLU"),
        ("conv_bn_relu", "Conv2d_BN_ReLU"),
        ("ConvBnRelu", "Conv2d_BN_ReLU"),
        ("ConvBNReLU", "Conv2d_BN_ReLU"),
        ("Conv+BN+ReLU", "Conv2d_BN_ReLU"),
        ("Conv_BatchNormalization_Relu", "Conv2d_BN_ReLU"),
        ("Conv2d + BatchNorm + ReLU", "Conv2d_BN_ReLU"),
        ("Conv2d_BatchNorm", "Conv2d_BN"),
        ("Conv_BatchNormalization", "Conv2d_BN"),
        ("Conv2d_BatchNorm2d_ReLU_MaxPool", "Conv2d_BN_ReLU_MaxPool"),
        ("conv_relu", "Conv2d_ReLU"),
        ("conv_bias", "Conv2d_Bias"),
        ("linear_bias_relu", "Linear_Bias_ReLU"),
        ("Gemm_Bias_ReLU", "Linear_Bias_ReLU"),
        ("MatMul_Add_Relu", "Linear_Bias_ReLU"),
        ("MatMul_Add", "Linear_Bias"),
        ("Gemm_Bias", "Linear_Bias"),
        ("addmm", "Linear_Bias"),
        ("MatMul_Add_Gelu", "Linear_Bias_GELU"),
        ("linear_bias_gelu", "Linear_Bias_GELU"),
        ("MatMul_Add_Relu_Dropout", "Linear_Bias_ReLU_Dropout"),
        ("MLP", "Linear_Bias_ReLU_Linear_Bias"),
        ("mlp", "Linear_Bias_ReLU_Linear_Bias"),
        ("Add_LayerNormalization", "Add_LayerNorm"),
        ("SkipLayerNorm", "Add_LayerNorm"),
        ("SkipLayerNormalization", "Add_LayerNorm"),
        ("add_ln", "Add_LayerNorm"),
        ("attention_qkv", "Attention_Head"),
        ("attention", "Attention_Head"),
        ("Attention", "Attention_Head"),
        ("sdpa", "Attention_Head"),
        ("scaled_dot_product_attention", "Attention_Head"),
        ("Q@K.T+Softmax+@V", "Attention_Head"),
        ("QKT_Softmax", "QK_Softmax"),
        ("Q@K.T + Softmax", "QK_Softmax"),
        ("Softmax+@V", "Softmax_V"),
        ("MultiHead(Q,K,V)+Linear", "MultiHead_Linear"),
        ("SiLU", "Sigmoid_Mul"),
        ("Swish", "Sigmoid_Mul"),
        ("silu", "Sigmoid_Mul"),
        ("Sum_Relu", "Add_ReLU"),
        ("add_relu", "Add_ReLU"),
        ("mul_add_relu", "Mul_Add_ReLU"),
    ];
    for (name, key) in expected {
        let p = resolve_pattern(name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(p.key(), *key, "{name}");
    }
    // the published table: each entry resolves to the pattern it names
    for (alias, p) in ALIASES {
        assert_eq!(resolve_pattern(alias).unwrap(), *p, "alias {alias}");
        assert_eq!(resolve_pattern(&alias.to_ascii_uppercase()).unwrap(), *p, "alias {alias} upper case");
    }
}

#[test]
fn names_that_only_resemble_a_pattern_are_errors_with_the_valid_keys() {
    // different computations: no bias, no ReLU, a whole gated MLP, an unknown op
    for name in
        ["Linear_ReLU", "FusedMulAdd", "Mul_Add", "Gemm_ReLU", "SwiGLU", "FFN", "Conv_Add", "Conv_Frobnicate", "", "  "]
    {
        let e = resolve_pattern(name).expect_err(name);
        let msg = format!("{e:#}");
        assert!(msg.contains("unknown fusion pattern"), "{name}: {msg}");
        for (key, _) in GOLDEN_KEYS {
            assert!(msg.contains(key), "{name}: the error lists {key}: {msg}");
        }
        assert!(msg.contains("closest"), "{msg}");
    }
    let msg = format!("{:#}", resolve_pattern("Linear_ReLU").unwrap_err());
    assert!(msg.contains("closest: `Linear_Bias_ReLU`"), "{msg}");
    let msg = format!("{:#}", resolve_pattern("Conv2d_BN_Relu6").unwrap_err());
    assert!(msg.contains("closest: `Conv2d_BN_ReLU`"), "{msg}");
}

#[test]
fn an_unknown_name_in_a_query_is_an_error_not_a_fallback() {
    let m = model(&two_sizes(), CostModelOptions::default());
    let e = m.fusion_benefit("Linear_Bias_Frob", &at(1_000_000), Precision::Fp32).unwrap_err();
    assert!(format!("{e:#}").contains("unknown fusion pattern `Linear_Bias_Frob`"), "{e:#}");
    assert!(m.should_fuse("Linear_Bias_Frob", &at(1_000_000), Precision::Fp32).is_err());
}

#[test]
fn lookups_do_not_miss_because_of_naming() {
    // calibration stores the key, the partitioner asks with the long spelling
    let recs = [Rec::new("Conv2d_BN_ReLU", 2_000_000, est(1.6, 1.5, 1.7))];
    let m = model(&recs, CostModelOptions::default());
    for q in ["Conv2d_BatchNorm2d_ReLU", "conv_bn_relu", "ConvBnRelu", "Conv+BN+ReLU", "Conv2d_BN_ReLU"] {
        let b = m.fusion_benefit(q, &at(2_000_000), Precision::Fp32).unwrap();
        assert_eq!(b.pattern, Pattern::ConvBnRelu);
        assert_eq!(b.source, Source::Measured { size: 2e6 }, "{q}");
        assert_est(b.speedup, 1.6, 1.5, 1.7);
    }
    // and the other way round: a record written under a spelling (another tool's file)
    let recs = [
        Rec::new("Conv2d_BatchNorm2d_ReLU", 2_000_000, est(1.6, 1.5, 1.7)),
        Rec::new("MatMul_Add", 1_000_000, est(1.3, 1.25, 1.35)),
    ];
    let m = model(&recs, CostModelOptions::default());
    assert_eq!(m.patterns(), vec![Pattern::LinearBias, Pattern::ConvBnRelu]);
    assert_eq!(
        m.fusion_benefit("Conv2d_BN_ReLU", &at(2_000_000), Precision::Fp32).unwrap().source,
        Source::Measured { size: 2e6 }
    );
    assert_eq!(
        m.fusion_benefit("Linear_Bias", &at(1_000_000), Precision::Fp32).unwrap().source,
        Source::Measured { size: 1e6 }
    );
    assert!(m.warnings().is_empty(), "{:?}", m.warnings());
}

#[test]
fn records_with_unknown_names_are_left_out_and_said() {
    let recs = [Rec::new("Conv_Frob_ReLU", 1_000_000, est(1.6, 1.5, 1.7))];
    let m = model(&recs, CostModelOptions::default());
    assert!(m.patterns().is_empty());
    assert!(m.warnings().iter().any(|w| w.contains("unknown fusion pattern `Conv_Frob_ReLU`")), "{:?}", m.warnings());
    let b = m.fusion_benefit("Conv2d_BN_ReLU", &at(1_000_000), Precision::Fp32).unwrap();
    assert_eq!(b.source, Source::Fallback(Fallback::AssumeBeneficial));
    assert!(b.warnings[0].contains("Conv_Frob_ReLU"), "the fallback names the unmatched records: {:?}", b.warnings);
}

// ---------- the size scalar ----------

#[test]
fn workload_constructors_count_what_the_calibration_counts() {
    // linear_bias_matmul.onnx: x [1,16,64] @ W [64,64] + b, MatMul+Add
    let p = prepared("patterns/linear_bias_matmul.onnx");
    let inst = p.detection.all.iter().find(|i| i.pattern == Pattern::LinearBias).expect("Linear_Bias found");
    let w = Workload::of_instance(&p.graph, inst);
    assert_eq!(w, Workload::linear(16, 64, 64));
    assert_eq!(w.flops, 2 * 16 * 64 * 64 + 16 * 64);
    assert_eq!(w.unfused_bytes, 4 * (16 * 64 + 64 * 64 + 3 * 16 * 64 + 64));
    assert_eq!(w.fused_bytes, 4 * (16 * 64 + 64 * 64 + 64 + 16 * 64));
    // a record of that instance carries the same workload
    let rec = FusionCalibration::new(&p.graph, &[inst], Err("not measured".into()), inst.signature(&p.graph));
    assert_eq!(Workload::of_record(&rec), w);
    assert_eq!(w.size(), w.flops as f64, "a 16×64×64 GEMM is compute-heavy");

    // add_relu.onnx: x + y, Relu over [1,64,28,28]
    let p = prepared("patterns/add_relu.onnx");
    let inst = p.detection.all.iter().find(|i| i.pattern == Pattern::AddRelu).expect("Add_ReLU found");
    let w = Workload::of_instance(&p.graph, inst);
    assert_eq!(w, Workload::elementwise(64 * 28 * 28, 2, 2));
    assert_eq!(w.size(), w.unfused_bytes as f64, "an elementwise chain is sized by bytes moved");

    // conv_bias.onnx: Conv [1,8,16,16] → 16 channels, then Add of a [1,16,1,1] bias
    let p = prepared("patterns/conv_bias.onnx");
    let inst = p.detection.all.iter().find(|i| i.pattern == Pattern::ConvBias).expect("Conv2d_Bias found");
    let w = Workload::of_instance(&p.graph, inst);
    let kernel = p.graph.shape(&p.graph.node(inst.nodes[0]).inputs[1]).unwrap().to_vec();
    assert_eq!(kernel[..2], [16, 8]);
    assert_eq!(w, Workload::conv(1, 8, 16, 16, 16, kernel[2], kernel[3]));
}

#[test]
fn workload_formulas_and_size() {
    assert_eq!(
        Workload::linear(2, 3, 4),
        Workload { flops: 48 + 8, unfused_bytes: 4 * (6 + 12 + 24 + 4), fused_bytes: 4 * (6 + 12 + 4 + 8) }
    );
    let c = Workload::conv(1, 3, 4, 4, 2, 3, 3);
    assert_eq!(c.flops, 2 * 32 * 27 + 32);
    assert_eq!(c.unfused_bytes, 4 * (48 + 54 + 3 * 32 + 2));
    assert_eq!(c.fused_bytes, 4 * (48 + 54 + 2 + 32));
    let e = Workload::elementwise(1000, 1, 3);
    assert_eq!(e, Workload { flops: 3000, unfused_bytes: 4 * 1000 * 6, fused_bytes: 4 * 1000 * 2 });
    // batch 2, 4 heads, seq 8, head_dim 16: scores 512, activations 1024 elements
    let a = Workload::attention(2, 4, 8, 16);
    assert_eq!(a.flops, 4 * 512 * 16 + 2 * 512);
    assert_eq!(a.unfused_bytes, 4 * (4 * 1024 + 6 * 512));
    assert_eq!(a.fused_bytes, 4 * 4 * 1024);
    // size: flops when compute-heavy, bytes otherwise
    assert_eq!(Workload { flops: 100, unfused_bytes: 40, fused_bytes: 8 }.size(), 100.0);
    assert_eq!(Workload { flops: 10, unfused_bytes: 40, fused_bytes: 8 }.size(), 40.0);
    assert_eq!(
        Workload::linear(1, 4096, 4096).size(),
        Workload::linear(1, 4096, 4096).unfused_bytes as f64,
        "a GEMV is memory-bound"
    );
    // no overflow on absurd shapes
    assert_eq!(Workload::linear(usize::MAX, usize::MAX, 2).flops, u64::MAX);
}

// ---------- lookup ----------

#[test]
fn interpolates_in_log_size_on_point_and_ci() {
    let m = model(&two_sizes(), CostModelOptions::default());
    let b = m.fusion_benefit("Linear_Bias", &at(10_000_000), Precision::Fp32).unwrap();
    assert_eq!(b.source, Source::Interpolated { below: 1e6, above: 1e8 });
    assert_est(b.speedup, 1.3, 1.225, 1.375);
    assert_eq!(b.records_used, 2);
    assert!(b.warnings.is_empty(), "{:?}", b.warnings);
    assert!(b.equivalent);
    // a quarter of the way in log space, not in linear space
    let b = m.fusion_benefit("Linear_Bias", &at(3_162_278), Precision::Fp32).unwrap();
    assert!((b.speedup.point - 1.2).abs() < 1e-6, "{:?}", b.speedup);
    let b = m.fusion_benefit("Linear_Bias", &at(50_500_000), Precision::Fp32).unwrap();
    let t = (50.5f64).ln() / (100f64).ln();
    let linear_space = 1.1 + 0.4 * (50.5e6 - 1e6) / 99e6;
    assert!((b.speedup.point - (1.1 + 0.4 * t)).abs() < 1e-9, "{:?}", b.speedup);
    assert!(b.speedup.point > linear_space + 0.1, "{:?} is not linear in size ({linear_space})", b.speedup);
}

#[test]
fn exact_size_hits_are_measured() {
    let m = model(&two_sizes(), CostModelOptions::default());
    let b = m.fusion_benefit("Linear_Bias", &at(100_000_000), Precision::Fp32).unwrap();
    assert_eq!(b.source, Source::Measured { size: 1e8 });
    assert_est(b.speedup, 1.5, 1.4, 1.6);
    assert_eq!(b.records_used, 1);
    assert!(b.warnings.is_empty());
    // within the same-size tolerance (a bias or a ReLU more on the same shapes)
    let b = m.fusion_benefit("Linear_Bias", &at(1_010_000), Precision::Fp32).unwrap();
    assert_eq!(b.source, Source::Measured { size: 1e6 });
    assert_est(b.speedup, 1.1, 1.05, 1.15);
    assert_eq!(
        m.calibrated_sizes(Pattern::LinearBias),
        vec![(1e6, Some(est(1.1, 1.05, 1.15))), (1e8, Some(est(1.5, 1.4, 1.6)))]
    );
}

#[test]
fn a_fixture_record_is_found_by_its_instance() {
    // the whole chain: detected instance → record → model → lookup with Workload::of_instance
    let p = prepared("patterns/linear_bias_matmul.onnx");
    let inst = p.detection.all.iter().find(|i| i.pattern == Pattern::LinearBias).unwrap();
    let rec = FusionCalibration::new(&p.graph, &[inst], Err("x".into()), inst.signature(&p.graph));
    let mut v = serde_json::to_value(&rec).unwrap();
    v["status"] = json!("measured");
    v["speedup_factor"] = json!(1.4);
    v["speedup_ci_low"] = json!(1.35);
    v["speedup_ci_high"] = json!(1.45);
    v["equivalent"] = json!(true);
    let rec: FusionCalibration = serde_json::from_value(v).unwrap();
    let m = FusionCostModel::from_calibration(&[rec], CostModelOptions::default()).unwrap();
    let w = Workload::of_instance(&p.graph, inst);
    let d = m.should_fuse(inst.pattern.key(), &w, Precision::Fp32).unwrap();
    assert_eq!(d.benefit.source, Source::Measured { size: w.size() });
    assert_eq!(d.choice, Choice::Fuse);
    assert!(d.fuse);
    assert_eq!(
        m.should_fuse("MatMul_Add", &Workload::linear(16, 64, 64), Precision::Fp32).unwrap().benefit.source,
        Source::Measured { size: w.size() }
    );
}

#[test]
fn extrapolation_below_and_above_the_range_warns_with_the_factor() {
    let m = model(&two_sizes(), CostModelOptions::default());
    let b = m.fusion_benefit("Linear_Bias", &at(10_000), Precision::Fp32).unwrap();
    assert_eq!(b.source, Source::Extrapolated { nearest: 1e6, ratio: 0.01 });
    assert_est(b.speedup, 1.1, 1.05, 1.15);
    assert_eq!(b.warnings.len(), 1, "{:?}", b.warnings);
    assert!(b.warnings[0].contains("100.000× below the calibrated range"), "{}", b.warnings[0]);
    assert!(
        b.warnings[0].contains("1.000e6") && b.warnings[0].contains("1.000e8"),
        "names the range: {}",
        b.warnings[0]
    );

    let b = m.fusion_benefit("Linear_Bias", &at(2_500_000_000), Precision::Fp32).unwrap();
    assert_eq!(b.source, Source::Extrapolated { nearest: 1e8, ratio: 25.0 });
    assert_est(b.speedup, 1.5, 1.4, 1.6);
    assert!(b.warnings[0].contains("25.000× above the calibrated range"), "{}", b.warnings[0]);
    let d = m.should_fuse("Linear_Bias", &at(2_500_000_000), Precision::Fp32).unwrap();
    assert!(d.reason.contains("extrapolated") && d.reason.contains("25.000× above"), "{}", d.reason);

    // one calibrated size: everything else is extrapolated from it
    let m = model(&[Rec::new("Add_ReLU", 4_000, est(1.3, 1.2, 1.4))], CostModelOptions::default());
    let b = m.fusion_benefit("Add_ReLU", &at(8_000), Precision::Fp32).unwrap();
    assert_eq!(b.source, Source::Extrapolated { nearest: 4000.0, ratio: 2.0 });
}

#[test]
fn records_of_the_same_size_combine_to_median_point_and_widest_ci() {
    let recs = [
        Rec::new("Conv2d_BN", 1_000_000, est(1.1, 1.08, 1.12)),
        Rec::new("Conv2d_BN", 1_000_000, est(1.3, 1.25, 1.45)),
        Rec::new("Conv2d_BN", 1_005_000, est(1.2, 1.02, 1.3)),
        Rec::new("Conv2d_BN", 4_000_000, est(2.0, 1.9, 2.1)),
    ];
    let m = model(&recs, CostModelOptions::default());
    let sizes = m.calibrated_sizes(Pattern::ConvBn);
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    let b = m.fusion_benefit("Conv2d_BN", &at(1_000_000), Precision::Fp32).unwrap();
    assert!(matches!(b.source, Source::Measured { size } if (size - 1e6).abs() < 5000.0), "{:?}", b.source);
    assert_est(b.speedup, 1.2, 1.02, 1.45);
    assert_eq!(b.records_used, 3);
}

// ---------- equivalence and trust ----------

#[test]
fn records_whose_outputs_disagree_are_never_a_speedup() {
    let mut bad = Rec::new("Linear_Bias", 100_000_000, est(2.5, 2.4, 2.6));
    bad.equivalent = false;
    let recs = [Rec::new("Linear_Bias", 1_000_000, est(1.5, 1.45, 1.55)), bad.clone(), bad.clone()];
    let m = model(&recs, CostModelOptions::default());
    // at the size where every record disagrees
    let d = m.should_fuse("Linear_Bias", &at(100_000_000), Precision::Fp32).unwrap();
    assert_eq!(d.choice, Choice::DontFuse);
    assert!(!d.fuse && !d.benefit.equivalent);
    assert_eq!(d.benefit.speedup, Estimate::exact(1.0));
    assert_eq!(d.benefit.records_used, 2);
    assert!(
        d.benefit.warnings.iter().any(|w| w.contains("disagree") && w.contains("all 2")),
        "{:?}",
        d.benefit.warnings
    );
    assert!(d.reason.contains("disagree"), "{}", d.reason);
    // between it and a good size: a bracket disagrees, so no
    let d = m.should_fuse("Linear_Bias", &at(10_000_000), Precision::Fp32).unwrap();
    assert_eq!(d.choice, Choice::DontFuse);
    assert!(matches!(d.benefit.source, Source::Interpolated { .. }));
    // above it: extrapolated from a size that disagrees
    assert_eq!(m.should_fuse("Linear_Bias", &at(1_000_000_000), Precision::Fp32).unwrap().choice, Choice::DontFuse);
    // at the good size the good record decides
    let d = m.should_fuse("Linear_Bias", &at(1_000_000), Precision::Fp32).unwrap();
    assert_eq!(d.choice, Choice::Fuse);
    assert!(d.benefit.equivalent && d.benefit.warnings.is_empty());

    // some agree, some not, at one size: the agreeing ones are used, and it is said
    let recs = [Rec::new("Sigmoid_Mul", 1_000_000, est(1.3, 1.25, 1.35)), bad_as("Sigmoid_Mul", 1_000_000)];
    let m = model(&recs, CostModelOptions::default());
    let b = m.fusion_benefit("Sigmoid_Mul", &at(1_000_000), Precision::Fp32).unwrap();
    assert!(b.equivalent);
    assert_est(b.speedup, 1.3, 1.25, 1.35);
    assert!(b.warnings.iter().any(|w| w.contains("1 of 2")), "{:?}", b.warnings);

    // a pattern all of whose records disagree is DontFuse, not a fallback
    let m = model(&[bad_as("Add_LayerNorm", 1_000_000)], CostModelOptions::default());
    assert_eq!(m.patterns(), vec![Pattern::AddLayerNorm]);
    let d = m.should_fuse("Add_LayerNorm", &at(5_000), Precision::Fp32).unwrap();
    assert_eq!(d.choice, Choice::DontFuse);
    assert!(matches!(d.benefit.source, Source::Extrapolated { .. }));
}

fn bad_as(pattern: &'static str, size: u64) -> Rec {
    let mut r = Rec::new(pattern, size, est(3.0, 2.9, 3.1));
    r.equivalent = false;
    r
}

#[test]
fn untrustworthy_and_skipped_records() {
    let mut busy = Rec::new("Add_ReLU", 1_000_000, est(1.4, 1.35, 1.45));
    busy.aa = est(1.08, 1.06, 1.10);
    let mut skipped = Rec::new("Add_ReLU", 4_000_000, est(9.0, 9.0, 9.0));
    skipped.measured = false;
    let fine = Rec::new("Add_ReLU", 2_000_000, est(1.2, 1.15, 1.25));
    let m = model(&[busy.clone(), skipped.clone(), fine], CostModelOptions::default());
    // the busy record is left out: its size answers from the trustworthy one, saying so
    let b = m.fusion_benefit("Add_ReLU", &at(1_000_000), Precision::Fp32).unwrap();
    assert_est(b.speedup, 1.2, 1.15, 1.25);
    assert!(b.warnings.iter().any(|w| w.contains("A/A") && w.contains("untrustworthy")), "{:?}", b.warnings);
    // neither the skipped nor the untrustworthy record is a calibrated size
    assert_eq!(m.calibrated_sizes(Pattern::AddRelu).len(), 1);
    // only an untrustworthy record: the fallback, saying why
    let m = model(&[busy], CostModelOptions::default());
    let b = m.fusion_benefit("Add_ReLU", &at(1_000_000), Precision::Fp32).unwrap();
    assert_eq!(b.source, Source::Fallback(Fallback::AssumeBeneficial));
    assert!(b.warnings[0].contains("A/A control failed"), "{:?}", b.warnings);
    // only skipped records: the fallback, saying so
    let m = model(&[skipped], CostModelOptions::default());
    assert!(m.patterns().is_empty());
    let b = m.fusion_benefit("Add_ReLU", &at(4_000_000), Precision::Fp32).unwrap();
    assert_eq!(b.source, Source::Fallback(Fallback::AssumeBeneficial));
    assert!(b.warnings[0].contains("skipped"), "{:?}", b.warnings);
}

// ---------- variants ----------

#[test]
fn variants_pick_the_speedup_of_a_record() {
    let mut r = Rec::new("Conv2d_BN_ReLU", 1_000_000, est(1.3, 1.25, 1.35));
    r.explicit = Some((est(1.8, 1.7, 1.9), true));
    r.best_variant = "explicit";
    let mut no_kernel = Rec::new("Add_ReLU", 1_000_000, est(1.15, 1.1, 1.2));
    no_kernel.best_variant = "unfused";
    let mut bad_explicit = Rec::new("Conv2d_BN", 1_000_000, est(1.3, 1.25, 1.35));
    bad_explicit.explicit = Some((est(2.0, 1.9, 2.1), false));
    let recs = [r, no_kernel, bad_explicit];
    let with = |variant| model(&recs, CostModelOptions { variant, ..Default::default() });

    let m = with(VariantChoice::Headline);
    assert_est(m.fusion_benefit("Conv2d_BN_ReLU", &at(1_000_000), Precision::Fp32).unwrap().speedup, 1.3, 1.25, 1.35);
    let m = with(VariantChoice::Best);
    assert_est(m.fusion_benefit("Conv2d_BN_ReLU", &at(1_000_000), Precision::Fp32).unwrap().speedup, 1.8, 1.7, 1.9);
    assert_est(m.fusion_benefit("Add_ReLU", &at(1_000_000), Precision::Fp32).unwrap().speedup, 1.15, 1.1, 1.2);
    let m = with(VariantChoice::Explicit);
    assert_est(m.fusion_benefit("Conv2d_BN_ReLU", &at(1_000_000), Precision::Fp32).unwrap().speedup, 1.8, 1.7, 1.9);
    // explicit outputs that disagree: don't fuse
    assert_eq!(m.should_fuse("Conv2d_BN", &at(1_000_000), Precision::Fp32).unwrap().choice, Choice::DontFuse);
    // no explicit kernel: the fallback, with ORT's reason
    let b = m.fusion_benefit("Add_ReLU", &at(1_000_000), Precision::Fp32).unwrap();
    assert_eq!(b.source, Source::Fallback(Fallback::AssumeBeneficial));
    assert!(
        b.warnings[0].contains("Explicit") && b.warnings[0].contains("ORT has no fused Add+ReLU kernel"),
        "{:?}",
        b.warnings
    );
    assert_eq!(m.patterns(), vec![Pattern::ConvBn, Pattern::ConvBnRelu]);
}

// ---------- decisions ----------

#[test]
fn the_three_choices() {
    let recs = [
        Rec::new("Conv2d_BN_ReLU", 1_000_000, est(1.5, 1.4, 1.6)),
        Rec::new("Add_ReLU", 1_000_000, est(1.25, 1.15, 1.35)),
        Rec::new("Sigmoid_Mul", 1_000_000, est(1.1, 1.05, 1.15)),
        Rec::new("Conv2d_ReLU", 1_000_000, est(0.9, 0.85, 0.95)),
        Rec::new("Conv2d_Bias", 1_000_000, est(0.995, 0.97, 1.02)),
    ];
    let m = model(&recs, CostModelOptions::default());
    let d = |p: &str| m.should_fuse(p, &at(1_000_000), Precision::Fp32).unwrap();

    let fuse = d("Conv2d_BN_ReLU");
    assert_eq!((fuse.choice, fuse.fuse, fuse.threshold), (Choice::Fuse, true, 1.2));
    assert!(
        fuse.reason.contains("CI low 1.400 ≥ threshold 1.200") && fuse.reason.contains("measured at size 1.000e6"),
        "{}",
        fuse.reason
    );
    // the point clears the threshold, the CI does not: marginal
    let straddles = d("Add_ReLU");
    assert_eq!((straddles.choice, straddles.fuse), (Choice::Marginal, false));
    assert!(straddles.reason.contains("marginal"), "{}", straddles.reason);
    // faster, but below the threshold
    assert_eq!(d("Sigmoid_Mul").choice, Choice::Marginal);
    // slower
    let slower = d("Conv2d_ReLU");
    assert_eq!((slower.choice, slower.fuse), (Choice::DontFuse, false));
    assert!(slower.reason.contains("no faster"), "{}", slower.reason);
    // within noise, point below 1
    assert_eq!(d("Conv2d_Bias").choice, Choice::DontFuse);
}

#[test]
fn the_threshold_is_configurable_and_flips_decisions() {
    let recs = [Rec::new("Linear_Bias_GELU", 1_000_000, est(1.15, 1.12, 1.18))];
    let strict = model(&recs, CostModelOptions::default());
    let d = strict.should_fuse("Linear_Bias_GELU", &at(1_000_000), Precision::Fp32).unwrap();
    assert_eq!((d.choice, d.fuse, d.threshold), (Choice::Marginal, false, 1.2));
    let loose = model(&recs, CostModelOptions::with_threshold(1.05));
    let d = loose.should_fuse("Linear_Bias_GELU", &at(1_000_000), Precision::Fp32).unwrap();
    assert_eq!((d.choice, d.fuse, d.threshold), (Choice::Fuse, true, 1.05));
    assert!(d.reason.contains("threshold 1.050"), "{}", d.reason);
    // through interpolation too: 1.3 [1.225, 1.375] at 1e7
    let m = model(&two_sizes(), CostModelOptions::default());
    assert_eq!(m.should_fuse("Linear_Bias", &at(10_000_000), Precision::Fp32).unwrap().choice, Choice::Fuse);
    let m = model(&two_sizes(), CostModelOptions { threshold: 1.25, ..Default::default() });
    assert_eq!(m.should_fuse("Linear_Bias", &at(10_000_000), Precision::Fp32).unwrap().choice, Choice::Marginal);
}

#[test]
fn invalid_options_and_workloads_are_errors() {
    for threshold in [0.9, f64::NAN, f64::INFINITY, -1.0] {
        let opts = CostModelOptions { threshold, ..Default::default() };
        assert!(FusionCostModel::from_calibration(&[], opts).is_err(), "threshold {threshold}");
    }
    let opts = CostModelOptions { fallback_speedup: f64::NAN, ..Default::default() };
    assert!(FusionCostModel::from_calibration(&[], opts).is_err());
    let m = model(&two_sizes(), CostModelOptions::default());
    let e = m.fusion_benefit("Linear_Bias", &Workload::default(), Precision::Fp32).unwrap_err();
    assert!(format!("{e:#}").contains("size 0"), "{e:#}");
}

// ---------- fallback ----------

#[test]
fn the_fallback_is_visible_in_source_warnings_and_reason() {
    let recs = two_sizes();
    // default: the design's "assume beneficial", at the threshold, so fused
    let m = model(&recs, CostModelOptions::default());
    assert_eq!(m.options().fallback, Fallback::AssumeBeneficial);
    let d = m.should_fuse("Attention_Head", &Workload::attention(1, 12, 128, 64), Precision::Fp32).unwrap();
    assert_eq!(d.benefit.source, Source::Fallback(Fallback::AssumeBeneficial));
    assert_eq!(d.benefit.speedup, Estimate::exact(1.2));
    assert_eq!(d.benefit.records_used, 0);
    assert_eq!((d.choice, d.fuse), (Choice::Fuse, true));
    assert!(d.reason.contains("Fallback::AssumeBeneficial"), "{}", d.reason);
    assert!(
        d.benefit.warnings[0].contains("no record of Attention_Head")
            && d.benefit.warnings[0].contains("AssumeBeneficial"),
        "{:?}",
        d.benefit.warnings
    );
    // serialised for a report, the fallback is there too
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["benefit"]["source"], json!({ "Fallback": "AssumeBeneficial" }));
    assert_eq!(v["choice"], json!("Fuse"));

    // another assumed speedup
    let m = model(&recs, CostModelOptions { fallback_speedup: 1.5, ..Default::default() });
    assert_eq!(m.fusion_benefit("Add_ReLU", &at(1000), Precision::Fp32).unwrap().speedup, Estimate::exact(1.5));
    // assumed, but below the threshold: marginal, and the model says so up front
    let m = model(&recs, CostModelOptions { fallback_speedup: 1.1, ..Default::default() });
    assert_eq!(m.should_fuse("Add_ReLU", &at(1000), Precision::Fp32).unwrap().choice, Choice::Marginal);
    assert!(m.warnings().iter().any(|w| w.contains("below the threshold")), "{:?}", m.warnings());

    // neutral: nothing to gain, not fused
    let m = model(&recs, CostModelOptions { fallback: Fallback::AssumeNeutral, ..Default::default() });
    let d = m.should_fuse("Add_ReLU", &at(1000), Precision::Fp32).unwrap();
    assert_eq!(d.benefit.source, Source::Fallback(Fallback::AssumeNeutral));
    assert_eq!(d.benefit.speedup, Estimate::exact(1.0));
    assert_eq!((d.choice, d.fuse), (Choice::DontFuse, false));
    assert!(d.reason.contains("Fallback::AssumeNeutral"), "{}", d.reason);

    // refuse: an error naming the pattern, the fallback and what is calibrated
    let m = model(&recs, CostModelOptions { fallback: Fallback::Refuse, ..Default::default() });
    let e = format!("{:#}", m.should_fuse("Add_ReLU", &at(1000), Precision::Fp32).unwrap_err());
    assert!(
        e.contains("Add_ReLU") && e.contains("Fallback::Refuse") && e.contains("calibrated patterns: Linear_Bias"),
        "{e}"
    );
    assert!(m.fusion_benefit("Add_ReLU", &at(1000), Precision::Fp32).is_err());
    // measured patterns are unaffected by the fallback
    assert_eq!(
        m.should_fuse("Linear_Bias", &at(1_000_000), Precision::Fp32).unwrap().benefit.source,
        Source::Measured { size: 1e6 }
    );

    // an empty calibration is allowed, and said
    let m = FusionCostModel::from_calibration(&[], CostModelOptions::default()).unwrap();
    assert!(m.warnings()[0].contains("no records"), "{:?}", m.warnings());
}

// ---------- files ----------

fn write_json(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    path
}

fn bench_file(recs: &[Rec], cpu: &str, complete: bool) -> Value {
    json!({
        "schema_version": 1,
        "metadata": { "tool": "fuseval", "hardware": { "cpu_model": cpu, "logical_cores": 2 }, "execution_provider": "cpu" },
        "patterns_found_longest": { "Linear_Bias": recs.len() },
        "patterns_found_all": { "Linear_Bias": recs.len() },
        "fusion_profiles": recs.iter().map(Rec::json).collect::<Vec<_>>(),
        "whole_model": null,
        "warnings": [],
        "complete": complete
    })
}

#[test]
fn from_path_reads_bench_calibrate_and_merged_files() {
    let dir = tempfile::tempdir().unwrap();
    // a bench calibration.json
    let bench = write_json(dir.path(), "calibration.json", &bench_file(&two_sizes(), "Test CPU", true));
    let m = FusionCostModel::from_path(&bench, CostModelOptions::default()).unwrap();
    assert_eq!(m.patterns(), vec![Pattern::LinearBias]);
    assert!(m.warnings().is_empty(), "{:?}", m.warnings());
    let b = m.fusion_benefit("MatMul_Add", &at(10_000_000), Precision::Fp32).unwrap();
    assert_est(b.speedup, 1.3, 1.225, 1.375);

    // a calibrate HardwareCalibration: other top-level fields, the same records
    let hw = json!({
        "hardware_name": "Test CPU",
        "theoretical_peak_gflops": 100.0,
        "operations": [],
        "fusion_profiles": [Rec::new("Conv2d_BN_ReLU", 2_000_000, est(1.6, 1.5, 1.7)).json()]
    });
    let hw = write_json(dir.path(), "hardware.json", &hw);
    let m = FusionCostModel::from_path(&hw, CostModelOptions::default()).unwrap();
    assert_eq!(m.should_fuse("Conv2d_BatchNorm2d_ReLU", &at(2_000_000), Precision::Fp32).unwrap().choice, Choice::Fuse);

    // an interrupted bench: used, and said
    let partial = write_json(dir.path(), "partial.json", &bench_file(&two_sizes(), "Test CPU", false));
    let m = FusionCostModel::from_path(&partial, CostModelOptions::default()).unwrap();
    assert!(m.warnings()[0].contains("incomplete") && m.warnings()[0].contains("partial.json"), "{:?}", m.warnings());

    // a merged file of one machine: every run's records
    let one = json!({ "schema_version": 1, "kind": "merged", "date": "x", "sources": ["a", "b"], "runs": [
        bench_file(&two_sizes()[..1], "Test CPU", true), bench_file(&two_sizes()[1..], "Test CPU", true) ] });
    let one = write_json(dir.path(), "merged.json", &one);
    let m = FusionCostModel::from_path(&one, CostModelOptions::default()).unwrap();
    assert_eq!(m.calibrated_sizes(Pattern::LinearBias).len(), 2);
    // of two machines: refused, naming the file and the machines
    let two = json!({ "schema_version": 1, "kind": "merged", "date": "x", "sources": ["a", "b"], "runs": [
        bench_file(&two_sizes(), "CPU A", true), bench_file(&two_sizes(), "CPU B", true) ] });
    let two = write_json(dir.path(), "two.json", &two);
    let e = format!("{:#}", FusionCostModel::from_path(&two, CostModelOptions::default()).unwrap_err());
    assert!(e.contains("two.json") && e.contains("CPU A") && e.contains("CPU B"), "{e}");
}

#[test]
fn from_path_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let e = format!("{:#}", FusionCostModel::from_path(&missing, CostModelOptions::default()).unwrap_err());
    assert!(e.contains("nope.json"), "{e}");

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, b"{ not json").unwrap();
    let e = format!("{:#}", FusionCostModel::from_path(&garbage, CostModelOptions::default()).unwrap_err());
    assert!(e.contains("garbage.json") && e.contains("not JSON"), "{e}");

    let other = write_json(dir.path(), "other.json", &json!({ "profiles": [] }));
    let e = format!("{:#}", FusionCostModel::from_path(&other, CostModelOptions::default()).unwrap_err());
    assert!(e.contains("other.json") && e.contains("fusion_profiles"), "{e}");

    let mut bad = bench_file(&two_sizes(), "Test CPU", true);
    bad["fusion_profiles"][1]["speedup_factor"] = json!("fast");
    let bad = write_json(dir.path(), "bad.json", &bad);
    let e = format!("{:#}", FusionCostModel::from_path(&bad, CostModelOptions::default()).unwrap_err());
    assert!(e.contains("bad.json") && e.contains("fusion_profiles[1]"), "{e}");

    let opts = CostModelOptions { threshold: 0.5, ..Default::default() };
    let good = write_json(dir.path(), "good.json", &bench_file(&two_sizes(), "Test CPU", true));
    let e = format!("{:#}", FusionCostModel::from_path(&good, opts).unwrap_err());
    assert!(e.contains("good.json") && e.contains("threshold"), "{e}");
}

/// A record keyed by `precision`.
fn in_precision(r: &Rec, precision: &str) -> Value {
    let mut v = r.json();
    v["precision"] = json!(precision);
    v
}

#[test]
fn records_are_keyed_by_precision_and_the_model_answers_by_precision() {
    // one Linear_Bias size measured in tf32 (1.1×, not worth fusing) and in fp16 (1.6×, worth it)
    let tf32 = in_precision(&Rec::new("Linear_Bias", 1_000_000, est(1.1, 1.05, 1.15)), "tf32");
    let fp16 = in_precision(&Rec::new("Linear_Bias", 1_000_000, est(1.6, 1.5, 1.7)), "fp16");
    let mut file = bench_file(&[], "Test GPU", true);
    file["metadata"]["execution_provider"] = json!("cuda:0");
    file["fusion_profiles"] = json!([tf32, fp16]);
    let dir = tempfile::tempdir().unwrap();
    let path = write_json(dir.path(), "calibration.json", &file);

    // written and read back: each record keeps its key
    let src = fuseval::calibration::read::read(&path).unwrap();
    let keys: Vec<Option<Precision>> = src.records().map(|r| r.precision).collect();
    assert_eq!(keys, [Some(Precision::Tf32), Some(Precision::Fp16)]);
    let back: FusionCalibration =
        serde_json::from_value(serde_json::to_value(src.records().next().unwrap()).unwrap()).unwrap();
    assert_eq!(back.precision, Some(Precision::Tf32));

    let m = FusionCostModel::from_path(&path, CostModelOptions::default()).unwrap();
    assert_eq!(m.precisions(), [Precision::Tf32, Precision::Fp16]);
    assert!(m.warnings().iter().any(|w| w.contains("tf32, fp16")), "{:?}", m.warnings());
    let w = at(1_000_000);
    assert!(!m.should_fuse("Linear_Bias", &w, Precision::Tf32).unwrap().fuse);
    assert_eq!(m.should_fuse("Linear_Bias", &w, Precision::Fp16).unwrap().choice, Choice::Fuse);
    assert_est(m.fusion_benefit("Linear_Bias", &w, Precision::Fp16).unwrap().speedup, 1.6, 1.5, 1.7);
    // fp32 was not measured: the fallback, and it says where the pattern was measured
    let b = m.fusion_benefit("Linear_Bias", &w, Precision::Fp32).unwrap();
    assert!(matches!(b.source, Source::Fallback(_)));
    assert!(b.warnings[0].contains("tf32, fp16"), "{:?}", b.warnings);
    // a model for one precision answers in it without being told
    let only16 = CostModelOptions { precision: Some(Precision::Fp16), ..CostModelOptions::default() };
    let m16 = FusionCostModel::from_path(&path, only16).unwrap();
    assert_eq!(m16.decide(Pattern::LinearBias, &w).unwrap().choice, Choice::Fuse);

    // an older file without keys: its records are the run's precision (a CUDA run: tf32)
    let mut old = bench_file(&two_sizes(), "Test GPU", true);
    old["metadata"]["execution_provider"] = json!("cuda:0");
    let old = write_json(dir.path(), "old.json", &old);
    let m = FusionCostModel::from_path(&old, CostModelOptions::default()).unwrap();
    assert_eq!(m.precisions(), [Precision::Tf32]);
    assert_eq!(m.precision(), Precision::Tf32);
}
