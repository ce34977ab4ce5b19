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

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::attention_head::{first, qk_candidate, scores_at};
use super::{guard, sweep, Descriptor, Family, Instance, Pattern, Rewrite, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "QK_Softmax",
    family: Family::Attention,
    operators: &["Q@K.T", "Softmax"],
    forms: &[
        "MatMul(Q, Kᵀ) of non-constant tensors + Softmax over the last axis",
        "scale by a constant scalar: Mul or Div after the MatMul, Mul of Q and/or Kᵀ before it (sdpa), or folded in",
        "optional mask Add; sdpa's IsNaN/Where after the Softmax",
    ],
    rule,
    kernel_cpu: "com.microsoft.FusedMatMul + Add + Softmax (scale folded)",
    kernel_cuda: "com.microsoft.FusedMatMul + Add + Softmax (scale folded)",
    rewrite: Rewrite::QkSoftmax,
    synth: Synth { grid: sweep::attention, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let s = scores_at(g, qk_candidate(g, n)?)?;
    guard!(first(g, &s.nodes()) == n);
    Instance::new(g, Pattern::QkSoftmax, s.form.clone(), s.roles)
}

fn flops(s: &Size) -> Result<f64> {
    let (s, heads, d) = sweep::attention_dims(s)?;
    let scores = (heads * s * s) as f64;
    Ok(2.0 * scores * d as f64 + 7.0 * scores)
}

/// The synthetic model: `MatMul(Q[1,12,S,64], Kᵀ[1,12,64,S])`, `Div` by √64, `Add` of a `[1,1,1,S]` mask, `Softmax` (axis -1), as BERT's eager attention; Kᵀ enters already transposed.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (s, heads, d) = sweep::attention_dims(s)?;
    let q = m.input("q", &[1, heads, s, d]);
    let kt = m.input("k_t", &[1, heads, d, s]);
    let mask = m.input("mask", &[1, 1, 1, s]);
    m.scores(&q, &kt, &mask, d);
    Ok(vec![1, heads, s, s])
}
