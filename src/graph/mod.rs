//! Graph: the model as a petgraph graph. Nodes are ONNX nodes, edges are the tensors between them.
//! Every tensor, including model inputs and initializers, is also kept by name with its dtype and shape,
//! whether it is a constant, and whether it is a model output.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Result;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use serde::Serialize;
use tract_onnx::pb;

use crate::error::user;
use crate::load::Loaded;
use crate::onnx::elem_size;

/// An attribute value, reduced to what fuseval reads and reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
    Other(String),
}

/// One ONNX node.
#[derive(Clone, Debug, Serialize)]
pub struct OpNode {
    /// The node's name, or `<op>_<index>` when the model leaves it empty.
    pub name: String,
    pub domain: String,
    pub op: String,
    pub attributes: BTreeMap<String, Attr>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Position in the model's node list.
    pub index: usize,
}

impl OpNode {
    pub fn attr_int(&self, name: &str) -> Option<i64> {
        match self.attributes.get(name) {
            Some(Attr::Int(i)) => Some(*i),
            _ => None,
        }
    }
    pub fn attr_float(&self, name: &str) -> Option<f32> {
        match self.attributes.get(name) {
            Some(Attr::Float(f)) => Some(*f),
            _ => None,
        }
    }
    pub fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        match self.attributes.get(name) {
            Some(Attr::Ints(v)) => Some(v),
            _ => None,
        }
    }
    /// The op with its domain when not the default one, e.g. `com.microsoft.FusedConv`.
    pub fn qualified_op(&self) -> String {
        if self.domain.is_empty() || self.domain == "ai.onnx" {
            self.op.clone()
        } else {
            format!("{}.{}", self.domain, self.op)
        }
    }
    /// Non-empty input names.
    pub fn real_inputs(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().filter(|s| !s.is_empty()).map(|s| s.as_str())
    }
}

/// One tensor.
#[derive(Clone, Debug, Serialize)]
pub struct Tensor {
    pub name: String,
    /// ONNX element type code (1 = f32, 7 = i64, ...); 0 when unknown.
    pub elem_type: i32,
    pub dtype: &'static str,
    pub shape: Option<Vec<usize>>,
    pub bytes: Option<u64>,
    /// An initializer, a `Constant` output, computed only from constants, or a small integer tensor
    /// fixed by the input shapes (`Shape` arithmetic).
    pub constant: bool,
    /// The value of a small integer tensor, where the fixed input shapes decide it.
    pub value: Option<Vec<i64>>,
    pub initializer: bool,
    pub graph_input: bool,
    pub graph_output: bool,
}

impl Tensor {
    pub fn numel(&self) -> Option<u64> {
        self.shape.as_ref().map(|s| s.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64)))
    }
}

/// An edge: the tensor that flows from one node to another (one edge per consumer input).
#[derive(Clone, Debug, Serialize)]
pub struct Edge {
    pub tensor: String,
}

/// The model as a graph, with tensors by name.
pub struct ModelGraph {
    pub graph: DiGraph<OpNode, Edge>,
    pub tensors: BTreeMap<String, Tensor>,
    pub producer: HashMap<String, NodeIndex>,
    /// Consumers of each tensor: (node, input slot).
    pub consumers: HashMap<String, Vec<(NodeIndex, usize)>>,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Nodes in topological order.
    pub order: Vec<NodeIndex>,
    /// Initializer name → index in the model's initializer list.
    pub initializers: HashMap<String, usize>,
}

/// Ops whose output is not fixed by their inputs, so never constant.
const NONDETERMINISTIC: &[&str] =
    &["RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"];

impl ModelGraph {
    /// Build the graph of a loaded model. Fails on dangling inputs, duplicate outputs and cycles.
    pub fn build(loaded: &Loaded) -> Result<ModelGraph> {
        let file = loaded.path.display();
        let g = loaded.proto.graph.as_ref().expect("loaded models have a graph");
        let mut graph = DiGraph::new();
        let mut producer = HashMap::new();
        let initializers: HashMap<String, usize> =
            g.initializer.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        let inputs: Vec<String> = loaded.inputs.iter().map(|i| i.name.clone()).collect();
        let mut names = HashSet::new();
        for (index, n) in g.node.iter().enumerate() {
            let name = if n.name.is_empty() { format!("{}_{index}", n.op_type) } else { n.name.clone() };
            let node = OpNode {
                name: if names.contains(&name) { format!("{name}_{index}") } else { name },
                domain: n.domain.clone(),
                op: n.op_type.clone(),
                attributes: n.attribute.iter().map(|a| (a.name.clone(), attr(a))).collect(),
                inputs: n.input.clone(),
                outputs: n.output.clone(),
                index,
            };
            names.insert(node.name.clone());
            let id = graph.add_node(node);
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                if initializers.contains_key(o) || inputs.contains(o) || producer.insert(o.clone(), id).is_some() {
                    return Err(user(format!(
                        "{file}: tensor `{o}` is produced twice (node `{}` and another node, input or initializer)",
                        graph[id].name
                    )));
                }
            }
        }
        let mut consumers: HashMap<String, Vec<(NodeIndex, usize)>> = HashMap::new();
        for id in graph.node_indices().collect::<Vec<_>>() {
            let ins = graph[id].inputs.clone();
            for (slot, t) in ins.iter().enumerate().filter(|(_, t)| !t.is_empty()) {
                consumers.entry(t.clone()).or_default().push((id, slot));
                if let Some(&p) = producer.get(t) {
                    graph.add_edge(p, id, Edge { tensor: t.clone() });
                } else if !initializers.contains_key(t) && !inputs.contains(t) {
                    return Err(user(format!(
                        "{file}: node `{}` ({}) reads tensor `{t}`, which no node, input or initializer provides",
                        graph[id].name, graph[id].op
                    )));
                }
            }
        }
        let order = petgraph::algo::toposort(&graph, None)
            .map_err(|c| user(format!("{file}: the graph has a cycle through node `{}`", graph[c.node_id()].name)))?;
        let outputs: Vec<String> = g.output.iter().map(|o| o.name.clone()).collect();
        for o in &outputs {
            if !producer.contains_key(o) && !initializers.contains_key(o) && !inputs.contains(o) {
                return Err(user(format!("{file}: model output `{o}` is not produced by any node")));
            }
        }

        // constants: initializers, integer tensors whose value the fixed input shapes decide (shape
        // arithmetic), then every deterministic node whose inputs are all constant
        let mut constant: HashSet<String> = initializers.keys().cloned().collect();
        constant.extend(
            loaded
                .tensors
                .iter()
                .filter(|(n, t)| t.value.is_some() && producer.contains_key(*n))
                .map(|(n, _)| n.clone()),
        );
        for &id in &order {
            let n = &graph[id];
            if NONDETERMINISTIC.contains(&n.op.as_str()) {
                continue;
            }
            if n.real_inputs().all(|i| constant.contains(i)) {
                constant.extend(n.outputs.iter().filter(|o| !o.is_empty()).cloned());
            }
        }

        let mut tensors = BTreeMap::new();
        let all_names =
            initializers.keys().chain(inputs.iter()).chain(producer.keys()).cloned().collect::<HashSet<_>>();
        for name in all_names {
            let info = loaded.tensors.get(&name);
            let elem_type = info.map(|i| i.elem_type).unwrap_or(0);
            let shape = info.and_then(|i| i.shape.clone());
            let bytes =
                shape.as_ref().map(|s| s.iter().fold(elem_size(elem_type) as u64, |n, &d| n.saturating_mul(d as u64)));
            tensors.insert(
                name.clone(),
                Tensor {
                    dtype: crate::onnx::elem_name(elem_type),
                    elem_type,
                    shape,
                    bytes,
                    constant: constant.contains(&name),
                    value: info.and_then(|i| i.value.clone()),
                    initializer: initializers.contains_key(&name),
                    graph_input: inputs.contains(&name),
                    graph_output: outputs.contains(&name),
                    name,
                },
            );
        }
        Ok(ModelGraph { graph, tensors, producer, consumers, inputs, outputs, order, initializers })
    }

    pub fn node(&self, id: NodeIndex) -> &OpNode {
        &self.graph[id]
    }

    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    pub fn is_constant(&self, name: &str) -> bool {
        self.tensors.get(name).is_some_and(|t| t.constant)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).and_then(|t| t.shape.as_deref())
    }

    /// Nodes that read `tensor`.
    pub fn consumers_of(&self, tensor: &str) -> Vec<NodeIndex> {
        let mut v: Vec<NodeIndex> =
            self.consumers.get(tensor).map(|c| c.iter().map(|(n, _)| *n).collect()).unwrap_or_default();
        v.dedup();
        v
    }

    /// The node that writes `tensor`, if any.
    pub fn producer_of(&self, tensor: &str) -> Option<NodeIndex> {
        self.producer.get(tensor).copied()
    }

    /// The only consumer of a node's first output, if it has exactly one and is not a model output.
    pub fn sole_consumer(&self, id: NodeIndex) -> Option<NodeIndex> {
        let out = self.graph[id].outputs.first()?;
        if self.tensors.get(out).is_some_and(|t| t.graph_output) {
            return None;
        }
        let c = self.consumers.get(out)?;
        if c.len() == 1 {
            Some(c[0].0)
        } else {
            None
        }
    }

    /// Histogram of ops (qualified with domain), most frequent first.
    pub fn op_histogram(&self) -> Vec<(String, usize)> {
        let mut h: BTreeMap<String, usize> = BTreeMap::new();
        for n in self.graph.node_weights() {
            *h.entry(n.qualified_op()).or_default() += 1;
        }
        let mut v: Vec<_> = h.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Upstream nodes that compute the constant `tensor` (empty for initializers), in topological order.
    /// The walk stops at tensors whose value is already known (shape arithmetic).
    pub fn constant_subgraph(&self, tensor: &str) -> Vec<NodeIndex> {
        let mut seen = HashSet::new();
        let mut stack = vec![tensor.to_string()];
        while let Some(t) = stack.pop() {
            if t != tensor && self.tensors.get(&t).is_some_and(|x| x.value.is_some()) {
                continue;
            }
            if let Some(&p) = self.producer.get(&t) {
                if seen.insert(p) {
                    stack.extend(self.graph[p].real_inputs().map(String::from));
                }
            }
        }
        self.order.iter().copied().filter(|n| seen.contains(n)).collect()
    }

    /// Nodes downstream of `id` through its outputs.
    pub fn successors(&self, id: NodeIndex) -> Vec<NodeIndex> {
        let mut v: Vec<NodeIndex> = self.graph.neighbors_directed(id, Direction::Outgoing).collect();
        v.sort();
        v.dedup();
        v
    }
}

fn attr(a: &pb::AttributeProto) -> Attr {
    use pb::attribute_proto::AttributeType as T;
    match T::try_from(a.r#type).unwrap_or(T::Undefined) {
        T::Int => Attr::Int(a.i),
        T::Float => Attr::Float(a.f),
        T::Ints => Attr::Ints(a.ints.clone()),
        T::Floats => Attr::Floats(a.floats.clone()),
        T::String => Attr::Str(String::from_utf8_lossy(&a.s).into_owned()),
        T::Tensor => Attr::Other(format!(
            "tensor {:?} of type {}",
            a.t.as_ref().map(|t| t.dims.clone()).unwrap_or_default(),
            a.t.as_ref().map(|t| crate::onnx::elem_name(t.data_type)).unwrap_or("?")
        )),
        other => Attr::Other(format!("{other:?}")),
    }
}
