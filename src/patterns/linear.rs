//! Linear family: Linear+Bias, Linear+Bias+ReLU, Linear+Bias+GELU, Linear+Bias+ReLU+Linear+Bias.
//!
//! Accepts: `MatMul` with a constant 2-D weight (either operand) followed by an `Add` of a constant bias
//! with one value per output feature (either operand order); `Gemm` with a constant `B` and a constant
//! `C`, or without `C` and followed by such an `Add`. GELU in any form `gelu` knows.
//! Breaks it: a non-constant weight (e.g. Q@Kᵀ), a bias that is not constant or not per-feature, an
//! intermediate tensor read by a second node or exported as a model output.

use petgraph::graph::NodeIndex;

use super::{gelu, guard, is_op, next_op, other_input, out, Instance, Pattern};
use crate::graph::ModelGraph;

/// The linear layer with bias anchored at `n`: its nodes and form.
fn linear_with_bias(g: &ModelGraph, n: NodeIndex) -> Option<(Vec<NodeIndex>, &'static str)> {
    let node = g.node(n);
    if is_op(g, n, "Gemm") {
        guard!(g.is_constant(node.inputs.get(1)?) && !g.is_constant(node.inputs.first()?));
        if let Some(c) = node.inputs.get(2).filter(|c| !c.is_empty()) {
            guard!(g.is_constant(c));
            return Some((vec![n], "Gemm"));
        }
        let add = bias_add_after(g, n)?;
        return Some((vec![n, add], "Gemm+Add"));
    }
    guard!(is_op(g, n, "MatMul"));
    let ins: Vec<&str> = node.real_inputs().collect();
    guard!(ins.len() == 2);
    let weight = match (g.is_constant(ins[0]), g.is_constant(ins[1])) {
        (false, true) => ins[1],
        (true, false) => ins[0],
        _ => return None,
    };
    guard!(g.shape(weight).is_none_or(|s| s.len() == 2));
    let add = bias_add_after(g, n)?;
    Some((vec![n, add], "MatMul+Add"))
}

/// An `Add` of a constant per-feature bias after `n`.
fn bias_add_after(g: &ModelGraph, n: NodeIndex) -> Option<NodeIndex> {
    let add = next_op(g, n, "Add")?;
    let bias = other_input(g, add, out(g, n))?;
    guard!(g.is_constant(bias));
    let features = *g.shape(out(g, n))?.last()?;
    let numel: usize = g.shape(bias)?.iter().product();
    guard!(numel == features);
    Some(add)
}

pub fn linear_bias(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let (nodes, form) = linear_with_bias(g, n)?;
    Instance::new(g, Pattern::LinearBias, form, nodes)
}

pub fn linear_bias_relu(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let (mut nodes, form) = linear_with_bias(g, n)?;
    nodes.push(next_op(g, *nodes.last()?, "Relu")?);
    Instance::new(g, Pattern::LinearBiasRelu, format!("{form}+Relu"), nodes)
}

pub fn linear_bias_gelu(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let (mut nodes, form) = linear_with_bias(g, n)?;
    let (act, act_form) = gelu::gelu_after(g, out(g, *nodes.last()?))?;
    nodes.extend(act);
    Instance::new(g, Pattern::LinearBiasGelu, format!("{form}+GELU({act_form})"), nodes)
}

pub fn mlp(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
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
