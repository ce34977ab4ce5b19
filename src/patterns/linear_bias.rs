//! Linear + Bias.
//!
//! Accepts `MatMul` with a constant 2-D weight (either operand) followed by an `Add` of a constant bias
//! with one value per output feature (either operand order), or `Gemm` with a constant `B` and a
//! constant `C` (or without `C`, followed by such an `Add`). The weight may be computed from constants:
//! weight-only quantized (`DequantizeLinear` of an integer constant, or `Cast` → `Mul` by a scale), then
//! the form ends in `(quantized weight)`; the dequantization stays outside the pattern, as a constant.
//! Breaks it: a non-constant weight (e.g. Q@Kᵀ), a bias that is not constant or not per-feature, an
//! intermediate tensor read by a second node or exported as a model output.

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::linear::linear;
use super::{sweep, Descriptor, Family, Instance, Pattern, Rewrite, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Linear_Bias",
    family: Family::Linear,
    operators: &["Linear", "Bias"],
    forms: &[
        "MatMul with a constant 2-D weight (either operand) + Add of a per-feature constant bias (either order)",
        "Gemm with constant B and C, or without C + such an Add",
        "weight-only quantized weight (DequantizeLinear, or Cast → Mul by a scale): `(quantized weight)`",
    ],
    rule,
    kernel_cpu: "Gemm",
    kernel_cuda: "Gemm",
    rewrite: Rewrite::Linear,
    synth: Synth { grid: sweep::linear, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let l = linear(g, n)?;
    Instance::new(g, Pattern::LinearBias, format!("{}{}", l.form, l.note()), l.nodes)
}

fn flops(s: &Size) -> Result<f64> {
    sweep::linear_flops(s, 1.0)
}

/// The synthetic model: `MatMul(x[M,K], W[K,N])` then `Add(bias[N], ·)`, as PyTorch writes `nn.Linear`.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (rows, k, n) = (s.get("M")?, s.get("K")?, s.get("N")?);
    let x = m.input("x", &[rows, k]);
    m.linear("fc", &x, k, n);
    Ok(vec![rows, n])
}
