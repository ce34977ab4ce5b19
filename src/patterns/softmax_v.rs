//! Softmax + @V (attention output).
//!
//! Accepts: a `Softmax` over the last axis, optionally followed by PyTorch sdpa's
//! `IsNaN`/`Where(isnan, 0, probs)` guard, whose probabilities are read only by `MatMul(probs, V)` as its
//! left operand, with V non-constant. Forms: `Softmax+MatMul`, `Softmax+IsNaN/Where+MatMul`.
//! Breaks it: the probabilities read outside (attention weights returned as an output), a Softmax over
//! another axis, a constant V (a linear layer), probabilities as the right operand.

use petgraph::graph::NodeIndex;

use super::attention_head::{pv_after, softmax_with_guard};
use super::{Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let mut nodes = softmax_with_guard(g, n)?;
    let form = if nodes.len() > 1 { "Softmax+IsNaN/Where+MatMul" } else { "Softmax+MatMul" };
    let (pv, _) = pv_after(g, *nodes.last()?)?;
    nodes.push(pv);
    Instance::new(g, Pattern::SoftmaxV, form, nodes)
}
