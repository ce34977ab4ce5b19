//! Add + ReLU, the residual connection.
//!
//! Accepts: `Add`, or `Sum` of two or more tensors, whose inputs are all non-constant (a constant
//! operand makes it a bias, which the conv and linear patterns own), followed by `Relu`, or ReLU6 written
//! as `Clip` with constant bounds (the form says which).
//! Breaks it: the sum read by another node or exported as a model output; a constant operand; a
//! non-constant Clip bound.

use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::{guard, is_op, Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let op = if is_op(g, n, "Add") {
        "Add"
    } else if is_op(g, n, "Sum") {
        "Sum"
    } else {
        return None;
    };
    let ins: Vec<&str> = g.node(n).real_inputs().collect();
    guard!(ins.len() >= 2 && ins.iter().all(|i| !g.is_constant(i)));
    let (relu, act) = relu_after(g, n)?;
    Instance::new(g, Pattern::AddRelu, format!("{op}+{act}"), vec![n, relu])
}
