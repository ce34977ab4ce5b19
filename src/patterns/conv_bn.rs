//! Conv2d + BatchNorm: a 2-D `Conv` followed by an inference `BatchNormalization` (one output,
//! constant scale, bias, mean and variance).
//! Breaks it: a non-constant weight or BN statistic, a 1-D or 3-D convolution, an intermediate tensor
//! read by a second node or exported as a model output, a BN in training mode (several outputs).

use petgraph::graph::NodeIndex;

use super::forms::conv::{batchnorm_after, conv2d};
use super::{Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let bn = batchnorm_after(g, n)?;
    Instance::new(g, Pattern::ConvBn, "Conv+BatchNormalization", vec![n, bn])
}
