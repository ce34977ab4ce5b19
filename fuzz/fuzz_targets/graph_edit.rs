//! Structure-aware: the bytes are a list of edits (rewire an input, change an op type, drop or copy a
//! node, change a dimension or an attribute) applied to one of the small pattern fixtures, then load →
//! graph → pattern detection. Byte-level mutation rarely gets past the protobuf decoder; this reaches the
//! graph checks, the shape analysis and every pattern rule with odd but decodable graphs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tract_onnx::pb;

const SEEDS: &[&[u8]] = &[
    include_bytes!("../../fixtures/patterns/conv_bn_relu_maxpool.onnx"),
    include_bytes!("../../fixtures/patterns/add_layernorm_decomposed.onnx"),
    include_bytes!("../../fixtures/patterns/add_layernorm_op.onnx"),
    include_bytes!("../../fixtures/patterns/mlp_dropout.onnx"),
    include_bytes!("../../fixtures/patterns/linear_quantized.onnx"),
    include_bytes!("../../fixtures/patterns/linear_bias_relu_dropout.onnx"),
    include_bytes!("../../fixtures/patterns/mul_add_relu.onnx"),
    include_bytes!("../../fixtures/patterns/quickgelu.onnx"),
    include_bytes!("../../fixtures/patterns/hardswish.onnx"),
    include_bytes!("../../fixtures/patterns/conv_relu6.onnx"),
    include_bytes!("../../fixtures/attention/attention_head.onnx"),
    include_bytes!("../../fixtures/attention/attention_sdpa.onnx"),
    include_bytes!("../../fixtures/attention/multihead_block.onnx"),
    include_bytes!("../../fixtures/attention/softmax_v.onnx"),
];

const OPS: &[&str] = &[
    "Conv", "Relu", "Add", "MatMul", "Softmax", "Transpose", "Reshape", "Gemm", "BatchNormalization", "Mul",
    "Sigmoid", "Clip", "Div", "Erf", "LayerNormalization", "ReduceMean", "Gelu", "Dropout", "Cast",
    "DequantizeLinear", "Where", "IsNaN", "MaxPool", "Sum", "HardSigmoid", "Tanh", "Pow", "Sqrt", "Sub",
    "Shape", "Gather", "Concat", "Unsqueeze", "Constant", "Identity", "Expand", "Slice", "NoSuchOp",
];

fn edit(m: &mut pb::ModelProto, e: &[u8]) {
    let g = m.graph.as_mut().unwrap();
    let mut names: Vec<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    names.extend(g.input.iter().map(|i| i.name.clone()));
    names.extend(g.node.iter().flat_map(|n| n.output.clone()));
    names.push(String::new());
    let (a, b, c) = (e[1] as usize, e[2] as usize, e[3]);
    let nn = g.node.len().max(1);
    match e[0] % 10 {
        0 => {
            if let Some(n) = g.node.get_mut(a % nn) {
                if !n.input.is_empty() {
                    let k = b % n.input.len();
                    n.input[k] = names[c as usize % names.len()].clone();
                }
            }
        }
        1 => {
            if let Some(n) = g.node.get_mut(a % nn) {
                n.op_type = OPS[b % OPS.len()].to_string();
            }
        }
        2 if g.node.len() > 1 => {
            g.node.remove(a % nn);
        }
        3 => {
            if let Some(n) = g.node.get(a % nn).cloned() {
                let mut n = n;
                n.output = n.output.iter().map(|o| format!("{o}_copy{b}")).collect();
                g.node.insert(b % (nn + 1), n);
            }
        }
        4 => {
            let ni = g.initializer.len().max(1);
            if let Some(t) = g.initializer.get_mut(a % ni) {
                if !t.dims.is_empty() {
                    let k = b % t.dims.len();
                    t.dims[k] = c as i8 as i64;
                    if c & 1 == 0 {
                        // keep the data consistent with the new shape
                        let n: i64 = t.dims.iter().map(|d| d.max(&0)).product();
                        t.raw_data = vec![0; (n as usize).min(1 << 16) * 4];
                        t.data_type = 1;
                        t.float_data.clear();
                    }
                }
            }
        }
        5 => {
            if let Some(n) = g.node.get_mut(a % nn) {
                let na = n.attribute.len().max(1);
                if let Some(at) = n.attribute.get_mut(b % na) {
                    at.i = c as i8 as i64;
                    at.f = c as f32 - 128.0;
                    if !at.ints.is_empty() {
                        let k = c as usize % at.ints.len();
                        at.ints[k] = (c as i8 as i64) / 4;
                    }
                } else {
                    n.attribute.push(pb::AttributeProto { name: "axis".into(), r#type: 2, i: c as i8 as i64, ..Default::default() });
                }
            }
        }
        6 => {
            if let Some(n) = g.node.get_mut(a % nn) {
                n.input.reverse();
            }
        }
        7 => {
            let ni = g.input.len().max(1);
            if let Some(pb::type_proto::Value::TensorType(t)) =
                g.input.get_mut(a % ni).and_then(|i| i.r#type.as_mut()).and_then(|t| t.value.as_mut())
            {
                if let Some(s) = t.shape.as_mut() {
                    if !s.dim.is_empty() {
                        let k = b % s.dim.len();
                        s.dim[k].value = Some(if c & 1 == 0 {
                            pb::tensor_shape_proto::dimension::Value::DimValue((c as i64) / 2)
                        } else {
                            pb::tensor_shape_proto::dimension::Value::DimParam(format!("d{}", c % 4))
                        });
                    }
                }
            }
        }
        8 => {
            if let Some(n) = g.node.get_mut(a % nn) {
                if b % 2 == 0 {
                    n.input.pop();
                } else {
                    n.input.push(names[c as usize % names.len()].clone());
                }
            }
        }
        _ => {
            let no = g.output.len().max(1);
            if let Some(o) = g.output.get_mut(a % no) {
                o.name = names[c as usize % names.len()].clone();
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, edits)) = data.split_first() else { return };
    let mut m = pb::ModelProto::decode(SEEDS[seed as usize % SEEDS.len()]).unwrap();
    for e in edits.chunks_exact(4).take(16) {
        edit(&mut m, e);
    }
    let path = std::env::temp_dir().join(format!("fuseval-fuzz-edit-{}.onnx", std::process::id()));
    std::fs::write(&path, m.encode_to_vec()).expect("write the model");
    let _ = fuseval::pipeline::prepare(&path, &[]);
});
