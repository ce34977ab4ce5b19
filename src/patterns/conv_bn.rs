//! Conv2d + BatchNorm: a 2-D `Conv` followed by an inference `BatchNormalization` (one output,
//! constant scale, bias, mean and variance).
//! Breaks it: a non-constant weight or BN statistic, a 1-D or 3-D convolution, an intermediate tensor
//! read by a second node or exported as a model output, a BN in training mode (several outputs).

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::conv::{batchnorm_after, conv2d};
use super::{sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Conv2d_BN",
    family: Family::Conv,
    operators: &["Conv2d", "BatchNorm"],
    forms: &[
        "2-D Conv + inference BatchNormalization (one output, constant statistics)",
    ],
    rule,
    kernel_cpu: "Conv (BN folded)",
    kernel_cuda: "Conv (BN folded)",
    rewrite: Rewrite::Conv,
    synth: Synth { grid: sweep::conv, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let bn = batchnorm_after(g, n)?;
    Instance::new(g, Pattern::ConvBn, "Conv+BatchNormalization", vec![(Role::Conv, n), (Role::BatchNorm, bn)])
}

fn flops(s: &Size) -> Result<f64> {
    sweep::conv_flops(s, 1.0)
}

/// The synthetic model: A 3×3 `Conv` C→C (stride 1, pad 1, no bias) then `BatchNormalization`.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (c, h) = (s.get("C")?, s.get("H")?);
    let x = m.input("x", &[1, c, h, h]);
    let y = m.conv("conv", &x, c, false);
    m.batchnorm("bn", &y, c);
    Ok(vec![1, c, h, h])
}
