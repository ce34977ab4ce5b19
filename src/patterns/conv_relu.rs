//! Conv2d + ReLU: a 2-D `Conv`, with or without its own bias, followed by `Relu`, or by ReLU6 written as
//! `Clip` with constant bounds (attributes before opset 11, inputs from 11 on); the form says which.
//! Breaks it: a non-constant weight, bias or Clip bound, a 1-D or 3-D convolution, the Conv's output read
//! by a second node or exported as a model output.

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::forms::conv::conv2d;
use super::{sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Conv2d_ReLU",
    family: Family::Conv,
    operators: &["Conv2d", "ReLU"],
    forms: &[
        "2-D Conv, with or without its own bias, + Relu, or ReLU6 as Clip with constant bounds",
    ],
    rule,
    kernel_cpu: "com.microsoft.FusedConv",
    kernel_cuda: "com.microsoft.FusedConv",
    rewrite: Rewrite::Conv,
    synth: Synth { grid: sweep::conv, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let (relu, act) = relu_after(g, n)?;
    Instance::new(g, Pattern::ConvRelu, format!("Conv+{act}"), vec![(Role::Conv, n), (Role::Activation, relu)])
}

fn flops(s: &Size) -> Result<f64> {
    sweep::conv_flops(s, 2.0)
}

/// The synthetic model: A 3×3 `Conv` C→C with its own bias, then `Relu`.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (c, h) = (s.get("C")?, s.get("H")?);
    let x = m.input("x", &[1, c, h, h]);
    let y = m.conv("conv", &x, c, true);
    m.op("relu", "Relu", &[&y], vec![]);
    Ok(vec![1, c, h, h])
}
