//! MultiHead(Q,K,V) + Linear: the transformer attention block, from the hidden state to the output
//! projection.
//!
//! Accepts: three linear layers with bias (`MatMul`+`Add` or `Gemm`, see `forms::linear`) reading the
//! same hidden state, each followed by the `Reshape`/`Transpose` plumbing that splits the heads (and
//! makes Kᵀ, in any number of steps), a full attention head (see `attention_head`: scale before or after,
//! mask or none, sdpa's IsNaN/Where), the `Transpose`/`Reshape` that merges the heads, and the output
//! linear layer with bias. The block's output is the output projection's; its inputs are the hidden
//! state, the mask, and the shape tensors it does not compute itself.
//! Shape computation: exporters build the Reshape targets at run time from `Shape` nodes. The block
//! includes the shape nodes (`Shape` of its own tensors, then `Gather`, `Slice`, `Unsqueeze`, `Squeeze`,
//! `Concat`, `Cast`) read only inside it: a `Shape` of a block tensor must not read it from outside.
//! Shape tensors shared with the rest of the model (the batch and sequence sizes taken from the model
//! input) are constants once the input shapes are fixed (see `graph`), and the carve gives them their
//! values: the carved block is self-contained, with the hidden state and the mask as its inputs.
//! The instance is anchored at the first of the three projections. Forms: the projections' form and the
//! head's, e.g. `MatMul+Add, scale Mul after, mask Add`.
//! Breaks it: projections reading different tensors (cross-attention), any intermediate read outside
//! the block (e.g. the attention probabilities returned), plumbing other than Reshape/Transpose, a head
//! that does not match `attention_head`.

use std::collections::HashSet;

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::attention_head::{first, head_at, head_ending_at, qk_candidate, Head};
use super::forms::linear::linear;
use super::{guard, is_op, out, sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Roles, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};
use crate::onnx::{a_ints};

/// Ops that compute Reshape targets from `Shape`.
const SHAPE_OPS: &[&str] = &["Shape", "Gather", "Slice", "Unsqueeze", "Squeeze", "Concat", "Cast"];

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "MultiHead_Linear",
    family: Family::Attention,
    operators: &["MultiHead(Q,K,V)", "Linear"],
    forms: &[
        "Q/K/V linear projections of one hidden state + Reshape/Transpose head split + an attention head + head merge + output linear",
        "with the exporter's Shape/Gather/Concat shape computation inside the block",
    ],
    rule,
    kernel_cpu: "com.microsoft.Attention + MatMul + Add",
    kernel_cuda: "com.microsoft.Attention + MatMul + Add",
    rewrite: Rewrite::MultiHeadLinear,
    synth: Synth { grid: sweep::multihead, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let proj = linear(g, n)?;
    let form = format!("{}{}", proj.form, proj.note());
    let m = walk_to_matmul(g, out(g, proj.nodes.last()?.1))?;
    let h = head_at(g, m).or_else(|| head_ending_at(g, m))?;
    let (roles, projections) = block(g, &h)?;
    // one instance per block: the rule fires at its first projection only
    guard!(first(g, &projections) == n);
    Instance::new(g, Pattern::MultiHeadLinear, format!("{form}, {}", h.form), roles)
}

/// The consumer of `t` other than `Shape` nodes, if exactly one.
fn data_consumer(g: &ModelGraph, t: &str) -> Option<NodeIndex> {
    let c: Vec<NodeIndex> = g.consumers_of(t).into_iter().filter(|&c| !is_op(g, c, "Shape")).collect();
    guard!(c.len() == 1 && !g.tensor(t).is_some_and(|t| t.graph_output));
    Some(c[0])
}

/// From a projection's output through Reshape/Transpose plumbing to the MatMul it feeds (through a
/// scale `Mul`/`Div` when there is one).
fn walk_to_matmul(g: &ModelGraph, t: &str) -> Option<NodeIndex> {
    let mut t = t.to_string();
    for _ in 0..8 {
        let c = data_consumer(g, &t)?;
        if is_op(g, c, "Reshape") || is_op(g, c, "Transpose") {
            guard!(g.node(c).inputs.first() == Some(&t));
            t = out(g, c).to_string();
            continue;
        }
        return qk_candidate(g, c);
    }
    None
}

/// Back from `t` through Reshape/Transpose plumbing to a linear layer with bias: (plumbing, linear
/// nodes, the linear's input).
fn back_to_linear(g: &ModelGraph, t: &str) -> Option<(Vec<NodeIndex>, Roles, String)> {
    let mut t = t.to_string();
    let mut plumbing = vec![];
    for _ in 0..8 {
        let p = g.producer_of(&t)?;
        if is_op(g, p, "Reshape") || is_op(g, p, "Transpose") {
            plumbing.push(p);
            t = g.node(p).inputs.first()?.clone();
            continue;
        }
        // the bias Add (or a Gemm with C): find the linear that ends here
        let start = if is_op(g, p, "Gemm") {
            p
        } else {
            guard!(is_op(g, p, "Add"));
            g.node(p)
                .real_inputs()
                .filter_map(|i| g.producer_of(i))
                .find(|&q| is_op(g, q, "MatMul") || is_op(g, q, "Gemm"))?
        };
        let lin = linear(g, start)?.nodes;
        guard!(lin.last().map(|l| l.1) == Some(p));
        let x = g.node(start).real_inputs().find(|i| !g.is_constant(i))?.to_string();
        return Some((plumbing, lin, x));
    }
    None
}

/// The block around head `h`: its nodes with their roles, and the three input projections' first nodes.
fn block(g: &ModelGraph, h: &Head) -> Option<(Roles, Vec<NodeIndex>)> {
    let mut core: Roles = h.roles.clone();
    let mut projections = vec![];
    let mut x: Option<String> = None;
    let qkv = [(&h.q, Role::QMatMul, Role::QBias), (&h.kt, Role::KMatMul, Role::KBias), (h.v.as_ref()?, Role::VMatMul, Role::VBias)];
    for (t, matmul, bias) in qkv {
        let (plumbing, lin, input) = back_to_linear(g, t)?;
        guard!(x.as_ref().is_none_or(|x| *x == input));
        x = Some(input);
        projections.push(lin[0].1);
        core.extend(plumbing.into_iter().map(|n| (Role::Plumbing, n)));
        core.extend(projection_roles(lin, matmul, bias));
    }
    // Q, K and V come from three different projections
    guard!(projections.iter().collect::<HashSet<_>>().len() == 3);
    // after the head: merge the heads, then the output projection
    let mut t = out(g, h.pv?).to_string();
    let mut tail = None;
    for _ in 0..8 {
        let c = data_consumer(g, &t)?;
        if is_op(g, c, "Reshape") || is_op(g, c, "Transpose") {
            guard!(g.node(c).inputs.first() == Some(&t));
            core.push((Role::Plumbing, c));
            t = out(g, c).to_string();
            continue;
        }
        let lin = linear(g, c)?.nodes;
        guard!(g.node(c).inputs.first() == Some(&t));
        tail = Some(projection_roles(lin, Role::OutMatMul, Role::OutBias));
        break;
    }
    core.extend(tail?);
    let nodes: Vec<NodeIndex> = core.iter().map(|(_, n)| *n).collect();
    let shapes = shape_nodes(g, &nodes, x.as_deref()?);
    core.extend(shapes.into_iter().map(|n| (Role::Plumbing, n)));
    Some((core, projections))
}

/// A linear layer's roles as one of the block's projections: its MatMul (or Gemm) as `matmul`, its bias
/// Add as `bias`, a weight dequantization as it is.
fn projection_roles(lin: Roles, matmul: Role, bias: Role) -> Roles {
    let part = |r| match r {
        Role::MatMul => matmul,
        Role::Bias => bias,
        other => other,
    };
    lin.into_iter().map(|(r, n)| (part(r), n)).collect()
}

/// The shape computations feeding the Reshapes of `core` that are read only inside the block.
fn shape_nodes(g: &ModelGraph, core: &[NodeIndex], x: &str) -> Vec<NodeIndex> {
    let inside: HashSet<NodeIndex> = core.iter().copied().collect();
    let own = |t: &str| t == x || g.producer_of(t).is_some_and(|p| inside.contains(&p));
    let mut found: HashSet<NodeIndex> = HashSet::new();
    let mut stack: Vec<String> =
        core.iter().filter(|&&r| is_op(g, r, "Reshape")).filter_map(|&r| g.node(r).inputs.get(1).cloned()).collect();
    // constant or not: a graph whose input shapes are fixed may count `Shape` outputs as constants
    while let Some(t) = stack.pop() {
        let Some(p) = g.producer_of(&t) else { continue };
        if inside.contains(&p) || found.contains(&p) || !SHAPE_OPS.iter().any(|op| is_op(g, p, op)) {
            continue;
        }
        if is_op(g, p, "Shape") {
            if g.node(p).inputs.first().is_some_and(|i| own(i)) {
                found.insert(p);
            }
            continue;
        }
        found.insert(p);
        stack.extend(g.node(p).real_inputs().map(String::from));
    }
    // keep only what is read inside the block alone
    loop {
        let within = |n: NodeIndex| inside.contains(&n) || found.contains(&n);
        let leaking: Vec<NodeIndex> = found
            .iter()
            .copied()
            .filter(|&n| {
                g.node(n).outputs.iter().any(|o| {
                    g.tensor(o).is_some_and(|t| t.graph_output) || g.consumers_of(o).into_iter().any(|c| !within(c))
                })
            })
            .collect();
        if leaking.is_empty() {
            break;
        }
        for n in leaking {
            found.remove(&n);
        }
    }
    found.into_iter().collect()
}

fn flops(s: &Size) -> Result<f64> {
    let (s, heads, d) = sweep::attention_dims(s)?;
    let (sf, hidden, scores) = (s as f64, (heads * d) as f64, (heads * s * s) as f64);
    Ok(8.0 * sf * hidden * hidden + 4.0 * sf * hidden + 4.0 * scores * d as f64 + 7.0 * scores)
}

/// The synthetic model: BERT's self-attention block on x `[1,S,768]`: Q, K, V `MatMul`+`Add`, `Reshape` to `[1,S,12,64]`, `Transpose` (perm 0,2,1,3; 0,2,3,1 for Kᵀ), the head, `Transpose` and `Reshape` back, the output `MatMul`+`Add` (21 nodes; the Reshape targets are constant initializers).
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (s, heads, d) = sweep::attention_dims(s)?;
    let hidden = heads * d;
    let x = m.input("x", &[1, s, hidden]);
    let mask = m.input("mask", &[1, 1, 1, s]);
    let split = m.ints("heads_shape", &[1, s as i64, heads as i64, d as i64]);
    let merge = m.ints("hidden_shape", &[1, s as i64, hidden as i64]);
    let heads_of = |m: &mut Model, name: &str, perm: &[i64]| {
        let y = m.linear(name, &x, hidden, hidden);
        let y = m.op(&format!("{name}_reshape"), "Reshape", &[&y, &split], vec![]);
        m.op(&format!("{name}_transpose"), "Transpose", &[&y], vec![a_ints("perm", perm)])
    };
    let q = heads_of(m, "q", &[0, 2, 1, 3]);
    let kt = heads_of(m, "k", &[0, 2, 3, 1]);
    let v = heads_of(m, "v", &[0, 2, 1, 3]);
    let p = m.scores(&q, &kt, &mask, d);
    let c = m.op("pv_matmul", "MatMul", &[&p, &v], vec![]);
    let c = m.op("merge_transpose", "Transpose", &[&c], vec![a_ints("perm", &[0, 2, 1, 3])]);
    let c = m.op("merge_reshape", "Reshape", &[&c, &merge], vec![]);
    m.linear("o", &c, hidden, hidden);
    Ok(vec![1, s, hidden])
}
