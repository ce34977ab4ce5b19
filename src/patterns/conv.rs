//! Convolution family: Conv2d+Bias, Conv2d+BN, Conv2d+BN+ReLU, Conv2d+ReLU, Conv2d+BN+ReLU+MaxPool.
//!
//! Accepts: a 2-D `Conv` (4-D weight, constant) with or without its own bias; a bias as an `Add` of a
//! constant with one value per output channel (`[C,1,1]` or `[1,C,1,1]`), in either operand order;
//! an inference `BatchNormalization` (one output) whose scale, bias, mean and variance are constants;
//! `Relu`; `MaxPool` with a single output.
//! Breaks it: a non-constant weight or BN statistic, a 1-D or 3-D convolution, an intermediate tensor
//! read by a second node or exported as a model output, a BN in training mode (several outputs).

use petgraph::graph::NodeIndex;

use super::{guard, is_op, next_op, other_input, out, Instance, Pattern};
use crate::graph::ModelGraph;

/// A 2-D convolution with a constant weight.
fn conv2d(g: &ModelGraph, n: NodeIndex) -> Option<()> {
    guard!(is_op(g, n, "Conv"));
    let node = g.node(n);
    let w = node.inputs.get(1)?;
    guard!(g.is_constant(w));
    guard!(g.shape(w).is_none_or(|s| s.len() == 4));
    if let Some(b) = node.inputs.get(2).filter(|b| !b.is_empty()) {
        guard!(g.is_constant(b));
    }
    Some(())
}

/// The BatchNormalization after `n`, in inference form with constant statistics.
fn batchnorm_after(g: &ModelGraph, n: NodeIndex) -> Option<NodeIndex> {
    let bn = next_op(g, n, "BatchNormalization")?;
    let node = g.node(bn);
    guard!(node.outputs.iter().filter(|o| !o.is_empty()).count() == 1);
    guard!(node.inputs.first().map(|s| s.as_str()) == Some(out(g, n)));
    guard!(node.inputs.len() == 5 && node.inputs[1..].iter().all(|i| g.is_constant(i)));
    Some(bn)
}

/// A per-channel bias `Add` after the convolution `n`.
fn channel_bias_after(g: &ModelGraph, n: NodeIndex) -> Option<NodeIndex> {
    let add = next_op(g, n, "Add")?;
    let bias = other_input(g, add, out(g, n))?;
    guard!(g.is_constant(bias));
    let channels = g.shape(g.node(n).inputs.get(1)?)?.first().copied()?;
    let shape = g.shape(bias)?;
    let numel: usize = shape.iter().product();
    guard!(numel == channels);
    // the channel axis must line up with NCHW's axis 1
    guard!(shape.len() >= 3 && shape[shape.len() - 3] == channels || shape.len() == 1 && channels == 1);
    Some(add)
}

pub fn conv_bias(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let add = channel_bias_after(g, n)?;
    Instance::new(g, Pattern::ConvBias, "Conv+Add", vec![n, add])
}

pub fn conv_bn(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let bn = batchnorm_after(g, n)?;
    Instance::new(g, Pattern::ConvBn, "Conv+BatchNormalization", vec![n, bn])
}

pub fn conv_bn_relu(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let bn = batchnorm_after(g, n)?;
    let relu = next_op(g, bn, "Relu")?;
    Instance::new(g, Pattern::ConvBnRelu, "Conv+BatchNormalization+Relu", vec![n, bn, relu])
}

pub fn conv_relu(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let relu = next_op(g, n, "Relu")?;
    Instance::new(g, Pattern::ConvRelu, "Conv+Relu", vec![n, relu])
}

pub fn conv_bn_relu_maxpool(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let bn = batchnorm_after(g, n)?;
    let relu = next_op(g, bn, "Relu")?;
    let pool = next_op(g, relu, "MaxPool")?;
    guard!(g.node(pool).outputs.iter().filter(|o| !o.is_empty()).count() == 1);
    Instance::new(g, Pattern::ConvBnReluMaxPool, "Conv+BatchNormalization+Relu+MaxPool", vec![n, bn, relu, pool])
}
