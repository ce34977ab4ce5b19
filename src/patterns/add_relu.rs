//! Add + ReLU, the residual connection.
//!
//! Accepts: `Add`, or `Sum` of two or more tensors, whose inputs are all non-constant (a constant
//! operand makes it a bias, which the conv and linear patterns own), followed by `Relu`, or ReLU6 written
//! as `Clip` with constant bounds (the form says which).
//! Breaks it: the sum read by another node or exported as a model output; a constant operand; a
//! non-constant Clip bound.

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::{guard, is_op, sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Add_ReLU",
    family: Family::Elementwise,
    operators: &["Add", "ReLU"],
    forms: &[
        "Add, or Sum of two or more tensors, all non-constant, + Relu or ReLU6 as Clip (the residual)",
    ],
    rule,
    kernel_cpu: "none",
    kernel_cuda: "none",
    rewrite: Rewrite::Elementwise,
    synth: Synth { grid: sweep::elementwise, flops, build },
};

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
    Instance::new(g, Pattern::AddRelu, format!("{op}+{act}"), vec![(Role::Add, n), (Role::Activation, relu)])
}

fn flops(s: &Size) -> Result<f64> {
    Ok(2.0 * sweep::elements(s)?)
}

/// The synthetic model: `Relu(a + b)` on x `[1,64,H,W]`.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let dims = [1, s.get("C")?, s.get("H")?, s.get("W")?];
    let x = m.input("x", &dims);
    let r = m.input("residual", &dims);
    let y = m.op("add", "Add", &[&x, &r], vec![]);
    m.op("relu", "Relu", &[&y], vec![]);
    Ok(dims.to_vec())
}
