//! Conv2d + BatchNorm + ReLU + MaxPool (VGG style, and the ResNet stem): `Conv` → `BatchNormalization`
//! → `Relu` (or ReLU6 as `Clip` with constant bounds) → `MaxPool` with a single output.
//! Breaks it: a non-constant weight, BN statistic or Clip bound, a 1-D or 3-D convolution, an
//! intermediate tensor read by a second node or exported as a model output, a BN in training mode
//! (several outputs), a MaxPool that also writes its indices.

use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::forms::conv::{batchnorm_after, conv2d};
use super::{guard, next_op, Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let bn = batchnorm_after(g, n)?;
    let (relu, act) = relu_after(g, bn)?;
    let pool = next_op(g, relu, "MaxPool")?;
    guard!(g.node(pool).outputs.iter().filter(|o| !o.is_empty()).count() == 1);
    let form = format!("Conv+BatchNormalization+{act}+MaxPool");
    Instance::new(g, Pattern::ConvBnReluMaxPool, form, vec![n, bn, relu, pool])
}
