//! Conv2d + Add + ReLU: the ResNet residual, `Relu(Conv(x) + r)`, which ORT fuses into
//! `com.microsoft.FusedConv` with the residual as its `Z` input (added before the activation).
//!
//! Accepts: a 2-D `Conv` with a constant weight (and optional constant bias), optionally an inference
//! `BatchNormalization` (the ONNX Model Zoo's ResNets; ORT folds it into the conv first), whose output is
//! read only by an `Add` (or a two-input `Sum`) of a non-constant tensor of the same shape, in either
//! operand order, then `Relu`, or ReLU6 written as `Clip` with constant bounds (the form says which).
//! Breaks it: the conv output or the sum read by another node or exported as a model output (fan-out);
//! a constant residual (that is a bias: Conv2d_Bias); a residual that broadcasts (FusedConv's `Z` has
//! the output's shape); a residual that is the conv's own output; a non-constant Clip bound.
//!
//! Its place in the longest-match cover: a 3-node (4 with the BN) match anchored at the convolution, so
//! it outranks Add_ReLU on the same Add and Conv2d_BN on the same conv (2 nodes each), which is what ORT
//! does in the whole model: one FusedConv where the two were two kernels. When both operands of the Add
//! are convolutions (a downsampling block's main branch and shortcut), both match; the cover keeps the
//! first in topological order, and the other conv stays Conv2d_BN (or Conv2d_Bias), with the instance's
//! residual input being that conv's output. Conv2d_BN_ReLU cannot overlap it: its BN feeds a Relu.

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::forms::conv::{batchnorm_after, conv2d};
use super::{guard, is_op, other_input, out, sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Conv2d_Add_ReLU",
    family: Family::Conv,
    operators: &["Conv2d", "Add", "ReLU"],
    forms: &[
        "2-D Conv (constant weight, optional bias), optionally + inference BatchNormalization, + Add (or \
         two-input Sum) of a non-constant residual of the same shape, either operand order, + Relu, or ReLU6 \
         as Clip with constant bounds",
    ],
    rule,
    kernel_cpu: "com.microsoft.FusedConv (BN folded, residual as Z)",
    kernel_cuda: "com.microsoft.FusedConv (BN folded, residual as Z)",
    rewrite: Rewrite::Conv,
    synth: Synth { grid: sweep::conv, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let mut roles = vec![(Role::Conv, n)];
    let mut last = n;
    if let Some(bn) = batchnorm_after(g, n) {
        roles.push((Role::BatchNorm, bn));
        last = bn;
    }
    let y = out(g, last);
    let add = g.sole_consumer(last)?;
    let op = if is_op(g, add, "Add") {
        "Add"
    } else if is_op(g, add, "Sum") {
        "Sum"
    } else {
        return None;
    };
    let residual = other_input(g, add, y)?;
    guard!(!g.is_constant(residual));
    // Z must have Y's shape: no broadcasting
    guard!(matches!((g.shape(y), g.shape(residual)), (Some(a), Some(b)) if a == b));
    let (relu, act) = relu_after(g, add)?;
    roles.extend([(Role::Residual, add), (Role::Activation, relu)]);
    let bn = if last != n { "BatchNormalization+" } else { "" };
    Instance::new(g, Pattern::ConvAddRelu, format!("Conv+{bn}{op}+{act}"), roles)
}

fn flops(s: &Size) -> Result<f64> {
    sweep::conv_flops(s, 2.0)
}

/// The synthetic model: a 3×3 `Conv` C→C (stride 1, pad 1) with its own bias, `Add` of a residual input
/// of the same shape, `Relu`.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let (c, h) = (s.get("C")?, s.get("H")?);
    let x = m.input("x", &[1, c, h, h]);
    let r = m.input("residual", &[1, c, h, h]);
    let y = m.conv("conv", &x, c, true);
    let y = m.op("add", "Add", &[&y, &r], vec![]);
    m.op("relu", "Relu", &[&y], vec![]);
    Ok(vec![1, c, h, h])
}
