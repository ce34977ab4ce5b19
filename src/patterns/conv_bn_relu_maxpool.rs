//! Conv2d + BatchNorm + ReLU + MaxPool (VGG style, and the ResNet stem): `Conv` → `BatchNormalization`
//! → `Relu` (or ReLU6 as `Clip` with constant bounds) → `MaxPool` with a single output.
//! Breaks it: a non-constant weight, BN statistic or Clip bound, a 1-D or 3-D convolution, an
//! intermediate tensor read by a second node or exported as a model output, a BN in training mode
//! (several outputs), a MaxPool that also writes its indices.

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::forms::conv::{batchnorm_after, conv2d};
use super::{guard, next_op, sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};
use crate::onnx::{a_ints};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Conv2d_BN_ReLU_MaxPool",
    family: Family::Conv,
    operators: &["Conv2d", "BatchNorm", "ReLU", "MaxPool"],
    forms: &[
        "Conv + BatchNormalization + Relu (or ReLU6 as Clip) + MaxPool with a single output (VGG, ResNet stem)",
    ],
    rule,
    kernel_cpu: "com.microsoft.FusedConv (BN folded) + MaxPool",
    kernel_cuda: "com.microsoft.FusedConv (BN folded) + MaxPool",
    rewrite: Rewrite::Conv,
    synth: Synth { grid: sweep::conv, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let bn = batchnorm_after(g, n)?;
    let (relu, act) = relu_after(g, bn)?;
    let pool = next_op(g, relu, "MaxPool")?;
    guard!(g.node(pool).outputs.iter().filter(|o| !o.is_empty()).count() == 1);
    let form = format!("Conv+BatchNormalization+{act}+MaxPool");
    Instance::new(g, Pattern::ConvBnReluMaxPool, form, vec![(Role::Conv, n), (Role::BatchNorm, bn), (Role::Activation, relu), (Role::Pool, pool)])
}

fn flops(s: &Size) -> Result<f64> {
    sweep::conv_flops(s, 2.0 + 9.0 / 4.0)
}

/// The synthetic model: A 3×3 `Conv` C→C, `BatchNormalization`, `Relu`, then `MaxPool` 3×3 stride 2 pad 1 (ResNet's stem pool).
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (c, h) = (s.get("C")?, s.get("H")?);
    let x = m.input("x", &[1, c, h, h]);
    let y = m.conv("conv", &x, c, false);
    let y = m.batchnorm("bn", &y, c);
    let y = m.op("relu", "Relu", &[&y], vec![]);
    let attrs = vec![a_ints("kernel_shape", &[3, 3]), a_ints("pads", &[1, 1, 1, 1]), a_ints("strides", &[2, 2])];
    m.op("maxpool", "MaxPool", &[&y], attrs);
    let p = (h - 1) / 2 + 1;
    Ok(vec![1, c, p, p])
}
