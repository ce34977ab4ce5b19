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

use petgraph::graph::NodeIndex;

use super::attention_head::{first, head_at, head_ending_at, qk_candidate, Head};
use super::forms::linear::linear;
use super::{guard, is_op, out, Instance, Pattern};
use crate::graph::ModelGraph;

/// Ops that compute Reshape targets from `Shape`.
const SHAPE_OPS: &[&str] = &["Shape", "Gather", "Slice", "Unsqueeze", "Squeeze", "Concat", "Cast"];

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let proj = linear(g, n)?;
    let form = format!("{}{}", proj.form, proj.note());
    let m = walk_to_matmul(g, out(g, *proj.nodes.last()?))?;
    let h = head_at(g, m).or_else(|| head_ending_at(g, m))?;
    let (nodes, projections) = block(g, &h)?;
    // one instance per block: the rule fires at its first projection only
    guard!(first(g, &projections) == n);
    Instance::new(g, Pattern::MultiHeadLinear, format!("{form}, {}", h.form), nodes)
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
fn back_to_linear(g: &ModelGraph, t: &str) -> Option<(Vec<NodeIndex>, Vec<NodeIndex>, String)> {
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
        guard!(lin.last() == Some(&p));
        let x = g.node(start).real_inputs().find(|i| !g.is_constant(i))?.to_string();
        return Some((plumbing, lin, x));
    }
    None
}

/// The block around head `h`: its nodes and the three input projections' first nodes.
fn block(g: &ModelGraph, h: &Head) -> Option<(Vec<NodeIndex>, Vec<NodeIndex>)> {
    let mut core: Vec<NodeIndex> = h.nodes.clone();
    let mut projections = vec![];
    let mut x: Option<String> = None;
    for t in [&h.q, &h.kt, h.v.as_ref()?] {
        let (plumbing, lin, input) = back_to_linear(g, t)?;
        guard!(x.as_ref().is_none_or(|x| *x == input));
        x = Some(input);
        projections.push(lin[0]);
        core.extend(plumbing);
        core.extend(lin);
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
            core.push(c);
            t = out(g, c).to_string();
            continue;
        }
        let lin = linear(g, c)?.nodes;
        guard!(g.node(c).inputs.first() == Some(&t));
        tail = Some(lin);
        break;
    }
    core.extend(tail?);
    let shapes = shape_nodes(g, &core, x.as_deref()?);
    core.extend(shapes);
    Some((core, projections))
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
