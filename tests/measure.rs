//! Tests of the timing harness against the real ONNX Runtime: equivalence, recorded ops, the A/A control,
//! strict CUDA, seeded inputs, and library resolution. Models are built here with tract's prost types.

use std::path::{Path, PathBuf};

use fuseval::estimate::Estimate;
use fuseval::measure::aa_consistent;
use fuseval::measure::{
    check_equivalence, compare, compare_variants, random_inputs, Comparison, DType, InputSpec, Level, MeasureOptions,
    ModelSource, OutputValues, SessionNoise,
};
use fuseval::runtime::{self, Ep, LibraryVars};
use prost::Message;
use tract_onnx::pb;

// ---------- model building ----------

fn value_info(name: &str, elem: DType, dims: &[i64]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension, Dimension};
    let dim = dims
        .iter()
        .map(|&d| Dimension { denotation: String::new(), value: Some(dimension::Value::DimValue(d)) })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem.onnx_code(),
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        doc_string: String::new(),
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
    pb::NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_{}", outputs[0]),
        op_type: op.into(),
        ..Default::default()
    }
}

fn f32_initializer(name: &str, dims: &[i64], seed: u32) -> pb::TensorProto {
    let n: i64 = dims.iter().product();
    // Deterministic, non-zero, roughly unit-scale weights.
    let data = (0..n as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32) - 0.5)
        .collect();
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DType::F32.onnx_code(),
        float_data: data,
        ..Default::default()
    }
}

fn model(
    nodes: Vec<pb::NodeProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    inits: Vec<pb::TensorProto>,
) -> Vec<u8> {
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
        producer_name: "fuseval-tests".into(),
        graph: Some(pb::GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Like [`model`], also importing the `com.microsoft` contrib domain.
fn ms_model(
    nodes: Vec<pb::NodeProto>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
    inits: Vec<pb::TensorProto>,
) -> Vec<u8> {
    let mut m = pb::ModelProto::decode(model(nodes, inputs, outputs, inits).as_slice()).unwrap();
    m.opset_import.push(pb::OperatorSetIdProto { domain: "com.microsoft".into(), version: 1 });
    m.encode_to_vec()
}

fn ms_node(op: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
    pb::NodeProto { domain: "com.microsoft".into(), ..node(op, inputs, outputs) }
}

fn string_attr(name: &str, v: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 3, // STRING
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// [`matmul_add_relu`] as one `com.microsoft.FusedGemm` (Gemm semantics, then `activation`), same weights,
/// same input and output names.
fn fused_gemm(activation: &str) -> Vec<u8> {
    let mut n = ms_node("FusedGemm", &["x", "w", "bias"], &["y"]);
    n.attribute.push(string_attr("activation", activation));
    ms_model(
        vec![n],
        vec![value_info("x", DType::F32, &[64, 256])],
        vec![value_info("y", DType::F32, &[64, 256])],
        vec![f32_initializer("w", &[256, 256], 1), f32_initializer("bias", &[256], 2)],
    )
}

/// [`matmul_add_relu`] with the Relu dropped: a plain `Gemm`, which computes something else.
fn gemm_without_relu() -> Vec<u8> {
    model(
        vec![node("Gemm", &["x", "w", "bias"], &["y"])],
        vec![value_info("x", DType::F32, &[64, 256])],
        vec![value_info("y", DType::F32, &[64, 256])],
        vec![f32_initializer("w", &[256, 256], 1), f32_initializer("bias", &[256], 2)],
    )
}

const ADD_RELU_SHAPE: [i64; 4] = [1, 256, 56, 56];

/// `Relu(a + b)` on two [1,256,56,56] inputs: memory-bound, like ResNet's residual Sum+ReLU.
fn add_relu() -> (Vec<u8>, Vec<InputSpec>) {
    let s = &ADD_RELU_SHAPE;
    let bytes = model(
        vec![node("Add", &["a", "b"], &["s"]), node("Relu", &["s"], &["y"])],
        vec![value_info("a", DType::F32, s), value_info("b", DType::F32, s)],
        vec![value_info("y", DType::F32, s)],
        vec![],
    );
    (bytes, vec![spec("a", DType::F32, &[1, 256, 56, 56], None), spec("b", DType::F32, &[1, 256, 56, 56], None)])
}

/// `Relu(x @ W + bias)` with constant W [256,256] and bias [256], x [64,256].
fn matmul_add_relu() -> (Vec<u8>, Vec<InputSpec>) {
    let bytes = model(
        vec![node("MatMul", &["x", "w"], &["m"]), node("Add", &["m", "bias"], &["s"]), node("Relu", &["s"], &["y"])],
        vec![value_info("x", DType::F32, &[64, 256])],
        vec![value_info("y", DType::F32, &[64, 256])],
        vec![f32_initializer("w", &[256, 256], 1), f32_initializer("bias", &[256], 2)],
    );
    (bytes, vec![spec("x", DType::F32, &[64, 256], None)])
}

fn spec(name: &str, dtype: DType, shape: &[usize], range: Option<(i64, i64)>) -> InputSpec {
    InputSpec { name: name.into(), dtype, shape: shape.to_vec(), range }
}

fn quick_opts() -> MeasureOptions {
    MeasureOptions::new(Ep::Cpu, 1, true)
}

/// Every test that touches ONNX Runtime calls this first: the shared thread pool is fixed per process, and
/// this binary measures with 1 or 2 threads.
fn setup() {
    runtime::configure_pool(2).expect("configuring a shared pool of 2 threads");
}

fn show(c: &Comparison) -> String {
    let e = |x: &Estimate| format!("{:.4} [{:.4}, {:.4}]", x.point, x.lo, x.hi);
    format!(
        "unfused {:.4} ms, ext {:.4} ms, all {:.4} ms; speedup ext {} all {}; A/A {} ok={}; rounds {} x{} budget_exhausted={} wall {:.1}s",
        c.unfused.median_ms,
        c.fused_extended.median_ms,
        c.fused_all.median_ms,
        e(&c.speedup_extended),
        e(&c.speedup_all),
        e(&c.aa_control),
        c.aa_ok,
        c.rounds,
        c.iters_per_round,
        c.budget_exhausted,
        c.wall_s
    )
}

// ---------- equivalence and recorded ops ----------

#[test]
fn matmul_add_relu_fuses_and_stays_equivalent() {
    setup();
    let (bytes, inputs) = matmul_add_relu();
    let c = compare(ModelSource::Bytes(&bytes), &inputs, &quick_opts()).expect("compare");
    eprintln!("matmul+add+relu: {}\n  ext ops {:?}\n  all ops {:?}", show(&c), c.fused_ops_extended, c.fused_ops_all);
    assert_eq!(c.unfused_ops, ["MatMul", "Add", "Relu"]);
    assert!(c.equivalence_extended.passed, "{:?}", c.equivalence_extended);
    assert!(c.equivalence_all.passed, "{:?}", c.equivalence_all);
    // Two input sets plus the bound (timed) outputs: three comparisons of the single output.
    assert_eq!(c.equivalence_all.outputs_compared, 3);
    assert!(c.equivalence_all.max_abs_err < 1e-3);
    // What ORT 1.31 really does on CPU: MatMul+Add become a Gemm, and Gemm+Relu a FusedGemm.
    assert_eq!(c.fused_ops_extended, ["com.microsoft.FusedGemm"]);
    assert_eq!(c.fused_ops_all, ["com.microsoft.FusedGemm"]);
    assert!(c.rounds >= quick_opts().min_rounds || c.budget_exhausted);
    let json = serde_json::to_string(&c).expect("serialize");
    let back: Comparison = serde_json::from_str(&json).expect("deserialize");
    // serde_json may differ in the last bit of a float; compare structure and values closely.
    assert_eq!((back.rounds, &back.fused_ops_all, back.ep, back.aa_ok), (c.rounds, &c.fused_ops_all, c.ep, c.aa_ok));
    assert!((back.speedup_all.point - c.speedup_all.point).abs() < 1e-12);
}

#[test]
fn add_relu_records_ops_and_passes() {
    setup();
    let (bytes, inputs) = add_relu();
    let c = compare(ModelSource::Bytes(&bytes), &inputs, &quick_opts()).expect("compare");
    eprintln!("add+relu: {}\n  ext ops {:?}\n  all ops {:?}", show(&c), c.fused_ops_extended, c.fused_ops_all);
    assert_eq!(c.unfused_ops, ["Add", "Relu"]);
    assert!(c.equivalence_extended.passed && c.equivalence_all.passed);
    // ORT 1.31 has no CPU fusion for Add+Relu: both levels keep the two ops.
    assert_eq!(c.fused_ops_extended, ["Add", "Relu"]);
    assert_eq!(c.fused_ops_all, ["Add", "Relu"]);
}

#[test]
fn model_from_a_path_works() {
    setup();
    let (bytes, inputs) = matmul_add_relu();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let w = fuseval::measure::whole_model(&path, &inputs, &quick_opts()).expect("whole model");
    assert_eq!(w.nodes_disabled, 3);
    assert_eq!(w.nodes_all, 1);
    assert!(w.equivalence_all.passed);
}

// ---------- the explicit-fused variant ----------

#[test]
fn explicit_fused_gemm_agrees_and_is_timed_with_the_rest() {
    setup();
    let (bytes, inputs) = matmul_add_relu();
    let explicit = fused_gemm("Relu");
    let c = compare_variants(ModelSource::Bytes(&bytes), Some(&explicit), &inputs, &quick_opts()).expect("compare");
    let x = c.explicit.as_ref().expect("explicit measured");
    eprintln!(
        "matmul+add+relu with explicit FusedGemm: {}\n  explicit {:.4} ms, speedup {:?}",
        show(&c),
        x.latency.median_ms,
        x.speedup
    );
    assert_eq!(c.explicit_error, None);
    assert_eq!(x.ops, ["com.microsoft.FusedGemm"]);
    assert!(x.equivalence.passed, "{:?}", x.equivalence);
    // two input sets and the bound outputs, like the other variants
    assert_eq!(x.equivalence.outputs_compared, 3);
    assert!(x.equivalence.max_abs_err < 1e-3);
    assert_eq!(x.latency.samples, c.rounds, "timed in every round");
    assert!(x.latency.median_ms > 0.0);
    assert!(x.speedup.lo > 0.0 && x.speedup.hi > x.speedup.lo, "{:?}", x.speedup);
    // the other four are measured as before
    assert!(c.equivalence_extended.passed && c.equivalence_all.passed);
    assert_eq!(c.fused_ops_extended, ["com.microsoft.FusedGemm"]);
    assert_eq!(c.unfused_ops, ["MatMul", "Add", "Relu"]);
    // ORT's extended level makes the same FusedGemm: the two fused variants run the same kernel
    let ratio = x.latency.median_ms / c.fused_extended.median_ms;
    assert!((0.7..1.4).contains(&ratio), "explicit vs extended {ratio}");
    let back: Comparison = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back.explicit.as_ref().map(|x| &x.ops), Some(&x.ops));
}

#[test]
fn explicit_that_computes_something_else_fails_equivalence() {
    setup();
    let (bytes, inputs) = matmul_add_relu();
    let wrong = gemm_without_relu();
    let c = compare_variants(ModelSource::Bytes(&bytes), Some(&wrong), &inputs, &quick_opts()).expect("compare");
    let x = c.explicit.as_ref().expect("explicit measured");
    eprintln!("explicit without relu: {:?}", x.equivalence);
    assert_eq!(x.ops, ["Gemm"]);
    assert!(!x.equivalence.passed, "dropping the Relu must be caught");
    assert!(x.equivalence.max_abs_err > 0.1, "{:?}", x.equivalence);
    assert!(c.explicit_error.is_none());
    // the runtime-fused variants are unaffected
    assert!(c.equivalence_extended.passed && c.equivalence_all.passed);
    assert!(c.aa_control.point > 0.0);
}

#[test]
fn explicit_that_cannot_run_is_an_explicit_error_not_a_failure() {
    setup();
    let (bytes, inputs) = matmul_add_relu();
    let unknown = ms_model(
        vec![ms_node("NoSuchFusedOp", &["x", "w", "bias"], &["y"])],
        vec![value_info("x", DType::F32, &[64, 256])],
        vec![value_info("y", DType::F32, &[64, 256])],
        vec![f32_initializer("w", &[256, 256], 1), f32_initializer("bias", &[256], 2)],
    );
    let c = compare_variants(ModelSource::Bytes(&bytes), Some(&unknown), &inputs, &quick_opts())
        .expect("the comparison goes on without the explicit variant");
    let why = c.explicit_error.as_deref().expect("explicit_error set");
    eprintln!("unknown op: {why}");
    assert!(why.contains("NoSuchFusedOp"), "{why}");
    assert!(c.explicit.is_none());
    assert!(c.equivalence_extended.passed && c.equivalence_all.passed);
    assert!(c.unfused.median_ms > 0.0 && c.fused_extended.median_ms > 0.0);
    assert!(c.rounds >= quick_opts().min_rounds || c.budget_exhausted);

    // an explicit model with other input names, and one that is not ONNX at all
    let mut renamed = pb::ModelProto::decode(fused_gemm("Relu").as_slice()).unwrap();
    let g = renamed.graph.as_mut().unwrap();
    g.input[0].name = "x2".into();
    g.node[0].input[0] = "x2".into();
    let renamed = renamed.encode_to_vec();
    for (what, m) in [("renamed input", renamed.as_slice()), ("garbage", b"not onnx".as_slice())] {
        let c = compare_variants(ModelSource::Bytes(&bytes), Some(m), &inputs, &quick_opts())
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        eprintln!("{what}: {:?}", c.explicit_error);
        assert!(c.explicit_error.is_some() && c.explicit.is_none(), "{what}");
    }
}

// ---------- the A/A control ----------

#[test]
fn aa_control_is_one() {
    setup();
    let (bytes, inputs) = add_relu();
    // a 95% CI misses an exact 1.00 one time in twenty by construction, and one set of sessions can sit a
    // few percent off (the arena's luck): measure::replicate measures again, in fresh sessions, while the
    // control fails, as every run does
    let mut opts = MeasureOptions::new(Ep::Cpu, 1, false);
    opts.budget = std::time::Duration::from_secs(4);
    let c = fuseval::measure::replicate(ModelSource::Bytes(&bytes), None, &inputs, &opts, "aa", 0).expect("compare");
    eprintln!("A/A add+relu threads=1: {} after {} attempt(s)", show(&c), c.attempts);
    // one set of sessions: within a few percent (see aa_control_is_near_one_with_two_threads)
    assert!((0.95..=1.05).contains(&c.aa_control.point), "A/A point {:?}", c.aa_control);
    // consistent with 1.00; whether it is also as narrow as the verdict band (aa_ok) depends on the host's
    // noise within the shortened budget, and is tested on known samples (tests/harness.rs)
    assert!(aa_consistent(&c.aa_control));
    assert!(c.rounds >= opts.min_rounds);
    // Add+Relu is not fused on CPU, so the "fused" sessions run the same graph; one set of sessions can
    // still read them 2% apart (which session got which buffers): identical_graphs_read_one_over_replicates
    // checks them over replicates, as a run measures them.
    assert_eq!(c.fused_ops_all, ["Add", "Relu"]);
}

/// Identical graphs over independent replicates (fresh sessions, own build order each): the combined
/// estimates' CIs, which carry the session-to-session spread, contain 1.00. One set of sessions alone can
/// read 1.02 for identical graphs (the arena's luck), which is why a run measures replicates.
#[test]
fn identical_graphs_read_one_over_replicates() {
    setup();
    let (bytes, inputs) = add_relu();
    let mut opts = MeasureOptions::new(Ep::Cpu, 1, true);
    opts.budget = std::time::Duration::from_secs(2);
    let reps: Vec<Comparison> = (0..3)
        .map(|r| {
            fuseval::measure::replicate(ModelSource::Bytes(&bytes), None, &inputs, &opts, "aa", r).expect("compare")
        })
        .collect();
    for r in &reps {
        eprintln!("replicate: {} (build order {:?})", show(r), r.build_order);
    }
    let noise = SessionNoise::pooled([reps.as_slice()]);
    let c = fuseval::measure::replicates::combine(&reps, &noise);
    eprintln!("combined: {} ; session noise ±{:.2}%", show(&c), 100.0 * noise.rel_sd());
    assert_eq!(c.replicates.len(), 3);
    for (what, e) in [("A/A", &c.aa_control), ("extended", &c.speedup_extended), ("full", &c.speedup_all)] {
        assert!(e.contains(1.0), "{what} over replicates misses 1.00: {e:?}");
        // quick replicates: the points within the quick CI target
        assert!((0.95..=1.05).contains(&e.point), "{what} point {e:?}");
    }
}

/// The positive control: a variant known to be slower (the same computation plus four multiplications
/// by 1.0, which an unoptimised session must run) reads slower, with a CI that excludes 1.00, and its
/// outputs still agree.
#[test]
fn a_slower_variant_reads_slower() {
    setup();
    let (bytes, inputs) = add_relu();
    let s = &ADD_RELU_SHAPE;
    let mut nodes = vec![node("Add", &["a", "b"], &["s"]), node("Relu", &["s"], &["r0"])];
    for i in 0..4 {
        let (x, y) = (format!("r{i}"), if i == 3 { "y".to_string() } else { format!("r{}", i + 1) });
        nodes.push(node("Mul", &[&x, "one"], &[&y]));
    }
    let one = pb::TensorProto {
        name: "one".into(),
        dims: vec![],
        data_type: DType::F32.onnx_code(),
        float_data: vec![1.0],
        ..Default::default()
    };
    let slower = model(
        nodes,
        vec![value_info("a", DType::F32, s), value_info("b", DType::F32, s)],
        vec![value_info("y", DType::F32, s)],
        vec![one],
    );
    let opts = quick_opts();
    let c = compare_variants(ModelSource::Bytes(&bytes), Some(&slower), &inputs, &opts).expect("compare");
    let x = c.explicit.as_ref().expect("the slower variant was measured");
    eprintln!("positive control: {}; slower variant {:?}", show(&c), x.speedup);
    assert!(x.equivalence.passed, "x·1.0 is exact");
    assert!(x.speedup.hi < 1.0, "a variant with four extra passes over the tensor must read slower: {:?}", x.speedup);
    assert!(x.speedup.point < 0.8, "{:?}", x.speedup);
}

/// Build order: each instance, replicate and attempt gets its own seed, and the orders they give vary.
#[test]
fn build_order_differs_between_instances_and_replicates() {
    use fuseval::measure::{build_order, replicate_seed};
    let seeds: Vec<u64> = ["Conv2d_BN|a", "Conv2d_BN|b", "Add_ReLU|a"]
        .iter()
        .flat_map(|sig| (0..2).flat_map(move |r| (0..2).map(move |a| replicate_seed(42, sig, r, a))))
        .collect();
    let distinct: std::collections::HashSet<u64> = seeds.iter().copied().collect();
    assert_eq!(distinct.len(), seeds.len(), "every instance, replicate and attempt has its own seed");
    assert_eq!(replicate_seed(42, "x", 1, 0), replicate_seed(42, "x", 1, 0), "and the same from run to run");
    // over many instances, every session comes first about as often as every other
    let mut first = [0usize; 5];
    for i in 0..2000 {
        first[build_order(replicate_seed(42, &format!("sig{i}"), 0, 0), true)[0]] += 1;
    }
    for (k, n) in first.iter().enumerate() {
        assert!((320..=480).contains(n), "session {k} built first {n} times of 2000: {first:?}");
    }
}

#[test]
fn aa_control_is_near_one_with_two_threads() {
    setup();
    let (bytes, inputs) = add_relu();
    let mut opts = MeasureOptions::new(Ep::Cpu, 2, false);
    opts.budget = std::time::Duration::from_secs(4);
    let c = fuseval::measure::replicate(ModelSource::Bytes(&bytes), None, &inputs, &opts, "aa2", 0).expect("compare");
    eprintln!("A/A add+relu threads=2: {} after {} attempt(s)", show(&c), c.attempts);
    assert_eq!(c.threads, 2);
    // One set of sessions sits up to a few percent off (the run's pooled session spread is ±1.4–2.4% on
    // this host, docs/measurement.md): the point within the band a replicate's control must meet, ±5%
    // of a quick run at worst; the ±2% claim is made over replicates (identical_graphs_read_one_over_replicates).
    assert!((0.95..=1.05).contains(&c.aa_control.point), "A/A point {:?}", c.aa_control);
    assert!(aa_consistent(&c.aa_control), "A/A control {:?}", c.aa_control);
}

/// Five sessions (an explicit model identical to the unfused one) must not unsettle the A/A control, and the
/// identical explicit session must read 1.00 against unfused A too.
#[test]
fn aa_control_holds_with_five_sessions() {
    setup();
    let (bytes, inputs) = add_relu();
    for threads in [1, 2] {
        let mut opts = MeasureOptions::new(Ep::Cpu, threads, false);
        opts.budget = std::time::Duration::from_secs(4);
        // one set of sessions can sit a couple of percent off: measured again while its control fails, as
        // every run does (measure::replicate). On a busy 2-core host a whole replicate can still miss
        // (it did once in CI, A/A 0.96 [0.91, 1.00]): up to three replicates, one of which must hold. A
        // bias (one session favoured every time) fails all three.
        let mut readings = vec![];
        let ok = (0..3).any(|r| {
            let c = fuseval::measure::replicate(ModelSource::Bytes(&bytes), Some(&bytes), &inputs, &opts, "aa5", r)
                .expect("compare");
            let x = c.explicit.as_ref().expect("explicit measured");
            eprintln!("A/A add+relu, 5 sessions, threads={threads}: {}; explicit {:?}", show(&c), x.speedup);
            assert!(x.equivalence.passed);
            assert_eq!(x.ops, ["Add", "Relu"]);
            readings.push((c.aa_control, x.speedup, c.speedup_extended, c.speedup_all));
            // one set of sessions: within a few percent (see aa_control_is_near_one_with_two_threads); the
            // CIs must hold 1.00; the fifth session runs the same graph at the same level as unfused A
            let near = |e: &Estimate| (0.95..=1.05).contains(&e.point);
            near(&c.aa_control)
                && aa_consistent(&c.aa_control)
                && near(&x.speedup)
                && near(&c.speedup_extended)
                && near(&c.speedup_all)
        });
        assert!(ok, "threads={threads}: no replicate read 1.00 for identical sessions (A/A, explicit, extended, all): {readings:?}");
    }
}

#[test]
fn three_threads_is_refused_in_this_process() {
    setup();
    let (bytes, inputs) = matmul_add_relu();
    let opts = MeasureOptions::new(Ep::Cpu, 3, true);
    let err = compare(ModelSource::Bytes(&bytes), &inputs, &opts).expect_err("pool is fixed at 2");
    assert!(format!("{err:#}").contains("shared pool of 2 threads"), "{err:#}");
}

// ---------- equivalence checking itself ----------

#[test]
fn equivalence_identical_passes_and_perturbed_fails() {
    let base: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.01).sin()).collect();
    let r = [OutputValues::f32("y", vec![10, 100], &base)];
    let same = check_equivalence(&r, &r);
    assert!(same.passed);
    assert_eq!(same.max_abs_err, 0.0);
    assert_eq!(same.outputs_compared, 1);

    // Float rounding noise passes.
    let noisy: Vec<f32> = base.iter().map(|v| v * (1.0 + 1e-6)).collect();
    assert!(check_equivalence(&r, &[OutputValues::f32("y", vec![10, 100], &noisy)]).passed);

    // One element off by 0.05 fails, and the error is reported.
    let mut bad = base.clone();
    bad[123] += 0.05;
    let e = check_equivalence(&r, &[OutputValues::f32("y", vec![10, 100], &bad)]);
    assert!(!e.passed);
    assert!((e.max_abs_err - 0.05).abs() < 1e-6, "{e:?}");
    assert!(e.max_rel_err > 0.0);

    // Shape, name and NaN mismatches fail without producing non-finite numbers.
    assert!(!check_equivalence(&r, &[OutputValues::f32("y", vec![100, 10], &base)]).passed);
    assert!(!check_equivalence(&r, &[OutputValues::f32("z", vec![10, 100], &base)]).passed);
    let mut nan = base.clone();
    nan[0] = f32::NAN;
    let e = check_equivalence(&r, &[OutputValues::f32("y", vec![10, 100], &nan)]);
    assert!(!e.passed && e.max_abs_err.is_finite());
    serde_json::to_string(&e).unwrap();
}

#[test]
fn equivalence_ints_are_exact() {
    let a = OutputValues::from_bytes(
        "i",
        DType::I64,
        vec![3],
        &[1i64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
    );
    let b = OutputValues::from_bytes(
        "i",
        DType::I64,
        vec![3],
        &[1i64, 2, 4].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
    );
    assert!(check_equivalence(std::slice::from_ref(&a), std::slice::from_ref(&a)).passed);
    let e = check_equivalence(&[a], &[b]);
    assert!(!e.passed);
    assert_eq!(e.max_abs_err, 1.0);
}

// ---------- CUDA must fail loudly here ----------

#[test]
fn cuda_without_cuda_is_an_error() {
    setup();
    let (bytes, inputs) = matmul_add_relu();
    let opts = MeasureOptions::new(Ep::Cuda { device_id: 0 }, 1, true);
    if fuseval::pipeline::check_ep(Ep::Cuda { device_id: 0 }).is_ok() {
        // a GPU is here: the comparison runs on it, its outputs agree
        let c = compare(ModelSource::Bytes(&bytes), &inputs, &opts).expect("CUDA comparison");
        assert!(c.equivalence_extended.passed && matches!(c.ep, Ep::Cuda { .. }));
        return;
    }
    let err = compare(ModelSource::Bytes(&bytes), &inputs, &opts).expect_err("CUDA must not silently fall back to CPU");
    let msg = format!("{err:#}");
    eprintln!("cuda error: {msg}");
    assert!(msg.contains("CUDA"), "{msg}");
}

// ---------- bad input is an error, not a panic ----------

#[test]
fn bad_inputs_are_errors() {
    setup();
    let (bytes, _) = matmul_add_relu();
    let wrong_shape = [spec("x", DType::F32, &[64, 128], None)];
    assert!(compare(ModelSource::Bytes(&bytes), &wrong_shape, &quick_opts()).is_err());
    let wrong_name = [spec("nope", DType::F32, &[64, 256], None)];
    assert!(compare(ModelSource::Bytes(&bytes), &wrong_name, &quick_opts()).is_err());
    let wrong_type = [spec("x", DType::F64, &[64, 256], None)];
    assert!(compare(ModelSource::Bytes(&bytes), &wrong_type, &quick_opts()).is_err());
    let garbage = b"definitely not onnx";
    let e = compare(ModelSource::Bytes(garbage), &[spec("x", DType::F32, &[64, 256], None)], &quick_opts())
        .expect_err("garbage");
    eprintln!("garbage model: {e:#}");
    let mut zero = quick_opts();
    zero.threads = 0;
    assert!(compare(ModelSource::Bytes(&bytes), &[spec("x", DType::F32, &[64, 256], None)], &zero).is_err());
    let missing =
        compare(ModelSource::Path(Path::new("/nonexistent/model.onnx")), &[], &quick_opts()).expect_err("missing file");
    assert!(format!("{missing:#}").contains("/nonexistent/model.onnx"));
}

// ---------- random inputs ----------

#[test]
fn random_inputs_are_seeded_nonzero_and_in_range() {
    let specs = [
        spec("f", DType::F32, &[4, 100], None),
        spec("h", DType::F16, &[300], None),
        spec("d", DType::F64, &[50], Some((2, 5))),
        spec("idx", DType::I64, &[1000], Some((3, 17))),
        spec("i", DType::I32, &[1000], None),
        spec("b", DType::Bool, &[200], None),
        spec("u", DType::U8, &[500], Some((250, 256))),
    ];
    let a = random_inputs(&specs, 7).unwrap();
    let b = random_inputs(&specs, 7).unwrap();
    let c = random_inputs(&specs, 8).unwrap();
    assert_eq!(a, b, "same seed, same values");
    assert_ne!(a, c, "different seed, different values");
    for t in &a {
        let v = t.to_f64();
        assert_eq!(v.len(), t.len());
        assert!(v.iter().any(|&x| x != 0.0), "{} is all zeros", t.name);
        assert_eq!(t.data.len(), t.len() * t.dtype.size_bytes());
    }
    let get = |n: &str| a.iter().find(|t| t.name == n).unwrap().to_f64();
    assert!(get("f").iter().all(|&x| (-1.0..1.0).contains(&x) && x != 0.0));
    assert!(get("h").iter().all(|&x| (-1.0..=1.0).contains(&x)));
    assert!(get("d").iter().all(|&x| (2.0..5.0).contains(&x)));
    let idx = get("idx");
    assert!(idx.iter().all(|&x| (3.0..17.0).contains(&x) && x.fract() == 0.0));
    assert!(idx.contains(&3.0) && idx.contains(&16.0), "range ends are reachable");
    assert!(get("i").iter().all(|&x| x == 0.0 || x == 1.0));
    assert!(get("b").iter().all(|&x| x == 0.0 || x == 1.0));
    assert!(get("u").iter().all(|&x| (250.0..256.0).contains(&x)));
    // Bad specs are errors.
    assert!(random_inputs(&[spec("u", DType::U8, &[4], Some((0, 300)))], 0).is_err());
    assert!(random_inputs(&[spec("e", DType::I64, &[4], Some((5, 5)))], 0).is_err());
    assert!(random_inputs(&[spec("z", DType::F32, &[4, 0], None)], 0).is_err());
}

#[test]
fn dtype_codes_round_trip() {
    for d in [DType::F32, DType::F64, DType::F16, DType::I64, DType::I32, DType::I8, DType::U8, DType::Bool] {
        assert_eq!(DType::from_onnx(d.onnx_code()), Some(d));
    }
    assert_eq!(DType::from_onnx(8), None); // string
    assert_eq!(serde_json::to_string(&DType::F16).unwrap(), "\"f16\"");
    assert_eq!(serde_json::to_string(&Level::Extended).unwrap(), "\"extended\"");
    assert_eq!(Level::Disable.to_string(), "disable");
}

// ---------- runtime library resolution ----------

#[test]
fn ort_dylib_path_to_missing_file_names_the_path() {
    let vars = LibraryVars { ort_dylib_path: Some("/nowhere/libonnxruntime.so.1.31.1".into()), ..Default::default() };
    let mut fetched = false;
    let err = runtime::resolve_library(&vars, &mut |_| {
        fetched = true;
        Ok(())
    })
    .expect_err("missing file");
    assert!(!fetched, "an explicit ORT_DYLIB_PATH must not trigger a download");
    let msg = format!("{err:#}");
    assert!(msg.contains("/nowhere/libonnxruntime.so.1.31.1") && msg.contains("ORT_DYLIB_PATH"), "{msg}");
    assert!(fuseval::error::is_user_error(&err), "a bad setting is the user's to fix");
}

#[test]
fn cache_is_used_then_filled() {
    let dir = tempfile::tempdir().unwrap();
    let vars = LibraryVars { fuseval_cache: Some(dir.path().into()), ..Default::default() };
    let want: PathBuf = dir.path().join("onnxruntime-1.31.1").join("libonnxruntime.so.1.31.1");
    // Missing: the fetcher is asked to create exactly the cached path.
    let got = runtime::resolve_library(&vars, &mut |p| {
        assert_eq!(p, want.as_path());
        std::fs::create_dir_all(p.parent().unwrap())?;
        std::fs::write(p, b"lib")?;
        Ok(())
    })
    .unwrap();
    assert_eq!(got, want);
    // Present: no fetch.
    let got = runtime::resolve_library(&vars, &mut |_| panic!("must not fetch")).unwrap();
    assert_eq!(got, want);
}

#[test]
fn failed_fetch_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let vars = LibraryVars { fuseval_cache: Some(dir.path().into()), ..Default::default() };
    let err = runtime::resolve_library(&vars, &mut |_| anyhow::bail!("pip: ERROR: No matching distribution found"))
        .expect_err("fetch failed");
    let msg = format!("{err:#}");
    assert!(msg.contains("pip install onnxruntime==1.31.1"), "{msg}");
    assert!(msg.contains("ORT_DYLIB_PATH"), "{msg}");
    assert!(msg.contains("No matching distribution"), "{msg}");
}

#[test]
fn version_and_hardware() {
    setup();
    runtime::environment().expect("environment");
    assert_eq!(runtime::ort_version(), "1.31.1");
    let hw = runtime::hardware();
    assert!(hw.logical_cores >= 1 && hw.memory_bytes > 0 && !hw.cpu_model.is_empty());
}

#[test]
fn tolerance_widens_with_the_reduction_size() {
    use fuseval::measure::{check_equivalence_for, OutputValues};
    let reference = vec![OutputValues::f32("y", vec![4], &[0.0, -0.25, 0.75, 0.1])];
    let off = vec![OutputValues::f32("y", vec![4], &[2.5e-4, -0.25, 0.75, 0.1])];
    // one term: 2.5e-4 is beyond 1e-4 + 1e-3·0
    assert!(!check_equivalence_for(&reference, &off, 1).passed);
    // a 4096-term reduction: tolerances ×4, so the same error is rounding
    let eq = check_equivalence_for(&reference, &off, 4096);
    assert!(eq.passed, "{eq:?}");
    assert!((eq.atol - 4e-4).abs() < 1e-12, "{eq:?}");
}

/// Outputs of a computation in fp16 get fp16's tolerance even when their dtype is f32 (a whole model
/// converted keeps fp32 inputs and outputs around fp16 arithmetic); other precisions keep the dtype's.
#[test]
fn fp16_arithmetic_is_checked_with_fp16_tolerances_whatever_the_output_dtype() {
    use fuseval::measure::{check_equivalence_ep, tolerance_in, MeasureOptions, OutputValues};
    use fuseval::runtime::{Ep, Precision};
    let cuda = Ep::Cuda { device_id: 0 };
    assert_eq!(tolerance_in(DType::F32, 1, cuda, Precision::Fp16), (1e-2, 1e-2));
    assert_eq!(tolerance_in(DType::F32, 1, cuda, Precision::Tf32), (1e-2, 5e-3));
    assert_eq!(tolerance_in(DType::F32, 1, Ep::Cpu, Precision::Fp32), (1e-3, 1e-4));
    assert_eq!(tolerance_in(DType::I64, 1, cuda, Precision::Fp16), (0.0, 0.0));
    // an f32 output 2.5e-2 off at a value of 1.5 (rms 1.12): beyond TF32's 5.6e-3 + 1.5e-2, within fp16's 1.1e-2 + 1.5e-2
    let reference = vec![OutputValues::f32("y", vec![2], &[1.5, -0.5])];
    let off = vec![OutputValues::f32("y", vec![2], &[1.525, -0.5])];
    let opts = |precision| MeasureOptions { precision, ..MeasureOptions::new(cuda, 1, true) };
    assert!(!check_equivalence_ep(&reference, &off, &opts(Precision::Tf32)).passed);
    assert!(check_equivalence_ep(&reference, &off, &opts(Precision::Fp16)).passed);
}
