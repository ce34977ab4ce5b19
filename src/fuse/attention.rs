//! Explicit fusion of the attention family into ORT's contrib kernels.
//!
//! - Attention_Head → `com.microsoft.MultiHeadAttention`: Q `[B,H,S,D]` is transposed and reshaped to
//!   `[B,S,H·D]`, Kᵀ `[B,H,D,T]` transposed back to K `[B,H,T,D]`, V `[B,H,T,Dv]` goes in as it is (MHA takes
//!   K and V in that BNSH layout), the mask as `attention_bias` (expanded to `[B|1, H|1, S, T]`: the kernel
//!   broadcasts the first two dims only), the scale (the product of every scale Mul/Div) as `scale`; the
//!   output `[B,S,H·Dv]` is reshaped and transposed back to `[B,H,S,Dv]`. Those boundary transposes are the
//!   price of the carved head's layout; inside a whole block they cancel (see MultiHead_Linear).
//! - MultiHead_Linear → `com.microsoft.Attention` (the hidden state, Q/K/V weights packed into
//!   `[hidden, 3·hidden]`, biases packed, the mask as `attention_bias`, `scale`) + `MatMul` + `Add` for the
//!   output projection.
//! - QK_Softmax → `com.microsoft.FusedMatMul` (the scale as `alpha`) + the mask `Add` + `Softmax`: the scale
//!   is folded, but it is not one kernel (BiasSoftmax is CUDA-only). Without a scale there is nothing to fold.
//! - Softmax_V: ORT has no fused kernel.
//!
//! sdpa's IsNaN/Where guard is dropped in the MHA/Attention rewrites: it only changes rows whose every
//! score is -inf (fully masked), where the kernels write other values; with finite masks (the random
//! inputs, and BERT's float-min masks) outputs agree. Float32 only; 4-D heads only.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};
use tract_onnx::pb;

use super::{is, Availability, Rewrite, View};
use crate::carve::Carved;
use crate::onnx::{a_f, a_i};
use crate::patterns::Role;

/// Q@Kᵀ + Softmax → FusedMatMul (scale folded) + Add + Softmax.
pub fn qk_softmax(c: &Carved) -> Result<Availability> {
    let v = View::new(c)?;
    let h = head(&v)?;
    if h.scale_nodes == 0 {
        return Ok(Availability::NoKernel(
            "no scale to fold: FusedMatMul would be a plain MatMul, and ORT has no MatMul+Softmax kernel on CPU".into(),
        ));
    }
    let out = v.output()?;
    let mut r = Rewrite::default();
    let scores = r.fresh("scores");
    r.node("FusedMatMul", "com.microsoft", &[&h.q, &h.kt], &scores, vec![a_f("alpha", h.scale)]);
    let mut t = scores;
    if let Some(m) = &h.mask {
        let masked = r.fresh("masked");
        r.node("Add", "", &[&t, m], &masked, vec![]);
        t = masked;
    }
    if h.guard {
        let p = r.fresh("probs");
        r.node("Softmax", "", &[&t], &p, vec![a_i("axis", -1)]);
        let nan = r.fresh("isnan");
        r.node("IsNaN", "", &[&p], &nan, vec![]);
        let zero = r.f32_const("zero", &[], &[0.0]);
        r.node("Where", "", &[&nan, &zero, &p], out, vec![]);
    } else {
        r.node("Softmax", "", &[&t], out, vec![a_i("axis", -1)]);
    }
    r.finish(&v, format!("scale {} folded into FusedMatMul alpha; mask Add and Softmax stay separate kernels", h.scale))
}

/// Softmax@V: no fused kernel.
pub fn softmax_v(_c: &Carved) -> Result<Availability> {
    Ok(Availability::NoKernel("ORT has no fused Softmax+MatMul kernel on CPU".into()))
}

/// Q@Kᵀ + Softmax + @V → MultiHeadAttention.
pub fn attention_head(c: &Carved) -> Result<Availability> {
    let v = View::new(c)?;
    let h = head(&v)?;
    let val = h.v.clone().context("the match has no MatMul with V")?;
    let (q, kt, vd) = (v.dims(&h.q)?, v.dims(&h.kt)?, v.dims(&val)?);
    if q.len() != 4 || kt.len() != 4 || vd.len() != 4 {
        return Ok(Availability::NoKernel(format!(
            "only 4-D heads [batch, heads, seq, head_size] are rewritten; Q is {q:?}, Kᵀ {kt:?}, V {vd:?}"
        )));
    }
    let (b, n, s, d, t, dv) = (q[0], q[1], q[2], q[3], kt[3], vd[3]);
    if kt[..3] != [b, n, d] || vd[..3] != [b, n, t] {
        return Ok(Availability::NoKernel(format!("Q {q:?}, Kᵀ {kt:?}, V {vd:?} are not one head layout")));
    }
    if v.elem_type(&h.q) != 1 {
        return Ok(Availability::NoKernel("only float32 heads are rewritten".into()));
    }
    let out = v.output()?;
    let mut r = Rewrite::default();
    let qt = r.fresh("q_bsnh");
    r.node("Transpose", "", &[&h.q], &qt, vec![perm(&[0, 2, 1, 3])]);
    let q3 = r.fresh("q_bsd");
    let shape = r.i64_const("shape", &[b, s, n * d]);
    r.node("Reshape", "", &[&qt, &shape], &q3, vec![]);
    let k = r.fresh("k_bnsh");
    r.node("Transpose", "", &[&h.kt], &k, vec![perm(&[0, 1, 3, 2])]);
    let bias = match &h.mask {
        Some(m) => match attention_bias(&v, &mut r, m, b, n, s, t)? {
            Some(x) => x,
            None => {
                return Ok(Availability::NoKernel(format!("mask {:?} does not broadcast to the scores", v.dims(m)?)))
            }
        },
        None => String::new(),
    };
    let o3 = r.fresh("o_bsd");
    r.node(
        "MultiHeadAttention",
        "com.microsoft",
        &[&q3, &k, &val, "", "", &bias],
        &o3,
        vec![a_i("num_heads", n), a_f("scale", h.scale)],
    );
    let o4 = r.fresh("o_bsnh");
    let shape = r.i64_const("shape", &[b, s, n, dv]);
    r.node("Reshape", "", &[&o3, &shape], &o4, vec![]);
    r.node("Transpose", "", &[&o4], out, vec![perm(&[0, 2, 1, 3])]);
    r.finish(
        &v,
        format!(
            "MultiHeadAttention (num_heads {n}, scale {}); Q, Kᵀ and the output transposed at the carved boundary{}",
            h.scale,
            if h.guard { "; sdpa IsNaN/Where dropped" } else { "" }
        ),
    )
}

/// MultiHead(Q,K,V) + Linear → Attention + MatMul + Add.
pub fn multihead_linear(c: &Carved) -> Result<Availability> {
    let v = View::new(c)?;
    let h = head(&v)?;
    let mut proj = vec![];
    for (matmul, bias) in [(Role::QMatMul, Role::QBias), (Role::KMatMul, Role::KBias), (Role::VMatMul, Role::VBias)] {
        match projection(&v, matmul, bias)? {
            Ok(p) => proj.push(p),
            Err(why) => return Ok(Availability::NoKernel(why)),
        }
    }
    if proj[0].x != proj[1].x || proj[0].x != proj[2].x {
        bail!("the Q, K and V projections read different tensors");
    }
    let o = match projection(&v, Role::OutMatMul, Role::OutBias)? {
        Ok(o) => o,
        Err(why) => return Ok(Availability::NoKernel(why)),
    };
    let out = v.output()?;
    // shapes of the head's inputs, from tract's analysis of the carved model
    let shapes = tensor_shapes(c)?;
    let dims = |t: &str| shapes.get(t).cloned().flatten().with_context(|| format!("the shape of `{t}` is unknown"));
    let (x, q, kt) = (dims(&proj[0].x)?, dims(&h.q)?, dims(&h.kt)?);
    if x.len() != 3 || q.len() != 4 || kt.len() != 4 {
        return Ok(Availability::NoKernel(format!(
            "hidden state {x:?}, Q {q:?}, Kᵀ {kt:?}: only [B,S,hidden] blocks with 4-D heads"
        )));
    }
    let (b, n, s, t) = (q[0], q[1], q[2], kt[3]);
    let sizes: Vec<i64> = proj.iter().map(|p| p.n).collect();
    if v.elem_type(&proj[0].x) != 1
        || sizes[0] != sizes[1]
        || sizes[0] % n != 0
        || sizes[2] % n != 0
        || x[2] != proj[0].k
    {
        return Ok(Availability::NoKernel(format!(
            "the projections ({}) do not pack into one Attention weight for {n} heads over a hidden state {x:?}",
            sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut r = Rewrite::default();
    let k = proj[0].k;
    let total: i64 = sizes.iter().sum();
    let mut w = vec![0f32; (k * total) as usize];
    let mut bias = vec![];
    let mut col = 0;
    for p in &proj {
        let (_, wv) = v.value(&p.w)?;
        for row in 0..k {
            for j in 0..p.n {
                w[(row * total + col + j) as usize] = wv[(row * p.n + j) as usize];
            }
        }
        bias.extend(v.value(&p.bias)?.1);
        col += p.n;
    }
    let w = r.f32_const("qkv_weight", &[k, total], &w);
    let bias = r.f32_const("qkv_bias", &[total], &bias);
    let mask = match &h.mask {
        Some(m) => match attention_bias(&v, &mut r, m, b, n, s, t)? {
            Some(x) => x,
            None => {
                return Ok(Availability::NoKernel(format!("mask {:?} does not broadcast to the scores", v.dims(m)?)))
            }
        },
        None => String::new(),
    };
    let att = r.fresh("attention");
    let mut attrs = vec![a_i("num_heads", n), a_f("scale", h.scale)];
    attrs.push(pb::AttributeProto {
        name: "qkv_hidden_sizes".into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: sizes.clone(),
        ..Default::default()
    });
    r.node("Attention", "com.microsoft", &[&proj[0].x, &w, &bias, "", "", &mask], &att, attrs);
    let mm = r.fresh("out_proj");
    r.node("MatMul", "", &[&att, &o.w], &mm, vec![]);
    r.node("Add", "", &[&mm, &o.bias], out, vec![]);
    r.finish(
        &v,
        format!(
            "Attention (num_heads {n}, scale {}, Q/K/V weights packed [{k}, {total}]) + MatMul + Add{}",
            h.scale,
            if h.guard { "; sdpa IsNaN/Where dropped" } else { "" }
        ),
    )
}

// ---------------------------------------------------------------------------------------------------
// Reading the carved head, by the roles detection gave its nodes

/// An attention head (or its scores) as detection found it.
struct Head {
    q: String,
    kt: String,
    v: Option<String>,
    mask: Option<String>,
    /// The product of every scale.
    scale: f32,
    scale_nodes: usize,
    /// sdpa's IsNaN/Where after the Softmax.
    guard: bool,
}

/// The head from its roles: Q and Kᵀ are the QK MatMul's operands (or what a scale before it
/// multiplies), the mask the mask Add's operand that is not the scores, V the PV MatMul's right operand.
fn head(v: &View) -> Result<Head> {
    let mm = v.the(Role::QkMatMul)?;
    let scales = v.nodes(Role::ScoreScale);
    let (mut scale, mut operands) = (1f32, vec![]);
    for s in &scales {
        scale *= scale_factor(v, s)?.1;
    }
    for i in mm.input.iter().filter(|i| !i.is_empty()) {
        match scales.iter().find(|s| s.output.first() == Some(i)) {
            Some(s) => operands.push(scale_factor(v, s)?.0.to_string()),
            None => operands.push(i.clone()),
        }
    }
    let [q, kt] = operands.as_slice() else { bail!("the QK MatMul `{}` has {} operands", mm.name, operands.len()) };
    let mask = match v.node(Role::Mask) {
        Some(add) => {
            let scores: Vec<&str> =
                std::iter::once(mm).chain(scales.iter().copied()).map(|n| n.output[0].as_str()).collect();
            let s = add.input.iter().find(|i| scores.contains(&i.as_str()));
            let m = s.and_then(|s| v.other_input(add, s));
            Some(
                m.with_context(|| format!("the mask Add `{}` does not add a mask to the scores", add.name))?
                    .to_string(),
            )
        }
        None => None,
    };
    let v_input = match v.node(Role::PvMatMul) {
        Some(pv) => Some(pv.input.get(1).with_context(|| format!("the PV MatMul `{}` has no V", pv.name))?.clone()),
        None => None,
    };
    Ok(Head {
        q: q.clone(),
        kt: kt.clone(),
        v: v_input,
        mask,
        scale,
        scale_nodes: scales.len(),
        guard: v.node(Role::SoftmaxGuard).is_some(),
    })
}

/// A scale `Mul` (either order) or `Div` (`x / c`) by a constant scalar: the other operand and the factor.
fn scale_factor<'n>(v: &View, n: &'n pb::NodeProto) -> Result<(&'n str, f32)> {
    let (a, b) = (n.input[0].as_str(), n.input.get(1).map(|s| s.as_str()).unwrap_or(""));
    if is(n, "Div") {
        return Ok((a, 1.0 / v.scalar(b)?));
    }
    if v.is_const(b) {
        Ok((a, v.scalar(b)?))
    } else if v.is_const(a) {
        Ok((b, v.scalar(a)?))
    } else {
        bail!("the scale `{}` multiplies two non-constants", n.name)
    }
}

/// A linear layer with bias: `MatMul(x, W)` then `Add` of a bias.
struct Projection {
    x: String,
    w: String,
    bias: String,
    k: i64,
    n: i64,
}

/// The projection whose MatMul plays `matmul` and whose bias Add plays `bias`; `Err` with the reason
/// when the kernels cannot take it (a Gemm).
fn projection(v: &View, matmul: Role, bias: Role) -> Result<std::result::Result<Projection, String>> {
    let mm = v.the(matmul)?;
    if is(mm, "Gemm") {
        return Ok(Err(format!("the {matmul:?} is a Gemm (a 2-D hidden state): Attention takes [batch, seq, hidden]")));
    }
    let add = v.the(bias)?;
    let (x, w) = match mm.input.as_slice() {
        [x, w] => (x.clone(), w.clone()),
        _ => bail!("the {matmul:?} `{}` has {} inputs", mm.name, mm.input.len()),
    };
    let b = v
        .other_input(add, &mm.output[0])
        .with_context(|| format!("the bias Add `{}` does not read `{}`", add.name, mm.name))?;
    let (wd, bd) = (v.dims(&w)?, v.dims(b)?);
    if wd.len() != 2 || bd.iter().product::<i64>() != wd[1] {
        return Ok(Err(format!("the {matmul:?} weight is {wd:?} with a bias of {bd:?}")));
    }
    Ok(Ok(Projection { x, w, bias: b.to_string(), k: wd[0], n: wd[1] }))
}

// ---------------------------------------------------------------------------------------------------
// Writing

fn perm(p: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: "perm".into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: p.to_vec(),
        ..Default::default()
    }
}

/// The mask as the kernels' `attention_bias` `[B|1, H|1, S, T]`: reshaped to 4-D and expanded over the
/// last two dims when it broadcasts there; `None` when it does not fit.
#[allow(clippy::too_many_arguments)]
fn attention_bias(v: &View, r: &mut Rewrite, mask: &str, b: i64, n: i64, s: i64, t: i64) -> Result<Option<String>> {
    if v.elem_type(mask) != 1 {
        return Ok(None);
    }
    let d = v.dims(mask)?;
    if d.len() > 4 {
        return Ok(None);
    }
    let mut d4 = vec![1; 4 - d.len()];
    d4.extend(&d);
    let fits = |have: i64, want: i64| have == 1 || have == want;
    if !(fits(d4[0], b) && fits(d4[1], n) && fits(d4[2], s) && fits(d4[3], t)) {
        return Ok(None);
    }
    let mut m = mask.to_string();
    if d.len() != 4 {
        let shape = r.i64_const("shape", &d4);
        let m4 = r.fresh("mask4");
        r.node("Reshape", "", &[&m, &shape], &m4, vec![]);
        m = m4;
    }
    if d4[2] != s || d4[3] != t {
        let shape = r.i64_const("shape", &[d4[0], d4[1], s, t]);
        let e = r.fresh("attention_bias");
        r.node("Expand", "", &[&m, &shape], &e, vec![]);
        m = e;
    }
    Ok(Some(m))
}

/// Every tensor's shape in the carved model, from tract (the carved inputs have concrete shapes).
fn tensor_shapes(c: &Carved) -> Result<HashMap<String, Option<Vec<i64>>>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "fuseval-attention-{}-{}.onnx",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, &c.bytes).with_context(|| format!("writing {}", path.display()))?;
    let loaded = crate::load::load(&path, &[]);
    let _ = std::fs::remove_file(&path);
    let loaded = loaded.context("analysing the carved block's shapes")?;
    Ok(loaded.tensors.into_iter().map(|(k, t)| (k, t.shape.map(|s| s.iter().map(|&d| d as i64).collect()))).collect())
}
