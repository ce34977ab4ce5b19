//! The float16 conversion (`onnx::fp16`) on real fixtures: the converted model is valid ONNX that fuseval
//! loads (tract checks every type), every fp32 initializer is fp16 but those kept on purpose, the inputs
//! and outputs keep their names and types (integer ids untouched), and ONNX Runtime's CPU provider runs
//! it with outputs close to the fp32 model's.

mod common;

use std::path::{Path, PathBuf};

use fuseval::measure::{random_inputs, Values};
use fuseval::onnx::fp16::{to_fp16_bytes, KEEP_FP32};
use fuseval::pipeline::{model_input_specs, prepare};
use prost::Message;
use tract_onnx::pb;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// Convert a fixture; check the structure; return the converted bytes.
fn converted(name: &str) -> (Vec<u8>, pb::ModelProto, pb::ModelProto) {
    let path = fixture(name);
    let bytes = std::fs::read(&path).unwrap();
    let original = pb::ModelProto::decode(bytes.as_slice()).unwrap();
    let (out, report) = to_fp16_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let m = pb::ModelProto::decode(out.as_slice()).unwrap();
    let (g, g0) = (m.graph.as_ref().unwrap(), original.graph.as_ref().unwrap());
    assert_eq!(g.input, g0.input, "{name}: the inputs keep their names and types");
    assert_eq!(g.output, g0.output, "{name}: the outputs keep their names and types");
    let kept: Vec<&str> = report.initializers_fp32.iter().map(String::as_str).collect();
    for t in &g.initializer {
        if t.data_type == 1 {
            assert!(kept.contains(&t.name.as_str()), "{name}: fp32 initializer `{}` was not converted", t.name);
        }
    }
    assert!(report.initializers_fp16 > 0 && report.converted_nodes > 0, "{name}: {report:?}");
    for (_, op, why) in &report.kept {
        assert!(KEEP_FP32.iter().any(|(o, w)| o == op && w == why), "{name}: {op} kept without a listed reason");
    }
    // valid ONNX with consistent types: fuseval's loader (tract) reads it
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(name.replace('/', "_"));
    std::fs::write(&p, &out).unwrap();
    prepare(&p, &[]).unwrap_or_else(|e| panic!("{name}: the fp16 model does not load: {e:#}"));
    (out, m, original)
}

/// Largest |fp16 − fp32| over the largest |fp32|, over every output.
fn relative_error(name: &str, fp16: &[u8]) -> f64 {
    let path = fixture(name);
    let p = prepare(&path, &[]).unwrap();
    let specs = model_input_specs(&p.loaded, &p.graph).unwrap();
    let inputs = random_inputs(&specs, 7).unwrap();
    let reference = common::run_disabled(&std::fs::read(&path).unwrap(), &inputs);
    let half = common::run_disabled(fp16, &inputs);
    let mut worst: f64 = 0.0;
    for (r, h) in reference.iter().zip(&half) {
        assert_eq!((&r.name, &r.shape), (&h.name, &h.shape));
        let (Values::F32(a), Values::F32(b)) = (&r.values, &h.values) else { panic!("float outputs") };
        let scale = a.iter().fold(0f64, |m, x| m.max(x.abs() as f64)).max(1e-6);
        let err = a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
        worst = worst.max(err / scale);
    }
    eprintln!("{name}: largest error {worst:.1e} of the largest output");
    worst
}

#[test]
fn the_mini_resnet_in_fp16_runs_close_to_fp32() {
    let (bytes, _, _) = converted("mini_resnet50_legacy.onnx");
    let e = relative_error("mini_resnet50_legacy.onnx", &bytes);
    assert!(e < 0.02, "relative error {e}");
    assert!(e > 0.0, "the outputs are bit-identical: was anything computed in fp16?");
}

#[test]
fn pattern_fixtures_in_fp16_run_close_to_fp32() {
    for name in [
        "patterns/conv_bn_relu.onnx",
        "patterns/linear_bias_gelu_erf.onnx",
        "patterns/add_layernorm_decomposed.onnx",
        "patterns/mlp.onnx",
    ] {
        let (bytes, _, _) = converted(name);
        let e = relative_error(name, &bytes);
        assert!(e < 0.02, "{name}: relative error {e}");
    }
}

#[test]
fn the_tiny_bert_keeps_its_integer_ids_and_its_fp16_constants_evaluate() {
    let (bytes, m, original) = converted("tiny_bert_legacy.onnx");
    // the constants a carved instance needs (fp16 now) are computed by ONNX Runtime
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny_bert_fp16.onnx");
    std::fs::write(&path, &bytes).unwrap();
    let p = prepare(&path, &[]).unwrap();
    let all: Vec<&fuseval::patterns::Instance> = p.detection.all.iter().collect();
    assert!(!all.is_empty());
    fuseval::carve::ConstValues::evaluate(&p.loaded, &p.graph, &all).unwrap_or_else(|e| panic!("{e:#}"));
    let g = m.graph.unwrap();
    let ids = &original.graph.unwrap().input[0];
    let Some(pb::type_proto::Value::TensorType(t)) = ids.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        panic!()
    };
    assert_eq!(t.elem_type, 7, "the fixture's first input is int64 ids");
    // nothing casts the ids: they reach the embedding Gather as they are
    assert!(g.node.iter().filter(|n| n.input.contains(&ids.name)).all(|n| n.op_type != "Cast"));
}
