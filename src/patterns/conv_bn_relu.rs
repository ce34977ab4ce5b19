//! Conv2d + BatchNorm + ReLU: the ResNet block, `Conv` → `BatchNormalization` → `Relu`, or ReLU6 written
//! as `Clip` with constant bounds (the form says which).
//! Breaks it: a non-constant weight, BN statistic or Clip bound, a 1-D or 3-D convolution, an
//! intermediate tensor read by a second node or exported as a model output, a BN in training mode
//! (several outputs).

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::forms::conv::{batchnorm_after, conv2d};
use super::{sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Conv2d_BN_ReLU",
    family: Family::Conv,
    operators: &["Conv2d", "BatchNorm", "ReLU"],
    forms: &[
        "Conv + BatchNormalization + Relu, or ReLU6 as Clip with constant bounds",
    ],
    rule,
    kernel_cpu: "com.microsoft.FusedConv (BN folded)",
    kernel_cuda: "com.microsoft.FusedConv (BN folded)",
    rewrite: Rewrite::Conv,
    synth: Synth { grid: sweep::conv, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let bn = batchnorm_after(g, n)?;
    let (relu, act) = relu_after(g, bn)?;
    Instance::new(g, Pattern::ConvBnRelu, format!("Conv+BatchNormalization+{act}"), vec![(Role::Conv, n), (Role::BatchNorm, bn), (Role::Activation, relu)])
}

fn flops(s: &Size) -> Result<f64> {
    sweep::conv_flops(s, 2.0)
}

/// The synthetic model: A 3×3 `Conv` C→C (stride 1, pad 1, no bias), `BatchNormalization`, `Relu`.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (c, h) = (s.get("C")?, s.get("H")?);
    let x = m.input("x", &[1, c, h, h]);
    let y = m.conv("conv", &x, c, false);
    let y = m.batchnorm("bn", &y, c);
    m.op("relu", "Relu", &[&y], vec![]);
    Ok(vec![1, c, h, h])
}
