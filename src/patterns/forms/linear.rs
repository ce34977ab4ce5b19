//! Linear building blocks shared by the linear patterns: `MatMul` with a constant weight plus a bias
//! `Add`, or `Gemm` with (or followed by) a bias.

use petgraph::graph::NodeIndex;

use crate::graph::ModelGraph;
use crate::patterns::{guard, is_op, next_op, other_input, out};

/// The linear layer with bias anchored at `n`: its nodes and form.
pub(crate) fn linear_with_bias(g: &ModelGraph, n: NodeIndex) -> Option<(Vec<NodeIndex>, &'static str)> {
    let node = g.node(n);
    if is_op(g, n, "Gemm") {
        guard!(g.is_constant(node.inputs.get(1)?) && !g.is_constant(node.inputs.first()?));
        if let Some(c) = node.inputs.get(2).filter(|c| !c.is_empty()) {
            guard!(g.is_constant(c));
            return Some((vec![n], "Gemm"));
        }
        let add = bias_add_after(g, n)?;
        return Some((vec![n, add], "Gemm+Add"));
    }
    guard!(is_op(g, n, "MatMul"));
    let ins: Vec<&str> = node.real_inputs().collect();
    guard!(ins.len() == 2);
    let weight = match (g.is_constant(ins[0]), g.is_constant(ins[1])) {
        (false, true) => ins[1],
        (true, false) => ins[0],
        _ => return None,
    };
    guard!(g.shape(weight).is_none_or(|s| s.len() == 2));
    let add = bias_add_after(g, n)?;
    Some((vec![n, add], "MatMul+Add"))
}

/// An `Add` of a constant per-feature bias after `n`.
pub(crate) fn bias_add_after(g: &ModelGraph, n: NodeIndex) -> Option<NodeIndex> {
    let add = next_op(g, n, "Add")?;
    let bias = other_input(g, add, out(g, n))?;
    guard!(g.is_constant(bias));
    let features = *g.shape(out(g, n))?.last()?;
    let numel: usize = g.shape(bias)?.iter().product();
    guard!(numel == features);
    Some(add)
}

