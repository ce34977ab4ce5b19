//! Linear + Bias + ReLU: a linear layer with bias, then `Relu`, or ReLU6 written as `Clip` with constant
//! bounds (the form says which).
//!
//! Accepts `MatMul` with a constant 2-D weight (either operand) followed by an `Add` of a constant bias
//! with one value per output feature (either operand order), or `Gemm` with a constant `B` and a
//! constant `C` (or without `C`, followed by such an `Add`); the weight may be weight-only quantized
//! (see `linear_bias`), the form then ends in `(quantized weight)`.
//! Breaks it: a non-constant weight (e.g. Q@Kᵀ), a bias that is not constant or not per-feature, a
//! non-constant Clip bound, an intermediate tensor read by a second node or exported as a model output.

use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::forms::linear::linear;
use super::{Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let l = linear(g, n)?;
    let (relu, act) = relu_after(g, *l.nodes.last()?)?;
    let form = format!("{}+{act}{}", l.form, l.note());
    let mut nodes = l.nodes;
    nodes.push(relu);
    Instance::new(g, Pattern::LinearBiasRelu, form, nodes)
}
