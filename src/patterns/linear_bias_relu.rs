//! Linear + Bias + ReLU: a linear layer with bias, then `Relu`, or ReLU6 written as `Clip` with constant
//! bounds (the form says which).
//!
//! Accepts `MatMul` with a constant 2-D weight (either operand) followed by an `Add` of a constant bias
//! with one value per output feature (either operand order), or `Gemm` with a constant `B` and a
//! constant `C` (or without `C`, followed by such an `Add`); the weight may be weight-only quantized
//! (see `linear_bias`), the form then ends in `(quantized weight)`.
//! Breaks it: a non-constant weight (e.g. Q@Kᵀ), a bias that is not constant or not per-feature, a
//! non-constant Clip bound, an intermediate tensor read by a second node or exported as a model output.

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::forms::linear::linear;
use super::{sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Linear_Bias_ReLU",
    family: Family::Linear,
    operators: &["Linear", "Bias", "ReLU"],
    forms: &[
        "Linear+Bias (any of its forms) + Relu, or ReLU6 as Clip with constant bounds",
    ],
    rule,
    kernel_cpu: "com.microsoft.FusedGemm",
    kernel_cuda: "none",
    rewrite: Rewrite::Linear,
    synth: Synth { grid: sweep::linear, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let l = linear(g, n)?;
    let (relu, act) = relu_after(g, l.nodes.last()?.1)?;
    let form = format!("{}+{act}{}", l.form, l.note());
    let mut nodes = l.nodes;
    nodes.push((Role::Activation, relu));
    Instance::new(g, Pattern::LinearBiasRelu, form, nodes)
}

fn flops(s: &Size) -> Result<f64> {
    sweep::linear_flops(s, 2.0)
}

/// The synthetic model: Linear_Bias then `Relu`.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (rows, k, n) = (s.get("M")?, s.get("K")?, s.get("N")?);
    let x = m.input("x", &[rows, k]);
    let y = m.linear("fc", &x, k, n);
    m.op("relu", "Relu", &[&y], vec![]);
    Ok(vec![rows, n])
}
