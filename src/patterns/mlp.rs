//! Linear + Bias + ReLU + Linear + Bias, the 2-layer MLP: two linear layers with a `Relu` between, the
//! second reading the ReLU as its activation.
//!
//! Accepts `MatMul` with a constant 2-D weight (either operand) followed by an `Add` of a constant bias
//! with one value per output feature (either operand order), or `Gemm` with a constant `B` and a
//! constant `C` (or without `C`, followed by such an `Add`).
//! Breaks it: a non-constant weight (e.g. Q@Kᵀ), a bias that is not constant or not per-feature, an
//! intermediate tensor read by a second node or exported as a model output.

use petgraph::graph::NodeIndex;

use super::forms::linear::linear_with_bias;
use super::{guard, is_op, next_op, out, Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let (mut nodes, form1) = linear_with_bias(g, n)?;
    let relu = next_op(g, *nodes.last()?, "Relu")?;
    nodes.push(relu);
    let second = g.sole_consumer(relu)?;
    let (more, form2) = linear_with_bias(g, second)?;
    // the second layer must read the ReLU as its activation, not as its weight
    guard!(g.node(second).inputs.first().map(|s| s.as_str()) == Some(out(g, relu)) || is_op(g, second, "MatMul"));
    nodes.extend(more);
    Instance::new(g, Pattern::Mlp, format!("{form1}+Relu+{form2}"), nodes)
}
