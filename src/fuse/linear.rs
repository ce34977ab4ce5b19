//! Explicit fusion of the linear family: (MatMul + bias Add | Gemm) followed by nothing, ReLU (and an
//! inference Dropout), GELU, or ReLU and a second linear layer (the MLP).
//!
//! - Linear+Bias → `Gemm` with `C`. A 3-D (or higher) input is flattened to 2-D around the Gemm
//!   (`Reshape`, `Gemm`, `Reshape`), as ORT's own MatMul+Add fusion does.
//! - Linear+Bias+ReLU (+Dropout) → `com.microsoft.FusedGemm` with `activation="Relu"` (same reshapes);
//!   Dropout is a no-op at inference and is dropped.
//! - Linear+Bias+GELU → `MatMul` + `com.microsoft.BiasGelu(A, bias)` for the exact (Erf or `Gelu` op)
//!   form, `MatMul` + `com.microsoft.FastGelu(X, bias)` for the tanh form: two kernels, any rank, no
//!   reshapes (fewer kernels than Gemm + Gelu, which needs the reshapes).
//! - MLP → `FusedGemm(Relu)` + `Gemm` (an inference Dropout between them dropped).
//! - ReLU6 as `Clip`: NoKernel, FusedGemm has no Clip activation (ORT 1.31.1 rejects it).
//! - A weight dequantized in the graph (DequantizeLinear, Cast→Mul) keeps its nodes, which the kernels read.
//!
//! CUDA has Gemm, BiasGelu and FastGelu but no FusedGemm: ReLU forms answer NoKernel there.
//! Breaks a rewrite (NoKernel "form not supported yet"): the weight as MatMul's left operand, Gemm
//! with `transA`, a non-2-D weight, any node this file does not know.

use anyhow::{bail, Result};
use tract_onnx::pb;

use super::{is, unsupported, Availability, Rewrite, View};
use crate::carve::Carved;
use crate::onnx::{a_f, a_i, a_s};
use crate::runtime::Ep;

/// One linear layer with bias, as found in the carved nodes.
struct Linear {
    x: String,
    w: String,
    /// `Gemm` semantics: `alpha·x·op(W) + bias_scale·bias`.
    trans_b: bool,
    alpha: f32,
    bias: String,
    bias_scale: f32,
    /// The tensor the layer (after its bias) writes.
    out: String,
    k: i64,
    n: i64,
}

/// Parse a linear layer at `main[i]`; returns it and the index after it.
fn linear_at(v: &View, main: &[&pb::NodeProto], i: usize) -> Result<Option<(Linear, usize)>> {
    let Some(n) = main.get(i) else { return Ok(None) };
    let ins: Vec<&str> = n.input.iter().map(|s| s.as_str()).collect();
    let (x, w, trans_b, alpha, beta, c) = if is(n, "Gemm") {
        if super::attr_i(n, "transA").unwrap_or(0) != 0 || ins.len() < 2 || v.is_const(ins[0]) || !v.is_const(ins[1]) {
            return Ok(None);
        }
        let c = ins.get(2).filter(|c| !c.is_empty()).map(|c| c.to_string());
        let trans_b = super::attr_i(n, "transB").unwrap_or(0) != 0;
        (ins[0], ins[1], trans_b, super::attr_f(n, "alpha").unwrap_or(1.0), super::attr_f(n, "beta").unwrap_or(1.0), c)
    } else if is(n, "MatMul") {
        // the weight must be the right operand: x·W
        if ins.len() != 2 || v.is_const(ins[0]) || !v.is_const(ins[1]) {
            return Ok(None);
        }
        (ins[0], ins[1], false, 1.0, 1.0, None)
    } else {
        return Ok(None);
    };
    let w_dims = v.dims(w)?;
    if w_dims.len() != 2 {
        return Ok(None);
    }
    let (k, n_out) = if trans_b { (w_dims[1], w_dims[0]) } else { (w_dims[0], w_dims[1]) };
    let mut next = i + 1;
    let (bias, bias_scale, out) = match c {
        Some(c) if v.is_const(&c) => (c, beta, n.output[0].clone()),
        Some(_) => return Ok(None),
        None => {
            let Some(add) = main.get(next).filter(|a| is(a, "Add")) else { return Ok(None) };
            let Some(b) = v.other_input(add, &n.output[0]).filter(|b| v.is_const(b)) else { return Ok(None) };
            next += 1;
            (b.to_string(), 1.0, add.output[0].clone())
        }
    };
    let numel: i64 = v.dims(&bias)?.iter().product();
    if numel != n_out {
        return Ok(None);
    }
    let lin = Linear { x: x.into(), w: w.into(), trans_b, alpha, bias, bias_scale, out, k, n: n_out };
    Ok(Some((lin, next)))
}

/// What follows the linear layer.
enum Tail {
    None,
    Relu { dropout: bool },
    Gelu { tanh: bool },
    Mlp { second: Linear, dropout: bool },
}

pub(crate) fn rewrite(c: &Carved, ep: Ep) -> Result<Availability> {
    let v = View::new(c)?;
    let main = v.main.clone();
    let Some((lin, i)) = linear_at(&v, &main, 0)? else { return unsupported(&v) };
    let rest = &main[i..];
    let reads = |n: &pb::NodeProto, t: &str| n.input.iter().any(|s| s == t);
    if rest.first().is_some_and(|n| is(n, "Clip") && reads(n, &lin.out)) {
        // checked against ORT 1.31.1: FusedGemm with activation "Clip" fails with "unknown kernel type"
        return Ok(Availability::NoKernel(
            "ORT's FusedGemm has no Clip (ReLU6) activation; Gemm and Clip stay two kernels".into(),
        ));
    }
    let tail = match rest {
        [] => Tail::None,
        [r, more @ ..] if is(r, "Relu") && reads(r, &lin.out) => {
            // an inference Dropout after the ReLU is a no-op
            let (act_out, dropout, after) = match more {
                [d, after @ ..] if is(d, "Dropout") && reads(d, &r.output[0]) => {
                    if dropout_training(&v, d) {
                        return Ok(Availability::NoKernel("Dropout in training mode is not a no-op".into()));
                    }
                    (d.output[0].as_str(), true, after)
                }
                _ => (r.output[0].as_str(), false, more),
            };
            if after.is_empty() {
                Tail::Relu { dropout }
            } else {
                match linear_at(&v, after, 0)? {
                    Some((second, j)) if j == after.len() && second.x == act_out => Tail::Mlp { second, dropout },
                    _ => return unsupported(&v),
                }
            }
        }
        _ => match gelu_form(&lin.out, rest) {
            Some(tanh) => Tail::Gelu { tanh },
            None => return unsupported(&v),
        },
    };
    let cuda = matches!(ep, Ep::Cuda { .. });
    if cuda && matches!(tail, Tail::Relu { .. } | Tail::Mlp { .. }) {
        return Ok(Availability::NoKernel(
            "ORT's CUDA EP has no FusedGemm (Gemm+activation) kernel; the ReLU stays a kernel of its own".into(),
        ));
    }

    let out = v.output()?.to_string();
    let x_dims = v.dims(&lin.x)?;
    let mut rw = Rewrite::default();
    let mut notes: Vec<String> = vec![];
    match tail {
        Tail::Gelu { tanh } => {
            // MatMul + BiasGelu/FastGelu work on any rank: no reshapes
            let w = plain_weight(&v, &mut rw, &lin)?;
            let b = bias_1d(&v, &mut rw, &lin.bias, lin.n, lin.bias_scale)?;
            let mm = rw.fresh("matmul");
            rw.node("MatMul", "", &[&lin.x, &w], &mm, vec![]);
            let op = if tanh { "FastGelu" } else { "BiasGelu" };
            rw.node(op, "com.microsoft", &[&mm, &b], &out, vec![]);
            notes.push(format!("bias and GELU fused into com.microsoft.{op} after the MatMul"));
        }
        Tail::None | Tail::Relu { .. } | Tail::Mlp { .. } => {
            let x2 = flatten(&mut rw, &lin.x, &x_dims, lin.k, &mut notes)?;
            let flat = x_dims.len() != 2;
            let mut y = if flat { rw.fresh("gemm") } else { out.clone() };
            match &tail {
                Tail::None => {
                    gemm(&v, &mut rw, &lin, &x2, &y, None)?;
                    notes.push("bias as Gemm's C".into());
                }
                Tail::Relu { dropout } => {
                    gemm(&v, &mut rw, &lin, &x2, &y, Some("Relu"))?;
                    notes.push("bias as C, ReLU as FusedGemm activation".into());
                    if *dropout {
                        notes.push("Dropout (a no-op at inference) dropped".into());
                    }
                }
                Tail::Mlp { second, dropout } => {
                    let h = rw.fresh("hidden");
                    gemm(&v, &mut rw, &lin, &x2, &h, Some("Relu"))?;
                    gemm(&v, &mut rw, second, &h, &y, None)?;
                    notes.push("first layer as FusedGemm(Relu), second as Gemm with C".into());
                    if *dropout {
                        notes.push("Dropout (a no-op at inference) dropped".into());
                    }
                }
                Tail::Gelu { .. } => unreachable!(),
            }
            if flat {
                let n_out = match &tail {
                    Tail::Mlp { second, .. } => second.n,
                    _ => lin.n,
                };
                let mut shape = x_dims[..x_dims.len() - 1].to_vec();
                shape.push(n_out);
                let s = rw.i64_const("shape", &shape);
                let y2 = std::mem::replace(&mut y, out.clone());
                rw.node("Reshape", "", &[&y2, &s], &y, vec![]);
            }
        }
    }
    if !v.prefix.is_empty() {
        notes.push("the weight's dequantization nodes kept as they are (they run in the unfused model too)".into());
    }
    rw.finish(&v, notes.join("; "))
}

/// Whether a Dropout runs in training mode (its `training_mode` input is a true constant).
fn dropout_training(v: &View, d: &pb::NodeProto) -> bool {
    let Some(t) = d.input.get(2).filter(|s| !s.is_empty()) else { return false };
    match v.inits.get(t.as_str()) {
        Some(t) => t.raw_data.iter().any(|&b| b != 0) || t.int32_data.iter().any(|&b| b != 0),
        None => true, // not a constant we can read: do not assume inference
    }
}

/// The GELU after `x`, as this file accepts it: the `Gelu` op alone, or a region of Div/Mul/Add/Pow
/// nodes with exactly one Erf (exact) or one Tanh (approximation). Returns whether it is the tanh form.
fn gelu_form(x: &str, rest: &[&pb::NodeProto]) -> Option<bool> {
    let first = rest.first()?;
    if !first.input.iter().any(|s| s == x) {
        return None;
    }
    if let [g] = rest {
        if g.op_type == "Gelu" && matches!(g.domain.as_str(), "" | "ai.onnx" | "com.microsoft") {
            return Some(super::attr_s(g, "approximate").as_deref() == Some("tanh"));
        }
    }
    const OPS: &[&str] = &["Div", "Mul", "Add", "Pow", "Erf", "Tanh"];
    if !rest.iter().all(|n| OPS.iter().any(|op| is(n, op))) {
        return None;
    }
    let count = |op: &str| rest.iter().filter(|n| is(n, op)).count();
    match (count("Erf"), count("Tanh")) {
        (1, 0) => Some(false),
        (0, 1) => Some(true),
        _ => None,
    }
}

/// Reshape `x` to `[-1, K]` unless it is 2-D already.
fn flatten(rw: &mut Rewrite, x: &str, dims: &[i64], k: i64, notes: &mut Vec<String>) -> Result<String> {
    if dims.len() == 2 {
        return Ok(x.to_string());
    }
    if dims.len() < 2 || dims.last() != Some(&k) {
        bail!("linear input dims {dims:?} do not end in K={k}");
    }
    let s = rw.i64_const("shape", &[-1, k]);
    let x2 = rw.fresh("flat");
    rw.node("Reshape", "", &[x, &s], &x2, vec![]);
    notes.push(format!("{}-D input flattened to 2-D around the Gemm (as ORT's MatMul+Add fusion does)", dims.len()));
    Ok(x2)
}

/// `Gemm(x, W, bias)` or `com.microsoft.FusedGemm` with `activation`.
fn gemm(v: &View, rw: &mut Rewrite, lin: &Linear, x: &str, y: &str, activation: Option<&str>) -> Result<()> {
    let b = bias_1d(v, rw, &lin.bias, lin.n, 1.0)?;
    let mut attrs = vec![];
    if lin.trans_b {
        attrs.push(a_i("transB", 1));
    }
    if lin.alpha != 1.0 {
        attrs.push(a_f("alpha", lin.alpha));
    }
    if lin.bias_scale != 1.0 {
        attrs.push(a_f("beta", lin.bias_scale));
    }
    match activation {
        Some(act) => {
            attrs.push(a_s("activation", act));
            rw.node("FusedGemm", "com.microsoft", &[x, &lin.w, &b], y, attrs);
        }
        None => rw.node("Gemm", "", &[x, &lin.w, &b], y, attrs),
    }
    Ok(())
}

/// The weight as MatMul's `[K, N]` right operand: as is, or transposed and scaled by `alpha`.
fn plain_weight(v: &View, rw: &mut Rewrite, lin: &Linear) -> Result<String> {
    if !lin.trans_b && lin.alpha == 1.0 {
        return Ok(lin.w.clone());
    }
    let (_, w) = v.value(&lin.w)?;
    let (k, n) = (lin.k as usize, lin.n as usize);
    let mut out = vec![0f32; k * n];
    for r in 0..k {
        for c in 0..n {
            let x = if lin.trans_b { w[c * k + r] } else { w[r * n + c] };
            out[r * n + c] = x * lin.alpha;
        }
    }
    Ok(rw.f32_const("W", &[lin.k, lin.n], &out))
}

/// The bias as a 1-D `[N]` tensor, scaled by `scale`.
fn bias_1d(v: &View, rw: &mut Rewrite, bias: &str, n: i64, scale: f32) -> Result<String> {
    if scale == 1.0 && v.inits.contains_key(bias) {
        return rw.redim(v, bias, &[n]);
    }
    let (_, b) = v.value(bias)?;
    let b: Vec<f32> = b.iter().map(|x| x * scale).collect();
    Ok(rw.f32_const("bias", &[n], &b))
}
