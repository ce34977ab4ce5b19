//! Linear + Bias.
//!
//! Accepts `MatMul` with a constant 2-D weight (either operand) followed by an `Add` of a constant bias
//! with one value per output feature (either operand order), or `Gemm` with a constant `B` and a
//! constant `C` (or without `C`, followed by such an `Add`). The weight may be computed from constants:
//! weight-only quantized (`DequantizeLinear` of an integer constant, or `Cast` → `Mul` by a scale), then
//! the form ends in `(quantized weight)`; the dequantization stays outside the pattern, as a constant.
//! Breaks it: a non-constant weight (e.g. Q@Kᵀ), a bias that is not constant or not per-feature, an
//! intermediate tensor read by a second node or exported as a model output.

use petgraph::graph::NodeIndex;

use super::forms::linear::linear;
use super::{Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let l = linear(g, n)?;
    Instance::new(g, Pattern::LinearBias, format!("{}{}", l.form, l.note()), l.nodes)
}
