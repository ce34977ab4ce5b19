//! Convolution building blocks shared by the conv patterns: a 2-D `Conv` with a constant weight, the
//! inference `BatchNormalization` after it, and a per-channel bias `Add`.

use petgraph::graph::NodeIndex;

use crate::graph::ModelGraph;
use crate::patterns::{guard, is_op, next_op, other_input, out};

/// A 2-D convolution with a constant weight.
pub(crate) fn conv2d(g: &ModelGraph, n: NodeIndex) -> Option<()> {
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
pub(crate) fn batchnorm_after(g: &ModelGraph, n: NodeIndex) -> Option<NodeIndex> {
    let bn = next_op(g, n, "BatchNormalization")?;
    let node = g.node(bn);
    guard!(node.outputs.iter().filter(|o| !o.is_empty()).count() == 1);
    guard!(node.inputs.first().map(|s| s.as_str()) == Some(out(g, n)));
    guard!(node.inputs.len() == 5 && node.inputs[1..].iter().all(|i| g.is_constant(i)));
    Some(bn)
}

/// A per-channel bias `Add` after the convolution `n`.
pub(crate) fn channel_bias_after(g: &ModelGraph, n: NodeIndex) -> Option<NodeIndex> {
    let add = next_op(g, n, "Add")?;
    let bias = other_input(g, add, out(g, n))?;
    guard!(g.is_constant(bias));
    let channels = g.shape(g.node(n).inputs.get(1)?)?.first().copied()?;
    let shape = g.shape(bias)?;
    let numel = super::super::numel(shape);
    guard!(numel == channels);
    // the channel axis must line up with NCHW's axis 1
    guard!(shape.len() >= 3 && shape[shape.len() - 3] == channels || shape.len() == 1 && channels == 1);
    Some(add)
}
