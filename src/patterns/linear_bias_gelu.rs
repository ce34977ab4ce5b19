//! Linear + Bias + GELU, the transformer FFN's first half: a linear layer with bias, then GELU as the
//! `Gelu` op, the exact Erf form or the tanh approximation (see `forms::gelu`).
//!
//! Accepts `MatMul` with a constant 2-D weight (either operand) followed by an `Add` of a constant bias
//! with one value per output feature (either operand order), or `Gemm` with a constant `B` and a
//! constant `C` (or without `C`, followed by such an `Add`); the weight may be weight-only quantized
//! (see `linear_bias`), the form then ends in `(quantized weight)`.
//! Breaks it: a non-constant weight (e.g. Q@Kᵀ), a bias that is not constant or not per-feature, an
//! intermediate tensor read by a second node or exported as a model output.

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::gelu::gelu_after;
use super::forms::linear::linear;
use super::{out, sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Linear_Bias_GELU",
    family: Family::Linear,
    operators: &["Linear", "Bias", "GELU"],
    forms: &[
        "Linear+Bias (any of its forms) + GELU: the Gelu op, the exact Erf form, or the tanh approximation",
    ],
    rule,
    kernel_cpu: "MatMul + com.microsoft.BiasGelu (FastGelu for tanh)",
    kernel_cuda: "MatMul + com.microsoft.BiasGelu (FastGelu for tanh)",
    rewrite: Rewrite::Linear,
    synth: Synth { grid: sweep::linear, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let l = linear(g, n)?;
    let (act, act_form) = gelu_after(g, out(g, l.nodes.last()?.1))?;
    let form = format!("{}+GELU({act_form}){}", l.form, l.note());
    let mut nodes = l.nodes;
    nodes.extend(act.into_iter().map(|n| (Role::Gelu, n)));
    Instance::new(g, Pattern::LinearBiasGelu, form, nodes)
}

fn flops(s: &Size) -> Result<f64> {
    sweep::linear_flops(s, 6.0)
}

/// The synthetic model: Linear_Bias then GELU in the Erf form (`Div` by √2, `Erf`, `Add` 1, `Mul` by x, `Mul` by 0.5).
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (rows, k, n) = (s.get("M")?, s.get("K")?, s.get("N")?);
    let x = m.input("x", &[rows, k]);
    let y = m.linear("fc", &x, k, n);
    m.gelu_erf(&y);
    Ok(vec![rows, n])
}
