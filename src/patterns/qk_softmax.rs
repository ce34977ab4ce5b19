//! Q@Kᵀ + Softmax (attention scores).
//!
//! Accepts: `MatMul(Q, Kᵀ)` of two non-constant tensors (the transposes making Kᵀ and splitting the
//! heads are plumbing before the pattern, not part of it); a scale by a constant scalar, as a `Mul`
//! (either operand order) or `Div` (`x / c`) after the MatMul, as `Mul`s of Q and/or Kᵀ before it (PyTorch's
//! sdpa export scales both by √scale), or none (folded into the weights); an optional mask `Add` (the
//! mask non-constant or constant, either operand order); `Softmax` over the last axis; and sdpa's
//! `IsNaN`/`Where(isnan, 0, probs)` guard after it. The pattern's output is the Softmax, or the `Where`.
//! The form says which: e.g. `scale Mul after, mask Add` (transformers' eager attention) or
//! `scale Mul before, mask Add, IsNaN/Where` (sdpa).
//! Breaks it: a constant operand (a linear layer, not attention), the scores read outside (a fan-out
//! before the Softmax), a Softmax over another axis, a non-scalar or non-constant scale.

use petgraph::graph::NodeIndex;

use super::attention_head::{first, qk_candidate, scores_at};
use super::{guard, Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let s = scores_at(g, qk_candidate(g, n)?)?;
    guard!(first(g, &s.nodes) == n);
    Instance::new(g, Pattern::QkSoftmax, s.form, s.nodes)
}
