//! Softmax + @V (attention output).
//!
//! Accepts: a `Softmax` over the last axis, optionally followed by PyTorch sdpa's
//! `IsNaN`/`Where(isnan, 0, probs)` guard, whose probabilities are read only by `MatMul(probs, V)` as its
//! left operand, with V non-constant. Forms: `Softmax+MatMul`, `Softmax+IsNaN/Where+MatMul`.
//! Breaks it: the probabilities read outside (attention weights returned as an output), a Softmax over
//! another axis, a constant V (a linear layer), probabilities as the right operand.

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::attention_head::{pv_after, softmax_roles, softmax_with_guard};
use super::{sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};
use crate::onnx::{a_i};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Softmax_V",
    family: Family::Attention,
    operators: &["Softmax", "@V"],
    forms: &[
        "Softmax over the last axis (optionally + sdpa's IsNaN/Where) + MatMul(probs, V), V non-constant",
    ],
    rule,
    kernel_cpu: "none",
    kernel_cuda: "none",
    rewrite: Rewrite::SoftmaxV,
    synth: Synth { grid: sweep::attention, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let softmax = softmax_with_guard(g, n)?;
    let form = if softmax.len() > 1 { "Softmax+IsNaN/Where+MatMul" } else { "Softmax+MatMul" };
    let (pv, _) = pv_after(g, *softmax.last()?)?;
    let mut roles = softmax_roles(&softmax);
    roles.push((Role::PvMatMul, pv));
    Instance::new(g, Pattern::SoftmaxV, form, roles)
}

fn flops(s: &Size) -> Result<f64> {
    let (s, heads, d) = sweep::attention_dims(s)?;
    let scores = (heads * s * s) as f64;
    Ok(2.0 * scores * d as f64 + 5.0 * scores)
}

/// The synthetic model: `Softmax(scores[1,12,S,S])` then `MatMul` by V.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (s, heads, d) = sweep::attention_dims(s)?;
    let scores = m.input("scores", &[1, heads, s, s]);
    let v = m.input("v", &[1, heads, s, d]);
    let p = m.op("softmax", "Softmax", &[&scores], vec![a_i("axis", -1)]);
    m.op("pv_matmul", "MatMul", &[&p, &v], vec![]);
    Ok(vec![1, heads, s, d])
}
