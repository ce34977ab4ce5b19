//! Linear building blocks shared by the linear patterns: `MatMul` with a constant weight plus a bias
//! `Add`, or `Gemm` with (or followed by) a bias. The weight may be computed from constants, e.g.
//! weight-only quantized: `DequantizeLinear` of an integer constant, or `Cast` of one then `Mul` by a
//! constant scale; the form then says `quantized weight`. When the dequantization feeds this layer
//! alone it belongs to the pattern (ORT fuses `DequantizeLinear` + `MatMul` into `MatMulNBits`); a
//! dequantized weight shared with other readers stays outside, as a constant.

use petgraph::graph::NodeIndex;

use crate::graph::ModelGraph;
use crate::patterns::{data_and_const, guard, is_op, next_op, other_input, out, Role};

/// A linear layer with bias: its nodes with their roles (the dequantization first, when it belongs to the
/// pattern; the MatMul or Gemm; the bias Add), its form, and whether its weight is dequantized from
/// integers.
pub(crate) struct Linear {
    pub nodes: Vec<(Role, NodeIndex)>,
    pub form: &'static str,
    pub quantized: bool,
}

impl Linear {
    /// What to append to a pattern's form: ` (quantized weight)` or nothing.
    pub fn note(&self) -> &'static str {
        if self.quantized {
            " (quantized weight)"
        } else {
            ""
        }
    }
}

/// The linear layer with bias anchored at `n`.
pub(crate) fn linear(g: &ModelGraph, n: NodeIndex) -> Option<Linear> {
    let node = g.node(n);
    if is_op(g, n, "Gemm") {
        let w = node.inputs.get(1)?;
        guard!(g.is_constant(w) && !g.is_constant(node.inputs.first()?));
        let quantized = quantized_weight(g, w);
        let mut nodes = dequantization(g, w, n);
        nodes.push((Role::MatMul, n));
        if let Some(c) = node.inputs.get(2).filter(|c| !c.is_empty()) {
            guard!(g.is_constant(c));
            return Some(Linear { nodes, form: "Gemm", quantized });
        }
        nodes.push((Role::Bias, bias_add_after(g, n)?));
        return Some(Linear { nodes, form: "Gemm+Add", quantized });
    }
    guard!(is_op(g, n, "MatMul"));
    let (_, weight) = data_and_const(g, n)?;
    guard!(g.shape(weight).is_none_or(|s| s.len() == 2));
    let add = bias_add_after(g, n)?;
    let mut nodes = dequantization(g, weight, n);
    nodes.extend([(Role::MatMul, n), (Role::Bias, add)]);
    Some(Linear { nodes, form: "MatMul+Add", quantized: quantized_weight(g, weight) })
}

/// An `Add` of a constant per-feature bias after `n`.
pub(crate) fn bias_add_after(g: &ModelGraph, n: NodeIndex) -> Option<NodeIndex> {
    let add = next_op(g, n, "Add")?;
    let bias = other_input(g, add, out(g, n))?;
    guard!(g.is_constant(bias));
    let features = *g.shape(out(g, n))?.last()?;
    let numel = super::super::numel(g.shape(bias)?);
    guard!(numel == features);
    Some(add)
}

/// Whether the constant weight `w` is dequantized from integers: computed by `DequantizeLinear`, or by a
/// `Cast` of an integer tensor followed by a `Mul` (scale), possibly through `Transpose`/`Reshape`.
pub(crate) fn quantized_weight(g: &ModelGraph, w: &str) -> bool {
    let nodes = g.constant_subgraph(w);
    let has = |op: &str| nodes.iter().any(|&n| is_op(g, n, op));
    let int_cast = nodes.iter().any(|&n| is_op(g, n, "Cast") && integer_input(g, n));
    has("DequantizeLinear") || int_cast && has("Mul")
}

/// Whether the node's first input is an integer tensor.
fn integer_input(g: &ModelGraph, n: NodeIndex) -> bool {
    g.node(n).inputs.first().and_then(|i| g.tensor(i)).is_some_and(|t| INTEGER.contains(&t.elem_type))
}

/// The nodes that dequantize the weight `w` of `linear`, when they feed it alone: `DequantizeLinear`,
/// or `Cast` of an integer tensor then `Mul` by a constant (either order). Empty otherwise.
fn dequantization(g: &ModelGraph, w: &str, linear: NodeIndex) -> Vec<(Role, NodeIndex)> {
    let alone =
        |t: &str, reader: NodeIndex| g.consumers_of(t) == [reader] && !g.tensor(t).is_some_and(|t| t.graph_output);
    let Some(p) = g.producer_of(w) else { return vec![] };
    if !alone(w, linear) {
        return vec![];
    }
    if is_op(g, p, "DequantizeLinear") {
        return vec![(Role::Dequant, p)];
    }
    if is_op(g, p, "Mul") {
        for i in g.node(p).real_inputs() {
            let Some(c) = g.producer_of(i) else { continue };
            if is_op(g, c, "Cast") && integer_input(g, c) && alone(i, p) {
                return vec![(Role::Dequant, c), (Role::Dequant, p)];
            }
        }
    }
    vec![]
}

/// ONNX element types of the integers weights are quantized to: uint8, int8, uint16, int16, int32,
/// uint4, int4.
const INTEGER: &[i32] = &[2, 3, 4, 5, 6, 21, 22];
