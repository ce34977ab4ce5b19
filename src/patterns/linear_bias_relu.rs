//! Linear + Bias + ReLU: a linear layer with bias, then `Relu`.
//!
//! Accepts `MatMul` with a constant 2-D weight (either operand) followed by an `Add` of a constant bias
//! with one value per output feature (either operand order), or `Gemm` with a constant `B` and a
//! constant `C` (or without `C`, followed by such an `Add`).
//! Breaks it: a non-constant weight (e.g. Q@Kᵀ), a bias that is not constant or not per-feature, an
//! intermediate tensor read by a second node or exported as a model output.

use petgraph::graph::NodeIndex;

use super::forms::linear::linear_with_bias;
use super::{next_op, Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let (mut nodes, form) = linear_with_bias(g, n)?;
    nodes.push(next_op(g, *nodes.last()?, "Relu")?);
    Instance::new(g, Pattern::LinearBiasRelu, format!("{form}+Relu"), nodes)
}

