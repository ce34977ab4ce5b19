//! Patterns: find the subgraphs a graph partitioner would fuse.
//!
//! One file per pattern holds everything about it: its [`Descriptor`] (key, family, operators, the forms
//! it accepts, the fused kernels ORT has for it on CPU and CUDA, its synthetic model for `calibrate`) and
//! its detection rule, a function `fn(&ModelGraph, NodeIndex) -> Option<Instance>` anchored at one node
//! of the pattern (its first, but for a linear layer's dequantization, which precedes its anchor, the
//! MatMul); the `guard!` macro bails out on the first mismatch. The [`registry!`] below lists the files,
//! one line each, and derives the `Pattern` enum, `Pattern::ALL` and the rule table from them. `forms`
//! holds the building blocks several share (a convolution, a linear layer, ReLU/ReLU6 and inference
//! Dropout, GELU and layer-norm forms); `sweep` the size grids of the synthetic models.
//!
//! A match carries the role of each node ([`Role`]: the convolution, its BN, the residual Add, the
//! activation, ...), so that the explicit rewrite (`crate::fuse`) reads them instead of matching again.
//! The form string says which form matched, e.g. `Conv+Clip` (ReLU6), `MatMul+Add (quantized weight)`.
//!
//! A match is fusible only if every intermediate tensor is read inside the pattern alone and is not a
//! model output. Overlapping matches are all kept; `Detection::longest` picks, greedily from the
//! longest, a set of matches that share no node ("each place counted once by its longest match").

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use petgraph::graph::NodeIndex;
use serde::{Deserialize, Serialize};

use crate::graph::{Attr, ModelGraph};
use crate::onnx::build::{Model, Size};

pub mod forms;
pub mod sweep;

/// The pattern files, one line each, in catalog order. From this list come the `Pattern` enum (one
/// variant per line), `Pattern::ALL` and the rule table.
macro_rules! registry {
    ($($variant:ident => $module:ident,)*) => {
        $(pub mod $module;)*

        /// The fusion patterns. `key()` is the stable name used in calibration files and lookups.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Pattern {
            $($variant,)*
        }

        impl Pattern {
            /// Every pattern, in catalog order.
            pub const ALL: [Pattern; [$(stringify!($variant),)*].len()] = [$(Pattern::$variant,)*];

            /// Everything about the pattern, from its file.
            pub fn descriptor(self) -> &'static Descriptor {
                match self {
                    $(Pattern::$variant => &$module::DESCRIPTOR,)*
                }
            }
        }
    };
}

registry! {
    LinearBias => linear_bias,
    LinearBiasRelu => linear_bias_relu,
    LinearBiasReluDropout => linear_bias_relu_dropout,
    LinearBiasGelu => linear_bias_gelu,
    Mlp => mlp,
    ConvBias => conv_bias,
    ConvBn => conv_bn,
    ConvBnRelu => conv_bn_relu,
    ConvRelu => conv_relu,
    ConvBnReluMaxPool => conv_bn_relu_maxpool,
    ConvAddRelu => conv_add_relu,
    QkSoftmax => qk_softmax,
    SoftmaxV => softmax_v,
    AttentionHead => attention_head,
    MultiHeadLinear => multihead_linear,
    AddRelu => add_relu,
    AddLayerNorm => add_layernorm,
    MulAddRelu => mul_add_relu,
    SigmoidMul => sigmoid_mul,
}

/// Return `None` from a rule when a condition does not hold.
macro_rules! guard {
    ($cond:expr) => {
        if !$cond {
            return None;
        }
    };
}
pub(crate) use guard;

/// Everything fuseval knows about one pattern, kept in the pattern's own file.
pub struct Descriptor {
    /// The stable key (the design's `fusion_pattern`), e.g. `Conv2d_BN_ReLU`.
    pub key: &'static str,
    pub family: Family,
    /// The design's `operators` list.
    pub operators: &'static [&'static str],
    /// The ONNX forms the rule accepts, as `inspect --patterns` lists them.
    pub forms: &'static [&'static str],
    pub rule: Rule,
    /// The fused kernel(s) fuseval's explicit rewrite maps it to, per provider; `none` when ORT has none.
    pub kernel_cpu: &'static str,
    pub kernel_cuda: &'static str,
    /// Which explicit rewrite of `crate::fuse` handles it.
    pub rewrite: Rewrite,
    /// The synthetic model `calibrate` sweeps.
    pub synth: Synth,
}

/// A pattern family: `calibrate --patterns` selects by family, and the families share size grids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Linear,
    Conv,
    Attention,
    Elementwise,
}

impl Family {
    pub const ALL: [Family; 4] = [Family::Linear, Family::Conv, Family::Attention, Family::Elementwise];

    pub fn name(self) -> &'static str {
        match self {
            Family::Linear => "linear",
            Family::Conv => "conv",
            Family::Attention => "attention",
            Family::Elementwise => "elementwise",
        }
    }
}

/// The explicit rewrites `crate::fuse` has, one per family of kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// Conv with BN and bias folded, FusedConv for the activation (and the residual `Z`).
    Conv,
    /// Gemm / FusedGemm / BiasGelu.
    Linear,
    /// SkipLayerNormalization.
    LayerNorm,
    /// QuickGelu / HardSwish; none for the others.
    Elementwise,
    QkSoftmax,
    SoftmaxV,
    AttentionHead,
    MultiHeadLinear,
}

/// A pattern's synthetic model: its size grid (`quick`, `cuda`), its FLOPs at a size, and the builder
/// that writes exactly one instance into a model, returning the output dims.
pub struct Synth {
    pub grid: fn(bool, bool) -> Vec<Size>,
    pub flops: fn(&Size) -> anyhow::Result<f64>,
    pub build: fn(&mut Model, &Size) -> anyhow::Result<Vec<usize>>,
}

/// What a node does in a match: the explicit rewrite reads these instead of matching again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// The 2-D convolution.
    Conv,
    /// An inference BatchNormalization after it.
    BatchNorm,
    /// A per-channel constant bias `Add`.
    ChannelBias,
    /// The residual `Add`/`Sum` of a non-constant tensor (ORT's FusedConv `Z`).
    Residual,
    /// A pooling after the activation.
    Pool,
    /// A node that dequantizes a constant weight (DequantizeLinear, Cast, Mul by the scale).
    Dequant,
    /// A linear layer's MatMul or Gemm, and its bias Add; `MatMul2`/`Bias2`: the MLP's second layer.
    MatMul,
    Bias,
    MatMul2,
    Bias2,
    /// ReLU, or ReLU6 as `Clip`.
    Activation,
    /// An inference Dropout (a no-op).
    Dropout,
    /// A node of a GELU (the `Gelu` op, or the Erf or tanh form).
    Gelu,
    /// A non-constant `Add` (the skip connection before a layer norm, the residual Add+ReLU).
    Add,
    /// A node of a layer norm (`LayerNormalization`, or the decomposed form).
    LayerNorm,
    /// `Mul` by a constant, then `Add` of a constant (a BatchNorm written out).
    Scale,
    Shift,
    /// `Sigmoid`/`HardSigmoid`, and the `Mul` it gates.
    Sigmoid,
    Gate,
    /// The attention scores: the Q@Kᵀ MatMul; a scale by a constant scalar (a `Mul`/`Div` after it, or
    /// `Mul`s of Q and Kᵀ before it); the mask `Add`; the `Softmax`; sdpa's `IsNaN`/`Where` after it.
    QkMatMul,
    ScoreScale,
    Mask,
    Softmax,
    SoftmaxGuard,
    /// The MatMul of the probabilities with V.
    PvMatMul,
    /// A multi-head block's linear layers: the MatMul (or Gemm) and the bias `Add` of the Q, K, V and
    /// output projections.
    QMatMul,
    QBias,
    KMatMul,
    KBias,
    VMatMul,
    VBias,
    OutMatMul,
    OutBias,
    /// A multi-head block's head split and merge (`Reshape`, `Transpose`) and the shape computation for
    /// them.
    Plumbing,
}

impl Pattern {
    /// Stable key, as in the design's `fusion_pattern` field.
    pub fn key(self) -> &'static str {
        self.descriptor().key
    }

    /// Human name, e.g. `Conv2d + BatchNorm + ReLU`.
    pub fn title(self) -> String {
        self.operators().join(" + ")
    }

    /// The design's `operators` list.
    pub fn operators(self) -> &'static [&'static str] {
        self.descriptor().operators
    }

    pub fn family(self) -> Family {
        self.descriptor().family
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

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let key = String::deserialize(d)?;
        Pattern::ALL.into_iter().find(|p| p.key() == key).ok_or_else(|| {
            let keys: Vec<&str> = Pattern::ALL.iter().map(|p| p.key()).collect();
            serde::de::Error::custom(format!("unknown pattern `{key}`; known: {}", keys.join(", ")))
        })
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
    /// The role of each node, in the same order.
    pub roles: Vec<Role>,
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
    pub fn new(
        g: &ModelGraph,
        pattern: Pattern,
        form: impl Into<String>,
        mut roles: Vec<(Role, NodeIndex)>,
    ) -> Option<Instance> {
        let pos = |n: &NodeIndex| g.order.iter().position(|o| o == n).unwrap_or(usize::MAX);
        roles.sort_by_key(|(_, n)| pos(n));
        let nodes: Vec<NodeIndex> = roles.iter().map(|(_, n)| *n).collect();
        let set: HashSet<NodeIndex> = nodes.iter().copied().collect();
        guard!(set.len() == nodes.len());
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
        let roles = roles.into_iter().map(|(r, _)| r).collect();
        Some(Instance { pattern, form: form.into(), nodes, roles, inputs, constants, outputs })
    }

    pub fn node_names(&self, g: &ModelGraph) -> Vec<String> {
        self.nodes.iter().map(|&n| g.node(n).name.clone()).collect()
    }

    /// The nodes that play `role`, in topological order.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = NodeIndex> + '_ {
        self.nodes.iter().zip(&self.roles).filter(move |(_, r)| **r == role).map(|(n, _)| *n)
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

/// Nodes of a match with their roles.
pub type Roles = Vec<(Role, NodeIndex)>;

/// A detection rule, anchored at one node.
pub type Rule = fn(&ModelGraph, NodeIndex) -> Option<Instance>;

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
        for p in Pattern::ALL {
            if let Some(i) = (p.descriptor().rule)(g, n) {
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
