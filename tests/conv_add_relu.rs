//! Conv2d + Add + ReLU, the ResNet residual that ORT fuses into `com.microsoft.FusedConv` through its `Z`
//! input: found in real exports (with the BN between, as exporters keep it), in either operand order,
//! not where the fusion would be illegal; its explicit rewrite computes what the carved model computes;
//! measured in its three variants.

mod common;

use std::path::Path;

use fuseval::fuse::{explicit_fused, Availability};
use fuseval::measure::{check_equivalence, compare_variants, random_inputs, ModelSource};
use fuseval::onnx::build::Model;
use fuseval::patterns::{Pattern, Role};
use fuseval::pipeline::{prepare, Prepared};
use fuseval::runtime::Ep;

fn counts(p: &Prepared, longest: bool) -> usize {
    p.detection.counts(longest).get(&Pattern::ConvAddRelu).copied().unwrap_or(0)
}

/// A model built with fuseval's builder, written to a temporary file and prepared.
fn built(name: &str, f: impl FnOnce(&mut Model) -> Vec<usize>) -> (tempfile::TempDir, Prepared) {
    let mut m = Model::new(5);
    let out = f(&mut m);
    let bytes = m.finish(&out).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.onnx"));
    std::fs::write(&path, bytes).unwrap();
    let p = prepare(&path, &[]).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    (dir, p)
}

/// `Relu(Conv(x) + r)` with `r` of `r_dims`, the Add's operands in the given order; `bn` puts an
/// inference BatchNormalization after the conv.
fn residual(m: &mut Model, r_dims: &[usize], conv_first: bool, bn: bool) -> Vec<usize> {
    let x = m.input("x", &[1, 8, 6, 6]);
    let r = m.input("r", r_dims);
    let mut y = m.conv("conv", &x, 8, !bn);
    if bn {
        y = m.batchnorm("bn", &y, 8);
    }
    let ins = if conv_first { [y.as_str(), r.as_str()] } else { [r.as_str(), y.as_str()] };
    let s = m.op("add", "Add", &ins, vec![]);
    m.op("relu", "Relu", &[&s], vec![]);
    vec![1, 8, 6, 6]
}

#[test]
fn found_in_real_resnets_one_per_residual_block() {
    for (file, form) in [
        ("fixtures/light_resnet50.onnx", "Conv+BatchNormalization+Sum+Relu"),
        ("fixtures/mini_resnet50_legacy.onnx", "Conv+BatchNormalization+Add+Relu"),
        ("fixtures/mini_resnet50_dynamo.onnx", "Conv+BatchNormalization+Add+Relu"),
    ] {
        let p = prepare(Path::new(file), &[]).unwrap();
        // 16 bottleneck blocks, 16 residual Adds: one place each in the cover; in the 4 downsampling
        // blocks both the main branch and the shortcut conv match
        assert_eq!(counts(&p, true), 16, "{file}");
        assert_eq!(counts(&p, false), 20, "{file}");
        let inst = p.detection.longest_instances().find(|i| i.pattern == Pattern::ConvAddRelu).unwrap();
        assert_eq!(inst.form, form, "{file}");
        assert_eq!(inst.roles, [Role::Conv, Role::BatchNorm, Role::Residual, Role::Activation], "{file}");
        // the residual enters as an input beside the conv's: two non-constant inputs
        assert_eq!(inst.inputs.len(), 2, "{file}: {:?}", inst.inputs);
        // the Add+ReLU it contains is no longer a place of its own
        assert!(p.detection.longest_instances().all(|i| i.pattern != Pattern::AddRelu), "{file}");
    }
}

#[test]
fn either_operand_order_with_or_without_bn() {
    for conv_first in [true, false] {
        for bn in [true, false] {
            let (_d, p) = built("order", |m| residual(m, &[1, 8, 6, 6], conv_first, bn));
            let what = format!("conv first: {conv_first}, bn: {bn}");
            assert_eq!(counts(&p, true), 1, "{what}");
            let inst = p.detection.longest_instances().next().unwrap();
            assert_eq!(inst.pattern, Pattern::ConvAddRelu, "{what}");
            assert_eq!(inst.nodes.len(), if bn { 4 } else { 3 }, "{what}");
            assert_eq!(inst.form, if bn { "Conv+BatchNormalization+Add+Relu" } else { "Conv+Add+Relu" }, "{what}");
        }
    }
}

#[test]
fn not_where_fusing_would_be_wrong() {
    // a residual that broadcasts: FusedConv's Z has the output's shape
    let (_d, p) = built("broadcast", |m| residual(m, &[1, 8, 1, 1], true, false));
    assert_eq!(counts(&p, false), 0, "broadcast residual");
    // a constant operand is a bias, Conv2d_Bias's
    let (_d, p) = built("constant", |m| {
        let x = m.input("x", &[1, 8, 6, 6]);
        let y = m.conv("conv", &x, 8, false);
        let b = m.uniform("b", &[1, 8, 1, 1], -0.1, 0.1);
        let s = m.op("add", "Add", &[&y, &b], vec![]);
        m.op("relu", "Relu", &[&s], vec![]);
        vec![1, 8, 6, 6]
    });
    assert_eq!(counts(&p, false), 0, "constant residual");
    assert_eq!(p.detection.counts(false).get(&Pattern::ConvBias), Some(&1));
    // fan-out: the conv's output also read by a second node
    let (_d, p) = built("fanout", |m| {
        let x = m.input("x", &[1, 8, 6, 6]);
        let r = m.input("r", &[1, 8, 6, 6]);
        let y = m.conv("conv", &x, 8, true);
        let s = m.op("add", "Add", &[&y, &r], vec![]);
        let a = m.op("relu", "Relu", &[&s], vec![]);
        m.op("mul", "Mul", &[&a, &y], vec![]);
        vec![1, 8, 6, 6]
    });
    assert_eq!(counts(&p, false), 0, "conv output read twice");
    // fan-out of the sum: read past the Relu too
    let (_d, p) = built("sum_fanout", |m| {
        let x = m.input("x", &[1, 8, 6, 6]);
        let r = m.input("r", &[1, 8, 6, 6]);
        let y = m.conv("conv", &x, 8, true);
        let s = m.op("add", "Add", &[&y, &r], vec![]);
        let a = m.op("relu", "Relu", &[&s], vec![]);
        m.op("mul", "Mul", &[&a, &s], vec![]);
        vec![1, 8, 6, 6]
    });
    assert_eq!(counts(&p, false), 0, "sum read twice");
    // a Sum of three tensors is not the conv's residual
    let (_d, p) = built("sum3", |m| {
        let x = m.input("x", &[1, 8, 6, 6]);
        let r = m.input("r", &[1, 8, 6, 6]);
        let t = m.input("t", &[1, 8, 6, 6]);
        let y = m.conv("conv", &x, 8, true);
        let s = m.op("sum", "Sum", &[&y, &r, &t], vec![]);
        m.op("relu", "Relu", &[&s], vec![]);
        vec![1, 8, 6, 6]
    });
    assert_eq!(counts(&p, false), 0, "three-input Sum");
    // the residual is the conv's own output: Relu(y + y)
    let (_d, p) = built("self", |m| {
        let x = m.input("x", &[1, 8, 6, 6]);
        let y = m.conv("conv", &x, 8, true);
        let s = m.op("add", "Add", &[&y, &y], vec![]);
        m.op("relu", "Relu", &[&s], vec![]);
        vec![1, 8, 6, 6]
    });
    assert_eq!(counts(&p, false), 0, "y + y");
}

/// The explicit rewrite is one FusedConv that reads the residual as Z and computes what the carved
/// model computes.
#[test]
fn explicit_rewrite_is_fusedconv_with_z() {
    let (_d, synth) = built("clip", |m| {
        let x = m.input("x", &[1, 8, 6, 6]);
        let r = m.input("r", &[1, 8, 6, 6]);
        let y = m.conv("conv", &x, 8, true);
        let s = m.op("add", "Add", &[&r, &y], vec![]);
        let lo = m.scalar("lo", 0.0);
        let hi = m.scalar("hi", 6.0);
        m.op("clip", "Clip", &[&s, &lo, &hi], vec![]);
        vec![1, 8, 6, 6]
    });
    let light = prepare(Path::new("fixtures/light_resnet50.onnx"), &[]).unwrap();
    let mini = prepare(Path::new("fixtures/mini_resnet50_dynamo.onnx"), &[]).unwrap();
    for (what, p, nth) in [("synthetic ReLU6", &synth, 0), ("light_resnet50", &light, 0), ("mini_resnet50", &mini, 3)] {
        let (c, inst) = common::carve_nth(p, Pattern::ConvAddRelu, nth);
        let conv_x = &p.graph.node(inst.nodes[0]).inputs[0];
        let residual = inst.inputs.iter().find(|i| *i != conv_x).expect("a residual input");
        let e = match explicit_fused(&c, Ep::Cpu).unwrap_or_else(|e| panic!("{what}: {e:#}")) {
            Availability::Fused(e) => e,
            Availability::NoKernel(why) => panic!("{what}: no kernel: {why}"),
        };
        assert_eq!(e.kernels, ["com.microsoft.FusedConv"], "{what}: {}", e.note);
        assert!(e.note.contains("Z"), "{what}: {}", e.note);
        let fused = &e.model.graph.as_ref().unwrap().node[0];
        assert_eq!(fused.input.len(), 4, "{what}: X, W, B, Z: {:?}", fused.input);
        assert_eq!(&fused.input[3], residual, "{what}");
        for seed in [1, 2] {
            let inputs = random_inputs(&common::specs(&c), seed).unwrap();
            let eq =
                check_equivalence(&common::run_disabled(&c.bytes, &inputs), &common::run_disabled(&e.bytes, &inputs));
            assert!(eq.passed, "{what}, seed {seed}: {eq:?}");
        }
    }
    // ReLU6 on CUDA: its FusedConv takes only Relu
    let (c, _) = common::carve_first(&synth, Pattern::ConvAddRelu);
    match explicit_fused(&c, Ep::Cuda { device_id: 0 }).unwrap() {
        Availability::NoKernel(why) => assert!(why.contains("Relu"), "{why}"),
        Availability::Fused(e) => panic!("CUDA FusedConv with Clip: {:?}", e.kernels),
    }
}

/// Measured like every instance: unfused, runtime-fused (ORT's own FusedConv) and explicit-fused, outputs
/// equivalent.
#[test]
fn measured_in_three_variants() {
    let p = prepare(Path::new("fixtures/light_resnet50.onnx"), &[]).unwrap();
    let (c, _) = common::carve_first(&p, Pattern::ConvAddRelu);
    let e = match explicit_fused(&c, Ep::Cpu).unwrap() {
        Availability::Fused(e) => e,
        Availability::NoKernel(why) => panic!("no kernel: {why}"),
    };
    let m =
        compare_variants(ModelSource::Bytes(&c.bytes), Some(&e.bytes), &common::specs(&c), &common::short()).unwrap();
    assert_eq!(m.unfused_ops, ["Conv", "BatchNormalization", "Sum", "Relu"]);
    // carved alone, ORT 1.31 on the CPU only folds the BN (extended) and moves the conv to NCHWc (all):
    // the Sum+Relu stays apart, so the explicit FusedConv with Z is the only fused kernel measured
    assert_eq!(m.fused_ops_extended, ["Conv", "Sum", "Relu"], "{:?}", m.fused_ops_extended);
    assert!(m.equivalence_extended.passed && m.equivalence_all.passed, "{:?}", m.equivalence_extended);
    let x = m.explicit.as_ref().unwrap_or_else(|| panic!("explicit variant: {:?}", m.explicit_error));
    assert!(x.equivalence.passed, "{:?}", x.equivalence);
    assert!(x.latency.median_ms > 0.0 && m.unfused.median_ms > 0.0 && m.fused_extended.median_ms > 0.0);
}

/// The synthetic model `calibrate` sweeps is detected as the pattern, in the form PyTorch writes once the
/// BN is folded: Conv with its bias, Add, Relu.
#[test]
fn synthetic_model_is_one_instance() {
    for size in fuseval::synth::grid(Pattern::ConvAddRelu, true, Ep::Cpu) {
        let bytes = fuseval::synth::build(Pattern::ConvAddRelu, &size, 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.onnx");
        std::fs::write(&path, bytes).unwrap();
        let p = prepare(&path, &[]).unwrap();
        let cover: Vec<Pattern> = p.detection.longest_instances().map(|i| i.pattern).collect();
        assert_eq!(cover, [Pattern::ConvAddRelu], "{}", size.label);
        assert!(fuseval::synth::flops(Pattern::ConvAddRelu, &size).unwrap() > 0.0);
    }
}
