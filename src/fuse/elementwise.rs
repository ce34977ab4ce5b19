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

use anyhow::Result;

use super::{is, unsupported, Availability, Rewrite, View};
use crate::carve::Carved;
use crate::onnx::a_f;
use crate::patterns::Pattern;
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

fn sigmoid_mul(c: &Carved) -> Result<Availability> {
    let v = View::new(c)?;
    let out = v.output()?;
    let mut rw = Rewrite::default();
    match v.main.as_slice() {
        // QuickGELU as CLIP writes it: Mul(x, α) → Sigmoid → Mul(x, ·)
        [scale, sig, mul] if is(scale, "Mul") && is(sig, "Sigmoid") && is(mul, "Mul") => {
            let Some(x) = scale.input.iter().find(|i| !v.is_const(i)) else { return unsupported(&v) };
            let Some(a) = v.other_input(scale, x).filter(|a| v.is_const(a)) else { return unsupported(&v) };
            if sig.input.first() != Some(&scale.output[0]) || v.other_input(mul, &sig.output[0]) != Some(x.as_str()) {
                return unsupported(&v);
            }
            let alpha = v.scalar(a)?;
            rw.node("QuickGelu", "com.microsoft", &[x], out, vec![a_f("alpha", alpha)]);
            rw.finish(&v, format!("x·σ(αx) as com.microsoft.QuickGelu with alpha={alpha}"))
        }
        // SwiGLU: SiLU(g) times another tensor
        [sig, _, _] if is(sig, "Sigmoid") => Ok(Availability::NoKernel(
            "ORT has no fused SwiGLU kernel (x·SiLU(g) of two tensors); QuickGelu covers SiLU of one tensor only"
                .into(),
        )),
        [gate, mul] if is(mul, "Mul") => {
            let Some(x) = v.other_input(mul, &gate.output[0]) else { return unsupported(&v) };
            let g = gate.input.first().map(|s| s.as_str()).unwrap_or("");
            if is(gate, "Sigmoid") {
                if g != x {
                    return Ok(Availability::NoKernel(
                        "ORT has no fused kernel for a gate x·σ(g) of two tensors (QuickGelu needs σ of its own input)"
                            .into(),
                    ));
                }
                rw.node("QuickGelu", "com.microsoft", &[x], out, vec![a_f("alpha", 1.0)]);
                return rw.finish(&v, "SiLU x·σ(x) as com.microsoft.QuickGelu with alpha=1");
            }
            if !is(gate, "HardSigmoid") {
                return unsupported(&v);
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
        _ => unsupported(&v),
    }
}
