//! A negative for every pattern: take its real exporter fixture, export the tensor between the
//! pattern's first node and the next as an extra model output (so it escapes), and check the pattern
//! no longer spans it. The fixtures' own negatives (fan-out, non-constant weight, wrong axis) are in
//! tests/patterns.rs and tests/attention.rs.

use std::path::{Path, PathBuf};

use fuseval::patterns::Pattern::{self, *};
use fuseval::pipeline::prepare;
use prost::Message;
use tract_onnx::pb;

fn with_extra_output(src: &str, tensor: &str) -> PathBuf {
    let mut m = pb::ModelProto::decode(std::fs::read(src).unwrap().as_slice()).unwrap();
    m.graph.as_mut().unwrap().output.push(pb::ValueInfoProto { name: tensor.into(), ..Default::default() });
    let dir = std::env::temp_dir().join(format!("fuseval-neg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(Path::new(src).file_name().unwrap());
    std::fs::write(&out, m.encode_to_vec()).unwrap();
    out
}

#[test]
fn an_escaping_intermediate_breaks_every_pattern() {
    let cases: &[(&str, Pattern)] = &[
        ("fixtures/patterns/conv_bias.onnx", ConvBias),
        ("fixtures/patterns/conv_bn.onnx", ConvBn),
        ("fixtures/patterns/conv_bn_relu.onnx", ConvBnRelu),
        ("fixtures/patterns/conv_relu.onnx", ConvRelu),
        ("fixtures/patterns/conv_bn_relu_maxpool.onnx", ConvBnReluMaxPool),
        ("fixtures/mini_resnet50_legacy.onnx", ConvAddRelu),
        ("fixtures/patterns/linear_bias_matmul.onnx", LinearBias),
        ("fixtures/patterns/linear_bias_relu.onnx", LinearBiasRelu),
        ("fixtures/patterns/linear_bias_relu_dropout.onnx", LinearBiasReluDropout),
        ("fixtures/patterns/linear_bias_gelu_erf.onnx", LinearBiasGelu),
        ("fixtures/patterns/mlp.onnx", Mlp),
        ("fixtures/attention/attention_scores.onnx", QkSoftmax),
        ("fixtures/attention/softmax_v.onnx", SoftmaxV),
        ("fixtures/attention/attention_head.onnx", AttentionHead),
        ("fixtures/attention/multihead_block.onnx", MultiHeadLinear),
        ("fixtures/patterns/add_relu.onnx", AddRelu),
        ("fixtures/patterns/add_layernorm_op.onnx", AddLayerNorm),
        ("fixtures/patterns/mul_add_relu.onnx", MulAddRelu),
        ("fixtures/patterns/silu.onnx", SigmoidMul),
    ];
    let mut covered = std::collections::BTreeSet::new();
    for (file, pattern) in cases {
        let p = prepare(Path::new(file), &[]).unwrap_or_else(|e| panic!("{file}: {e:#}"));
        let inst =
            p.detection.all.iter().find(|i| i.pattern == *pattern).unwrap_or_else(|| panic!("{file}: {pattern} found"));
        assert!(inst.nodes.len() >= 2, "{file}: {pattern} has an intermediate");
        let (first, last) = (inst.nodes[0], *inst.nodes.last().unwrap());
        let (first_name, last_name) = (p.graph.node(first).name.clone(), p.graph.node(last).name.clone());
        let escaping = p.graph.node(first).outputs[0].clone();
        let broken = with_extra_output(file, &escaping);
        let q = prepare(&broken, &[]).unwrap_or_else(|e| panic!("{file} with `{escaping}` exported: {e:#}"));
        let spans = q.detection.all.iter().filter(|i| i.pattern == *pattern).any(|i| {
            let names = i.node_names(&q.graph);
            names.contains(&first_name) && names.contains(&last_name)
        });
        assert!(!spans, "{file}: {pattern} still matched with its intermediate `{escaping}` a model output");
        covered.insert(*pattern);
    }
    // every pattern with an intermediate tensor; Linear+Bias as a single Gemm has none, and is covered
    // through its MatMul+Add form
    assert_eq!(covered.len(), Pattern::ALL.len(), "{covered:?}");
}
