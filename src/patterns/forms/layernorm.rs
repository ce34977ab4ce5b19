//! Layer normalisation over the last axis, as the `LayerNormalization` op or decomposed.

use petgraph::graph::NodeIndex;

use crate::graph::ModelGraph;
use crate::patterns::{guard, is_op, next_op, other_input, out};

/// The layer norm over the last axis that reads `x`: its nodes and form.
pub fn layernorm_after(g: &ModelGraph, x: &str) -> Option<(Vec<NodeIndex>, &'static str)> {
    let readers = g.consumers_of(x);
    let rank = g.shape(x).map(|s| s.len() as i64);
    if readers.len() == 1 && is_op(g, readers[0], "LayerNormalization") {
        let ln = g.node(readers[0]);
        guard!(ln.inputs.first().map(|s| s.as_str()) == Some(x));
        guard!(ln.inputs[1..].iter().filter(|i| !i.is_empty()).all(|i| g.is_constant(i)));
        let axis = ln.attr_int("axis").unwrap_or(-1);
        guard!(axis == -1 || Some(axis + 1) == rank);
        return Some((vec![readers[0]], "LayerNormalization"));
    }
    guard!(readers.len() == 2);
    let mean = *readers.iter().find(|&&r| is_op(g, r, "ReduceMean"))?;
    let sub = *readers.iter().find(|&&r| is_op(g, r, "Sub"))?;
    guard!(last_axis(g, mean, rank));
    let sub_ins: Vec<&str> = g.node(sub).real_inputs().collect();
    guard!(sub_ins == [x, out(g, mean)]);
    guard!(g.consumers_of(out(g, mean)) == [sub]);
    let d = out(g, sub);
    let d_readers = g.consumers_of(d);
    guard!(d_readers.len() == 2);
    let pow = *d_readers.iter().find(|&&r| is_op(g, r, "Pow"))?;
    let div = *d_readers.iter().find(|&&r| is_op(g, r, "Div"))?;
    guard!(g.node(pow).inputs.first().map(|s| s.as_str()) == Some(d) && g.is_constant(g.node(pow).inputs.get(1)?));
    let var = next_op(g, pow, "ReduceMean")?;
    guard!(last_axis(g, var, rank));
    let eps = next_op(g, var, "Add")?;
    guard!(g.is_constant(other_input(g, eps, out(g, var))?));
    let sqrt = next_op(g, eps, "Sqrt")?;
    guard!(g.node(div).real_inputs().collect::<Vec<_>>() == [d, out(g, sqrt)]);
    let mut nodes = vec![mean, sub, pow, var, eps, sqrt, div];
    let mut last = div;
    if let Some(mul) =
        next_op(g, last, "Mul").filter(|&m| other_input(g, m, out(g, last)).is_some_and(|s| g.is_constant(s)))
    {
        nodes.push(mul);
        last = mul;
    }
    if let Some(add) =
        next_op(g, last, "Add").filter(|&a| other_input(g, a, out(g, last)).is_some_and(|s| g.is_constant(s)))
    {
        nodes.push(add);
    }
    Some((nodes, "decomposed"))
}

/// A `ReduceMean` over the last axis only, keeping dims (axes as attribute, or as a constant input
/// whose value fuseval cannot read here and then trusts when the output keeps the input's rank).
fn last_axis(g: &ModelGraph, n: NodeIndex, rank: Option<i64>) -> bool {
    let node = g.node(n);
    if node.attr_int("keepdims") == Some(0) {
        return false;
    }
    let in_shape = node.inputs.first().and_then(|i| g.shape(i));
    let out_shape = g.shape(out(g, n));
    if let Some(axes) = node.attr_ints("axes") {
        return axes.len() == 1 && (axes[0] == -1 || Some(axes[0] + 1) == rank);
    }
    // opset 18: axes as an input; check through the shapes instead
    match (in_shape, out_shape) {
        (Some(i), Some(o)) => {
            i.len() == o.len() && o.last() == Some(&1) && i[..i.len() - 1] == o[..o.len() - 1] && (i.last() != Some(&1))
        }
        _ => false,
    }
}
