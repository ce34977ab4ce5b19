//! Mul + Add + ReLU, the fused multiply-add: `Mul` of a tensor by a constant, then `Add` of a constant,
//! then `Relu` (or ReLU6 as `Clip` with constant bounds; the form says which). This is, e.g., a
//! BatchNorm written out as a scale and a shift.
//!
//! Accepts either operand order in the `Mul` and the `Add`, and constants that are scalars or
//! per-channel (any constant that broadcasts without changing the tensor's shape).
//! Breaks it: a non-constant scale or shift (that is a product or a residual), a constant that widens
//! the tensor by broadcasting, an intermediate read by a second node or exported as a model output.

use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::{data_and_const, guard, is_op, next_op, other_input, out, Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    guard!(is_op(g, n, "Mul"));
    let (x, _) = data_and_const(g, n)?;
    guard!(same_shape(g, x, out(g, n)));
    let add = next_op(g, n, "Add")?;
    guard!(g.is_constant(other_input(g, add, out(g, n))?));
    guard!(same_shape(g, x, out(g, add)));
    let (relu, act) = relu_after(g, add)?;
    Instance::new(g, Pattern::MulAddRelu, format!("Mul+Add+{act}"), vec![n, add, relu])
}

/// Both shapes known and equal: the constant did not widen the tensor.
fn same_shape(g: &ModelGraph, a: &str, b: &str) -> bool {
    matches!((g.shape(a), g.shape(b)), (Some(x), Some(y)) if x == y)
}
