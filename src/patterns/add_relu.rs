//! Add + ReLU, the residual connection.
//!
//! Accepts: `Add`, or `Sum` of two or more tensors, whose inputs are all non-constant (a constant
//! operand makes it a bias, which the conv and linear patterns own), followed by `Relu`.
//! Breaks it: the sum read by another node or exported as a model output; a constant operand.

use petgraph::graph::NodeIndex;

use super::{guard, is_op, next_op, Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let form = if is_op(g, n, "Add") {
        "Add+Relu"
    } else if is_op(g, n, "Sum") {
        "Sum+Relu"
    } else {
        return None;
    };
    let ins: Vec<&str> = g.node(n).real_inputs().collect();
    guard!(ins.len() >= 2 && ins.iter().all(|i| !g.is_constant(i)));
    let relu = next_op(g, n, "Relu")?;
    Instance::new(g, Pattern::AddRelu, form, vec![n, relu])
}
