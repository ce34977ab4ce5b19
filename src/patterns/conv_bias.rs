//! Conv2d + Bias: a 2-D `Conv` (constant weight) followed by an `Add` of a constant with one value per
//! output channel (`[C,1,1]` or `[1,C,1,1]`), in either operand order.
//! Breaks it: a non-constant weight or BN statistic, a 1-D or 3-D convolution, an intermediate tensor
//! read by a second node or exported as a model output, a BN in training mode (several outputs).

use petgraph::graph::NodeIndex;

use super::forms::conv::{channel_bias_after, conv2d};
use super::{Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let add = channel_bias_after(g, n)?;
    Instance::new(g, Pattern::ConvBias, "Conv+Add", vec![n, add])
}
