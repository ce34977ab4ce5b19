//! Explicit fusion of the element-wise family.
//!
//! - Sigmoid+Mul as SiLU/Swish `x·σ(x)` → `com.microsoft.QuickGelu` with `alpha = 1` (it computes
//!   `x·σ(alpha·x)`); CPU and CUDA.
//! - HardSigmoid+Mul as hard-swish `x·HardSigmoid(x)` with alpha 1/6, beta 1/2 → the ONNX `HardSwish`
//!   op (opset 14; the rewritten model's default opset is raised to 14 if lower). It is an ONNX op: on
//!   CUDA, ORT runs it there if the provider registers it, else on the CPU (the measurement shows which).
//! - QuickGELU `x·σ(αx)` written Mul(α) → Sigmoid → Mul → `QuickGelu` with that alpha.
//! - Gates of two tensors, `x·σ(g)`, `x·hσ(g)` and SwiGLU `x·SiLU(g)`: NoKernel, ORT has no fused kernel.
//! - Add+ReLU, Mul+Add+ReLU: NoKernel. ORT folds a residual Add (+ReLU) only into a preceding Conv
//!   (FusedConv's `Z` input) and a Mul/Add only into a preceding Conv's weights; a standalone instance
//!   has no fused kernel on CPU or CUDA.

use anyhow::{anyhow, Result};

use super::{is, Availability, Rewrite, View};
use crate::carve::Carved;
use crate::onnx::a_f;
use crate::patterns::{Pattern, Role};
use crate::runtime::Ep;

pub(crate) fn rewrite(c: &Carved, ep: Ep) -> Result<Availability> {
    let on = match ep {
        Ep::Cpu => "CPU",
        Ep::Cuda { .. } => "CUDA",
    };
    match c.pattern {
        Pattern::AddRelu => Ok(Availability::NoKernel(format!(
            "ORT has no fused Add+ReLU kernel on {on}: it fuses a residual Add+ReLU only into a preceding Conv \
             (FusedConv's Z input), which a standalone Add+ReLU has not"
        ))),
        Pattern::MulAddRelu => Ok(Availability::NoKernel(format!(
            "ORT has no fused Mul+Add+ReLU kernel on {on}: it folds a Mul/Add only into a preceding Conv's \
             weights, so a standalone instance stays three kernels"
        ))),
        _ => sigmoid_mul(c),
    }
}

/// From the roles: the `Sigmoid`/`HardSigmoid`, the `Mul`(s) it gates (two for SwiGLU), and the scale
/// `Mul` before it for QuickGELU.
fn sigmoid_mul(c: &Carved) -> Result<Availability> {
    let v = View::new(c)?;
    let out = v.output()?;
    let mut rw = Rewrite::default();
    let gate = v.the(Role::Sigmoid)?;
    let muls = v.nodes(Role::Gate);
    let mul = *muls.first().ok_or_else(|| anyhow!("Sigmoid_Mul without its Mul"))?;
    let x = v.other_input(mul, &gate.output[0]).ok_or_else(|| anyhow!("the Mul does not read the gate"))?;
    let g = gate.input.first().map(|s| s.as_str()).unwrap_or("");
    // QuickGELU as CLIP writes it: Mul(x, α) → Sigmoid → Mul(x, ·)
    if let Some(scale) = v.node(Role::Scale) {
        let a =
            v.other_input(scale, x).filter(|a| v.is_const(a)).ok_or_else(|| anyhow!("QuickGELU scale without α"))?;
        let alpha = v.scalar(a)?;
        rw.node("QuickGelu", "com.microsoft", &[x], out, vec![a_f("alpha", alpha)]);
        return rw.finish(&v, format!("x·σ(αx) as com.microsoft.QuickGelu with alpha={alpha}"));
    }
    if muls.len() > 1 {
        return Ok(Availability::NoKernel(
            "ORT has no fused SwiGLU kernel (x·SiLU(g) of two tensors); QuickGelu covers SiLU of one tensor only"
                .into(),
        ));
    }
    if is(gate, "Sigmoid") {
        if g != x {
            return Ok(Availability::NoKernel(
                "ORT has no fused kernel for a gate x·σ(g) of two tensors (QuickGelu needs σ of its own input)".into(),
            ));
        }
        rw.node("QuickGelu", "com.microsoft", &[x], out, vec![a_f("alpha", 1.0)]);
        return rw.finish(&v, "SiLU x·σ(x) as com.microsoft.QuickGelu with alpha=1");
    }
    if g != x {
        return Ok(Availability::NoKernel("ORT has no fused kernel for a gate x·hσ(g) of two tensors".into()));
    }
    let alpha = super::attr_f(gate, "alpha").unwrap_or(0.2);
    let beta = super::attr_f(gate, "beta").unwrap_or(0.5);
    if (alpha - 1.0 / 6.0).abs() > 1e-6 || (beta - 0.5).abs() > 1e-6 {
        return Ok(Availability::NoKernel(format!(
            "x·HardSigmoid(x) with alpha {alpha}, beta {beta} is not hard-swish (1/6, 1/2); ORT has no fused kernel"
        )));
    }
    rw.node("HardSwish", "", &[x], out, vec![]);
    rw.min_opset = Some(14);
    rw.finish(&v, "hard-swish as the ONNX HardSwish op")
}
