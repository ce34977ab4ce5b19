//! GELU activation in the forms exporters write, for the linear family.
//!
//! Accepts: the `Gelu` op (ONNX opset 20, or `com.microsoft`); the exact Erf form
//! `x·0.5·(1+erf(x/√2))` (`Div` or `Mul` by a constant, `Erf`, `Add`, two or three `Mul`, in any
//! operand order); the tanh approximation `0.5·x·(1+tanh(√(2/π)·(x+0.044715·x³)))` (`Pow` or `Mul`
//! for the cube, `Tanh`, `Add`s and `Mul`s).
//! Breaks it: `x` read by anything outside the activation, an intermediate read outside it, or a
//! non-constant operand other than `x` and the activation's own tensors.

use std::collections::HashSet;

use petgraph::graph::NodeIndex;

use crate::graph::ModelGraph;
use crate::patterns::{guard, out};

const ERF_OPS: &[&str] = &["Div", "Mul", "Erf", "Add"];
const TANH_OPS: &[&str] = &["Div", "Mul", "Pow", "Add", "Tanh"];

/// The GELU that reads `x`: its nodes and form (`Gelu op`, `Erf`, `tanh`).
pub fn gelu_after(g: &ModelGraph, x: &str) -> Option<(Vec<NodeIndex>, &'static str)> {
    guard!(!g.tensor(x).is_some_and(|t| t.graph_output));
    let first = g.consumers_of(x);
    guard!(!first.is_empty());
    if first.len() == 1 {
        let n = g.node(first[0]);
        if n.op == "Gelu" && (n.domain.is_empty() || n.domain == "com.microsoft" || n.domain == "ai.onnx") {
            let tanh =
                n.attributes.get("approximate").is_some_and(|a| matches!(a, crate::graph::Attr::Str(s) if s == "tanh"));
            return Some((vec![first[0]], if tanh { "Gelu op, tanh" } else { "Gelu op" }));
        }
    }
    for (ops, form, sizes) in [(ERF_OPS, "Erf", 5..=6), (TANH_OPS, "tanh", 7..=10)] {
        if let Some(nodes) = region(g, x, &first, ops) {
            let count = |op: &str| nodes.iter().filter(|&&n| g.node(n).op == op).count();
            let ok = match form {
                "Erf" => count("Erf") == 1 && count("Mul") >= 2,
                _ => count("Tanh") == 1 && (count("Pow") == 1 || count("Mul") >= 5),
            };
            if ok && sizes.contains(&nodes.len()) {
                return Some((nodes, form));
            }
        }
    }
    None
}

/// Grow the closed region of `ops` nodes fed by `x` from its readers `first`; it must hand on exactly
/// one tensor, written by its last node.
fn region(g: &ModelGraph, x: &str, first: &[NodeIndex], ops: &[&str]) -> Option<Vec<NodeIndex>> {
    let allowed = |n: NodeIndex| {
        let node = g.node(n);
        (node.domain.is_empty() || node.domain == "ai.onnx") && ops.contains(&node.op.as_str())
    };
    guard!(first.iter().all(|&n| allowed(n)));
    let mut set: HashSet<NodeIndex> = first.iter().copied().collect();
    let feeds_ok = |set: &HashSet<NodeIndex>, n: NodeIndex| {
        g.node(n)
            .real_inputs()
            .all(|i| i == x || g.is_constant(i) || g.producer_of(i).is_some_and(|p| set.contains(&p)))
    };
    loop {
        let mut grew = false;
        for n in set.clone() {
            for c in g.successors(n) {
                if !set.contains(&c) && allowed(c) && feeds_ok(&set, c) {
                    set.insert(c);
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    // every node reads only x, constants and the region's own tensors
    guard!(set.iter().all(|&n| feeds_ok(&set, n)));
    let mut nodes: Vec<NodeIndex> = g.order.iter().copied().filter(|n| set.contains(n)).collect();
    // shrink from the end until the last node is the region's only exit
    while let Some(&last) = nodes.last() {
        let exits: Vec<NodeIndex> = nodes
            .iter()
            .copied()
            .filter(|&n| {
                let o = out(g, n);
                g.tensor(o).is_some_and(|t| t.graph_output)
                    || g.consumers_of(o).iter().any(|c| !nodes.contains(c))
                    || g.consumers_of(o).is_empty()
            })
            .collect();
        if exits == [last] {
            return Some(nodes);
        }
        nodes.pop();
        guard!(nodes.len() >= 2);
    }
    None
}
