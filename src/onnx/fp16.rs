//! Float16: a model rewritten to compute in fp16, which `--precision fp16` measures on CUDA.
//!
//! The model's float (fp32) tensors are found by propagation from its inputs, initializers and constants
//! (an op's outputs are float when any input is, except ops whose outputs are indices, shapes or
//! booleans, and `Cast` / `ConstantOfShape` / `Constant`, which say their type). Every node that
//! computes on floats is converted: its fp32 initializers become fp16, its constant attributes fp16, a
//! `Cast` to float a cast to float16. A few ops stay in fp32 ([`KEEP_FP32`]), and a few inputs must stay
//! fp32 whatever the node ([`FP32_INPUTS`]). Where a tensor's precision and a consumer's differ, one
//! `Cast` is inserted before the first consumer that needs it. The model's float inputs and outputs
//! stay fp32 (a `Cast` after each input, before each output), so it is fed and read as before; integer
//! inputs (ids, masks) are untouched.

use std::collections::{HashMap, HashSet};

use anyhow::{bail, Context, Result};
use prost::Message;
use tract_onnx::pb;

use super::{a_i, f32_to_f16};

const F32: i32 = 1;
const F16: i32 = 10;

/// Ops kept in fp32, and why.
pub const KEEP_FP32: &[(&str, &str)] = &[
    ("Range", "ORT's CUDA Range has no float16 kernel"),
    ("CumSum", "ORT's CUDA CumSum has no float16 kernel"),
    ("NonMaxSuppression", "its boxes and scores are float32 only (ONNX)"),
    ("RoiAlign", "ORT's CUDA RoiAlign has no float16 kernel"),
    ("RandomNormal", "a generator: its dtype attribute, not its inputs, sets its type"),
    ("RandomUniform", "a generator: its dtype attribute, not its inputs, sets its type"),
    ("RandomNormalLike", "a generator: its dtype attribute sets its type"),
    ("RandomUniformLike", "a generator: its dtype attribute sets its type"),
    ("Multinomial", "ORT has no float16 Multinomial"),
    ("Det", "a determinant in float16 loses most of its digits"),
    ("If", "a subgraph: its body is not converted"),
    ("Loop", "a subgraph: its body is not converted"),
    ("Scan", "a subgraph: its body is not converted"),
];

/// Inputs that must stay fp32 in a converted node: (op, input indices). `Resize`'s and `Upsample`'s
/// scales are float32 only (ONNX).
pub const FP32_INPUTS: &[(&str, &[usize])] = &[("Resize", &[2]), ("Upsample", &[1])];

/// Ops whose outputs are never float, whatever their inputs.
const NOT_FLOAT: &[&str] = &[
    "Shape",
    "Size",
    "NonZero",
    "ArgMax",
    "ArgMin",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "Not",
    "And",
    "Or",
    "Xor",
    "IsNaN",
    "IsInf",
];

/// What the conversion did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fp16Report {
    /// Nodes that now compute in fp16.
    pub converted_nodes: usize,
    /// Nodes kept in fp32: (name, op, why).
    pub kept: Vec<(String, String, String)>,
    /// fp32 initializers now stored as fp16.
    pub initializers_fp16: usize,
    /// fp32 initializers kept as they are (a kept node or an fp32-only input reads them).
    pub initializers_fp32: Vec<String>,
    /// Casts inserted (inputs, outputs and between fp32 and fp16 nodes).
    pub casts: usize,
    /// Constant values moved into float16's range (a nonzero below 2⁻²⁴, or beyond ±65504).
    pub clamped: usize,
}

fn keep_reason(op: &str) -> Option<&'static str> {
    KEEP_FP32.iter().find(|(o, _)| *o == op).map(|(_, why)| *why)
}

fn fp32_input(op: &str, k: usize) -> bool {
    FP32_INPUTS.iter().any(|(o, ks)| *o == op && ks.contains(&k))
}

fn attr<'a>(n: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

/// Whether output `k` of `n` is float (fp32), given which of its inputs are.
fn output_is_float(n: &pb::NodeProto, k: usize, inputs_float: &[bool]) -> bool {
    let op = n.op_type.as_str();
    if !n.domain.is_empty() && n.domain != "ai.onnx" && n.domain != "com.microsoft" {
        return false;
    }
    match op {
        "Cast" => attr(n, "to").is_some_and(|a| a.i == F32 as i64),
        "ConstantOfShape" => attr(n, "value").and_then(|a| a.t.as_ref()).is_none_or(|t| t.data_type == F32),
        "Constant" => {
            attr(n, "value").and_then(|a| a.t.as_ref()).is_some_and(|t| t.data_type == F32)
                || attr(n, "value_float").is_some()
                || attr(n, "value_floats").is_some()
        }
        "RandomNormal" | "RandomUniform" => attr(n, "dtype").is_none_or(|a| a.i == F32 as i64),
        "RandomNormalLike" | "RandomUniformLike" | "EyeLike" => match attr(n, "dtype") {
            Some(a) => a.i == F32 as i64,
            None => inputs_float.first().copied().unwrap_or(false),
        },
        o if NOT_FLOAT.contains(&o) => false,
        // the second output of these is indices or a mask
        "TopK" | "MaxPool" | "Dropout" | "Unique" if k > 0 => false,
        _ => inputs_float.iter().any(|&f| f),
    }
}

/// A float32 tensor as float16 (`raw_data`); an error for external data (inline it first).
/// Store a float32 tensor as float16, values moved into its range ([`clamp_to_f16_range`]); how many moved.
fn tensor_to_f16(t: &mut pb::TensorProto) -> Result<usize> {
    if t.data_location == Some(pb::tensor_proto::DataLocation::External as i32) || !t.external_data.is_empty() {
        bail!(
            "initializer `{}` is stored outside the model file: load the model with its weights inline first",
            t.name
        );
    }
    let values: Vec<f32> = if !t.raw_data.is_empty() {
        if !t.raw_data.len().is_multiple_of(4) {
            bail!(
                "initializer `{}`: {} bytes of raw float data is not a whole number of floats",
                t.name,
                t.raw_data.len()
            );
        }
        t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    } else {
        std::mem::take(&mut t.float_data)
    };
    let mut clamped = 0;
    t.raw_data = values
        .iter()
        .flat_map(|&v| {
            let (c, moved) = clamp_to_f16_range(v);
            clamped += moved as usize;
            f32_to_f16(c).to_le_bytes()
        })
        .collect();
    t.float_data.clear();
    t.data_type = F16;
    Ok(clamped)
}

/// The smallest positive float16 (a subnormal, 2⁻²⁴) and the largest finite one.
pub const F16_MIN_POSITIVE: f32 = 5.960_464_5e-8;
pub const F16_MAX: f32 = 65504.0;

/// A constant moved into float16's range, and whether it moved: a nonzero value below the smallest
/// float16 becomes that (BERT's LayerNorm epsilon 1e-12 would round to 0, ORT would then drop the
/// `Add` of zero and no longer recognise the LayerNorm), one beyond the largest finite becomes that
/// (not infinity).
fn clamp_to_f16_range(v: f32) -> (f32, bool) {
    if !v.is_finite() || v == 0.0 {
        (v, false)
    } else if v.abs() < F16_MIN_POSITIVE {
        (F16_MIN_POSITIVE.copysign(v), true)
    } else if v.abs() > F16_MAX {
        (F16_MAX.copysign(v), true)
    } else {
        (v, false)
    }
}

fn cast_node(name: String, input: &str, output: &str, to: i32) -> pb::NodeProto {
    pb::NodeProto {
        name,
        op_type: "Cast".into(),
        input: vec![input.into()],
        output: vec![output.into()],
        attribute: vec![a_i("to", to as i64)],
        ..Default::default()
    }
}

fn set_elem_type(vi: &mut pb::ValueInfoProto, elem_type: i32) {
    if let Some(pb::type_proto::Value::TensorType(t)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        t.elem_type = elem_type;
    }
}

/// The precision of a converted model's float inputs and outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Io {
    /// Fed and read in fp32 as before, through casts at the edges: whole models.
    Fp32,
    /// Fed and read in fp16, no casts at the edges: carved patterns, whose inputs and outputs are the
    /// intermediates of an fp16 model.
    Fp16,
}

/// The model in fp16 with fp32 inputs and outputs (see the module docs), and what was done.
pub fn to_fp16(model: &pb::ModelProto) -> Result<(pb::ModelProto, Fp16Report)> {
    to_fp16_io(model, Io::Fp32)
}

/// [`to_fp16`], its float inputs and outputs in the precision `io` says.
pub fn to_fp16_io(model: &pb::ModelProto, io: Io) -> Result<(pb::ModelProto, Fp16Report)> {
    let mut m = model.clone();
    let g = m.graph.as_mut().context("the model has no graph")?;
    let mut report = Fp16Report::default();

    // which tensors are float32, in node order (ONNX keeps nodes topologically sorted)
    let mut float: HashSet<String> = HashSet::new();
    for i in &g.input {
        if let Some(pb::type_proto::Value::TensorType(t)) = i.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            if t.elem_type == F32 {
                float.insert(i.name.clone());
            }
        }
    }
    let initializer_names: HashSet<String> = g.initializer.iter().map(|t| t.name.clone()).collect();
    for t in &g.initializer {
        if t.data_type == F32 {
            float.insert(t.name.clone());
        }
    }
    // per node: converted (computes in fp16), kept (fp32), or untouched (no float in or out)
    #[derive(Clone, Copy, PartialEq)]
    enum Class {
        Converted,
        Kept,
        Untouched,
    }
    let mut class = vec![Class::Untouched; g.node.len()];
    for (i, n) in g.node.iter().enumerate() {
        let inputs_float: Vec<bool> = n.input.iter().map(|x| float.contains(x)).collect();
        let outs: Vec<bool> = (0..n.output.len()).map(|k| output_is_float(n, k, &inputs_float)).collect();
        for (k, o) in n.output.iter().enumerate() {
            if outs[k] && !o.is_empty() {
                float.insert(o.clone());
            }
        }
        let touches_float = inputs_float.iter().any(|&f| f) || outs.iter().any(|&f| f);
        class[i] = match (touches_float, keep_reason(&n.op_type)) {
            (false, _) => Class::Untouched,
            (true, Some(why)) => {
                report.kept.push((n.name.clone(), n.op_type.clone(), why.to_string()));
                Class::Kept
            }
            (true, None) => Class::Converted,
        };
    }
    report.converted_nodes = class.iter().filter(|&&c| c == Class::Converted).count();

    // what precision each consumer needs of each float tensor
    let float_outputs = g.output.iter().map(|o| o.name.clone()).filter(|o| float.contains(o));
    let (mut needs32, mut needs16): (HashSet<String>, HashSet<String>) = match io {
        Io::Fp32 => (float_outputs.collect(), HashSet::new()),
        Io::Fp16 => (HashSet::new(), float_outputs.collect()),
    };
    for (i, n) in g.node.iter().enumerate() {
        for (k, x) in n.input.iter().enumerate().filter(|(_, x)| float.contains(*x)) {
            match class[i] {
                Class::Converted if !fp32_input(&n.op_type, k) => needs16.insert(x.clone()),
                _ => needs32.insert(x.clone()),
            };
        }
    }
    // where each float tensor lives: initializers read only in fp16 are stored in fp16; graph inputs stay
    // fp32; a node's outputs are in its precision
    let mut home16: HashSet<String> = HashSet::new();
    for t in g.initializer.iter_mut().filter(|t| t.data_type == F32) {
        if needs32.contains(&t.name) {
            report.initializers_fp32.push(t.name.clone());
        } else {
            report.clamped += tensor_to_f16(t)?;
            home16.insert(t.name.clone());
            report.initializers_fp16 += 1;
        }
    }
    for (i, n) in g.node.iter().enumerate() {
        if class[i] == Class::Converted {
            for o in n.output.iter().filter(|o| float.contains(*o)) {
                home16.insert(o.clone());
            }
        }
    }
    if io == Io::Fp16 {
        for i in g.input.iter_mut().filter(|i| float.contains(&i.name)) {
            home16.insert(i.name.clone());
            set_elem_type(i, F16);
        }
    }

    // a float graph output in the other precision than `io` wants: the node writes `<name>__fp16` (or
    // `__fp32`), a final Cast writes the output
    let (suffix, out_to) = match io {
        Io::Fp32 => ("__fp16", F32),
        Io::Fp16 => ("__fp32", F16),
    };
    let outputs16: Vec<String> = g
        .output
        .iter()
        .map(|o| o.name.clone())
        .filter(|o| float.contains(o) && home16.contains(o) == (io == Io::Fp32))
        .collect();
    let renamed: HashMap<String, String> = outputs16.iter().map(|o| (o.clone(), format!("{o}{suffix}"))).collect();
    for n in g.node.iter_mut() {
        for x in n.output.iter_mut().chain(n.input.iter_mut()) {
            if let Some(r) = renamed.get(x) {
                *x = r.clone();
            }
        }
    }
    for o in &outputs16 {
        if io == Io::Fp32 {
            home16.insert(renamed[o].clone());
        }
    }

    // rebuild the node list with the casts each consumer needs, each cast once, before its first consumer
    let names: HashSet<String> = g.node.iter().map(|n| n.name.clone()).collect();
    let fresh = |base: String| -> String {
        let mut name = base.clone();
        let mut k = 1;
        while names.contains(&name) || initializer_names.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    };
    let original_of: HashMap<&str, &str> = renamed.iter().map(|(o, r)| (r.as_str(), o.as_str())).collect();
    let mut cast_of: HashMap<(String, i32), String> = HashMap::new();
    let mut nodes = Vec::with_capacity(g.node.len() + 8);
    let old = std::mem::take(&mut g.node);
    // graph inputs read in fp16: one cast at the top
    for i in g.input.iter().filter(|i| io == Io::Fp32 && float.contains(&i.name) && needs16.contains(&i.name)) {
        let out = fresh(format!("{}__to_fp16", i.name));
        nodes.push(cast_node(fresh(format!("fuseval_cast_{}_to_fp16", i.name)), &i.name, &out, F16));
        cast_of.insert((i.name.clone(), F16), out);
        report.casts += 1;
    }
    for (i, mut n) in old.into_iter().enumerate() {
        for k in 0..n.input.len() {
            let x = n.input[k].clone();
            let original = original_of.get(x.as_str()).copied().unwrap_or(x.as_str());
            if !float.contains(original) {
                continue;
            }
            let want = if class[i] == Class::Converted && !fp32_input(&n.op_type, k) { F16 } else { F32 };
            let have = if home16.contains(&x) { F16 } else { F32 };
            if want == have {
                continue;
            }
            let key = (x.clone(), want);
            let name = match cast_of.get(&key) {
                Some(c) => c.clone(),
                None => {
                    let suffix = if want == F16 { "to_fp16" } else { "to_fp32" };
                    let out = fresh(format!("{x}__{suffix}"));
                    nodes.push(cast_node(fresh(format!("fuseval_cast_{x}_{suffix}")), &x, &out, want));
                    report.casts += 1;
                    cast_of.insert(key, out.clone());
                    out
                }
            };
            n.input[k] = name;
        }
        if class[i] == Class::Converted {
            for a in n.attribute.iter_mut() {
                match (n.op_type.as_str(), a.name.as_str()) {
                    ("Cast", "to") if a.i == F32 as i64 => a.i = F16 as i64,
                    ("Constant" | "ConstantOfShape", "value") => {
                        if let Some(t) = a.t.as_mut().filter(|t| t.data_type == F32) {
                            report.clamped += tensor_to_f16(t)?;
                        }
                    }
                    _ => {}
                }
            }
            if n.op_type == "Constant" {
                // value_float(s) as a float16 tensor
                if let Some(pos) = n.attribute.iter().position(|a| a.name == "value_float" || a.name == "value_floats")
                {
                    let a = n.attribute.remove(pos);
                    let (dims, vals) = if a.name == "value_float" {
                        (vec![], vec![a.f])
                    } else {
                        (vec![a.floats.len() as i64], a.floats.clone())
                    };
                    let mut t = pb::TensorProto { dims, data_type: F32, float_data: vals, ..Default::default() };
                    report.clamped += tensor_to_f16(&mut t)?;
                    n.attribute.push(pb::AttributeProto {
                        name: "value".into(),
                        r#type: pb::attribute_proto::AttributeType::Tensor as i32,
                        t: Some(t),
                        ..Default::default()
                    });
                }
            }
        }
        nodes.push(n);
    }
    for o in &outputs16 {
        let to = if out_to == F32 { "fp32" } else { "fp16" };
        nodes.push(cast_node(fresh(format!("fuseval_cast_{o}_to_{to}")), &renamed[o], o, out_to));
        report.casts += 1;
    }
    if io == Io::Fp16 {
        for o in g.output.iter_mut().filter(|o| float.contains(&o.name)) {
            set_elem_type(o, F16);
        }
    }
    g.node = nodes;
    // declared types follow: intermediates in fp16 say so (the inputs and outputs stay fp32)
    for vi in g.value_info.iter_mut() {
        if home16.contains(&vi.name) {
            set_elem_type(vi, F16);
        }
    }
    for (o, r) in &renamed {
        if let Some(vi) = g.value_info.iter_mut().find(|v| &v.name == o) {
            vi.name = r.clone();
        }
    }
    Ok((m, report))
}

/// [`to_fp16`] on serialized bytes.
pub fn to_fp16_bytes(bytes: &[u8]) -> Result<(Vec<u8>, Fp16Report)> {
    to_fp16_bytes_io(bytes, Io::Fp32)
}

/// [`to_fp16_io`] on serialized bytes.
pub fn to_fp16_bytes_io(bytes: &[u8], io: Io) -> Result<(Vec<u8>, Fp16Report)> {
    let m = pb::ModelProto::decode(bytes).context("parsing the model as ONNX")?;
    let (m, r) = to_fp16_io(&m, io)?;
    Ok((m.encode_to_vec(), r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{a_f, value_info};

    fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
        pb::NodeProto {
            name: name.into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn f32_tensor(name: &str, vals: &[f32]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            dims: vec![vals.len() as i64],
            data_type: F32,
            raw_data: vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        }
    }

    /// x (f32) and ids (i64) → Gather(table, ids) + x → Mul(w) → LeakyRelu → Range(...) kept → y
    fn model() -> pb::ModelProto {
        let mut range = node("Range", "range", &["start", "limit", "delta"], &["r"]);
        range.attribute.clear();
        let mut leaky = node("LeakyRelu", "leaky", &["m"], &["l"]);
        leaky.attribute.push(a_f("alpha", 0.1));
        pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
            graph: Some(pb::GraphProto {
                name: "g".into(),
                node: vec![
                    node("Gather", "gather", &["table", "ids"], &["e"]),
                    node("Add", "add", &["e", "x"], &["s"]),
                    node("Mul", "mul", &["s", "w"], &["m"]),
                    leaky,
                    node("Shape", "shape", &["l"], &["sh"]),
                    range,
                    node("Add", "add2", &["l", "r"], &["y"]),
                ],
                initializer: vec![
                    f32_tensor("table", &[1.0, 2.0, 3.0, 4.0]),
                    f32_tensor("w", &[0.5]),
                    f32_tensor("start", &[0.0]),
                    f32_tensor("limit", &[4.0]),
                    f32_tensor("delta", &[1.0]),
                ],
                input: vec![value_info("x", F32, Some(&[4])), value_info("ids", 7, Some(&[4]))],
                output: vec![value_info("y", F32, Some(&[4])), value_info("sh", 7, Some(&[1]))],
                value_info: vec![value_info("m", F32, Some(&[4]))],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn floats_become_fp16_with_casts_at_the_edges_and_around_kept_nodes() {
        let (m, r) = to_fp16(&model()).unwrap();
        let g = m.graph.unwrap();
        // table and w are read only by converted nodes; Range's scalars are read by a kept node
        assert_eq!(r.initializers_fp16, 2);
        assert_eq!(r.initializers_fp32, ["start", "limit", "delta"]);
        assert_eq!(r.kept.len(), 1);
        assert_eq!(r.kept[0].1, "Range");
        for t in &g.initializer {
            let want = if ["table", "w"].contains(&t.name.as_str()) { F16 } else { F32 };
            assert_eq!(t.data_type, want, "{}", t.name);
        }
        assert_eq!(g.initializer.iter().find(|t| t.name == "w").unwrap().raw_data, f32_to_f16(0.5).to_le_bytes());
        // the inputs keep their types: x fp32 (cast at the top), ids i64 untouched
        assert_eq!(g.input, model().graph.unwrap().input);
        let first = &g.node[0];
        assert_eq!((first.op_type.as_str(), first.input[0].as_str()), ("Cast", "x"));
        assert!(g.node.iter().filter(|n| n.input.contains(&"ids".to_string())).all(|n| n.op_type == "Gather"));
        // the kept Range's fp32 output is cast to fp16 for the converted Add, whose output is cast back
        let add2 = g.node.iter().find(|n| n.name == "add2").unwrap();
        assert!(add2.input[1].starts_with("r__to_fp16"), "{:?}", add2.input);
        assert_eq!(add2.output, ["y__fp16"]);
        let last = g.node.last().unwrap();
        assert_eq!((last.op_type.as_str(), last.output[0].as_str()), ("Cast", "y"));
        assert_eq!(last.attribute[0].i, F32 as i64);
        // 3 casts: x in, r to fp16, y out; the Shape output (i64) is untouched
        assert_eq!(r.casts, 3);
        assert_eq!(g.output, model().graph.unwrap().output);
        // declared intermediates follow
        let m_vi = g.value_info.iter().find(|v| v.name == "m").unwrap();
        let Some(pb::type_proto::Value::TensorType(t)) = m_vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            panic!()
        };
        assert_eq!(t.elem_type, F16);
        assert_eq!(r.converted_nodes, 6, "gather, add, mul, leaky, shape (reads fp16), add2");
        // every node comes after what it reads
        let mut seen: HashSet<String> = g.input.iter().map(|i| i.name.clone()).collect();
        seen.extend(g.initializer.iter().map(|t| t.name.clone()));
        for n in &g.node {
            for i in &n.input {
                assert!(seen.contains(i), "{} reads {i} before it exists", n.name);
            }
            seen.extend(n.output.iter().cloned());
        }
    }

    #[test]
    fn constants_and_casts_inside_converted_nodes_follow() {
        let mut c = node("Constant", "c", &[], &["k"]);
        c.attribute.push(pb::AttributeProto {
            name: "value_float".into(),
            r#type: pb::attribute_proto::AttributeType::Float as i32,
            f: 2.0,
            ..Default::default()
        });
        let mut cast = node("Cast", "cast", &["ids"], &["idsf"]);
        cast.attribute.push(a_i("to", F32 as i64));
        let m = pb::ModelProto {
            graph: Some(pb::GraphProto {
                node: vec![c, cast, node("Mul", "mul", &["idsf", "k"], &["y"])],
                input: vec![value_info("ids", 7, Some(&[4]))],
                output: vec![value_info("y", F32, Some(&[4]))],
                ..Default::default()
            }),
            ..Default::default()
        };
        let (m, r) = to_fp16(&m).unwrap();
        let g = m.graph.unwrap();
        let c = g.node.iter().find(|n| n.name == "c").unwrap();
        let t = c.attribute[0].t.as_ref().unwrap();
        assert_eq!((c.attribute[0].name.as_str(), t.data_type), ("value", F16));
        assert_eq!(t.raw_data, f32_to_f16(2.0).to_le_bytes());
        let cast = g.node.iter().find(|n| n.name == "cast").unwrap();
        assert_eq!(cast.attribute[0].i, F16 as i64, "an integer input cast straight to fp16");
        assert_eq!(r.casts, 1, "only the output");
    }

    #[test]
    fn fp16_io_has_no_casts_at_the_edges_but_around_kept_nodes() {
        let (m, r) = to_fp16_io(&model(), Io::Fp16).unwrap();
        let g = m.graph.unwrap();
        let elem = |vi: &pb::ValueInfoProto| match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(pb::type_proto::Value::TensorType(t)) => t.elem_type,
            _ => panic!(),
        };
        // x and y are fp16 now; the integer input and output are untouched
        assert_eq!(g.input.iter().map(elem).collect::<Vec<_>>(), [F16, 7]);
        assert_eq!(g.output.iter().map(elem).collect::<Vec<_>>(), [F16, 7]);
        // no cast reads x; add2 writes y itself; the one cast is Range's output into fp16
        assert!(g.node.iter().all(|n| n.op_type != "Cast" || n.input[0] != "x"));
        let add2 = g.node.iter().find(|n| n.name == "add2").unwrap();
        assert_eq!(add2.output, ["y"]);
        assert_eq!(r.casts, 1);
        // a kept node whose output is a graph output: written in fp32, cast to fp16 at the end
        let mut kept_out = model();
        let kg = kept_out.graph.as_mut().unwrap();
        kg.node.retain(|n| n.name != "add2");
        kg.output[0] = value_info("r", F32, Some(&[4]));
        let (m, _) = to_fp16_io(&kept_out, Io::Fp16).unwrap();
        let g = m.graph.unwrap();
        let last = g.node.last().unwrap();
        assert_eq!((last.op_type.as_str(), last.input[0].as_str(), last.output[0].as_str()), ("Cast", "r__fp32", "r"));
        assert_eq!(last.attribute[0].i, F16 as i64);
        assert_eq!(elem(&g.output[0]), F16);
    }

    #[test]
    fn constants_outside_the_fp16_range_are_moved_into_it_not_flushed() {
        // BERT's LayerNorm epsilon: 1e-12 would round to 0 in fp16 (and ORT drops an Add of 0)
        let m = pb::ModelProto {
            graph: Some(pb::GraphProto {
                node: vec![node("Add", "eps", &["x", "e"], &["a"]), node("Mul", "big", &["a", "b"], &["y"])],
                initializer: vec![f32_tensor("e", &[1e-12]), f32_tensor("b", &[1e6, -1e-30, 0.5, 0.0])],
                input: vec![value_info("x", F32, Some(&[4]))],
                output: vec![value_info("y", F32, Some(&[4]))],
                ..Default::default()
            }),
            ..Default::default()
        };
        let (m, r) = to_fp16(&m).unwrap();
        assert_eq!(r.clamped, 3, "1e-12, 1e6 and -1e-30 move; 0.5 and 0 stay");
        let g = m.graph.unwrap();
        let vals = |name: &str| -> Vec<f32> {
            let t = g.initializer.iter().find(|t| t.name == name).unwrap();
            t.raw_data.chunks_exact(2).map(|c| crate::onnx::f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect()
        };
        assert_eq!(vals("e"), [F16_MIN_POSITIVE]);
        assert_eq!(vals("b"), [F16_MAX, -F16_MIN_POSITIVE, 0.5, 0.0]);
    }
}
