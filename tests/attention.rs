//! The attention patterns on real exporter output: counts per BERT layer in the eager, sdpa-legacy and
//! dynamo exports, the single-head fixtures and their negatives, and equivalence of the carved models
//! (unfused, ORT-fused, and fuseval's explicit rewrite into ORT's attention kernels).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::Path;

use fuseval::carve::Carved;
use fuseval::fuse::{explicit_fused, Availability, Explicit};
use fuseval::measure::{check_equivalence, compare, random_inputs, InputSpec, ModelSource};
use fuseval::patterns::{Instance, Pattern, Pattern::*};
use fuseval::pipeline::{prepare, Prepared};
use fuseval::runtime::Ep;

fn prep(path: &str) -> Prepared {
    prepare(Path::new(path), &[]).unwrap_or_else(|e| panic!("{path}: {e:#}"))
}

fn fixture(name: &str) -> Prepared {
    prep(&format!("fixtures/attention/{name}.onnx"))
}

fn counts(p: &Prepared, longest: bool) -> BTreeMap<Pattern, usize> {
    p.detection.counts(longest)
}

fn count(p: &Prepared, pattern: Pattern, longest: bool) -> usize {
    counts(p, longest).get(&pattern).copied().unwrap_or(0)
}

fn forms(p: &Prepared, pattern: Pattern) -> Vec<String> {
    p.detection.all.iter().filter(|i| i.pattern == pattern).map(|i| i.form.clone()).collect()
}

/// Per layer of the 2-layer tiny BERT: one attention head, its scores and its Softmax@V, one
/// MultiHead+Linear block; the FFN and residual patterns as before; and in the longest-match cover the
/// block swallows the Q/K/V/output projections (Linear+Bias: the FFN output dense per layer + pooler).
fn assert_bert(path: &str, head_form: &str) {
    let p = prep(path);
    let all = counts(&p, false);
    for pattern in [QkSoftmax, SoftmaxV, AttentionHead, MultiHeadLinear] {
        assert_eq!(all.get(&pattern), Some(&2), "{path}: {pattern} in all matches: {all:?}");
    }
    assert_eq!(
        counts(&p, true),
        [(MultiHeadLinear, 2), (LinearBias, 3), (LinearBiasGelu, 2), (AddLayerNorm, 5)].into_iter().collect(),
        "{path}: longest-match counts"
    );
    assert_eq!(forms(&p, AttentionHead), [head_form, head_form], "{path}");
    assert_eq!(forms(&p, QkSoftmax), [head_form, head_form], "{path}");
    // one block per layer, named by the layer, holding its head
    for (layer, block) in p.detection.all.iter().filter(|i| i.pattern == MultiHeadLinear).enumerate() {
        let head = p.detection.all.iter().filter(|i| i.pattern == AttentionHead).nth(layer).unwrap();
        assert!(head.nodes.iter().all(|n| block.nodes.contains(n)), "{path}: layer {layer}");
        assert_eq!(block.outputs.len(), 1);
        // the hidden state and the mask are its float inputs
        let floats: Vec<&String> =
            block.inputs.iter().filter(|i| p.graph.tensor(i).is_some_and(|t| t.dtype == "f32")).collect();
        assert_eq!(floats.len(), 2, "{path}: {:?}", block.inputs);
        assert_eq!(p.graph.shape(floats[0]), Some(&[1usize, 128, 64][..]), "{path}: {:?}", block.inputs);
        assert!(block.form.starts_with("MatMul+Add, "), "{}", block.form);
    }
}

#[test]
fn tiny_bert_eager() {
    assert_bert("fixtures/attention/tiny_bert_eager.onnx", "scale Mul after, mask Add");
    let p = prep("fixtures/attention/tiny_bert_eager.onnx");
    let head = p.detection.all.iter().find(|i| i.pattern == AttentionHead).unwrap();
    assert_eq!(
        head.node_names(&p.graph),
        ["MatMul", "Mul", "Add", "Softmax", "MatMul_1"].map(|n| format!("/m/encoder/layer.0/attention/self/{n}"))
    );
}

#[test]
fn tiny_bert_legacy_sdpa() {
    assert_bert("fixtures/tiny_bert_legacy.onnx", "scale Mul before, mask Add, IsNaN/Where");
}

#[test]
fn tiny_bert_dynamo_sdpa() {
    assert_bert("fixtures/tiny_bert_dynamo.onnx", "scale Mul before, mask Add, IsNaN/Where");
}

/// Each single-head fixture: the pattern is the longest match and covers every node but the
/// transposes before it (plumbing) and `Constant`s.
#[test]
fn single_head_fixtures() {
    let cases: &[(&str, Pattern, &str)] = &[
        ("attention_scores", QkSoftmax, "scale Mul after, mask Add"),
        ("attention_head", AttentionHead, "scale Mul after, mask Add"),
        ("attention_head_nomask", AttentionHead, "scale Mul after, no mask"),
        ("attention_div_scale", AttentionHead, "scale Div after, mask Add"),
        ("attention_sdpa", AttentionHead, "scale Mul before, mask Add"),
        ("softmax_v", SoftmaxV, "Softmax+MatMul"),
    ];
    for (file, pattern, form) in cases {
        let p = fixture(file);
        let longest: Vec<&Instance> = p.detection.longest_instances().collect();
        assert_eq!(longest.len(), 1, "{file}: {:?}", longest.iter().map(|i| i.pattern).collect::<Vec<_>>());
        assert_eq!(longest[0].pattern, *pattern, "{file}");
        assert_eq!(longest[0].form, *form, "{file}");
        let ops = p.graph.graph.node_weights().filter(|n| n.op != "Constant" && n.op != "Transpose").count();
        assert_eq!(longest[0].nodes.len(), ops, "{file}");
    }
    // a head holds its scores and its Softmax@V too
    let p = fixture("attention_head");
    assert_eq!(
        counts(&p, false),
        [(QkSoftmax, 1), (SoftmaxV, 1), (AttentionHead, 1)].into_iter().collect::<BTreeMap<_, _>>()
    );
}

#[test]
fn multihead_block_fixture() {
    let p = fixture("multihead_block");
    let longest: Vec<&Instance> = p.detection.longest_instances().collect();
    assert_eq!(longest.len(), 1, "{:?}", longest.iter().map(|i| i.pattern).collect::<Vec<_>>());
    assert_eq!(longest[0].pattern, MultiHeadLinear);
    assert_eq!(longest[0].form, "MatMul+Add, scale Div after, mask Add");
    // every node of the model but its Constants
    let ops = p.graph.graph.node_weights().filter(|n| n.op != "Constant").count();
    assert_eq!(longest[0].nodes.len(), ops);
    assert_eq!(longest[0].inputs, ["x", "mask"]);
    // the four projections are also Linear+Bias matches, overlapping
    assert_eq!(count(&p, LinearBias, false), 4);
}

#[test]
fn softmax_over_another_axis_is_not_attention() {
    let p = fixture("neg_softmax_axis");
    for pattern in [QkSoftmax, SoftmaxV, AttentionHead] {
        assert_eq!(count(&p, pattern, false), 0, "{pattern}");
    }
}

#[test]
fn fan_out_of_the_scores_prevents_the_match() {
    let p = fixture("neg_scores_fanout");
    assert_eq!(count(&p, QkSoftmax, false), 0);
    assert_eq!(count(&p, AttentionHead, false), 0);
    // the Softmax@V after the fan-out is still fusible
    assert_eq!(count(&p, SoftmaxV, false), 1);
}

#[test]
fn constant_k_is_not_attention() {
    let p = fixture("neg_const_k");
    assert_eq!(count(&p, QkSoftmax, false), 0);
    assert_eq!(count(&p, AttentionHead, false), 0);
    assert_eq!(count(&p, SoftmaxV, false), 1);
}

// ---------------------------------------------------------------------------------------------------
// Equivalence

fn assert_ort_agrees(c: &Carved, what: &str) {
    let r = compare(ModelSource::Bytes(&c.bytes), &specs(c), &short()).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert!(r.equivalence_extended.passed, "{what}: {:?}", r.equivalence_extended);
    assert!(r.equivalence_all.passed, "{what}: {:?}", r.equivalence_all);
}

#[test]
fn carved_heads_agree_fused_and_unfused() {
    let cases: &[(&str, Pattern)] = &[
        ("fixtures/attention/attention_scores.onnx", QkSoftmax),
        ("fixtures/attention/attention_head.onnx", AttentionHead),
        ("fixtures/attention/attention_head_nomask.onnx", AttentionHead),
        ("fixtures/attention/attention_div_scale.onnx", AttentionHead),
        ("fixtures/attention/attention_sdpa.onnx", AttentionHead),
        ("fixtures/attention/softmax_v.onnx", SoftmaxV),
        ("fixtures/attention/multihead_block.onnx", MultiHeadLinear),
        ("fixtures/attention/tiny_bert_eager.onnx", AttentionHead),
        ("fixtures/attention/tiny_bert_eager.onnx", QkSoftmax),
        ("fixtures/tiny_bert_legacy.onnx", AttentionHead),
        ("fixtures/tiny_bert_legacy.onnx", SoftmaxV),
        ("fixtures/tiny_bert_dynamo.onnx", AttentionHead),
    ];
    for (file, pattern) in cases {
        let p = prep(file);
        let (c, _) = carve_nth(&p, *pattern, 0);
        assert_ort_agrees(&c, &format!("{file} {pattern}"));
    }
}

/// BERT's attention blocks carve into self-contained models (the shape computations come along or are
/// constants: layer 0 of every export reads the batch and sequence sizes computed from the model input)
/// and agree fused and unfused.
#[test]
fn bert_blocks_carve_and_agree() {
    for file in
        ["fixtures/attention/tiny_bert_eager.onnx", "fixtures/tiny_bert_legacy.onnx", "fixtures/tiny_bert_dynamo.onnx"]
    {
        let p = prep(file);
        for layer in 0..2 {
            let (c, _) = carve_nth(&p, MultiHeadLinear, layer);
            let floats = c.inputs.iter().filter(|(_, e, _)| *e == 1).count();
            assert_eq!((c.inputs.len(), floats), (2, 2), "{file} layer {layer}: {:?}", c.inputs);
            assert_ort_agrees(&c, &format!("{file} layer {layer}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Explicit fusion into ORT's attention kernels

/// The explicit rewrite of `c`: same inputs and outputs, its outputs match the carved model's on two
/// input sets (floats in `range` when given), and it uses `kernel`.
fn assert_explicit(c: &Carved, kernel: &str, what: &str, range: Option<(i64, i64)>) -> Explicit {
    let e = match explicit_fused(c, Ep::Cpu).unwrap_or_else(|e| panic!("{what}: {e:#}")) {
        Availability::Fused(e) => *e,
        Availability::NoKernel(why) => panic!("{what}: no kernel: {why}"),
    };
    assert!(e.kernels.iter().any(|k| k == kernel), "{what}: {:?}", e.kernels);
    let (g, eg) = (c.model.graph.as_ref().unwrap(), e.model.graph.as_ref().unwrap());
    assert_eq!(g.input, eg.input, "{what}");
    assert_eq!(g.output, eg.output, "{what}");
    for seed in [1, 2] {
        let specs: Vec<InputSpec> = specs(c).into_iter().map(|s| InputSpec { range, ..s }).collect();
        let inputs = random_inputs(&specs, seed).unwrap();
        let eq = check_equivalence(&run_disabled(&c.bytes, &inputs), &run_disabled(&e.bytes, &inputs));
        assert!(eq.passed && eq.outputs_compared == 1, "{what}: {eq:?}");
    }
    e
}

#[test]
fn explicit_attention_heads_match() {
    let cases: &[(&str, Pattern, usize, &str)] = &[
        ("fixtures/attention/attention_head.onnx", AttentionHead, 0, "com.microsoft.MultiHeadAttention"),
        ("fixtures/attention/attention_head_nomask.onnx", AttentionHead, 0, "com.microsoft.MultiHeadAttention"),
        ("fixtures/attention/attention_div_scale.onnx", AttentionHead, 0, "com.microsoft.MultiHeadAttention"),
        ("fixtures/attention/attention_sdpa.onnx", AttentionHead, 0, "com.microsoft.MultiHeadAttention"),
        ("fixtures/attention/tiny_bert_eager.onnx", AttentionHead, 1, "com.microsoft.MultiHeadAttention"),
        ("fixtures/tiny_bert_legacy.onnx", AttentionHead, 0, "com.microsoft.MultiHeadAttention"),
        ("fixtures/tiny_bert_dynamo.onnx", AttentionHead, 1, "com.microsoft.MultiHeadAttention"),
        ("fixtures/attention/attention_scores.onnx", QkSoftmax, 0, "com.microsoft.FusedMatMul"),
        ("fixtures/tiny_bert_legacy.onnx", QkSoftmax, 0, "com.microsoft.FusedMatMul"),
        ("fixtures/attention/multihead_block.onnx", MultiHeadLinear, 0, "com.microsoft.Attention"),
    ];
    for (file, pattern, nth, kernel) in cases {
        let p = prep(file);
        let (c, _) = carve_nth(&p, *pattern, *nth);
        let e = assert_explicit(&c, kernel, &format!("{file} {pattern} #{nth}"), None);
        if *pattern == AttentionHead {
            assert_eq!(e.kernels.iter().filter(|k| k.starts_with("com.microsoft")).count(), 1, "{:?}", e.kernels);
        }
    }
}

/// BERT's blocks → Attention + output MatMul + Add (needs the blocks to carve self-contained). BERT's
/// small weights make the scores of inputs in [-1, 1) nearly uniform, where a wrong scale or head
/// split would hardly show: the inputs span [-20, 20) instead.
#[test]
fn explicit_bert_blocks_match() {
    for file in
        ["fixtures/attention/tiny_bert_eager.onnx", "fixtures/tiny_bert_legacy.onnx", "fixtures/tiny_bert_dynamo.onnx"]
    {
        let p = prep(file);
        for layer in 0..2 {
            let (c, _) = carve_nth(&p, MultiHeadLinear, layer);
            let e = assert_explicit(&c, "com.microsoft.Attention", &format!("{file} layer {layer}"), Some((-20, 20)));
            assert_eq!(e.kernels, ["com.microsoft.Attention", "MatMul", "Add"], "{file}");
        }
    }
}

#[test]
fn softmax_v_has_no_kernel() {
    let p = fixture("softmax_v");
    let (c, _) = carve_nth(&p, SoftmaxV, 0);
    assert!(matches!(explicit_fused(&c, Ep::Cpu).unwrap(), Availability::NoKernel(_)));
}
