//! Carve: turn a pattern instance into a standalone, valid ONNX model.
//!
//! Its inputs are the non-constant tensors entering the pattern, with concrete shapes; its weights are
//! copied as initializers, constants computed from constants (`Constant`, `ConstantOfShape` of a
//! constant, ...) included, evaluated once with ONNX Runtime; its outputs are the pattern's outputs.

use std::collections::{HashMap, HashSet};

use anyhow::{anyhow, Context, Result};
use prost::Message;
use tract_onnx::pb;

use crate::graph::ModelGraph;
use crate::load::Loaded;
use crate::onnx::value_info;
use crate::patterns::{Instance, Role};

/// A carved model.
#[derive(Clone, Debug)]
pub struct Carved {
    pub pattern: crate::patterns::Pattern,
    /// The form that matched (see `Instance::form`).
    pub form: String,
    /// The role of each node of the carved graph, in graph order (the instance's roles).
    pub roles: Vec<Role>,
    pub model: pb::ModelProto,
    pub bytes: Vec<u8>,
    /// (name, ONNX element type, dims) of each input.
    pub inputs: Vec<(String, i32, Vec<usize>)>,
    pub outputs: Vec<String>,
}

/// Values of constant tensors that are not initializers, computed once per model.
#[derive(Default)]
pub struct ConstValues {
    values: HashMap<String, pb::TensorProto>,
}

impl ConstValues {
    /// Evaluate every non-initializer constant that `instances` read.
    pub fn evaluate(loaded: &Loaded, g: &ModelGraph, instances: &[&Instance]) -> Result<ConstValues> {
        let graph = loaded.proto.graph.as_ref().expect("loaded models have a graph");
        let mut values = HashMap::new();
        let mut needed: Vec<String> = vec![];
        for inst in instances {
            for c in &inst.constants {
                if g.initializers.contains_key(c) || values.contains_key(c) || needed.contains(c) {
                    continue;
                }
                // a value fixed by the input shapes, or a Constant node's attribute, is read directly
                if let Some(t) = known_value(g, c) {
                    values.insert(c.clone(), t);
                } else if let Some(t) = constant_attribute(g, graph, c) {
                    values.insert(c.clone(), t);
                } else {
                    needed.push(c.clone());
                }
            }
        }
        if !needed.is_empty() {
            let computed = run_constant_subgraph(loaded, g, &needed).with_context(|| {
                format!("evaluating {} constant tensor(s) of {}", needed.len(), loaded.path.display())
            })?;
            values.extend(computed);
        }
        Ok(ConstValues { values })
    }

    pub fn get(&self, name: &str) -> Option<&pb::TensorProto> {
        self.values.get(name)
    }
}

/// A small integer tensor whose value shape analysis found, as a tensor proto.
fn known_value(g: &ModelGraph, tensor: &str) -> Option<pb::TensorProto> {
    let t = g.tensor(tensor)?;
    let v = t.value.as_ref()?;
    let dims = t.shape.as_ref()?.iter().map(|&d| d as i64).collect();
    let raw_data = match t.elem_type {
        7 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        6 => v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
        _ => return None,
    };
    Some(pb::TensorProto { name: tensor.into(), dims, data_type: t.elem_type, raw_data, ..Default::default() })
}

fn constant_attribute(g: &ModelGraph, graph: &pb::GraphProto, tensor: &str) -> Option<pb::TensorProto> {
    let n = g.node(g.producer_of(tensor)?);
    if n.op != "Constant" {
        return None;
    }
    let a = graph.node[n.index].attribute.iter().find(|a| a.name == "value")?;
    let mut t = a.t.clone()?;
    if t.data_location.is_some() {
        return None;
    }
    t.name = tensor.to_string();
    Some(t)
}

/// Run the nodes that compute `needed` in ONNX Runtime and read back their values.
fn run_constant_subgraph(
    loaded: &Loaded,
    g: &ModelGraph,
    needed: &[String],
) -> Result<HashMap<String, pb::TensorProto>> {
    let graph = loaded.proto.graph.as_ref().expect("loaded models have a graph");
    let mut nodes: HashSet<_> = HashSet::new();
    for t in needed {
        nodes.extend(g.constant_subgraph(t));
    }
    let order: Vec<_> = g.order.iter().copied().filter(|n| nodes.contains(n)).collect();
    let mut used_inits = HashSet::new();
    let mut known = vec![];
    let produced: HashSet<&str> = order.iter().flat_map(|&n| g.node(n).outputs.iter().map(|s| s.as_str())).collect();
    for &n in &order {
        for i in g.node(n).real_inputs() {
            if g.initializers.contains_key(i) {
                used_inits.insert(i.to_string());
            } else if !produced.contains(i) && !known.iter().any(|t: &pb::TensorProto| t.name == i) {
                // a value fixed by the input shapes enters as an initializer
                known.push(known_value(g, i).ok_or_else(|| anyhow!("constant `{i}` has no known value"))?);
            }
        }
    }
    let sub = pb::GraphProto {
        name: "fuseval_constants".into(),
        node: order.iter().map(|&n| graph.node[g.node(n).index].clone()).collect(),
        initializer: (0..graph.initializer.len())
            .filter(|&ix| used_inits.contains(&graph.initializer[ix].name))
            .map(|ix| loaded.initializer(ix))
            .chain(known.into_iter().map(Ok))
            .collect::<Result<_>>()?,
        output: needed.iter().map(|t| value_info(t, g.tensor(t).map(|t| t.elem_type).unwrap_or(1), None)).collect(),
        ..Default::default()
    };
    let model = pb::ModelProto { graph: Some(sub), ..model_header(&loaded.proto) };
    let bytes = model.encode_to_vec();
    let outputs = eval_model(&bytes).map_err(|e| anyhow!("{e}"))?;
    let mut values = HashMap::new();
    for (name, t) in needed.iter().zip(outputs) {
        let mut t = t;
        t.name = name.clone();
        values.insert(name.clone(), t);
    }
    Ok(values)
}

/// Run a model that has no inputs once, on the CPU, and return its outputs as tensor protos.
fn eval_model(bytes: &[u8]) -> Result<Vec<pb::TensorProto>> {
    let env = crate::runtime::environment()?;
    let outs = eval_with_ort(env, bytes).map_err(|e| anyhow!("ONNX Runtime: {e}"))?;
    Ok(outs)
}

fn eval_with_ort(env: &ort::environment::Environment, bytes: &[u8]) -> ort::Result<Vec<pb::TensorProto>> {
    use ort::session::{builder::GraphOptimizationLevel, Session};
    let mut session = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::Disable)?
        .with_intra_threads(1)?
        .commit_from_memory(bytes)?;
    let names: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
    let none: Vec<(std::borrow::Cow<'_, str>, ort::session::SessionInputValue<'_>)> = vec![];
    let outputs = session.run(none)?;
    let mut res = vec![];
    for name in names {
        let v = &outputs[name.as_str()];
        res.push(value_to_proto(v)?);
    }
    Ok(res)
}

fn value_to_proto(v: &ort::value::DynValue) -> ort::Result<pb::TensorProto> {
    use ort::value::TensorElementType as E;
    let ty = v.dtype().clone();
    let elem = match &ty {
        ort::value::ValueType::Tensor { ty, .. } => *ty,
        _ => return Err(ort::Error::new("a constant is not a tensor")),
    };
    macro_rules! raw {
        ($t:ty, $code:expr) => {{
            let (shape, data) = v.try_extract_tensor::<$t>()?;
            let raw: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (shape.iter().copied().collect::<Vec<i64>>(), raw, $code)
        }};
    }
    let (dims, raw_data, data_type) = match elem {
        E::Float32 => raw!(f32, 1),
        E::Uint8 => raw!(u8, 2),
        E::Int8 => raw!(i8, 3),
        E::Int32 => raw!(i32, 6),
        E::Int64 => raw!(i64, 7),
        E::Float64 => raw!(f64, 11),
        E::Bool => {
            let (shape, data) = v.try_extract_tensor::<bool>()?;
            (shape.iter().copied().collect(), data.iter().map(|&b| b as u8).collect(), 9)
        }
        // 16-bit floats (a model converted to fp16): their bytes as they are
        E::Float16 | E::Bfloat16 => {
            let shape: Vec<i64> = match &ty {
                ort::value::ValueType::Tensor { shape, .. } => shape.iter().copied().collect(),
                _ => unreachable!("checked above"),
            };
            let n = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?));
            let n = n.ok_or_else(|| ort::Error::new(format!("a constant of shape {shape:?}")))?;
            let t = v.view().downcast::<ort::value::DynTensorValueType>()?;
            let ptr = t.data_ptr().cast::<u8>();
            let raw = if n == 0 || ptr.is_null() {
                vec![]
            } else {
                // SAFETY: a CPU tensor (this session runs on the CPU) of n 2-byte elements holds 2n bytes at ptr.
                unsafe { std::slice::from_raw_parts(ptr, 2 * n) }.to_vec()
            };
            (shape, raw, if elem == E::Float16 { 10 } else { 16 })
        }
        other => return Err(ort::Error::new(format!("constants of type {other:?} are not supported"))),
    };
    Ok(pb::TensorProto { dims, data_type, raw_data, ..Default::default() })
}

/// The model-level fields of a carved model: the source's IR version and opsets.
fn model_header(src: &pb::ModelProto) -> pb::ModelProto {
    pb::ModelProto {
        ir_version: src.ir_version.max(4),
        opset_import: src.opset_import.clone(),
        producer_name: "fuseval".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

/// Carve `inst` out of the model.
pub fn carve(loaded: &Loaded, g: &ModelGraph, inst: &Instance, consts: &ConstValues) -> Result<Carved> {
    let graph = loaded.proto.graph.as_ref().expect("loaded models have a graph");
    let file = loaded.path.display();
    let names = inst.node_names(g).join(", ");
    let mut inputs = vec![];
    for i in &inst.inputs {
        let t = g.tensor(i).ok_or_else(|| anyhow!("{file}: tensor `{i}` is unknown"))?;
        let shape = t.shape.clone().ok_or_else(|| {
            crate::error::user(format!(
                "{file}: the shape of tensor `{i}` (input of pattern {} at nodes {names}) could not be resolved; \
                 fix the model's dynamic dimensions with --input",
                inst.pattern
            ))
        })?;
        inputs.push((i.clone(), t.elem_type, shape));
    }
    let mut initializer = vec![];
    for c in &inst.constants {
        let t = match g.initializers.get(c) {
            Some(&ix) => loaded.initializer(ix)?,
            None => consts.get(c).cloned().ok_or_else(|| {
                anyhow!("{file}: the value of constant `{c}` (pattern {} at {names}) was not evaluated", inst.pattern)
            })?,
        };
        initializer.push(pb::TensorProto { name: c.clone(), ..t });
    }
    let mut output = vec![];
    for o in &inst.outputs {
        let t = g.tensor(o).ok_or_else(|| anyhow!("{file}: tensor `{o}` is unknown"))?;
        output.push(value_info(o, t.elem_type, t.shape.as_deref()));
    }
    let sub = pb::GraphProto {
        name: format!("fuseval_{}", inst.pattern.key()),
        node: inst.nodes.iter().map(|&n| graph.node[g.node(n).index].clone()).collect(),
        input: inputs.iter().map(|(n, e, d)| value_info(n, *e, Some(d))).collect(),
        initializer,
        output,
        ..Default::default()
    };
    let model = pb::ModelProto { graph: Some(sub), ..model_header(&loaded.proto) };
    let bytes = model.encode_to_vec();
    Ok(Carved {
        pattern: inst.pattern,
        form: inst.form.clone(),
        roles: inst.roles.clone(),
        model,
        bytes,
        inputs,
        outputs: inst.outputs.clone(),
    })
}
