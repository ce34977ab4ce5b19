//! Q@Kᵀ + Softmax + @V (a full attention head), from the QK `MatMul` (or the scale before it) to the
//! PV `MatMul`.
//!
//! Accepts: the scores of `qk_softmax` (see there: `MatMul(Q, Kᵀ)` of two non-constant tensors, a scale
//! by a constant scalar `Mul`/`Div` after the MatMul, or `Mul`s of Q and Kᵀ before it as PyTorch's sdpa
//! export writes, or none (folded into the weights); an optional mask `Add`; `Softmax` over the last
//! axis; sdpa's `IsNaN`/`Where` after it), then `MatMul(probs, V)` with V non-constant. The transposes
//! that make Kᵀ and split the heads are plumbing before the pattern: the head's inputs are Q, Kᵀ, V (and
//! the mask) as they reach the MatMuls.
//! Breaks it: the scores, the probabilities or any other intermediate read outside (e.g. attention
//! weights returned as an output), a Softmax over another axis, a non-scalar or non-constant scale, a
//! constant K or V.
//!
//! The helpers here are shared by `qk_softmax`, `softmax_v` and `multihead_linear`.

use std::collections::HashSet;

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::{guard, is_op, next_op, other_input, out, sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Roles, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Attention_Head",
    family: Family::Attention,
    operators: &["Q@K.T", "Softmax", "@V"],
    forms: &[
        "Q@Kᵀ + Softmax (any QK_Softmax form: scale before, after or folded; mask or none) + MatMul with V",
        "PyTorch sdpa export: scaled Q and Kᵀ, IsNaN/Where after Softmax",
    ],
    rule,
    kernel_cpu: "com.microsoft.MultiHeadAttention",
    kernel_cuda: "com.microsoft.MultiHeadAttention",
    rewrite: Rewrite::AttentionHead,
    synth: Synth { grid: sweep::attention, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let h = head_at(g, qk_candidate(g, n)?)?;
    guard!(first(g, &h.nodes()) == n);
    Instance::new(g, Pattern::AttentionHead, h.form.clone(), h.roles)
}

/// An attention head (or only its scores, when `pv` is `None`) found in a graph.
pub(crate) struct Head {
    /// All its nodes with their roles, unsorted.
    pub roles: Roles,
    /// The `Softmax`, or sdpa's `Where` after it: the probabilities.
    pub probs: NodeIndex,
    pub pv: Option<NodeIndex>,
    /// The tensors entering: Q, Kᵀ and V.
    pub q: String,
    pub kt: String,
    pub v: Option<String>,
    pub form: String,
}

impl Head {
    /// Its nodes.
    pub fn nodes(&self) -> Vec<NodeIndex> {
        self.roles.iter().map(|&(_, n)| n).collect()
    }
}

/// The QK MatMul that a rule anchored at `n` would start from: `n` itself, or the MatMul that a scale
/// `Mul`/`Div` at `n` feeds.
pub(crate) fn qk_candidate(g: &ModelGraph, n: NodeIndex) -> Option<NodeIndex> {
    if is_op(g, n, "MatMul") {
        return Some(n);
    }
    guard!(scale_of(g, n).is_some());
    next_op(g, n, "MatMul")
}

/// The first of `nodes` in topological order.
pub(crate) fn first(g: &ModelGraph, nodes: &[NodeIndex]) -> NodeIndex {
    let set: HashSet<NodeIndex> = nodes.iter().copied().collect();
    *g.order.iter().find(|n| set.contains(n)).expect("nodes of the graph")
}

/// A `Mul` by a constant scalar (either order) or a `Div` by one (`x / c`): the non-constant operand.
fn scale_of(g: &ModelGraph, n: NodeIndex) -> Option<&str> {
    let ins: Vec<&str> = g.node(n).real_inputs().collect();
    guard!(ins.len() == 2);
    let scalar = |t: &str| g.is_constant(t) && g.shape(t).is_some_and(|s| super::numel(s) == 1);
    if is_op(g, n, "Mul") {
        match (scalar(ins[0]), scalar(ins[1])) {
            (false, true) if !g.is_constant(ins[0]) => Some(ins[0]),
            (true, false) if !g.is_constant(ins[1]) => Some(ins[1]),
            _ => None,
        }
    } else if is_op(g, n, "Div") {
        guard!(scalar(ins[1]) && !g.is_constant(ins[0]));
        Some(ins[0])
    } else {
        None
    }
}

/// Whether the `Softmax` at `n` normalises over the last axis.
pub(crate) fn softmax_last_axis(g: &ModelGraph, n: NodeIndex) -> bool {
    let node = g.node(n);
    let rank = node.inputs.first().and_then(|i| g.shape(i)).map(|s| s.len() as i64);
    match node.attr_int("axis") {
        Some(a) => a == -1 || Some(a + 1) == rank,
        // the default axis is -1 from opset 13, 1 before: both the last one only for 2-D inputs
        None => rank == Some(2),
    }
}

/// The last-axis `Softmax` at `n` and sdpa's `IsNaN`/`Where` guard after it, if present: its nodes.
pub(crate) fn softmax_with_guard(g: &ModelGraph, n: NodeIndex) -> Option<Vec<NodeIndex>> {
    guard!(is_op(g, n, "Softmax") && softmax_last_axis(g, n));
    let p = out(g, n);
    let readers = g.consumers_of(p);
    if readers.len() == 2 && !g.tensor(p).is_some_and(|t| t.graph_output) {
        let isnan = *readers.iter().find(|&&r| is_op(g, r, "IsNaN"))?;
        let wh = next_op(g, isnan, "Where")?;
        guard!(readers.contains(&wh));
        let ins = &g.node(wh).inputs;
        guard!(ins.len() == 3 && ins[0] == out(g, isnan) && g.is_constant(&ins[1]) && ins[2] == p);
        return Some(vec![n, isnan, wh]);
    }
    Some(vec![n])
}

/// The roles of a Softmax and its sdpa guard, as [`softmax_with_guard`] returns them.
pub(crate) fn softmax_roles(nodes: &[NodeIndex]) -> Roles {
    nodes.iter().enumerate().map(|(i, &n)| (if i == 0 { Role::Softmax } else { Role::SoftmaxGuard }, n)).collect()
}

/// The scores anchored at the QK MatMul `m`: optional scale Muls before it, the MatMul, an optional
/// scale after it, an optional mask `Add`, the Softmax and its sdpa guard.
pub(crate) fn scores_at(g: &ModelGraph, m: NodeIndex) -> Option<Head> {
    guard!(is_op(g, m, "MatMul"));
    let ins: Vec<String> = g.node(m).real_inputs().map(String::from).collect();
    guard!(ins.len() == 2 && ins[0] != ins[1]);
    guard!(!g.is_constant(&ins[0]) && !g.is_constant(&ins[1]));
    let mut roles: Roles = vec![];
    let mut operands = vec![];
    for t in &ins {
        let pre = g.producer_of(t).filter(|&p| g.sole_consumer(p) == Some(m) && scale_of(g, p).is_some());
        match pre {
            Some(p) => {
                roles.push((Role::ScoreScale, p));
                operands.push(scale_of(g, p)?.to_string());
            }
            None => operands.push(t.clone()),
        }
    }
    let scale_before = !roles.is_empty();
    roles.push((Role::QkMatMul, m));
    let mut last = m;
    let mut scale = if scale_before { "scale Mul before" } else { "no scale" };
    if let Some(s) = g.sole_consumer(last).filter(|&s| scale_of(g, s) == Some(out(g, last))) {
        scale = if is_op(g, s, "Div") { "scale Div after" } else { "scale Mul after" };
        roles.push((Role::ScoreScale, s));
        last = s;
    }
    let mut mask = false;
    if let Some(add) = next_op(g, last, "Add") {
        guard!(other_input(g, add, out(g, last)).is_some());
        mask = true;
        roles.push((Role::Mask, add));
        last = add;
    }
    let sm = next_op(g, last, "Softmax")?;
    let tail = softmax_with_guard(g, sm)?;
    let probs = *tail.last()?;
    let guarded = tail.len() > 1;
    roles.extend(softmax_roles(&tail));
    let mut form = vec![scale, if mask { "mask Add" } else { "no mask" }];
    if guarded {
        form.push("IsNaN/Where");
    }
    Some(Head {
        roles,
        probs,
        pv: None,
        q: operands[0].clone(),
        kt: operands[1].clone(),
        v: None,
        form: form.join(", "),
    })
}

/// The `MatMul(probs, V)` after the probabilities written by `probs`, V non-constant.
pub(crate) fn pv_after(g: &ModelGraph, probs: NodeIndex) -> Option<(NodeIndex, String)> {
    let pv = next_op(g, probs, "MatMul")?;
    let ins: Vec<&str> = g.node(pv).real_inputs().collect();
    guard!(ins.len() == 2 && ins[0] == out(g, probs) && ins[1] != ins[0] && !g.is_constant(ins[1]));
    Some((pv, ins[1].to_string()))
}

/// The full head from the QK MatMul `m`.
pub(crate) fn head_at(g: &ModelGraph, m: NodeIndex) -> Option<Head> {
    let mut h = scores_at(g, m)?;
    let (pv, v) = pv_after(g, h.probs)?;
    h.roles.push((Role::PvMatMul, pv));
    h.pv = Some(pv);
    h.v = Some(v);
    Some(h)
}

/// The full head that ends at the PV MatMul `pv`: back from its probabilities to the QK MatMul.
pub(crate) fn head_ending_at(g: &ModelGraph, pv: NodeIndex) -> Option<Head> {
    guard!(is_op(g, pv, "MatMul"));
    let mut t = g.node(pv).inputs.first()?.clone();
    for _ in 0..8 {
        let p = g.producer_of(&t)?;
        if is_op(g, p, "MatMul") {
            let h = head_at(g, p)?;
            guard!(h.pv == Some(pv));
            return Some(h);
        }
        guard!(["Where", "Softmax", "Add", "Mul", "Div"].iter().any(|op| is_op(g, p, op)));
        // Where(isnan, c, softmax): follow the softmax; an Add: the scores, not the mask
        t = if is_op(g, p, "Where") {
            g.node(p).inputs.get(2)?.clone()
        } else if is_op(g, p, "Add") {
            let scores = |i: &&str| {
                g.producer_of(i).is_some_and(|q| {
                    ["MatMul", "Mul", "Div"].iter().any(|op| is_op(g, q, op)) && g.sole_consumer(q) == Some(p)
                })
            };
            g.node(p).real_inputs().find(scores)?.to_string()
        } else {
            g.node(p).real_inputs().find(|i| !g.is_constant(i))?.to_string()
        };
    }
    None
}

fn flops(s: &Size) -> Result<f64> {
    let (s, heads, d) = sweep::attention_dims(s)?;
    let scores = (heads * s * s) as f64;
    Ok(4.0 * scores * d as f64 + 7.0 * scores)
}

/// The synthetic model: QK_Softmax's scores then `MatMul` by V.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (s, heads, d) = sweep::attention_dims(s)?;
    let q = m.input("q", &[1, heads, s, d]);
    let kt = m.input("k_t", &[1, heads, d, s]);
    let v = m.input("v", &[1, heads, s, d]);
    let mask = m.input("mask", &[1, 1, 1, s]);
    let p = m.scores(&q, &kt, &mask, d);
    m.op("pv_matmul", "MatMul", &[&p, &v], vec![]);
    Ok(vec![1, heads, s, d])
}
