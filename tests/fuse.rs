//! Explicit fusion: each pattern's carved instance is rewritten into ORT's fused kernel(s); the rewritten
//! model loads in ONNX Runtime with optimizations disabled and computes what the carved model computes,
//! on seeded random inputs. Where ORT has no kernel, the reason is given.

mod common;

use std::path::Path;

use fuseval::carve::{carve, Carved, ConstValues};
use fuseval::fuse::{explicit_fused, kernel_for, Availability, Explicit};
use fuseval::measure::{check_equivalence, random_inputs, OutputValues};
use fuseval::patterns::Pattern;
use fuseval::pipeline::{prepare, Prepared};
use fuseval::runtime::Ep;
use prost::Message;
use tract_onnx::pb;

const CUDA: Ep = Ep::Cuda { device_id: 0 };

fn carve_first(p: &Prepared, pattern: Pattern) -> Carved {
    common::carve_first(p, pattern).0
}

fn carved(file: &str, pattern: Pattern) -> Carved {
    let p = prepare(Path::new(file), &[]).unwrap_or_else(|e| panic!("{file}: {e:#}"));
    carve_first(&p, pattern)
}

/// Run a model once, optimizations disabled, on seeded random inputs for `c`'s interface.
fn run(bytes: &[u8], c: &Carved, seed: u64) -> Vec<OutputValues> {
    common::run_disabled(bytes, &random_inputs(&common::specs(c), seed).unwrap())
}

/// The explicit rewrite of `c` on CPU: fused into `kernels`, loads, and matches `c` on two input sets.
fn check_fused(what: &str, c: &Carved, kernels: &[&str]) -> Explicit {
    let e = match explicit_fused(c, Ep::Cpu).unwrap_or_else(|e| panic!("{what}: {e:#}")) {
        Availability::Fused(e) => *e,
        Availability::NoKernel(why) => panic!("{what}: no kernel: {why}"),
    };
    assert_eq!(e.kernels, kernels, "{what}: kernels ({})", e.note);
    assert!(!e.note.is_empty(), "{what}: a note says what was done");
    // the rewritten model keeps the carved model's interface
    let (g, cg) = (e.model.graph.as_ref().unwrap(), c.model.graph.as_ref().unwrap());
    assert_eq!(g.input, cg.input, "{what}: inputs");
    assert_eq!(g.output, cg.output, "{what}: outputs");
    assert!(e.model.opset_import.iter().any(|o| o.domain == "com.microsoft" && o.version == 1));
    assert_eq!(pb::ModelProto::decode(e.bytes.as_slice()).unwrap(), e.model, "{what}: bytes are the model");
    for seed in [7, 8] {
        let reference = run(&c.bytes, c, seed);
        let got = run(&e.bytes, c, seed);
        let eq = check_equivalence(&reference, &got);
        assert!(eq.passed && eq.outputs_compared == 1, "{what}: outputs differ: {eq:?} ({})", e.note);
    }
    e
}

fn no_kernel(what: &str, c: &Carved, ep: Ep) -> String {
    match explicit_fused(c, ep).unwrap_or_else(|e| panic!("{what}: {e:#}")) {
        Availability::NoKernel(why) => {
            assert!(why.len() > 10, "{what}: the reason is given: {why:?}");
            why
        }
        Availability::Fused(e) => panic!("{what}: expected no kernel, got {:?}", e.kernels),
    }
}

#[test]
fn pattern_fixtures_fuse_and_agree() {
    const FC: &str = "com.microsoft.FusedConv";
    let cases: &[(&str, Pattern, &[&str])] = &[
        ("conv_bias", Pattern::ConvBias, &["Conv"]),
        ("conv_bn", Pattern::ConvBn, &["Conv"]),
        ("conv_bn_relu", Pattern::ConvBnRelu, &[FC]),
        ("conv_relu", Pattern::ConvRelu, &[FC]),
        ("conv_bn_relu_maxpool", Pattern::ConvBnReluMaxPool, &[FC, "MaxPool"]),
        // x is [1,16,64]: flattened around the Gemm
        ("linear_bias_matmul", Pattern::LinearBias, &["Reshape", "Gemm", "Reshape"]),
        ("linear_bias_gemm", Pattern::LinearBias, &["Gemm"]),
        ("linear_bias_relu", Pattern::LinearBiasRelu, &["com.microsoft.FusedGemm"]),
        ("linear_bias_gelu_erf", Pattern::LinearBiasGelu, &["MatMul", "com.microsoft.BiasGelu"]),
        ("linear_bias_gelu_op", Pattern::LinearBiasGelu, &["MatMul", "com.microsoft.BiasGelu"]),
        ("linear_bias_gelu_tanh", Pattern::LinearBiasGelu, &["MatMul", "com.microsoft.FastGelu"]),
        ("mlp", Pattern::Mlp, &["com.microsoft.FusedGemm", "Gemm"]),
        ("add_layernorm_op", Pattern::AddLayerNorm, &["com.microsoft.SkipLayerNormalization"]),
        ("add_layernorm_decomposed", Pattern::AddLayerNorm, &["com.microsoft.SkipLayerNormalization"]),
        // ReLU6 as Clip(0, 6)
        ("conv_relu6", Pattern::ConvRelu, &[FC]),
        ("linear_bias_relu_dropout", Pattern::LinearBiasReluDropout, &["com.microsoft.FusedGemm"]),
        ("mlp_dropout", Pattern::Mlp, &["com.microsoft.FusedGemm", "Gemm"]),
        // the weight's DequantizeLinear stays: the kernels read its output
        ("linear_quantized", Pattern::LinearBias, &["DequantizeLinear", "Reshape", "Gemm", "Reshape"]),
        ("silu", Pattern::SigmoidMul, &["com.microsoft.QuickGelu"]),
        ("quickgelu", Pattern::SigmoidMul, &["com.microsoft.QuickGelu"]),
        ("hardswish", Pattern::SigmoidMul, &["HardSwish"]),
    ];
    for (name, pattern, kernels) in cases {
        let file = format!("fixtures/patterns/{name}.onnx");
        let c = carved(&file, *pattern);
        check_fused(&file, &c, kernels);
    }
}

#[test]
fn bn_is_folded_into_the_weights() {
    let c = carved("fixtures/patterns/conv_bn_relu.onnx", Pattern::ConvBnRelu);
    let e = check_fused("conv_bn_relu", &c, &["com.microsoft.FusedConv"]);
    let g = e.model.graph.as_ref().unwrap();
    let n = &g.node[0];
    assert_eq!(n.input.len(), 3, "X, folded W, folded B");
    let act = n.attribute.iter().find(|a| a.name == "activation").expect("activation attribute");
    assert_eq!(act.s, b"Relu");
    // no BN statistics left: just the folded weight and bias
    assert_eq!(g.initializer.len(), 2);
    assert!(e.note.contains("BN folded"), "{}", e.note);
}

#[test]
fn real_model_instances_fuse_and_agree() {
    const FC: &str = "com.microsoft.FusedConv";
    let resnet = prepare(Path::new("fixtures/light_resnet50.onnx"), &[]).unwrap();
    for (pattern, kernels) in [
        (Pattern::ConvBnRelu, &[FC][..]),
        (Pattern::ConvBn, &["Conv"][..]),
        (Pattern::ConvBnReluMaxPool, &[FC, "MaxPool"][..]),
        (Pattern::LinearBias, &["Gemm"][..]),
    ] {
        let c = carve_first(&resnet, pattern);
        check_fused(&format!("light_resnet50 {pattern} ({})", c.form), &c, kernels);
    }
    let legacy = prepare(Path::new("fixtures/tiny_bert_legacy.onnx"), &[]).unwrap();
    for (pattern, kernels) in [
        (Pattern::LinearBias, &["Reshape", "Gemm", "Reshape"][..]),
        (Pattern::LinearBiasGelu, &["MatMul", "com.microsoft.BiasGelu"][..]),
        (Pattern::AddLayerNorm, &["com.microsoft.SkipLayerNormalization"][..]),
    ] {
        let c = carve_first(&legacy, pattern);
        check_fused(&format!("tiny_bert_legacy {pattern} ({})", c.form), &c, kernels);
    }
    let dynamo = prepare(Path::new("fixtures/tiny_bert_dynamo.onnx"), &[]).unwrap();
    for (pattern, form, kernels) in [
        (Pattern::LinearBiasGelu, "Gelu op", &["MatMul", "com.microsoft.BiasGelu"][..]),
        (Pattern::AddLayerNorm, "LayerNormalization", &["com.microsoft.SkipLayerNormalization"][..]),
    ] {
        let c = carve_first(&dynamo, pattern);
        assert!(c.form.contains(form), "tiny_bert_dynamo {pattern}: form {}", c.form);
        check_fused(&format!("tiny_bert_dynamo {pattern} ({})", c.form), &c, kernels);
    }
}

#[test]
fn no_kernel_cases_say_why() {
    let c = carved("fixtures/patterns/add_relu.onnx", Pattern::AddRelu);
    assert!(no_kernel("add_relu cpu", &c, Ep::Cpu).contains("Add+ReLU"));
    assert!(no_kernel("add_relu cuda", &c, CUDA).contains("CUDA"));
    // CUDA has no FusedGemm
    let c = carved("fixtures/patterns/linear_bias_relu.onnx", Pattern::LinearBiasRelu);
    assert!(no_kernel("linear_bias_relu cuda", &c, CUDA).contains("FusedGemm"));
    let c = carved("fixtures/patterns/mlp.onnx", Pattern::Mlp);
    assert!(no_kernel("mlp cuda", &c, CUDA).contains("FusedGemm"));
    // FusedGemm has no Clip activation (ORT rejects it: "unknown kernel type")
    let c = carved("fixtures/patterns/linear_relu6.onnx", Pattern::LinearBiasRelu);
    assert!(no_kernel("linear_relu6", &c, Ep::Cpu).contains("Clip"));
    let c = carved("fixtures/patterns/mul_add_relu.onnx", Pattern::MulAddRelu);
    assert!(no_kernel("mul_add_relu", &c, Ep::Cpu).contains("Mul+Add+ReLU"));
    let c = carved("fixtures/patterns/sigmoid_gate.onnx", Pattern::SigmoidMul);
    assert!(no_kernel("sigmoid_gate", &c, Ep::Cpu).contains("gate"));
    let c = carved("fixtures/patterns/swiglu.onnx", Pattern::SigmoidMul);
    assert!(no_kernel("swiglu", &c, Ep::Cpu).contains("SwiGLU"));
}

#[test]
fn cuda_rewrites_use_kernels_the_cuda_provider_has() {
    // built (not run: the bundled ORT is CPU-only); FusedConv, BiasGelu, SkipLayerNormalization are CUDA kernels
    for (file, pattern, kernels) in [
        ("conv_bn_relu", Pattern::ConvBnRelu, &["com.microsoft.FusedConv"][..]),
        ("linear_bias_gelu_erf", Pattern::LinearBiasGelu, &["MatMul", "com.microsoft.BiasGelu"][..]),
        ("add_layernorm_op", Pattern::AddLayerNorm, &["com.microsoft.SkipLayerNormalization"][..]),
    ] {
        let c = carved(&format!("fixtures/patterns/{file}.onnx"), pattern);
        match explicit_fused(&c, CUDA).unwrap() {
            Availability::Fused(e) => assert_eq!(e.kernels, kernels, "{file}"),
            Availability::NoKernel(why) => panic!("{file}: {why}"),
        }
    }
}

#[test]
fn catalog_names_a_kernel_or_none_for_every_pattern() {
    for p in Pattern::ALL {
        for ep in [Ep::Cpu, CUDA] {
            assert!(!kernel_for(p, ep).is_empty(), "{p} {ep}");
        }
    }
    assert_eq!(kernel_for(Pattern::AddRelu, Ep::Cpu), "none");
    assert_eq!(kernel_for(Pattern::LinearBiasRelu, CUDA), "none");
    assert!(kernel_for(Pattern::LinearBiasRelu, Ep::Cpu).contains("FusedGemm"));
    assert!(kernel_for(Pattern::ConvBnRelu, CUDA).contains("FusedConv"));
    assert!(kernel_for(Pattern::AddLayerNorm, CUDA).contains("SkipLayerNormalization"));
}

// ---------------------------------------------------------------------------------------------------
// Hand-built carved models for forms no fixture has yet

fn vi(name: &str, dims: &[usize]) -> pb::ValueInfoProto {
    fuseval::onnx::value_info(name, 1, Some(dims))
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: format!("{op}_{output}"),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    }
}

fn f32_init(name: &str, dims: &[i64], seed: u32) -> pb::TensorProto {
    let n: i64 = dims.iter().product();
    // deterministic, non-zero, in (-1, 1)
    let data: Vec<f32> = (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2000) as f32 / 1000.0) - 0.9995)
        .collect();
    pb::TensorProto { name: name.into(), dims: dims.to_vec(), data_type: 1, float_data: data, ..Default::default() }
}

fn attr_f(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: 1, f, ..Default::default() }
}

fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: 7, ints: ints.to_vec(), ..Default::default() }
}

fn hand_carved(
    pattern: Pattern,
    form: &str,
    nodes: Vec<pb::NodeProto>,
    inputs: &[(&str, &[usize])],
    inits: Vec<pb::TensorProto>,
    out: (&str, &[usize]),
    opset: i64,
) -> Carved {
    let graph = pb::GraphProto {
        name: "hand".into(),
        node: nodes,
        input: inputs.iter().map(|(n, d)| vi(n, d)).collect(),
        output: vec![vi(out.0, out.1)],
        initializer: inits,
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: opset }],
        graph: Some(graph),
        ..Default::default()
    };
    let roles = detected_roles(&model, pattern);
    Carved {
        pattern,
        form: form.into(),
        roles,
        bytes: model.encode_to_vec(),
        model,
        inputs: inputs.iter().map(|(n, d)| (n.to_string(), 1, d.to_vec())).collect(),
        outputs: vec![out.0.into()],
    }
}

/// The roles detection gives the nodes of a hand-built model that is exactly one `pattern` instance, in
/// graph order.
fn detected_roles(model: &pb::ModelProto, pattern: Pattern) -> Vec<fuseval::patterns::Role> {
    let dir = std::env::temp_dir().join(format!("fuseval-hand-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names: Vec<String> = model.graph.as_ref().unwrap().node.iter().map(|n| n.name.clone()).collect();
    if names.is_empty() {
        // a model with no node stands for the pattern only where the rewrite answers from the pattern alone
        return vec![];
    }
    let path = dir.join(format!("{}.onnx", names.join("_")));
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let p = prepare(&path, &[]).unwrap_or_else(|e| panic!("hand-built {pattern}: {e:#}"));
    let inst = p
        .detection
        .all
        .iter()
        .find(|i| i.pattern == pattern && i.nodes.len() == names.len())
        .unwrap_or_else(|| panic!("hand-built {pattern} ({}) is not detected as one instance", names.join(", ")));
    let role = |name: &String| {
        let k = inst.node_names(&p.graph).iter().position(|n| n == name).expect("node of the instance");
        inst.roles[k]
    };
    names.iter().map(role).collect()
}

#[test]
fn hand_built_silu_hardswish_gate() {
    let x: &[usize] = &[2, 8, 32];
    let silu = hand_carved(
        Pattern::SigmoidMul,
        "Sigmoid+Mul",
        vec![node("Sigmoid", &["x"], "s", vec![]), node("Mul", &["s", "x"], "y", vec![])],
        &[("x", x)],
        vec![],
        ("y", x),
        17,
    );
    let e = check_fused("SiLU", &silu, &["com.microsoft.QuickGelu"]);
    let alpha = e.model.graph.as_ref().unwrap().node[0].attribute.iter().find(|a| a.name == "alpha").map(|a| a.f);
    assert_eq!(alpha, Some(1.0), "SiLU is QuickGelu with alpha 1");
    // hard-swish at opset 13: HardSwish needs opset 14, so the rewrite raises it
    let hs = hand_carved(
        Pattern::SigmoidMul,
        "HardSigmoid+Mul",
        vec![
            node("HardSigmoid", &["x"], "s", vec![attr_f("alpha", 1.0 / 6.0), attr_f("beta", 0.5)]),
            node("Mul", &["x", "s"], "y", vec![]),
        ],
        &[("x", x)],
        vec![],
        ("y", x),
        13,
    );
    let e = check_fused("hard-swish", &hs, &["HardSwish"]);
    assert!(e.model.opset_import.iter().any(|o| o.domain.is_empty() && o.version >= 14));
    // another HardSigmoid is no hard-swish
    let mut other = hs.clone();
    other.model.graph.as_mut().unwrap().node[0].attribute[0].f = 0.2;
    assert!(no_kernel("x·hσ(x)", &other, Ep::Cpu).contains("not hard-swish"));
    let gate = hand_carved(
        Pattern::SigmoidMul,
        "Sigmoid+Mul (gated)",
        vec![node("Sigmoid", &["g"], "s", vec![]), node("Mul", &["x", "s"], "y", vec![])],
        &[("x", x), ("g", x)],
        vec![],
        ("y", x),
        17,
    );
    assert!(no_kernel("gate", &gate, Ep::Cpu).contains("gate"));
    for ep in [Ep::Cpu, CUDA] {
        let c = hand_carved(Pattern::MulAddRelu, "Mul+Add+Relu", vec![], &[("x", x)], vec![], ("y", x), 17);
        assert!(no_kernel("Mul+Add+ReLU", &c, ep).contains("Mul+Add+ReLU"));
    }
}

#[test]
fn relu6_conv_and_dropout_linear() {
    // Conv (no bias) + Clip(0, 6): FusedConv with activation Clip [0, 6]
    let lo = pb::TensorProto { name: "lo".into(), data_type: 1, float_data: vec![0.0], ..Default::default() };
    let hi = pb::TensorProto { name: "hi".into(), data_type: 1, float_data: vec![6.0], ..Default::default() };
    let conv = hand_carved(
        Pattern::ConvRelu,
        "Conv+Clip",
        vec![
            node("Conv", &["x", "w"], "c", vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("pads", &[1, 1, 1, 1])]),
            node("Clip", &["c", "lo", "hi"], "y", vec![]),
        ],
        &[("x", &[1, 4, 8, 8])],
        vec![f32_init("w", &[8, 4, 3, 3], 3), lo, hi],
        ("y", &[1, 8, 8, 8]),
        17,
    );
    let e = check_fused("Conv+ReLU6", &conv, &["com.microsoft.FusedConv"]);
    let n = &e.model.graph.as_ref().unwrap().node[0];
    let p = n.attribute.iter().find(|a| a.name == "activation_params").expect("activation_params");
    assert_eq!(p.floats, [0.0, 6.0]);
    assert!(no_kernel("Conv+ReLU6 cuda", &conv, CUDA).contains("Relu"));

    // 3-D MatMul + Add + Relu + Dropout: FusedGemm between reshapes, Dropout dropped
    let lin = hand_carved(
        Pattern::LinearBiasReluDropout,
        "MatMul+Add+Relu+Dropout",
        vec![
            node("MatMul", &["x", "w"], "m", vec![]),
            node("Add", &["b", "m"], "a", vec![]),
            node("Relu", &["a"], "r", vec![]),
            node("Dropout", &["r"], "y", vec![]),
        ],
        &[("x", &[2, 5, 16])],
        vec![f32_init("w", &[16, 24], 5), f32_init("b", &[24], 9)],
        ("y", &[2, 5, 24]),
        17,
    );
    let e = check_fused("Linear+Bias+ReLU+Dropout", &lin, &["Reshape", "com.microsoft.FusedGemm", "Reshape"]);
    assert!(e.note.contains("Dropout"), "{}", e.note);

    // Gemm with transB, alpha and beta, then GELU (Erf): the weight is transposed and scaled for MatMul
    let gelu = hand_carved(
        Pattern::LinearBiasGelu,
        "Gemm+GELU(Gelu op)",
        vec![
            node(
                "Gemm",
                &["x", "w", "b"],
                "h",
                vec![
                    pb::AttributeProto { name: "transB".into(), r#type: 2, i: 1, ..Default::default() },
                    attr_f("alpha", 0.5),
                    attr_f("beta", 2.0),
                ],
            ),
            node("Gelu", &["h"], "y", vec![]),
        ],
        &[("x", &[6, 16])],
        vec![f32_init("w", &[24, 16], 11), f32_init("b", &[24], 13)],
        ("y", &[6, 24]),
        20,
    );
    check_fused("Gemm(transB)+Gelu", &gelu, &["MatMul", "com.microsoft.BiasGelu"]);
}

/// Every distinct instance (longest matches) of the real models: fused and equivalent, or a reason.
/// The attention family is left to the attention tests.
#[test]
fn every_real_instance_fuses_or_says_why() {
    for file in ["fixtures/light_resnet50.onnx", "fixtures/tiny_bert_legacy.onnx", "fixtures/tiny_bert_dynamo.onnx"] {
        let p = prepare(Path::new(file), &[]).unwrap();
        let all: Vec<_> = p.detection.longest_instances().collect();
        let groups = fuseval::pipeline::distinct_groups(&p.graph, &all);
        let mut fused = 0;
        for (_, group) in groups {
            let inst = group[0];
            if matches!(
                inst.pattern,
                Pattern::QkSoftmax | Pattern::SoftmaxV | Pattern::AttentionHead | Pattern::MultiHeadLinear
            ) {
                continue;
            }
            let consts = ConstValues::evaluate(&p.loaded, &p.graph, &[inst]).unwrap();
            let c = carve(&p.loaded, &p.graph, inst, &consts).unwrap();
            let what = format!("{file} {} ({})", c.pattern, c.form);
            match explicit_fused(&c, Ep::Cpu).unwrap_or_else(|e| panic!("{what}: {e:#}")) {
                Availability::Fused(e) => {
                    let eq = check_equivalence(&run(&c.bytes, &c, 3), &run(&e.bytes, &c, 3));
                    assert!(eq.passed, "{what}: {eq:?} ({})", e.note);
                    fused += 1;
                }
                Availability::NoKernel(why) => println!("{what}: no kernel: {why}"),
            }
        }
        println!("{file}: {fused} distinct instances fused");
        assert!(fused >= 3, "{file}: {fused}");
    }
}
