//! Add + LayerNorm, the transformer residual.
//!
//! Accepts: an `Add` (not of two constants) whose sum is read only by a layer norm over the last axis,
//! either the `LayerNormalization` op or the decomposed form exporters write before opset 17:
//! `ReduceMean → Sub → Pow(2) → ReduceMean → Add(eps) → Sqrt → Div`, then optionally `Mul` by a
//! constant scale and `Add` of a constant shift (operands in either order; axes as attribute or input).
//! Breaks it: the sum or any intermediate read outside, a reduction over another axis, a non-constant
//! eps, scale or shift.

use petgraph::graph::NodeIndex;

use super::forms::layernorm::layernorm_after;
use super::{guard, is_op, out, Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    guard!(is_op(g, n, "Add"));
    let ins: Vec<&str> = g.node(n).real_inputs().collect();
    guard!(ins.len() == 2 && !(g.is_constant(ins[0]) && g.is_constant(ins[1])));
    let x = out(g, n);
    let (mut ln, form) = layernorm_after(g, x)?;
    ln.insert(0, n);
    Instance::new(g, Pattern::AddLayerNorm, form, ln)
}
