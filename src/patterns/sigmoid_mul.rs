//! Sigmoid + Mul: SiLU / Swish and the gates built from a sigmoid. The form says which:
//!
//! - `Sigmoid+Mul (SiLU)`: `x·σ(x)`, the `Mul` reading `x` and `Sigmoid(x)` (either order);
//! - `Sigmoid+Mul (gated x·σ(g))`: a tensor times the sigmoid of another (GLU, squeeze-excitation);
//! - `Sigmoid+Mul+Mul (SwiGLU x·SiLU(g))`: a SiLU times another tensor (LLaMA's FFN);
//! - `Mul+Sigmoid+Mul (QuickGELU x·σ(αx))`: SiLU of a constant multiple, as CLIP writes GELU;
//! - `HardSigmoid+Mul (hard-swish)`: `x·HardSigmoid(x)` with α = 1/6, β = 0.5, the family's relative
//!   (other α, β: `HardSigmoid+Mul (x·hσ(x))`), and `HardSigmoid+Mul (gated x·hσ(g))`.
//!
//! The single `HardSwish` op (what PyTorch exports from opset 14) is already one kernel: not a pattern.
//! Breaks it: the sigmoid (or any intermediate) read by a second node or exported as a model output; a
//! constant gated operand (that is a scale, not a gate); a non-constant α in QuickGELU.

use anyhow::Result;
use petgraph::graph::NodeIndex;

use super::{data_and_const, guard, is_op, next_op, other_input, out, sweep, Descriptor, Family, Instance, Pattern, Rewrite, Role, Synth};
use crate::graph::ModelGraph;
use crate::onnx::build::{Model, Size};

pub const DESCRIPTOR: Descriptor = Descriptor {
    key: "Sigmoid_Mul",
    family: Family::Elementwise,
    operators: &["Sigmoid", "Mul"],
    forms: &[
        "SiLU x·σ(x); gated x·σ(g); SwiGLU x·SiLU(g); QuickGELU x·σ(αx)",
        "HardSigmoid + Mul: hard-swish x·hσ(x), gated x·hσ(g)",
    ],
    rule,
    kernel_cpu: "com.microsoft.QuickGelu (SiLU); HardSwish (hard-swish)",
    kernel_cuda: "com.microsoft.QuickGelu (SiLU); HardSwish (hard-swish)",
    rewrite: Rewrite::Elementwise,
    synth: Synth { grid: sweep::elementwise, flops, build },
};

pub fn rule(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    if is_op(g, n, "Mul") {
        return quick_gelu(g, n);
    }
    let hard = is_op(g, n, "HardSigmoid");
    guard!(hard || is_op(g, n, "Sigmoid"));
    let x = g.node(n).inputs.first()?.as_str();
    let mul = next_op(g, n, "Mul")?;
    let other = other_input(g, mul, out(g, n))?;
    guard!(!g.is_constant(other));
    if other != x {
        let form = if hard { "HardSigmoid+Mul (gated x·hσ(g))" } else { "Sigmoid+Mul (gated x·σ(g))" };
        return Instance::new(g, Pattern::SigmoidMul, form, vec![(Role::Sigmoid, n), (Role::Gate, mul)]);
    }
    if hard {
        let node = g.node(n);
        let alpha = node.attr_float("alpha").unwrap_or(0.2);
        let beta = node.attr_float("beta").unwrap_or(0.5);
        let swish = (alpha - 1.0 / 6.0).abs() < 1e-6 && (beta - 0.5).abs() < 1e-6;
        let form = if swish { "HardSigmoid+Mul (hard-swish)" } else { "HardSigmoid+Mul (x·hσ(x))" };
        return Instance::new(g, Pattern::SigmoidMul, form, vec![(Role::Sigmoid, n), (Role::Gate, mul)]);
    }
    // SwiGLU: the SiLU times another tensor
    if let Some(gate) = next_op(g, mul, "Mul") {
        let up = other_input(g, gate, out(g, mul));
        if up.is_some_and(|u| u != x && !g.is_constant(u)) {
            let form = "Sigmoid+Mul+Mul (SwiGLU x·SiLU(g))";
            if let Some(i) = Instance::new(g, Pattern::SigmoidMul, form, vec![(Role::Sigmoid, n), (Role::Gate, mul), (Role::Gate, gate)]) {
                return Some(i);
            }
        }
    }
    Instance::new(g, Pattern::SigmoidMul, "Sigmoid+Mul (SiLU)", vec![(Role::Sigmoid, n), (Role::Gate, mul)])
}

/// `Mul(x, α)` → `Sigmoid` → `Mul(x, ·)` with a constant α.
fn quick_gelu(g: &ModelGraph, n: NodeIndex) -> Option<Instance> {
    let (x, _) = data_and_const(g, n)?;
    // α is a scalar
    let alpha = other_input(g, n, x)?;
    guard!(g.shape(alpha).is_some_and(|s| super::numel(s) == 1));
    let sig = next_op(g, n, "Sigmoid")?;
    let mul = next_op(g, sig, "Mul")?;
    guard!(other_input(g, mul, out(g, sig))? == x);
    Instance::new(g, Pattern::SigmoidMul, "Mul+Sigmoid+Mul (QuickGELU x·σ(αx))", vec![(Role::Scale, n), (Role::Sigmoid, sig), (Role::Gate, mul)])
}

fn flops(s: &Size) -> Result<f64> {
    Ok(5.0 * sweep::elements(s)?)
}

/// The synthetic model: SiLU, `Mul(x, Sigmoid(x))`, on x `[1,64,H,W]`.
fn build(m: &mut Model, s: &Size) -> Result<Vec<usize>> {
    let dims = [1, s.get("C")?, s.get("H")?, s.get("W")?];
    let x = m.input("x", &dims);
    let sig = m.op("sigmoid", "Sigmoid", &[&x], vec![]);
    m.op("mul", "Mul", &[&x, &sig], vec![]);
    Ok(dims.to_vec())
}
