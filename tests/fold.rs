//! Shape arithmetic folded for fixed input shapes (`onnx::fold`, what `--cuda-graph` times whole models
//! from): the real BERT fixtures lose every `Shape` node and the chains after it, and ONNX
//! Runtime computes the same outputs from the folded model as from the original. (ResNet-50 exports
//! have no shape arithmetic: ORT captured them whole.)

mod common;

use std::path::PathBuf;

use common::run_disabled;
use fuseval::load::InputOverride;
use fuseval::measure::random_inputs;
use fuseval::pipeline::{model_input_specs, prepare};
use prost::Message;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

fn check(name: &str, inputs: &[&str]) {
    let overrides = InputOverride::parse_all(&inputs.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let p = prepare(&fixture(name), &overrides).unwrap();
    let original = p.loaded.full_proto().unwrap();
    let (folded, report) = p.loaded.folded_shapes().unwrap();
    let ops = |m: &tract_onnx::pb::ModelProto| -> Vec<String> {
        m.graph.as_ref().unwrap().node.iter().map(|n| n.op_type.clone()).collect()
    };
    let before = ops(&original).iter().filter(|o| *o == "Shape").count();
    assert!(before > 0, "{name}: the fixture has no Shape node to fold");
    assert_eq!(ops(&folded).iter().filter(|o| *o == "Shape").count(), 0, "{name}: {:?}", report.folded);
    assert!(report.nodes() >= before && report.initializers > 0, "{name}: {report:?}");
    // the same outputs, for inputs of the fixed shapes
    let specs = model_input_specs(&p.loaded, &p.graph).unwrap();
    let x = random_inputs(&specs, 7).unwrap();
    let a = run_disabled(&original.encode_to_vec(), &x);
    let b = run_disabled(&folded.encode_to_vec(), &x);
    assert_eq!(a, b, "{name}: the outputs differ after folding");
    eprintln!("{name}: folded {} nodes {:?}, {} initializers", report.nodes(), report.folded, report.initializers);
}

#[test]
fn bert_fixtures_lose_their_shape_arithmetic_and_keep_their_outputs() {
    check("tiny_bert_dynamo.onnx", &["input_ids=2x16"]);
    check("tiny_bert_legacy.onnx", &["input_ids=2x16"]);
}

#[test]
fn the_eager_attention_export_loses_its_shape_arithmetic_too() {
    check("attention/tiny_bert_eager.onnx", &["input_ids=1x8"]);
}

/// `models/bert-base.onnx` (`python3 models/make_models.py bert-base`; not in the repository).
#[test]
#[ignore]
fn bert_base_at_both_benched_shapes() {
    check("../models/bert-base.onnx", &["input_ids=1x128"]);
    check("../models/bert-base.onnx", &["input_ids=8x128"]);
}
