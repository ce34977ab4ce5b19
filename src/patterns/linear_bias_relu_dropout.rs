//! Linear + Bias + ReLU + Dropout: Linear+Bias+ReLU (any of its forms, ReLU6 as `Clip` included) followed
//! by a `Dropout` of an inference graph, a no-op that ORT's optimizer removes; the form says so, e.g.
//! `Gemm+Relu+Dropout (no-op in inference)`.
//!
//! Accepts a `Dropout` with a constant ratio (or none), no `training_mode` input, and its mask output
//! absent or unread.
//! Breaks it: the mask read or exported, a `training_mode` input (it may be true; fuseval does not read
//! its value), a non-constant ratio, and whatever breaks Linear+Bias+ReLU.

use petgraph::graph::NodeIndex;

use super::forms::activation::{dropout_after, relu_after};
use super::forms::linear::linear;
use super::{Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let l = linear(g, n)?;
    let (relu, act) = relu_after(g, *l.nodes.last()?)?;
    let drop = dropout_after(g, relu)?;
    let form = format!("{}+{act}+Dropout (no-op in inference){}", l.form, l.note());
    let mut nodes = l.nodes;
    nodes.extend([relu, drop]);
    Instance::new(g, Pattern::LinearBiasReluDropout, form, nodes)
}
