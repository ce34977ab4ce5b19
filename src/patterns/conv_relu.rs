//! Conv2d + ReLU: a 2-D `Conv`, with or without its own bias, followed by `Relu`, or by ReLU6 written as
//! `Clip` with constant bounds (attributes before opset 11, inputs from 11 on); the form says which.
//! Breaks it: a non-constant weight, bias or Clip bound, a 1-D or 3-D convolution, the Conv's output read
//! by a second node or exported as a model output.

use petgraph::graph::NodeIndex;

use super::forms::activation::relu_after;
use super::forms::conv::conv2d;
use super::{Instance, Pattern};
use crate::graph::ModelGraph;

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    conv2d(g, n)?;
    let (relu, act) = relu_after(g, n)?;
    Instance::new(g, Pattern::ConvRelu, format!("Conv+{act}"), vec![n, relu])
}
