//! Explicit fusion of the linear family: (MatMul + bias Add | Gemm) followed by nothing, ReLU (and an
//! inference Dropout), GELU, or ReLU and a second linear layer (the MLP), read from the roles detection
//! gave each node (no matching again).
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
//! NoKernel too: the weight as MatMul's left operand, Gemm with `transA`, a non-2-D weight, a Gemm `C`
//! that is not one value per output feature.

use anyhow::{anyhow, bail, Result};
use tract_onnx::pb;

use super::{is, Availability, Rewrite, View};
use crate::carve::Carved;
use crate::onnx::{a_f, a_i, a_s};
use crate::patterns::Role;
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
    k: i64,
    n: i64,
}

/// The linear layer whose MatMul or Gemm plays `matmul` and whose bias Add (absent for a Gemm with `C`)
/// plays `bias`: the layer, or why ORT's kernels cannot take it.
fn layer(v: &View, matmul: Role, bias: Role) -> Result<std::result::Result<Linear, String>> {
    let n = v.the(matmul)?;
    let ins: Vec<&str> = n.input.iter().map(|s| s.as_str()).collect();
    if ins.len() < 2 {
        bail!("{} with {} inputs", n.op_type, ins.len());
    }
    if v.is_const(ins[0]) {
        return Ok(Err(format!(
            "the weight is {}'s left operand (W·x); Gemm and FusedGemm take it as the right one",
            n.op_type
        )));
    }
    let (x, w) = (ins[0], ins[1]);
    let (trans_b, alpha, beta, c) = if is(n, "Gemm") {
        if super::attr_i(n, "transA").unwrap_or(0) != 0 {
            return Ok(Err("Gemm with transA: the rewrite does not transpose the input".into()));
        }
        let c = ins.get(2).filter(|c| !c.is_empty()).map(|c| c.to_string());
        let trans_b = super::attr_i(n, "transB").unwrap_or(0) != 0;
        (trans_b, super::attr_f(n, "alpha").unwrap_or(1.0), super::attr_f(n, "beta").unwrap_or(1.0), c)
    } else {
        (false, 1.0, 1.0, None)
    };
    let w_dims = v.dims(w)?;
    if w_dims.len() != 2 {
        return Ok(Err(format!("the weight has dims {w_dims:?}, not 2-D as Gemm takes it")));
    }
    let (k, n_out) = if trans_b { (w_dims[1], w_dims[0]) } else { (w_dims[0], w_dims[1]) };
    let (bias, bias_scale) = match c {
        Some(c) => (c, beta),
        None => {
            let add = v.the(bias)?;
            let b = v
                .other_input(add, &n.output[0])
                .ok_or_else(|| anyhow!("the bias Add does not read the {}", n.op_type))?;
            (b.to_string(), 1.0)
        }
    };
    let numel: i64 = v.dims(&bias)?.iter().product();
    if numel != n_out {
        return Ok(Err(format!("the bias has {numel} values, not one per output feature ({n_out})")));
    }
    Ok(Ok(Linear { x: x.into(), w: w.into(), trans_b, alpha, bias, bias_scale, k, n: n_out }))
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
    let lin = match layer(&v, Role::MatMul, Role::Bias)? {
        Ok(lin) => lin,
        Err(why) => return Ok(Availability::NoKernel(why)),
    };
    let activation = v.node(Role::Activation);
    if activation.is_some_and(|n| is(n, "Clip")) {
        // checked against ORT 1.31.1: FusedGemm with activation "Clip" fails with "unknown kernel type"
        return Ok(Availability::NoKernel(
            "ORT's FusedGemm has no Clip (ReLU6) activation; Gemm and Clip stay two kernels".into(),
        ));
    }
    let gelu = v.nodes(Role::Gelu);
    let tail = if !gelu.is_empty() {
        Tail::Gelu { tanh: gelu_tanh(&gelu) }
    } else if activation.is_some() {
        // an inference Dropout after the ReLU is a no-op
        let dropout = v.node(Role::Dropout).is_some();
        if v.node(Role::MatMul2).is_some() {
            match layer(&v, Role::MatMul2, Role::Bias2)? {
                Ok(second) => Tail::Mlp { second, dropout },
                Err(why) => return Ok(Availability::NoKernel(format!("the second layer: {why}"))),
            }
        } else {
            Tail::Relu { dropout }
        }
    } else {
        Tail::None
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

/// Whether the GELU (its nodes from detection) is the tanh approximation: the `Gelu` op with
/// `approximate="tanh"`, or the decomposed form with a `Tanh` (the exact form has an `Erf`).
fn gelu_tanh(nodes: &[&pb::NodeProto]) -> bool {
    match nodes {
        [g] if g.op_type == "Gelu" => super::attr_s(g, "approximate").as_deref() == Some("tanh"),
        _ => nodes.iter().any(|n| is(n, "Tanh")),
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
