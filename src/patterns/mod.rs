//! Patterns: find the subgraphs a graph partitioner would fuse.
//!
//! A rule is a function `fn(&ModelGraph, NodeIndex) -> Option<Instance>` anchored at one node of the
//! pattern (its first, but for a linear layer's dequantization, which precedes its anchor, the MatMul);
//! the `guard!` macro bails out on the first mismatch. One file per pattern, each with a doc header
//! saying which forms it accepts and what breaks it; `forms` holds the building blocks several share (a
//! convolution, a linear layer, ReLU/ReLU6 and inference Dropout, GELU and layer-norm forms). The form
//! string of an instance says which was matched, e.g. `Conv+Clip` (ReLU6), `MatMul+Add (quantized
//! weight)`, `Gemm+Relu+Dropout (no-op in inference)`, `Sigmoid+Mul (SiLU)`.
//!
//! A match is fusible only if every intermediate tensor is read inside the pattern alone and is not a
//! model output. Overlapping matches are all kept; `Detection::longest` picks, greedily from the
//! longest, a set of matches that share no node ("each place counted once by its longest match").

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use petgraph::graph::NodeIndex;
use serde::{Deserialize, Serialize};

use crate::graph::{Attr, ModelGraph};

pub mod forms;

pub mod conv_bias;
pub mod conv_bn;
pub mod conv_bn_relu;
pub mod conv_bn_relu_maxpool;
pub mod conv_relu;

pub mod linear_bias;
pub mod linear_bias_gelu;
pub mod linear_bias_relu;
pub mod linear_bias_relu_dropout;
pub mod mlp;

pub mod attention_head;
pub mod multihead_linear;
pub mod qk_softmax;
pub mod softmax_v;

pub mod add_layernorm;
pub mod add_relu;
pub mod mul_add_relu;
pub mod sigmoid_mul;

/// Return `None` from a rule when a condition does not hold.
macro_rules! guard {
    ($cond:expr) => {
        if !$cond {
            return None;
        }
    };
}
pub(crate) use guard;

/// The fusion patterns. `key()` is the stable name used in calibration files and lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Pattern {
    #[serde(rename = "Conv2d_Bias")]
    ConvBias,
    #[serde(rename = "Conv2d_BN")]
    ConvBn,
    #[serde(rename = "Conv2d_BN_ReLU")]
    ConvBnRelu,
    #[serde(rename = "Conv2d_ReLU")]
    ConvRelu,
    #[serde(rename = "Conv2d_BN_ReLU_MaxPool")]
    ConvBnReluMaxPool,
    #[serde(rename = "Linear_Bias")]
    LinearBias,
    #[serde(rename = "Linear_Bias_ReLU")]
    LinearBiasRelu,
    #[serde(rename = "Linear_Bias_GELU")]
    LinearBiasGelu,
    #[serde(rename = "Linear_Bias_ReLU_Linear_Bias")]
    Mlp,
    #[serde(rename = "Linear_Bias_ReLU_Dropout")]
    LinearBiasReluDropout,
    #[serde(rename = "QK_Softmax")]
    QkSoftmax,
    #[serde(rename = "Softmax_V")]
    SoftmaxV,
    #[serde(rename = "Attention_Head")]
    AttentionHead,
    #[serde(rename = "MultiHead_Linear")]
    MultiHeadLinear,
    #[serde(rename = "Add_ReLU")]
    AddRelu,
    #[serde(rename = "Add_LayerNorm")]
    AddLayerNorm,
    #[serde(rename = "Mul_Add_ReLU")]
    MulAddRelu,
    #[serde(rename = "Sigmoid_Mul")]
    SigmoidMul,
}

impl Pattern {
    pub const ALL: [Pattern; 18] = [
        Pattern::LinearBias,
        Pattern::LinearBiasRelu,
        Pattern::LinearBiasReluDropout,
        Pattern::LinearBiasGelu,
        Pattern::Mlp,
        Pattern::ConvBias,
        Pattern::ConvBn,
        Pattern::ConvBnRelu,
        Pattern::ConvRelu,
        Pattern::ConvBnReluMaxPool,
        Pattern::QkSoftmax,
        Pattern::SoftmaxV,
        Pattern::AttentionHead,
        Pattern::MultiHeadLinear,
        Pattern::AddRelu,
        Pattern::AddLayerNorm,
        Pattern::MulAddRelu,
        Pattern::SigmoidMul,
    ];

    /// Stable key, as in the design's `fusion_pattern` field.
    pub fn key(self) -> &'static str {
        match self {
            Pattern::ConvBias => "Conv2d_Bias",
            Pattern::ConvBn => "Conv2d_BN",
            Pattern::ConvBnRelu => "Conv2d_BN_ReLU",
            Pattern::ConvRelu => "Conv2d_ReLU",
            Pattern::ConvBnReluMaxPool => "Conv2d_BN_ReLU_MaxPool",
            Pattern::LinearBias => "Linear_Bias",
            Pattern::LinearBiasRelu => "Linear_Bias_ReLU",
            Pattern::LinearBiasGelu => "Linear_Bias_GELU",
            Pattern::Mlp => "Linear_Bias_ReLU_Linear_Bias",
            Pattern::LinearBiasReluDropout => "Linear_Bias_ReLU_Dropout",
            Pattern::QkSoftmax => "QK_Softmax",
            Pattern::SoftmaxV => "Softmax_V",
            Pattern::AttentionHead => "Attention_Head",
            Pattern::MultiHeadLinear => "MultiHead_Linear",
            Pattern::AddRelu => "Add_ReLU",
            Pattern::AddLayerNorm => "Add_LayerNorm",
            Pattern::MulAddRelu => "Mul_Add_ReLU",
            Pattern::SigmoidMul => "Sigmoid_Mul",
        }
    }

    /// Human name, e.g. `Conv2d + BatchNorm + ReLU`.
    pub fn title(self) -> String {
        self.operators().join(" + ")
    }

    /// The design's `operators` list.
    pub fn operators(self) -> &'static [&'static str] {
        match self {
            Pattern::ConvBias => &["Conv2d", "Bias"],
            Pattern::ConvBn => &["Conv2d", "BatchNorm"],
            Pattern::ConvBnRelu => &["Conv2d", "BatchNorm", "ReLU"],
            Pattern::ConvRelu => &["Conv2d", "ReLU"],
            Pattern::ConvBnReluMaxPool => &["Conv2d", "BatchNorm", "ReLU", "MaxPool"],
            Pattern::LinearBias => &["Linear", "Bias"],
            Pattern::LinearBiasRelu => &["Linear", "Bias", "ReLU"],
            Pattern::LinearBiasGelu => &["Linear", "Bias", "GELU"],
            Pattern::Mlp => &["Linear", "Bias", "ReLU", "Linear", "Bias"],
            Pattern::LinearBiasReluDropout => &["Linear", "Bias", "ReLU", "Dropout"],
            Pattern::QkSoftmax => &["Q@K.T", "Softmax"],
            Pattern::SoftmaxV => &["Softmax", "@V"],
            Pattern::AttentionHead => &["Q@K.T", "Softmax", "@V"],
            Pattern::MultiHeadLinear => &["MultiHead(Q,K,V)", "Linear"],
            Pattern::AddRelu => &["Add", "ReLU"],
            Pattern::AddLayerNorm => &["Add", "LayerNorm"],
            Pattern::MulAddRelu => &["Mul", "Add", "ReLU"],
            Pattern::SigmoidMul => &["Sigmoid", "Mul"],
        }
    }

    /// Parse a key, case-insensitively, also accepting common spellings (`Conv2d_BatchNorm2d_ReLU`).
    pub fn from_key(s: &str) -> Option<Pattern> {
        let norm = |s: &str| {
            s.to_ascii_lowercase()
                .replace("batchnorm2d", "bn")
                .replace("batchnorm", "bn")
                .replace("conv2d", "conv")
                .replace(['_', '+', ' ', '-'], "")
        };
        let want = norm(s);
        Pattern::ALL.into_iter().find(|p| norm(p.key()) == want)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One match of a pattern in a graph.
#[derive(Clone, Debug)]
pub struct Instance {
    pub pattern: Pattern,
    /// Which form matched, e.g. `Gemm`, `MatMul+Add`, `Erf`, `Gelu op`, `decomposed`.
    pub form: String,
    /// Nodes in topological order.
    pub nodes: Vec<NodeIndex>,
    /// Non-constant tensors that enter from outside, in first-use order.
    pub inputs: Vec<String>,
    /// Constant tensors that enter from outside (weights, biases, BN statistics, eps ...).
    pub constants: Vec<String>,
    /// Tensors the pattern hands to the rest of the graph (or that are model outputs).
    pub outputs: Vec<String>,
}

impl Instance {
    /// Build an instance from its nodes, or `None` if it is not fusible: an intermediate tensor is read
    /// outside the pattern or is a model output, or the pattern does not produce exactly one output.
    pub fn new(g: &ModelGraph, pattern: Pattern, form: impl Into<String>, nodes: Vec<NodeIndex>) -> Option<Instance> {
        let set: HashSet<NodeIndex> = nodes.iter().copied().collect();
        guard!(set.len() == nodes.len());
        let mut nodes = nodes;
        let pos = |n: &NodeIndex| g.order.iter().position(|o| o == n).unwrap_or(usize::MAX);
        nodes.sort_by_key(pos);
        let produced: HashSet<&str> =
            nodes.iter().flat_map(|&n| g.node(n).outputs.iter()).map(|s| s.as_str()).collect();
        let (mut inputs, mut constants) = (vec![], vec![]);
        for &n in &nodes {
            for i in g.node(n).real_inputs() {
                if produced.contains(i) {
                    continue;
                }
                let list = if g.is_constant(i) { &mut constants } else { &mut inputs };
                if !list.iter().any(|x: &String| x == i) {
                    list.push(i.to_string());
                }
            }
        }
        let mut outputs = vec![];
        for &n in &nodes {
            for o in g.node(n).outputs.iter().filter(|o| !o.is_empty()) {
                let outside = g.consumers_of(o).iter().any(|c| !set.contains(c));
                let model_out = g.tensor(o).is_some_and(|t| t.graph_output);
                if outside || model_out {
                    outputs.push(o.clone());
                }
            }
        }
        // exactly one exit, and it is the last node's output: no intermediate escapes
        let last = *nodes.last()?;
        guard!(outputs.len() == 1 && g.node(last).outputs.first() == outputs.first());
        guard!(!inputs.is_empty());
        Some(Instance { pattern, form: form.into(), nodes, inputs, constants, outputs })
    }

    pub fn node_names(&self, g: &ModelGraph) -> Vec<String> {
        self.nodes.iter().map(|&n| g.node(n).name.clone()).collect()
    }

    /// The anchor (first) node.
    pub fn anchor(&self) -> NodeIndex {
        self.nodes[0]
    }

    /// Whether every tensor it touches has a resolved shape, so it can be carved and measured.
    pub fn resolved(&self, g: &ModelGraph) -> bool {
        self.inputs.iter().chain(&self.constants).chain(&self.outputs).all(|t| g.shape(t).is_some())
    }

    /// Why it cannot be measured when a tensor's shape is unresolved: the first such tensor, and the
    /// `--input` that fixes the model's dynamic dimensions. `None` when every shape is known.
    pub fn unresolved_reason(&self, g: &ModelGraph) -> Option<String> {
        let t = self.inputs.iter().chain(&self.constants).chain(&self.outputs).find(|t| g.shape(t).is_none())?;
        let inputs: Vec<String> = g.inputs.iter().map(|i| format!("--input {i}=DIMS")).collect();
        Some(format!(
            "the shape of tensor `{t}` could not be resolved (a dynamic dimension, or an op the shape analysis does not support); fix the model's dynamic dimensions with {}",
            if inputs.is_empty() { "--input NAME=DIMS".to_string() } else { inputs.join(" or ") }
        ))
    }

    /// Identity for deduplication: pattern, form, dtypes and shapes of everything entering and leaving,
    /// and every node's op and attributes. Equal signatures are measured once.
    pub fn signature(&self, g: &ModelGraph) -> String {
        let t = |n: &String| {
            let t = g.tensor(n);
            format!("{}{:?}", t.map(|t| t.dtype).unwrap_or("?"), t.and_then(|t| t.shape.clone()))
        };
        let ops: Vec<String> = self
            .nodes
            .iter()
            .map(|&n| {
                let n = g.node(n);
                let attrs: BTreeMap<&String, &Attr> =
                    n.attributes.iter().filter(|(k, v)| !is_default_attr(k, v)).collect();
                format!("{}{}", n.qualified_op(), serde_json::to_string(&attrs).unwrap_or_default())
            })
            .collect();
        format!(
            "{}|{}|in:{}|const:{}|out:{}|{}",
            self.pattern.key(),
            self.form,
            self.inputs.iter().map(t).collect::<Vec<_>>().join(","),
            self.constants.iter().map(t).collect::<Vec<_>>().join(","),
            self.outputs.iter().map(t).collect::<Vec<_>>().join(","),
            ops.join(";")
        )
    }
}

/// Attributes spelled out at their default value (`pads=[0,0,0,0]`, `group=1`, ...) change nothing:
/// they must not split identical instances.
fn is_default_attr(name: &str, v: &Attr) -> bool {
    match (name, v) {
        ("pads", Attr::Ints(p)) => p.iter().all(|&x| x == 0),
        ("strides" | "dilations", Attr::Ints(p)) => p.iter().all(|&x| x == 1),
        ("group", Attr::Int(1)) => true,
        ("auto_pad", Attr::Str(s)) => s == "NOTSET",
        _ => false,
    }
}

type Rule = fn(&ModelGraph, NodeIndex) -> Option<Instance>;

/// Every rule, anchored at each node in turn.
const RULES: &[Rule] = &[
    conv_bias::rule,
    conv_bn::rule,
    conv_bn_relu::rule,
    conv_relu::rule,
    conv_bn_relu_maxpool::rule,
    linear_bias::rule,
    linear_bias_relu::rule,
    linear_bias_relu_dropout::rule,
    linear_bias_gelu::rule,
    mlp::rule,
    qk_softmax::rule,
    softmax_v::rule,
    attention_head::rule,
    multihead_linear::rule,
    add_relu::rule,
    add_layernorm::rule,
    mul_add_relu::rule,
    sigmoid_mul::rule,
];

/// All matches in a graph, and the non-overlapping longest-match cover.
pub struct Detection {
    pub all: Vec<Instance>,
    /// Indices into `all`: each node in at most one instance, longest matches first.
    pub longest: Vec<usize>,
}

impl Detection {
    /// Counts per pattern, over all matches or over the longest-match cover.
    pub fn counts(&self, longest_only: bool) -> BTreeMap<Pattern, usize> {
        let mut c = BTreeMap::new();
        let idx: Vec<usize> = if longest_only { self.longest.clone() } else { (0..self.all.len()).collect() };
        for i in idx {
            *c.entry(self.all[i].pattern).or_insert(0) += 1;
        }
        c
    }

    pub fn longest_instances(&self) -> impl Iterator<Item = &Instance> {
        self.longest.iter().map(|&i| &self.all[i])
    }
}

/// Run every rule at every node.
pub fn detect(g: &ModelGraph) -> Detection {
    let mut all = vec![];
    for &n in &g.order {
        for rule in RULES {
            if let Some(i) = rule(g, n) {
                all.push(i);
            }
        }
    }
    let pos: std::collections::HashMap<NodeIndex, usize> = g.order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut by_len: Vec<usize> = (0..all.len()).collect();
    by_len.sort_by_key(|&i| (std::cmp::Reverse(all[i].nodes.len()), pos[&all[i].nodes[0]]));
    let mut taken: BTreeSet<NodeIndex> = BTreeSet::new();
    let mut longest = vec![];
    for i in by_len {
        if all[i].nodes.iter().all(|n| !taken.contains(n)) {
            taken.extend(all[i].nodes.iter().copied());
            longest.push(i);
        }
    }
    longest.sort_by_key(|&i| pos[&all[i].nodes[0]]);
    Detection { all, longest }
}

/// Elements of a shape; saturates rather than overflow on absurd shapes.
pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
}

/// The node's op type, when it is in the default domain.
pub(crate) fn is_op(g: &ModelGraph, n: NodeIndex, op: &str) -> bool {
    let node = g.node(n);
    node.op == op && (node.domain.is_empty() || node.domain == "ai.onnx")
}

/// For a two-input node with exactly one constant operand: (the non-constant one, the constant one),
/// either operand order.
pub(crate) fn data_and_const(g: &ModelGraph, n: NodeIndex) -> Option<(&str, &str)> {
    let ins: Vec<&str> = g.node(n).real_inputs().collect();
    guard!(ins.len() == 2);
    match (g.is_constant(ins[0]), g.is_constant(ins[1])) {
        (false, true) => Some((ins[0], ins[1])),
        (true, false) => Some((ins[1], ins[0])),
        _ => None,
    }
}

/// For a two-input node that reads `this`, its other input (either operand order).
pub(crate) fn other_input<'g>(g: &'g ModelGraph, n: NodeIndex, this: &str) -> Option<&'g str> {
    let ins: Vec<&str> = g.node(n).real_inputs().collect();
    guard!(ins.len() == 2);
    match (ins[0] == this, ins[1] == this) {
        (true, false) => Some(ins[1]),
        (false, true) => Some(ins[0]),
        _ => None,
    }
}

/// The node's first output.
pub(crate) fn out(g: &ModelGraph, n: NodeIndex) -> &str {
    g.node(n).outputs.first().map(|s| s.as_str()).unwrap_or("")
}

/// The sole consumer of `n`'s output, if it is the default-domain `op`.
pub(crate) fn next_op(g: &ModelGraph, n: NodeIndex, op: &str) -> Option<NodeIndex> {
    let c = g.sole_consumer(n)?;
    guard!(is_op(g, c, op));
    Some(c)
}
