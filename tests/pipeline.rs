//! Carve → measure on real exporter output: every pattern's carved model runs unfused and fused in
//! ONNX Runtime and the outputs agree; the A/A control of a memory-bound pattern reads 1.00.

mod common;
use common::*;

use std::path::Path;

use fuseval::carve::{carve, ConstValues};
use fuseval::measure::{compare, MeasureOptions, ModelSource};
use fuseval::patterns::Pattern;
use fuseval::pipeline::prepare;
use fuseval::runtime::Ep;

#[test]
fn every_pattern_carves_and_its_variants_agree() {
    let cases: &[(&str, Pattern)] = &[
        ("fixtures/patterns/conv_bias.onnx", Pattern::ConvBias),
        ("fixtures/patterns/conv_bn.onnx", Pattern::ConvBn),
        ("fixtures/patterns/conv_bn_relu.onnx", Pattern::ConvBnRelu),
        ("fixtures/patterns/conv_relu.onnx", Pattern::ConvRelu),
        ("fixtures/patterns/conv_bn_relu_maxpool.onnx", Pattern::ConvBnReluMaxPool),
        ("fixtures/patterns/linear_bias_matmul.onnx", Pattern::LinearBias),
        ("fixtures/patterns/linear_bias_gemm.onnx", Pattern::LinearBias),
        ("fixtures/patterns/linear_bias_relu.onnx", Pattern::LinearBiasRelu),
        ("fixtures/patterns/linear_bias_gelu_erf.onnx", Pattern::LinearBiasGelu),
        ("fixtures/patterns/linear_bias_gelu_tanh.onnx", Pattern::LinearBiasGelu),
        ("fixtures/patterns/linear_bias_gelu_op.onnx", Pattern::LinearBiasGelu),
        ("fixtures/patterns/mlp.onnx", Pattern::Mlp),
        ("fixtures/patterns/add_relu.onnx", Pattern::AddRelu),
        ("fixtures/patterns/add_layernorm_op.onnx", Pattern::AddLayerNorm),
        ("fixtures/patterns/add_layernorm_decomposed.onnx", Pattern::AddLayerNorm),
        // computed constants: light_resnet50's weights are ConstantOfShape outputs
        ("fixtures/light_resnet50.onnx", Pattern::ConvBnReluMaxPool),
        ("fixtures/tiny_bert_legacy.onnx", Pattern::LinearBiasGelu),
        ("fixtures/tiny_bert_legacy.onnx", Pattern::AddLayerNorm),
    ];
    for (file, pattern) in cases {
        let p = prepare(Path::new(file), &[]).unwrap();
        let (carved, inst) = carve_first(&p, *pattern);
        // the carved model is the pattern: its nodes, the pattern's inputs and outputs
        let g = carved.model.graph.as_ref().unwrap();
        assert_eq!(g.node.len(), inst.nodes.len(), "{file}");
        assert_eq!(g.input.len(), inst.inputs.len(), "{file}");
        assert_eq!(g.output.iter().map(|o| o.name.clone()).collect::<Vec<_>>(), inst.outputs, "{file}");
        assert_eq!(g.initializer.len(), inst.constants.len(), "{file}");
        let c = compare(ModelSource::Bytes(&carved.bytes), &specs(&carved), &short())
            .unwrap_or_else(|e| panic!("{file} {pattern}: {e:#}"));
        assert!(c.equivalence_extended.passed, "{file} {pattern}: {:?}", c.equivalence_extended);
        assert!(c.equivalence_all.passed, "{file} {pattern}: {:?}", c.equivalence_all);
        assert!(c.equivalence_extended.outputs_compared >= 1);
        assert_eq!(c.unfused_ops.len(), inst.nodes.len(), "{file}: unfused runs every node");
        assert!(c.unfused.median_ms > 0.0 && c.fused_extended.median_ms > 0.0);
    }
}

#[test]
fn ort_fusions_are_named() {
    // Conv+BN+ReLU: BN folds into the conv and the ReLU becomes the conv's activation
    let p = prepare(Path::new("fixtures/patterns/conv_bn_relu.onnx"), &[]).unwrap();
    let (carved, _) = carve_first(&p, Pattern::ConvBnRelu);
    let c = compare(ModelSource::Bytes(&carved.bytes), &specs(&carved), &short()).unwrap();
    assert_eq!(c.fused_ops_extended, ["com.microsoft.FusedConv"], "{:?}", c.fused_ops_extended);
    assert!(c.fused_ops_all.iter().any(|o| o.contains("nchwc")), "{:?}", c.fused_ops_all);
    assert_eq!(c.unfused_ops, ["Conv", "BatchNormalization", "Relu"]);
}

/// The A/A control on a memory-bound pattern carved from a real model: light_resnet50's Sum+ReLU at
/// 1x256x56x56, two sessions of the same unfused model, interleaved. It must read 1.00.
#[test]
fn aa_control_reads_one_on_a_memory_bound_pattern() {
    let p = prepare(Path::new("fixtures/light_resnet50.onnx"), &[]).unwrap();
    let inst = p
        .detection
        .all
        .iter()
        .find(|i| i.pattern == Pattern::AddRelu && p.graph.shape(&i.outputs[0]) == Some(&[1, 256, 56, 56][..]))
        .expect("Sum+ReLU at 1x256x56x56")
        .clone();
    let consts = ConstValues::evaluate(&p.loaded, &p.graph, &[&inst]).unwrap();
    let carved = carve(&p.loaded, &p.graph, &inst, &consts).unwrap();
    // One set of sessions can sit a couple of percent off (the arena's luck) and a 95% CI misses an exact
    // 1.00 one time in twenty: a replicate is measured again, in fresh sessions, while its control fails,
    // as every run does. A biased harness fails every attempt.
    let opts = MeasureOptions::new(Ep::Cpu, 1, false);
    let c =
        fuseval::measure::replicate(ModelSource::Bytes(&carved.bytes), None, &specs(&carved), &opts, "aa", 0).unwrap();
    let aa = c.aa_control;
    eprintln!("A/A {aa:?} after {} attempt(s), build order {:?}", c.attempts, c.build_order);
    assert!(
        (0.95..=1.05).contains(&aa.point),
        "A/A control point {aa:?} must lie within 0.95..1.05 (one set of sessions)"
    );
    assert!(fuseval::measure::aa_consistent(&aa), "A/A control must be consistent with 1.00: {aa:?}");
    assert!(c.aa_ok, "A/A control failed in {} attempts: {aa:?}", c.attempts);
}
