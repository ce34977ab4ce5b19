//! Conv2d + Bias: a 2-D `Conv` (constant weight) followed by an `Add` of a constant with one value per
//! output channel (`[C,1,1]` or `[1,C,1,1]`), in either operand order.
//! Breaks it: a non-constant weight or BN statistic, a 1-D or 3-D convolution, an intermediate tensor
//! read by a second node or exported as a model output, a BN in training mode (several outputs).

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::conv::{channel_bias_after, conv2d};
use super::{sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Conv2d_Bias",
    family: Family::Conv,
    operators: &["Conv2d", "Bias"],
    forms: &["2-D Conv (constant weight) + Add of a per-channel constant ([C,1,1] or [1,C,1,1]), either order"],
    rule,
    kernel_cpu: "Conv (bias folded)",
    kernel_cuda: "Conv (bias folded)",
    rewrite: Rewrite::Conv,
    synth: Synth { grid: sweep::conv, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let add = channel_bias_after(g, n)?;
    Instance::new(g, Pattern::ConvBias, "Conv+Add", vec![(Role::Conv, n), (Role::ChannelBias, add)])
}

fn flops(s: &Size) -> Result<f64> {
    sweep::conv_flops(s, 1.0)
}

/// The synthetic model: A 3×3 `Conv` C→C (stride 1, pad 1, no bias) then `Add` of a `[1,C,1,1]` bias.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (c, h) = (s.get("C")?, s.get("H")?);
    let x = m.input("x", &[1, c, h, h]);
    let y = m.conv("conv", &x, c, false);
    let b = m.uniform("conv.bias", &[1, c, 1, 1], -0.1, 0.1);
    m.op("bias_add", "Add", &[&y, &b], vec![]);
    Ok(vec![1, c, h, h])
}
