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

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::activation::{dropout_after, relu_after};
use super::forms::linear::linear;
use super::{guard, is_op, out, sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Linear_Bias_ReLU_Linear_Bias",
    family: Family::Linear,
    operators: &["Linear", "Bias", "ReLU", "Linear", "Bias"],
    forms: &[
        "two Linear+Bias layers with Relu (or ReLU6 as Clip) between, optionally + inference Dropout",
    ],
    rule,
    kernel_cpu: "com.microsoft.FusedGemm + Gemm",
    kernel_cuda: "none",
    rewrite: Rewrite::Linear,
    synth: Synth { grid: sweep::mlp, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let first = linear(g, n)?;
    let (relu, act) = relu_after(g, first.nodes.last()?.1)?;
    let mut nodes = first.nodes.clone();
    nodes.push((Role::Activation, relu));
    let mut act = act.to_string();
    let mut last = relu;
    if let Some(drop) = dropout_after(g, relu) {
        nodes.push((Role::Dropout, drop));
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
    // the second layer's roles
    nodes.extend(second.nodes.into_iter().map(|(r, n)| match r {
        Role::MatMul => (Role::MatMul2, n),
        Role::Bias => (Role::Bias2, n),
        r => (r, n),
    }));
    Instance::new(g, Pattern::Mlp, form, nodes)
}

fn flops(s: &Size) -> Result<f64> {
    let (m, k, n) = (s.get("M")? as f64, s.get("K")? as f64, s.get("N")? as f64);
    Ok(4.0 * m * k * n + 2.0 * m * n + m * k)
}

/// The synthetic model: `Linear(K→N)`, `Relu`, `Linear(N→K)`; the grid uses the transformer FFN's hidden size N = 4K.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (rows, k, n) = (s.get("M")?, s.get("K")?, s.get("N")?);
    let x = m.input("x", &[rows, k]);
    let y = m.linear("fc1", &x, k, n);
    let r = m.op("relu", "Relu", &[&y], vec![]);
    m.linear("fc2", &r, n, k);
    Ok(vec![rows, k])
}
