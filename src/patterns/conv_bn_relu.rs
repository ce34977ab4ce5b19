//! Conv2d + BatchNorm + ReLU: the ResNet block, `Conv` → `BatchNormalization` → `Relu`, or ReLU6 written
//! as `Clip` with constant bounds (the form says which).
//! Breaks it: a non-constant weight, BN statistic or Clip bound, a 1-D or 3-D convolution, an
//! intermediate tensor read by a second node or exported as a model output, a BN in training mode
//! (several outputs).

use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::forms::conv::{batchnorm_after, conv2d};
use super::{Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let bn = batchnorm_after(g, n)?;
    let (relu, act) = relu_after(g, bn)?;
    Instance::new(g, Pattern::ConvBnRelu, format!("Conv+BatchNormalization+{act}"), vec![n, bn, relu])
}
