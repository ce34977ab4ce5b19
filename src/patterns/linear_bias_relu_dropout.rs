//! Linear + Bias + ReLU + Dropout: Linear+Bias+ReLU (any of its forms, ReLU6 as `Clip` included) followed
//! by a `Dropout` of an inference graph, a no-op that ORT's optimizer removes; the form says so, e.g.
//! `Gemm+Relu+Dropout (no-op in inference)`.
//!
//! Accepts a `Dropout` with a constant ratio (or none), no `training_mode` input, and its mask output
//! absent or unread.
//! Breaks it: the mask read or exported, a `training_mode` input (it may be true; fuseval does not read
//! its value), a non-constant ratio, and whatever breaks Linear+Bias+ReLU.

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::activation::{dropout_after, relu_after};
use super::forms::linear::linear;
use super::{sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Linear_Bias_ReLU_Dropout",
    family: Family::Linear,
    operators: &["Linear", "Bias", "ReLU", "Dropout"],
    forms: &[
        "Linear+Bias+ReLU + inference Dropout (constant or no ratio, mask unread): a no-op ORT removes",
    ],
    rule,
    kernel_cpu: "com.microsoft.FusedGemm (Dropout dropped)",
    kernel_cuda: "none",
    rewrite: Rewrite::Linear,
    synth: Synth { grid: sweep::linear, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let l = linear(g, n)?;
    let (relu, act) = relu_after(g, l.nodes.last()?.1)?;
    let drop = dropout_after(g, relu)?;
    let form = format!("{}+{act}+Dropout (no-op in inference){}", l.form, l.note());
    let mut nodes = l.nodes;
    nodes.extend([(Role::Activation, relu), (Role::Dropout, drop)]);
    Instance::new(g, Pattern::LinearBiasReluDropout, form, nodes)
}

fn flops(s: &Size) -> Result<f64> {
    sweep::linear_flops(s, 3.0)
}

/// The synthetic model: Linear_Bias, `Relu`, then an inference `Dropout` (constant ratio 0.1, no mask output).
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (rows, k, n) = (s.get("M")?, s.get("K")?, s.get("N")?);
    let x = m.input("x", &[rows, k]);
    let y = m.linear("fc", &x, k, n);
    let r = m.op("relu", "Relu", &[&y], vec![]);
    let ratio = m.scalar("dropout.ratio", 0.1);
    m.op("dropout", "Dropout", &[&r, &ratio], vec![]);
    Ok(vec![rows, n])
}
