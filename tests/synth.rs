//! Synthetic calibration models (`fuseval::synth`): every pattern at every grid size loads, resolves
//! every shape, and holds exactly one instance of its pattern, which the longest-match cover picks; the
//! grids are well formed; the probes load; and a model of every pattern runs in ONNX Runtime.

mod common;

use std::collections::{BTreeMap, HashSet};

use fuseval::calibration::Status;
use fuseval::carve::ConstValues;
use fuseval::measure::DType;
use fuseval::patterns::{Instance, Pattern};
use fuseval::pipeline::{distinct_groups, measure_group, prepare, Prepared};
use fuseval::runtime::{self, Ep};
use fuseval::synth::{add_model, build, flops, gemm_model, grid, Size};
use prost::Message;
use tract_onnx::pb;

const CUDA: Ep = Ep::Cuda { device_id: 0 };

/// Nodes of each pattern as `synth` builds it (the whole model).
fn expected_nodes(p: Pattern) -> usize {
    use Pattern::*;
    match p {
        LinearBias => 2,
        LinearBiasRelu => 3,
        LinearBiasReluDropout => 4,
        LinearBiasGelu => 7,
        Mlp => 5,
        ConvBias | ConvBn | ConvRelu => 2,
        ConvBnRelu | ConvAddRelu => 3,
        ConvBnReluMaxPool => 4,
        QkSoftmax => 4,
        SoftmaxV => 2,
        AttentionHead => 5,
        MultiHeadLinear => 21,
        AddRelu | AddLayerNorm | SigmoidMul => 2,
        MulAddRelu => 3,
    }
}

/// The other patterns found inside each pattern as built (overlapping sub-matches), with their counts.
fn sub_matches(p: Pattern) -> &'static [(Pattern, usize)] {
    use Pattern::*;
    match p {
        LinearBiasRelu | LinearBiasGelu => &[(LinearBias, 1)],
        LinearBiasReluDropout => &[(LinearBias, 1), (LinearBiasRelu, 1)],
        Mlp => &[(LinearBias, 2), (LinearBiasRelu, 1)],
        ConvBnRelu => &[(ConvBn, 1)],
        ConvBnReluMaxPool => &[(ConvBn, 1), (ConvBnRelu, 1)],
        ConvAddRelu => &[(AddRelu, 1)],
        AttentionHead => &[(QkSoftmax, 1), (SoftmaxV, 1)],
        MultiHeadLinear => &[(LinearBias, 4), (QkSoftmax, 1), (SoftmaxV, 1), (AttentionHead, 1)],
        _ => &[],
    }
}

/// The form the detector must report for each pattern as built.
fn expected_form(p: Pattern) -> &'static str {
    use Pattern::*;
    match p {
        LinearBias => "MatMul+Add",
        LinearBiasRelu => "MatMul+Add+Relu",
        LinearBiasReluDropout => "MatMul+Add+Relu+Dropout (no-op in inference)",
        LinearBiasGelu => "MatMul+Add+GELU(Erf)",
        Mlp => "MatMul+Add+Relu+MatMul+Add",
        ConvBias => "Conv+Add",
        ConvBn => "Conv+BatchNormalization",
        ConvBnRelu => "Conv+BatchNormalization+Relu",
        ConvRelu => "Conv+Relu",
        ConvBnReluMaxPool => "Conv+BatchNormalization+Relu+MaxPool",
        ConvAddRelu => "Conv+Add+Relu",
        QkSoftmax => "scale Div after, mask Add",
        SoftmaxV => "Softmax+MatMul",
        AttentionHead => "scale Div after, mask Add",
        MultiHeadLinear => "MatMul+Add, scale Div after, mask Add",
        AddRelu => "Add+Relu",
        AddLayerNorm => "LayerNormalization",
        MulAddRelu => "Mul+Add+Relu",
        SigmoidMul => "Sigmoid+Mul (SiLU)",
    }
}

/// Write `bytes` to a temporary file and prepare it; the file lives as long as the returned guard.
fn prepare_bytes(bytes: &[u8], what: &str) -> (tempfile::TempDir, Prepared) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synth.onnx");
    std::fs::write(&path, bytes).unwrap();
    let p = prepare(&path, &[]).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    (dir, p)
}

/// Build `pattern` at `size`, and check it loads cleanly and holds exactly one instance of it, the one
/// the longest-match cover picks, covering the whole model.
fn check(pattern: Pattern, size: &Size) -> (tempfile::TempDir, Prepared) {
    let what = format!("{pattern} at {}", size.label);
    let bytes = build(pattern, size, 7).unwrap_or_else(|e| panic!("{what}: build: {e:#}"));
    let (dir, p) = prepare_bytes(&bytes, &what);
    let g = &p.graph;
    assert!(p.loaded.warnings.is_empty(), "{what}: load warnings {:?}", p.loaded.warnings);
    assert!(p.loaded.unsupported_ops.is_empty(), "{what}: {:?}", p.loaded.unsupported_ops);
    assert_eq!(p.loaded.opset, 17, "{what}");
    assert_eq!(p.loaded.proto.ir_version, 8, "{what}");
    for (name, t) in &g.tensors {
        assert!(t.shape.is_some(), "{what}: tensor `{name}` has no resolved shape");
        assert_eq!(t.dtype, if t.elem_type == 7 { "i64" } else { "f32" }, "{what}: tensor `{name}`");
    }
    let nodes = p.loaded.proto.graph.as_ref().unwrap().node.len();
    assert_eq!(nodes, expected_nodes(pattern), "{what}: nodes in the model");
    let names: HashSet<&str> = g.graph.node_weights().map(|n| n.name.as_str()).collect();
    assert_eq!(names.len(), nodes, "{what}: node names must be unique");
    assert!(g.graph.node_weights().all(|n| !n.name.is_empty() && n.name != n.op), "{what}: node names");

    let of_p: Vec<&Instance> = p.detection.all.iter().filter(|i| i.pattern == pattern).collect();
    assert_eq!(of_p.len(), 1, "{what}: instances of the pattern among {:?}", p.detection.counts(false));
    let inst = of_p[0];
    assert_eq!(inst.nodes.len(), nodes, "{what}: the instance covers the whole model");
    assert_eq!(inst.form, expected_form(pattern), "{what}: form");
    assert!(inst.resolved(g), "{what}: instance shapes");
    assert_eq!(inst.outputs, ["y"], "{what}");
    let longest: Vec<&Instance> = p.detection.longest_instances().collect();
    assert_eq!(longest.len(), 1, "{what}: longest cover {:?}", p.detection.counts(true));
    assert_eq!(longest[0].pattern, pattern, "{what}: the longest match");
    assert_eq!(longest[0].nodes, inst.nodes, "{what}: the longest match is the instance");
    // the sub-matches inside it, and nothing else
    let all: BTreeMap<Pattern, usize> = sub_matches(pattern).iter().copied().chain([(pattern, 1)]).collect();
    assert_eq!(p.detection.counts(false), all, "{what}: all matches");
    (dir, p)
}

#[test]
fn every_quick_size_holds_exactly_its_pattern() {
    for p in Pattern::ALL {
        for size in grid(p, true, Ep::Cpu) {
            check(p, &size);
        }
    }
}

#[test]
fn every_full_size_holds_exactly_its_pattern() {
    for p in Pattern::ALL {
        let mut sizes = grid(p, false, Ep::Cpu);
        // the CUDA grids add one larger size
        for s in grid(p, false, CUDA) {
            if !sizes.contains(&s) {
                sizes.push(s);
            }
        }
        for size in sizes {
            check(p, &size);
        }
    }
}

#[test]
fn grids_are_well_formed() {
    for p in Pattern::ALL {
        for (quick, ep) in [(true, Ep::Cpu), (true, CUDA), (false, Ep::Cpu), (false, CUDA)] {
            let g = grid(p, quick, ep);
            let what = format!("{p} quick={quick} {ep}");
            if quick {
                assert_eq!(g.len(), 3, "{what}");
            } else {
                assert!((5..=7).contains(&g.len()), "{what}: {} sizes", g.len());
            }
            let labels: HashSet<&str> = g.iter().map(|s| s.label.as_str()).collect();
            assert_eq!(labels.len(), g.len(), "{what}: labels must be distinct");
            assert!(g.iter().all(|s| !s.label.is_empty() && s.label.len() <= 32), "{what}: short labels");
            let work: Vec<f64> = g.iter().map(|s| flops(p, s).unwrap()).collect();
            assert!(work.windows(2).all(|w| w[0] < w[1]), "{what}: work must increase: {work:?}");
        }
        // the full grid reaches further than the quick one, and CUDA's at least as far as the CPU's
        let top = |quick, ep| flops(p, grid(p, quick, ep).last().unwrap()).unwrap();
        assert!(top(false, Ep::Cpu) > top(true, Ep::Cpu), "{p}");
        assert!(top(false, CUDA) >= top(false, Ep::Cpu), "{p}");
        assert_eq!(grid(p, true, Ep::Cpu), grid(p, true, CUDA), "{p}: the quick grid is the same everywhere");
    }
    // the sizes the brief names
    let labels = |p, quick, ep| grid(p, quick, ep).into_iter().map(|s| s.label).collect::<Vec<_>>();
    assert_eq!(labels(Pattern::LinearBias, false, Ep::Cpu).first().unwrap(), "M=64 K=64 N=64");
    assert_eq!(labels(Pattern::LinearBias, false, Ep::Cpu).last().unwrap(), "M=2048 K=2048 N=2048");
    assert_eq!(labels(Pattern::LinearBias, false, CUDA).last().unwrap(), "M=4096 K=4096 N=4096");
    assert_eq!(labels(Pattern::ConvBnRelu, false, Ep::Cpu)[3], "C=64 H=W=56");
    assert_eq!(labels(Pattern::AttentionHead, false, Ep::Cpu).last().unwrap(), "S=1024 heads=12 d=64");
    let numel = |s: &Size| s.params["C"] * s.params["H"] * s.params["W"];
    let elem = grid(Pattern::AddRelu, false, Ep::Cpu);
    assert_eq!((numel(&elem[0]), numel(elem.last().unwrap())), (1 << 12, 1 << 24));
    assert_eq!(labels(Pattern::AddLayerNorm, true, Ep::Cpu)[1], "N=1x128x768");
}

#[test]
fn builds_are_seeded_and_sizes_checked() {
    let size = &grid(Pattern::ConvBnRelu, true, Ep::Cpu)[1];
    let a = build(Pattern::ConvBnRelu, size, 1).unwrap();
    assert_eq!(a, build(Pattern::ConvBnRelu, size, 1).unwrap(), "the same seed gives the same model");
    assert_ne!(a, build(Pattern::ConvBnRelu, size, 2).unwrap(), "another seed, other weights");
    // a size of another family is refused, naming what is missing
    let linear = &grid(Pattern::LinearBias, true, Ep::Cpu)[0];
    let e = build(Pattern::ConvBn, linear, 1).unwrap_err().to_string();
    assert!(e.contains("no parameter C"), "{e}");
    let mut zero = size.clone();
    zero.params.insert("C".into(), 0);
    assert!(build(Pattern::ConvBn, &zero, 1).is_err());
    // sizes round-trip through JSON (calibration files record them)
    let json = serde_json::to_string(size).unwrap();
    assert_eq!(&serde_json::from_str::<Size>(&json).unwrap(), size);
}

#[test]
fn weights_are_small_seeded_random_values() {
    let size = &grid(Pattern::ConvBnRelu, true, Ep::Cpu)[1];
    let model = pb::ModelProto::decode(build(Pattern::ConvBnRelu, size, 3).unwrap().as_slice()).unwrap();
    let graph = model.graph.as_ref().unwrap();
    assert_eq!(graph.input.len(), 1, "weights are initializers, not inputs");
    for t in &graph.initializer {
        let v: Vec<f32> = t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(v.len() as i64, t.dims.iter().product::<i64>(), "{}", t.name);
        let distinct: HashSet<u32> = v.iter().map(|x| x.to_bits()).collect();
        assert!(distinct.len() > v.len() / 2, "{}: random, not constant", t.name);
        let (lo, hi) =
            if t.name.ends_with("running_var") || t.name.ends_with("bn.weight") { (0.5, 1.5) } else { (-1.0, 1.0) };
        assert!(v.iter().all(|&x| (lo..=hi).contains(&x)), "{}: values in [{lo}, {hi}]", t.name);
    }
    // conv weights within ±1/sqrt(fan_in)
    let w = graph.initializer.iter().find(|t| t.name == "conv.weight").unwrap();
    let bound = 1.0 / ((9 * size.params["C"]) as f32).sqrt();
    assert!(w.raw_data.chunks_exact(4).all(|b| f32::from_le_bytes(b.try_into().unwrap()).abs() <= bound));
}

#[test]
fn probes_load_with_the_expected_shapes() {
    for (dtype, name) in [(DType::F32, "f32"), (DType::F16, "f16")] {
        let (_dir, p) = prepare_bytes(&gemm_model(64, dtype).unwrap(), "gemm_model");
        let g = &p.graph;
        assert!(p.loaded.warnings.is_empty(), "{:?}", p.loaded.warnings);
        let ins: Vec<(&str, &[usize])> = p.loaded.inputs.iter().map(|i| (i.name.as_str(), &i.dims[..])).collect();
        assert_eq!(ins, [("A", &[64usize, 64][..]), ("B", &[64, 64][..])]);
        assert!(p.loaded.inputs.iter().all(|i| i.elem_type == dtype.onnx_code()));
        assert_eq!(g.outputs, ["y"]);
        assert_eq!(g.shape("y"), Some(&[64usize, 64][..]));
        assert_eq!(g.tensor("y").unwrap().dtype, name);
        assert_eq!(g.graph.node_weights().map(|n| n.op.as_str()).collect::<Vec<_>>(), ["MatMul"]);
        assert!(p.detection.all.is_empty(), "a probe is no pattern");
    }
    assert!(gemm_model(64, DType::I64).is_err());

    let (_dir, p) = prepare_bytes(&add_model(1 << 20).unwrap(), "add_model");
    let ins: Vec<(&str, &[usize])> = p.loaded.inputs.iter().map(|i| (i.name.as_str(), &i.dims[..])).collect();
    assert_eq!(ins, [("A", &[1usize << 20][..]), ("B", &[1 << 20][..])]);
    assert_eq!(p.graph.shape("y"), Some(&[1usize << 20][..]));
    assert_eq!(p.graph.tensor("y").unwrap().dtype, "f32");
    assert_eq!(p.graph.graph.node_weights().map(|n| n.op.as_str()).collect::<Vec<_>>(), ["Add"]);
    assert!(p.detection.all.is_empty());
}

/// The smallest quick size of every pattern, carved and measured as `calibrate` does (briefly): it runs
/// in ORT, and every variant's outputs agree with the unfused ones.
#[test]
fn every_pattern_runs_in_onnx_runtime() {
    runtime::configure_pool(1).expect("a shared pool of 1 thread");
    let opts = common::short();
    for p in Pattern::ALL {
        let size = &grid(p, true, Ep::Cpu)[0];
        let (_dir, prep) = check(p, size);
        let inst: Vec<&Instance> = prep.detection.longest_instances().collect();
        let groups = distinct_groups(&prep.graph, &inst);
        assert_eq!(groups.len(), 1);
        let consts = ConstValues::evaluate(&prep.loaded, &prep.graph, &inst).unwrap();
        let rec = measure_group(&prep, &groups[0].0, &groups[0].1, &consts, &opts);
        let what = format!("{p} at {}", size.label);
        assert_eq!(rec.status, Status::Measured, "{what}: {:?}", rec.skip_reason);
        assert_eq!(rec.fusion_pattern, p.key(), "{what}");
        assert!(rec.equivalent, "{what}: outputs disagree: {:?}", rec.extended.as_ref().map(|l| &l.equivalence));
        assert!(rec.unfused_latency_ms > 0.0, "{what}");
        assert_eq!(rec.unfused_ops.len(), expected_nodes(p), "{what}: {:?}", rec.unfused_ops);
        if let Some(e) = &rec.explicit {
            assert!(e.equivalence.passed, "{what}: explicit outputs disagree: {:?}", e.equivalence);
        }
        eprintln!(
            "{what}: unfused {:.4} ms, fused {:.4} ms -> {:?}, explicit {:?} {:?}",
            rec.unfused_latency_ms,
            rec.fused_latency_ms,
            rec.ort_fused_into,
            rec.explicit_kernels,
            rec.explicit_unavailable
        );
    }
}
