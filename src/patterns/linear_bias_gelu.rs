//! Linear + Bias + GELU, the transformer FFN's first half: a linear layer with bias, then GELU as the
//! `Gelu` op, the exact Erf form or the tanh approximation (see `forms::gelu`).
//!
//! Accepts `MatMul` with a constant 2-D weight (either operand) followed by an `Add` of a constant bias
//! with one value per output feature (either operand order), or `Gemm` with a constant `B` and a
//! constant `C` (or without `C`, followed by such an `Add`); the weight may be weight-only quantized
//! (see `linear_bias`), the form then ends in `(quantized weight)`.
//! Breaks it: a non-constant weight (e.g. Q@Kᵀ), a bias that is not constant or not per-feature, an
//! intermediate tensor read by a second node or exported as a model output.

use petgraph::graph::NodeIndex;

use super::forms::gelu::gelu_after;
use super::forms::linear::linear;
use super::{out, Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let l = linear(g, n)?;
    let (act, act_form) = gelu_after(g, out(g, *l.nodes.last()?))?;
    let form = format!("{}+GELU({act_form}){}", l.form, l.note());
    let mut nodes = l.nodes;
    nodes.extend(act);
    Instance::new(g, Pattern::LinearBiasGelu, form, nodes)
}
