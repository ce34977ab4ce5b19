//! Mul + Add + ReLU, the fused multiply-add: `Mul` of a tensor by a constant, then `Add` of a constant,
//! then `Relu` (or ReLU6 as `Clip` with constant bounds; the form says which). This is, e.g., a
//! BatchNorm written out as a scale and a shift.
//!
//! Accepts either operand order in the `Mul` and the `Add`, and constants that are scalars or
//! per-channel (any constant that broadcasts without changing the tensor's shape).
//! Breaks it: a non-constant scale or shift (that is a product or a residual), a constant that widens
//! the tensor by broadcasting, an intermediate read by a second node or exported as a model output.

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::{data_and_const, guard, is_op, next_op, other_input, out, sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Mul_Add_ReLU",
    family: Family::Elementwise,
    operators: &["Mul", "Add", "ReLU"],
    forms: &[
        "Mul by a constant + Add of a constant (scalar or per-channel) + Relu or ReLU6 as Clip (a BN as Mul and Add)",
    ],
    rule,
    kernel_cpu: "none",
    kernel_cuda: "none",
    rewrite: Rewrite::Elementwise,
    synth: Synth { grid: sweep::elementwise, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    guard!(is_op(g, n, "Mul"));
    let (x, _) = data_and_const(g, n)?;
    guard!(same_shape(g, x, out(g, n)));
    let add = next_op(g, n, "Add")?;
    guard!(g.is_constant(other_input(g, add, out(g, n))?));
    guard!(same_shape(g, x, out(g, add)));
    let (relu, act) = relu_after(g, add)?;
    Instance::new(g, Pattern::MulAddRelu, format!("Mul+Add+{act}"), vec![(Role::Scale, n), (Role::Shift, add), (Role::Activation, relu)])
}

/// Both shapes known and equal: the constant did not widen the tensor.
fn same_shape(g: &ModelGraph, a: &str, b: &str) -> bool {
    matches!((g.shape(a), g.shape(b)), (Some(x), Some(y)) if x == y)
}

fn flops(s: &Size) -> Result<f64> {
    Ok(3.0 * sweep::elements(s)?)
}

/// The synthetic model: `Relu(x·scale[64,1,1] + shift[64,1,1])` on x `[1,64,H,W]`.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let dims = [1, s.get("C")?, s.get("H")?, s.get("W")?];
    let x = m.input("x", &dims);
    let c = dims[1];
    let scale = m.uniform("scale", &[c, 1, 1], 0.5, 1.5);
    let shift = m.uniform("shift", &[c, 1, 1], -0.5, 0.5);
    let y = m.op("mul", "Mul", &[&x, &scale], vec![]);
    let y = m.op("add", "Add", &[&y, &shift], vec![]);
    m.op("relu", "Relu", &[&y], vec![]);
    Ok(dims.to_vec())
}
