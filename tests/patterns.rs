//! Pattern detection on real exporter output: counts on whole models, one positive per pattern fixture,
//! and the negatives that must not match.

use std::collections::BTreeMap;
use std::path::Path;

use fuseval::patterns::Pattern::{self, *};
use fuseval::pipeline::{prepare, Prepared};

fn prep(path: &str) -> Prepared {
    prepare(Path::new(path), &[]).unwrap_or_else(|e| panic!("{path}: {e:#}"))
}

fn counts(p: &Prepared, longest: bool) -> BTreeMap<Pattern, usize> {
    p.detection.counts(longest)
}

fn expect(pairs: &[(Pattern, usize)]) -> BTreeMap<Pattern, usize> {
    pairs.iter().copied().collect()
}

fn assert_resnet50_counts(path: &str) {
    let p = prep(path);
    assert_eq!(
        counts(&p, true),
        // each residual block's Conv(+BN)+Sum+Relu is one Conv2d_Add_ReLU (issue 10); before it, these were
        // 16 more Conv2d_BN (20) and 16 Add_ReLU
        expect(&[(ConvBnReluMaxPool, 1), (ConvBnRelu, 32), (ConvBn, 4), (ConvAddRelu, 16), (LinearBias, 1)]),
        "{path}: longest-match counts"
    );
    assert_eq!(
        counts(&p, false),
        expect(&[
            (ConvBnReluMaxPool, 1),
            (ConvBnRelu, 33),
            (ConvBn, 53),
            (AddRelu, 16),
            (ConvAddRelu, 20),
            (LinearBias, 1)
        ]),
        "{path}: counts including overlapping sub-matches"
    );
    // every Conv+BN of the longest cover feeds the residual sum
    for i in p.detection.longest_instances().filter(|i| i.pattern == ConvBn) {
        let out = &i.outputs[0];
        let readers = p.graph.consumers_of(out);
        assert_eq!(readers.len(), 1);
        assert!(["Sum", "Add"].contains(&p.graph.node(readers[0]).op.as_str()), "{path}: {:?}", i.node_names(&p.graph));
    }
}

#[test]
fn light_resnet50_counts() {
    assert_resnet50_counts("fixtures/light_resnet50.onnx");
    let p = prep("fixtures/light_resnet50.onnx");
    let stem = p.detection.longest_instances().find(|i| i.pattern == ConvBnReluMaxPool).unwrap();
    assert_eq!(stem.node_names(&p.graph), ["n0", "n1", "n2", "n3"]);
    assert_eq!(p.graph.shape(&stem.inputs[0]), Some(&[1usize, 3, 224, 224][..]));
    // the Sum of the residual is matched in its `Sum` form
    assert!(p.detection.all.iter().filter(|i| i.pattern == AddRelu).all(|i| i.form == "Sum+Relu"));
}

#[test]
fn mini_resnet50_legacy_counts() {
    assert_resnet50_counts("fixtures/mini_resnet50_legacy.onnx");
}

#[test]
fn mini_resnet50_dynamo_counts() {
    assert_resnet50_counts("fixtures/mini_resnet50_dynamo.onnx");
}

fn assert_bert_counts(path: &str, gelu_form: &str, ln_form: &str) {
    let p = prep(path);
    // per layer: the attention block (it swallows the Q, K, V and attention-output projections), the
    // FFN's Linear+Bias+GELU and output projection, two Add+LayerNorm; plus the embeddings' LayerNorm
    // and the pooler
    assert_eq!(
        counts(&p, true),
        expect(&[(MultiHeadLinear, 2), (LinearBias, 3), (LinearBiasGelu, 2), (AddLayerNorm, 5)]),
        "{path}: longest-match counts"
    );
    // the projections are still found as sub-matches: Q, K, V, attention output, FFN in (inside the
    // GELU match) and FFN out per layer, and the pooler
    assert_eq!(counts(&p, false).get(&LinearBias), Some(&13), "{path}: all matches");
    assert_eq!(
        counts(&p, true),
        expect(&[(MultiHeadLinear, 2), (LinearBias, 3), (LinearBiasGelu, 2), (AddLayerNorm, 5)]),
        "{path}: longest-match counts"
    );
    for i in p.detection.longest_instances() {
        match i.pattern {
            LinearBiasGelu => assert!(i.form.ends_with(&format!("GELU({gelu_form})")), "{path}: {}", i.form),
            AddLayerNorm => assert_eq!(i.form, ln_form, "{path}"),
            _ => {}
        }
    }
    // default sequence length 128 was applied, and said so
    assert!(p.loaded.warnings.iter().any(|w| w.contains("128")), "{:?}", p.loaded.warnings);
    let gelu = p.detection.longest_instances().find(|i| i.pattern == LinearBiasGelu).unwrap();
    assert_eq!(p.graph.shape(&gelu.inputs[0]).map(|s| s[..2].to_vec()), Some(vec![1, 128]));
}

#[test]
fn tiny_bert_legacy_counts() {
    assert_bert_counts("fixtures/tiny_bert_legacy.onnx", "Erf", "decomposed");
    let p = prep("fixtures/tiny_bert_legacy.onnx");
    let gelu = p.detection.longest_instances().find(|i| i.pattern == LinearBiasGelu).unwrap();
    let names = gelu.node_names(&p.graph);
    assert_eq!(names[0], "/m/encoder/layer.0/intermediate/dense/MatMul");
    assert_eq!(names.len(), 7, "{names:?}");
}

#[test]
fn tiny_bert_dynamo_counts() {
    assert_bert_counts("fixtures/tiny_bert_dynamo.onnx", "Gelu op", "LayerNormalization");
}

#[test]
fn input_override_sets_sequence() {
    let p = prepare(Path::new("fixtures/tiny_bert_legacy.onnx"), &["input_ids=2x16".parse().unwrap()]).unwrap();
    // attention_mask and token_type_ids share the `batch` and `sequence` symbols
    for i in &p.loaded.inputs {
        assert_eq!(i.dims, [2, 16], "{}", i.name);
    }
    assert!(p.loaded.warnings.iter().all(|w| !w.contains("dynamic")), "{:?}", p.loaded.warnings);
}

/// Each single-pattern fixture: the pattern is found once, as the longest match.
#[test]
fn pattern_fixtures_positive() {
    let cases: &[(&str, Pattern, &str)] = &[
        ("conv_bias", ConvBias, "Conv+Add"),
        ("conv_bn", ConvBn, "Conv+BatchNormalization"),
        ("conv_bn_relu", ConvBnRelu, "Conv+BatchNormalization+Relu"),
        ("conv_relu", ConvRelu, "Conv+Relu"),
        ("conv_bn_relu_maxpool", ConvBnReluMaxPool, "Conv+BatchNormalization+Relu+MaxPool"),
        ("linear_bias_matmul", LinearBias, "MatMul+Add"),
        ("linear_bias_gemm", LinearBias, "Gemm"),
        ("linear_bias_relu", LinearBiasRelu, "Gemm+Relu"),
        ("linear_bias_gelu_erf", LinearBiasGelu, "MatMul+Add+GELU(Erf)"),
        ("linear_bias_gelu_tanh", LinearBiasGelu, "MatMul+Add+GELU(tanh)"),
        ("linear_bias_gelu_op", LinearBiasGelu, "MatMul+Add+GELU(Gelu op)"),
        ("mlp", Mlp, "Gemm+Relu+Gemm"),
        ("add_relu", AddRelu, "Add+Relu"),
        ("add_layernorm_op", AddLayerNorm, "LayerNormalization"),
        ("add_layernorm_decomposed", AddLayerNorm, "decomposed"),
        // issue 3: ReLU6 as Clip (bounds as inputs at opset 17, as attributes at opset 10)
        ("conv_relu6", ConvRelu, "Conv+Clip"),
        ("linear_relu6", LinearBiasRelu, "Gemm+Clip"),
        // inference Dropout, added with onnx.helper (torch drops it from eval exports)
        ("linear_bias_relu_dropout", LinearBiasReluDropout, "Gemm+Relu+Dropout (no-op in inference)"),
        ("mlp_dropout", Mlp, "Gemm+Relu+Dropout+Gemm (Dropout: no-op in inference)"),
        ("mul_add_relu", MulAddRelu, "Mul+Add+Relu"),
        ("mul_add_relu_scalar", MulAddRelu, "Mul+Add+Relu"),
        ("silu", SigmoidMul, "Sigmoid+Mul (SiLU)"),
        ("sigmoid_gate", SigmoidMul, "Sigmoid+Mul (gated x·σ(g))"),
        ("quickgelu", SigmoidMul, "Mul+Sigmoid+Mul (QuickGELU x·σ(αx))"),
        ("hardswish", SigmoidMul, "HardSigmoid+Mul (hard-swish)"),
        // the dequantization belongs to the pattern (ORT fuses it into MatMulNBits)
        ("linear_quantized", LinearBias, "MatMul+Add (quantized weight)"),
        ("linear_quantized_cast", LinearBias, "MatMul+Add (quantized weight)"),
    ];
    for (file, pattern, form) in cases {
        let p = prep(&format!("fixtures/patterns/{file}.onnx"));
        let longest: Vec<_> = p.detection.longest_instances().collect();
        assert_eq!(longest.len(), 1, "{file}: {:?}", longest.iter().map(|i| i.pattern).collect::<Vec<_>>());
        assert_eq!(longest[0].pattern, *pattern, "{file}");
        assert_eq!(longest[0].form, *form, "{file}");
        // the whole model, but for its `Constant` nodes, is the pattern
        let ops = p.graph.graph.node_weights().filter(|n| n.op != "Constant").count();
        assert_eq!(longest[0].nodes.len(), ops, "{file}");
    }
}

#[test]
fn fan_out_in_the_middle_prevents_the_match() {
    let p = prep("fixtures/patterns/neg_fanout.onnx");
    let c = counts(&p, false);
    assert_eq!(c.get(&ConvBnRelu), None, "{c:?}");
    assert_eq!(c.get(&ConvBn), Some(&1), "{c:?}");
}

#[test]
fn middle_graph_output_prevents_the_match() {
    let p = prep("fixtures/patterns/neg_graph_output.onnx");
    let c = counts(&p, false);
    assert_eq!(c.get(&ConvBnRelu), None, "{c:?}");
    assert_eq!(c.get(&ConvBn), Some(&1), "{c:?}");
}

#[test]
fn non_constant_weight_prevents_the_match() {
    let p = prep("fixtures/patterns/neg_nonconst_weight.onnx");
    assert!(p.detection.all.is_empty(), "{:?}", p.detection.all.iter().map(|i| i.pattern).collect::<Vec<_>>());
}

#[test]
fn swiglu_is_found_beside_its_linears() {
    let p = prep("fixtures/patterns/swiglu.onnx");
    assert_eq!(counts(&p, true), expect(&[(LinearBias, 2), (SigmoidMul, 1)]));
    let s = p.detection.longest_instances().find(|i| i.pattern == SigmoidMul).unwrap();
    assert_eq!(s.form, "Sigmoid+Mul+Mul (SwiGLU x·SiLU(g))");
    assert_eq!(s.node_names(&p.graph), ["/Sigmoid", "/Mul", "/Mul_1"]);
    assert_eq!(s.inputs.len(), 2, "the gate and the up projection: {:?}", s.inputs);
}

#[test]
fn quickgelu_keeps_its_gated_sub_match() {
    let p = prep("fixtures/patterns/quickgelu.onnx");
    let forms: Vec<&str> = p.detection.all.iter().map(|i| i.form.as_str()).collect();
    assert_eq!(forms.len(), 2, "{forms:?}");
    assert!(forms.contains(&"Sigmoid+Mul (gated x·σ(g))"), "{forms:?}");
}

#[test]
fn a_shared_quantized_weight_is_dequantized_outside() {
    // one DequantizeLinear feeds two MatMuls: each linear matches, the dequantization stays a constant
    let p = prep("fixtures/patterns/linear_quantized_shared.onnx");
    assert_eq!(counts(&p, true), expect(&[(LinearBias, 2)]));
    for i in p.detection.longest_instances() {
        assert_eq!(i.form, "MatMul+Add (quantized weight)");
        assert_eq!(i.nodes.len(), 2, "{:?}", i.node_names(&p.graph));
    }
}

#[test]
fn a_read_dropout_mask_prevents_the_match() {
    // the Dropout's mask is a model output: the Dropout is not a no-op to drop
    let p = prep("fixtures/patterns/neg_dropout_mask.onnx");
    assert_eq!(counts(&p, true), expect(&[(LinearBiasRelu, 1)]));
    assert_eq!(counts(&p, false).get(&LinearBiasReluDropout), None);
}

#[test]
fn dropout_in_training_mode_prevents_the_match() {
    // torch keeps Dropout only in a training export, with a training_mode input: not a no-op
    let p = prep("fixtures/patterns/neg_dropout_training.onnx");
    assert_eq!(counts(&p, true), expect(&[(LinearBiasRelu, 1)]));
    assert_eq!(counts(&p, false).get(&LinearBiasReluDropout), None);
}

#[test]
fn non_constant_scale_prevents_mul_add_relu() {
    let p = prep("fixtures/patterns/neg_mul_add_relu.onnx");
    assert!(p.detection.all.is_empty(), "{:?}", p.detection.all.iter().map(|i| &i.form).collect::<Vec<_>>());
}

#[test]
fn sigmoid_fan_out_prevents_silu() {
    // σ(x) is read by the SiLU's Mul and by a second Mul
    let p = prep("fixtures/patterns/neg_silu_fanout.onnx");
    assert!(p.detection.all.is_empty(), "{:?}", p.detection.all.iter().map(|i| &i.form).collect::<Vec<_>>());
}

#[test]
fn layernorm_over_another_axis_prevents_the_match() {
    // decomposed: ReduceMean over axis 1 of [1,16,64]; op: LayerNormalization with axis=-2
    for file in ["neg_layernorm_axis", "neg_layernorm_op_axis"] {
        let p = prep(&format!("fixtures/patterns/{file}.onnx"));
        assert_eq!(counts(&p, false).get(&AddLayerNorm), None, "{file}");
    }
}

#[test]
fn pattern_keys_are_stable_and_parse_back() {
    for p in Pattern::ALL {
        assert_eq!(Pattern::from_key(p.key()), Some(p));
        assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.key()));
    }
    // the design's own partitioner spelling
    assert_eq!(Pattern::from_key("Conv2d_BatchNorm2d_ReLU"), Some(ConvBnRelu));
    assert_eq!(Pattern::from_key("conv_bn_relu"), Some(ConvBnRelu));
}
