//! Conv2d + ReLU: a 2-D `Conv`, with or without its own bias, followed by `Relu`.
//! Breaks it: a non-constant weight or BN statistic, a 1-D or 3-D convolution, an intermediate tensor
//! read by a second node or exported as a model output, a BN in training mode (several outputs).

use petgraph::graph::NodeIndex;

use super::forms::conv::conv2d;
use super::{next_op, Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let relu = next_op(g, n, "Relu")?;
    Instance::new(g, Pattern::ConvRelu, "Conv+Relu", vec![n, relu])
}

