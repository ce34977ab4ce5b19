//! Explicit fusion of the convolution family: Conv + (BN | bias Add) + (residual Add) + (Relu | Clip) +
//! MaxPool, read from the roles detection gave each node (no matching again).
//!
//! - A BatchNormalization is folded into the conv's weight and bias, per output channel:
//!   `s = γ/√(σ²+ε)`, `W' = W·s`, `b' = (b−μ)·s+β`; a per-channel bias `Add` is added into `B`.
//! - A residual `Add`/`Sum` becomes `com.microsoft.FusedConv`'s `Z` input (added before the activation).
//! - An activation becomes FusedConv's `activation` (`Relu`, or `Clip` with `activation_params = [min,
//!   max]` for ReLU6); without one and without a residual the result is a plain `Conv`.
//! - A MaxPool stays a kernel of its own: ORT has no pool-fused convolution.
//!
//! CPU: FusedConv (float) takes Relu, Clip, LeakyRelu, Sigmoid, Tanh, HardSigmoid. CUDA: FusedConv
//! (float) maps its activation onto cuDNN and takes `Relu` only; other activations answer NoKernel.
//! Only float32 weights are folded.

use anyhow::{bail, Result};
use tract_onnx::pb;

use super::{Availability, Rewrite, View};
use crate::carve::Carved;
use crate::onnx::{a_floats, a_s};
use crate::patterns::Role;
use crate::runtime::Ep;

pub(crate) fn rewrite(c: &Carved, ep: Ep) -> Result<Availability> {
    let v = View::new(c)?;
    let conv = v.the(Role::Conv)?;
    let w = conv.input.get(1).map(|s| s.as_str()).unwrap_or("");
    if !v.is_const(w) || v.elem_type(w) != 1 {
        return Ok(Availability::NoKernel(format!("{}: only a constant float32 conv weight is folded", c.form)));
    }
    let (w_dims, mut weight) = v.value(w)?;
    if w_dims.len() != 4 {
        bail!("the conv weight has dims {w_dims:?}, not 4");
    }
    let out_ch = w_dims[0] as usize;
    let per = weight.len() / out_ch.max(1);
    let mut bias = match conv.input.get(2).filter(|b| !b.is_empty()) {
        Some(b) => v.value(b)?.1,
        None => vec![0.0; out_ch],
    };
    if bias.len() != out_ch {
        bail!("conv bias has {} values for {out_ch} channels", bias.len());
    }
    // the tensor the fused conv stands for so far
    let mut x = conv.output[0].as_str();
    let mut notes = vec![];

    if let Some(n) = v.node(Role::BatchNorm) {
        if super::attr_i(n, "training_mode") == Some(1) {
            bail!("BatchNormalization in training mode");
        }
        let eps = super::attr_f(n, "epsilon").unwrap_or(1e-5);
        let vals: Vec<Vec<f32>> = n.input[1..].iter().map(|t| v.value(t).map(|x| x.1)).collect::<Result<_>>()?;
        if vals.len() != 4 || vals.iter().any(|x| x.len() != out_ch) {
            bail!("BatchNormalization statistics do not have {out_ch} channels");
        }
        let (gamma, beta, mean, var) = (&vals[0], &vals[1], &vals[2], &vals[3]);
        for o in 0..out_ch {
            let s = gamma[o] / (var[o] + eps).sqrt();
            weight[o * per..(o + 1) * per].iter_mut().for_each(|w| *w *= s);
            bias[o] = (bias[o] - mean[o]) * s + beta[o];
        }
        notes.push("BN folded into the conv weights and bias");
        x = n.output[0].as_str();
    }
    if let Some(n) = v.node(Role::ChannelBias) {
        let b = v
            .other_input(n, x)
            .filter(|b| v.is_const(b))
            .ok_or_else(|| anyhow::anyhow!("bias Add without a constant"))?;
        let add = v.value(b)?.1;
        if add.len() != out_ch {
            bail!("the bias Add has {} values for {out_ch} channels", add.len());
        }
        bias.iter_mut().zip(&add).for_each(|(b, a)| *b += a);
        notes.push("bias Add folded into the conv's B");
        x = n.output[0].as_str();
    }
    let mut z = None;
    if let Some(n) = v.node(Role::Residual) {
        z = Some(v.other_input(n, x).ok_or_else(|| anyhow::anyhow!("residual {} does not read the conv", n.op_type))?);
        notes.push("residual as FusedConv's Z");
    }

    let activation = match v.node(Role::Activation) {
        Some(n) if super::is(n, "Relu") => Some(("Relu", vec![])),
        Some(n) if super::is(n, "Clip") => {
            let bound = |k: usize, attr: &str, default: f32| -> Result<f32> {
                match n.input.get(k).filter(|s| !s.is_empty()) {
                    Some(t) => v.scalar(t),
                    None => Ok(super::attr_f(n, attr).unwrap_or(default)),
                }
            };
            Some(("Clip", vec![bound(1, "min", f32::MIN)?, bound(2, "max", f32::MAX)?]))
        }
        Some(n) if super::is(n, "LeakyRelu") => Some(("LeakyRelu", vec![super::attr_f(n, "alpha").unwrap_or(0.01)])),
        Some(n) => bail!("activation {} is not one FusedConv takes", n.op_type),
        None => None,
    };
    if let Some((act, _)) = &activation {
        if matches!(ep, Ep::Cuda { .. }) && *act != "Relu" {
            return Ok(Availability::NoKernel(format!("ORT's CUDA FusedConv takes only a Relu activation, not {act}")));
        }
    }
    let pool = v.node(Role::Pool);

    let out = v.output()?;
    let mut rw = Rewrite::default();
    let w_name = rw.f32_const("W", &w_dims, &weight);
    let b_name = rw.f32_const("B", &[out_ch as i64], &bias);
    let conv_out = if pool.is_some() { rw.fresh("conv") } else { out.to_string() };
    // the conv's own attributes (kernel_shape, pads, strides, dilations, group, auto_pad) carry over
    let mut attrs: Vec<pb::AttributeProto> = conv.attribute.clone();
    let x_in = conv.input[0].as_str();
    match (&activation, z) {
        (None, None) => rw.node("Conv", "", &[x_in, &w_name, &b_name], &conv_out, attrs),
        (act, z) => {
            let (act, params) = act.clone().unwrap_or(("Identity", vec![]));
            if act != "Identity" {
                attrs.push(a_s("activation", act));
            }
            if !params.is_empty() {
                attrs.push(a_floats("activation_params", &params));
            }
            let mut inputs = vec![x_in, &w_name, &b_name];
            inputs.extend(z);
            rw.node("FusedConv", "com.microsoft", &inputs, &conv_out, attrs);
            notes.push(if act == "Clip" {
                "ReLU6 (Clip) as FusedConv activation"
            } else {
                "activation as FusedConv activation"
            });
        }
    }
    if let Some(p) = pool {
        let mut p = p.clone();
        p.input[0] = conv_out.clone();
        p.output = vec![out.to_string()];
        rw.nodes.push(p);
        notes.push("no pool-fused kernel in ORT: MaxPool stays a second kernel");
    }
    rw.finish(&v, notes.join("; "))
}
