//! Linear + Bias + ReLU + Linear + Bias, the 2-layer MLP: two linear layers with a `Relu` (or ReLU6 as
//! `Clip` with constant bounds) between, optionally followed by an inference `Dropout` (a no-op ORT
//! removes; the form says so), the second layer reading the activation as its input.
//!
//! Accepts `MatMul` with a constant 2-D weight (either operand) followed by an `Add` of a constant bias
//! with one value per output feature (either operand order), or `Gemm` with a constant `B` and a
//! constant `C` (or without `C`, followed by such an `Add`); either weight may be weight-only quantized
//! (see `linear_bias`), the form then ends in `(quantized weight)`.
//! Breaks it: a non-constant weight (e.g. Q@Kᵀ), a bias that is not constant or not per-feature, an
//! intermediate tensor read by a second node or exported as a model output, a Dropout in training mode.

use petgraph::graph::NodeIndex;

use super::forms::activation::{dropout_after, relu_after};
use super::forms::linear::linear;
use super::{guard, is_op, out, Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let first = linear(g, n)?;
    let (relu, act) = relu_after(g, *first.nodes.last()?)?;
    let mut nodes = first.nodes.clone();
    nodes.push(relu);
    let mut act = act.to_string();
    let mut last = relu;
    if let Some(drop) = dropout_after(g, relu) {
        nodes.push(drop);
        act.push_str("+Dropout");
        last = drop;
    }
    let second_node = g.sole_consumer(last)?;
    let second = linear(g, second_node)?;
    // the second layer must read the activation as its input, not as its weight
    let reads_input = g.node(second_node).inputs.first().map(|s| s.as_str()) == Some(out(g, last));
    guard!(reads_input || is_op(g, second_node, "MatMul"));
    let note = if first.quantized || second.quantized { " (quantized weight)" } else { "" };
    let noop = if last != relu { " (Dropout: no-op in inference)" } else { "" };
    let form = format!("{}+{act}+{}{noop}{note}", first.form, second.form);
    nodes.extend(second.nodes);
    Instance::new(g, Pattern::Mlp, form, nodes)
}
