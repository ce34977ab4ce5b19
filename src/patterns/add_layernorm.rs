//! Add + LayerNorm, the transformer residual.
//!
//! Accepts: an `Add` (not of two constants) whose sum is read only by a layer norm over the last axis,
//! either the `LayerNormalization` op or the decomposed form exporters write before opset 17:
//! `ReduceMean → Sub → Pow(2) → ReduceMean → Add(eps) → Sqrt → Div`, then optionally `Mul` by a
//! constant scale and `Add` of a constant shift (operands in either order; axes as attribute or input).
//! Breaks it: the sum or any intermediate read outside, a reduction over another axis, a non-constant
//! eps, scale or shift.

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::layernorm::layernorm_after;
use super::{guard, is_op, out, sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};
use crate::onnx::{a_f, a_i};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Add_LayerNorm",
    family: Family::Elementwise,
    operators: &["Add", "LayerNorm"],
    forms: &[
        "Add + LayerNormalization over the last axis (opset 17+)",
        "Add + decomposed ReduceMean → Sub → Pow(2) → ReduceMean → Add(eps) → Sqrt → Div (→ Mul → Add)",
    ],
    rule,
    kernel_cpu: "com.microsoft.SkipLayerNormalization",
    kernel_cuda: "com.microsoft.SkipLayerNormalization",
    rewrite: Rewrite::LayerNorm,
    synth: Synth { grid: sweep::rows, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    guard!(is_op(g, n, "Add"));
    let ins: Vec<&str> = g.node(n).real_inputs().collect();
    guard!(ins.len() == 2 && !(g.is_constant(ins[0]) && g.is_constant(ins[1])));
    let x = out(g, n);
    let (ln, form) = layernorm_after(g, x)?;
    let mut roles = vec![(Role::Add, n)];
    roles.extend(ln.into_iter().map(|l| (Role::LayerNorm, l)));
    Instance::new(g, Pattern::AddLayerNorm, form, roles)
}

fn flops(s: &Size) -> Result<f64> {
    Ok(9.0 * (s.get("rows")? * s.get("D")?) as f64)
}

/// The synthetic model: `Add` of two `[1,rows,768]` inputs then `LayerNormalization` (axis -1, eps 1e-5).
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let dims = [1, s.get("rows")?, s.get("D")?];
    let x = m.input("x", &dims);
    let r = m.input("residual", &dims);
    let gamma = m.uniform("ln.weight", &dims[2..], 0.5, 1.5);
    let beta = m.uniform("ln.bias", &dims[2..], -0.1, 0.1);
    let y = m.op("add", "Add", &[&x, &r], vec![]);
    let attrs = vec![a_i("axis", -1), a_f("epsilon", 1e-5)];
    m.op("layernorm", "LayerNormalization", &[&y, &gamma, &beta], attrs);
    Ok(dims.to_vec())
}
