//! Activations and no-ops after a fusible producer: `Relu`, or ReLU6 written as `Clip` (bounds as
//! attributes before opset 11, constant inputs from 11 on); and `Dropout` in an inference graph, a no-op.

use petgraph::graph::NodeIndex;

use crate::graph::ModelGraph;
use crate::patterns::{guard, is_op, out};

/// The `Relu`, or `Clip` with constant bounds (ReLU6 is `Clip(0, 6)`), that alone reads `n`'s output:
/// the node and its form (`Relu` or `Clip`).
pub(crate) fn relu_after(g: &ModelGraph, n: NodeIndex) -> Option<(NodeIndex, &'static str)> {
    let c = g.sole_consumer(n)?;
    if is_op(g, c, "Relu") {
        return Some((c, "Relu"));
    }
    guard!(is_op(g, c, "Clip"));
    let node = g.node(c);
    guard!(node.inputs.first().map(|s| s.as_str()) == Some(out(g, n)));
    // opset 11+: min and max are inputs; fuseval cannot read their values here, only that they are fixed
    guard!(node.inputs.iter().skip(1).filter(|i| !i.is_empty()).all(|i| g.is_constant(i)));
    Some((c, "Clip"))
}

/// The `Dropout` that alone reads `n`'s output, when it is an inference no-op: no `training_mode`
/// input, a constant ratio, and its mask output unread (checked by `Instance::new`).
pub(crate) fn dropout_after(g: &ModelGraph, n: NodeIndex) -> Option<NodeIndex> {
    let d = g.sole_consumer(n)?;
    guard!(is_op(g, d, "Dropout"));
    let node = g.node(d);
    guard!(node.inputs.first().map(|s| s.as_str()) == Some(out(g, n)));
    guard!(node.inputs.get(1).is_none_or(|r| r.is_empty() || g.is_constant(r)));
    // a training_mode input (opset 12+) may be true; fuseval cannot read it, so it does not trust it
    guard!(node.inputs.get(2).is_none_or(|t| t.is_empty()));
    // opset < 7: `is_test` = 0 (the default) means training
    guard!(node.attr_int("is_test") != Some(0));
    Some(d)
}
