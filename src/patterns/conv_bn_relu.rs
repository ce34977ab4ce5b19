//! Conv2d + BatchNorm + ReLU: the ResNet block, `Conv` → `BatchNormalization` → `Relu`.
//! Breaks it: a non-constant weight or BN statistic, a 1-D or 3-D convolution, an intermediate tensor
//! read by a second node or exported as a model output, a BN in training mode (several outputs).

use petgraph::graph::NodeIndex;

use super::forms::conv::{batchnorm_after, conv2d};
use super::{next_op, Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let bn = batchnorm_after(g, n)?;
    let relu = next_op(g, bn, "Relu")?;
    Instance::new(g, Pattern::ConvBnRelu, "Conv+BatchNormalization+Relu", vec![n, bn, relu])
}

