//! Explicit fusion of Add + LayerNorm (the transformer residual) into
//! `com.microsoft.SkipLayerNormalization(input, skip, gamma, beta)` with `epsilon`.
//!
//! Accepts the `LayerNormalization` op over the last axis (gamma, beta and epsilon taken over) and the
//! decomposed form `ReduceMean → Sub → Pow(2) → ReduceMean → Add(eps) → Sqrt → Div`, then optionally
//! `Mul(γ)` and `Add(β)`: epsilon from the eps constant, γ and β from the Mul/Add constants (γ = 1 and no
//! β when absent). Both summands must have the same 2-D or 3-D shape, as the kernel requires.
//! The kernel exists on CPU and on CUDA.

use anyhow::Result;
use tract_onnx::pb;

use super::{is, unsupported, Availability, Rewrite, View};
use crate::carve::Carved;
use crate::onnx::a_f;
use crate::runtime::Ep;

pub(crate) fn rewrite(c: &Carved, _ep: Ep) -> Result<Availability> {
    let v = View::new(c)?;
    let main = v.main.clone();
    let Some(add) = main.first().filter(|n| is(n, "Add")) else { return unsupported(&v) };
    let ins: Vec<&str> = add.input.iter().map(|s| s.as_str()).collect();
    let [a, b] = ins.as_slice() else { return unsupported(&v) };
    let (da, db) = (v.dims(a)?, v.dims(b)?);
    if da != db || !(2..=3).contains(&da.len()) {
        return Ok(Availability::NoKernel(format!(
            "SkipLayerNormalization needs input and skip of one 2-D or 3-D shape; the Add has {da:?} and {db:?}"
        )));
    }
    let h = *da.last().unwrap_or(&0);
    let s = add.output[0].as_str();
    let out = v.output()?;
    let rest = &main[1..];
    let mut rw = Rewrite::default();

    // (gamma, beta, epsilon, note)
    let (gamma, beta, eps, note) = if let [ln] = rest {
        if !is(ln, "LayerNormalization") || ln.input.first().map(|x| x.as_str()) != Some(s) {
            return unsupported(&v);
        }
        let axis = super::attr_i(ln, "axis").unwrap_or(-1);
        if axis != -1 && axis != da.len() as i64 - 1 {
            return unsupported(&v);
        }
        let gamma = vector(&v, &mut rw, &ln.input[1], h)?;
        let beta = match ln.input.get(2).filter(|x| !x.is_empty()) {
            Some(t) => Some(vector(&v, &mut rw, t, h)?),
            None => None,
        };
        (gamma, beta, super::attr_f(ln, "epsilon").unwrap_or(1e-5), "Add and LayerNormalization fused")
    } else {
        let Some(d) = decomposed(&v, s, rest)? else { return unsupported(&v) };
        if v.elem_type(a) != 1 {
            return unsupported(&v);
        }
        let gamma = match &d.gamma {
            Some(t) => vector(&v, &mut rw, t, h)?,
            None => rw.f32_const("gamma", &[h], &vec![1.0; h as usize]),
        };
        let beta = match &d.beta {
            Some(t) => Some(vector(&v, &mut rw, t, h)?),
            None => None,
        };
        (gamma, beta, d.eps, "Add and decomposed layer norm fused; epsilon, gamma and beta read from its constants")
    };
    let mut inputs = vec![*a, *b, gamma.as_str()];
    if let Some(beta) = &beta {
        inputs.push(beta);
    }
    rw.node("SkipLayerNormalization", "com.microsoft", &inputs, out, vec![a_f("epsilon", eps)]);
    rw.finish(&v, note)
}

/// A per-feature vector `[H]`: the tensor itself (viewed 1-D) when it holds H values, expanded when
/// it holds one.
fn vector(v: &View, rw: &mut Rewrite, name: &str, h: i64) -> Result<String> {
    let dims = v.dims(name)?;
    let numel: i64 = dims.iter().product();
    if numel == h && v.inits.contains_key(name) {
        return rw.redim(v, name, &[h]);
    }
    let (_, vals) = v.value(name)?;
    let vals = if vals.len() == 1 { vec![vals[0]; h as usize] } else { vals };
    if vals.len() as i64 != h {
        anyhow::bail!("`{name}` has {} values for {h} features", vals.len());
    }
    Ok(rw.f32_const("ln", &[h], &vals))
}

struct Decomposed {
    eps: f32,
    gamma: Option<String>,
    beta: Option<String>,
}

/// Match the decomposed layer norm reading `s` over exactly the nodes `rest`.
fn decomposed(v: &View, s: &str, rest: &[&pb::NodeProto]) -> Result<Option<Decomposed>> {
    let reads = |n: &pb::NodeProto, t: &str| n.input.iter().any(|x| x == t);
    let find = |op: &str, t: &str| rest.iter().copied().find(|n| is(n, op) && reads(n, t));
    let Some(mean) = find("ReduceMean", s) else { return Ok(None) };
    let Some(sub) = rest
        .iter()
        .copied()
        .find(|n| is(n, "Sub") && n.input.len() == 2 && n.input[0] == s && n.input[1] == mean.output[0])
    else {
        return Ok(None);
    };
    let d = sub.output[0].as_str();
    let Some(pow) = find("Pow", d) else { return Ok(None) };
    if pow.input.len() != 2 || !v.is_const(&pow.input[1]) || v.scalar(&pow.input[1])? != 2.0 {
        return Ok(None);
    }
    let Some(var) = find("ReduceMean", &pow.output[0]) else { return Ok(None) };
    let Some(add_eps) = find("Add", &var.output[0]) else { return Ok(None) };
    let Some(eps_t) = v.other_input(add_eps, &var.output[0]).filter(|e| v.is_const(e)) else { return Ok(None) };
    let eps = v.scalar(eps_t)?;
    let Some(sqrt) = find("Sqrt", &add_eps.output[0]) else { return Ok(None) };
    let Some(div) = rest
        .iter()
        .copied()
        .find(|n| is(n, "Div") && n.input.len() == 2 && n.input[0] == d && n.input[1] == sqrt.output[0])
    else {
        return Ok(None);
    };
    let mut used = 7;
    let mut last = div.output[0].as_str();
    let mut gamma = None;
    let mut beta = None;
    if let Some(mul) = find("Mul", last) {
        if let Some(g) = v.other_input(mul, last).filter(|g| v.is_const(g)) {
            gamma = Some(g.to_string());
            last = mul.output[0].as_str();
            used += 1;
        }
    }
    if let Some(add) = find("Add", last) {
        if let Some(b) = v.other_input(add, last).filter(|b| v.is_const(b)) {
            beta = Some(b.to_string());
            used += 1;
        }
    }
    if used != rest.len() || !last_axis(v, mean) || !last_axis(v, var) {
        return Ok(None);
    }
    Ok(Some(Decomposed { eps, gamma, beta }))
}

/// A ReduceMean over the last axis, keeping dims (axes as attribute, or as a constant int64 input).
fn last_axis(v: &View, n: &pb::NodeProto) -> bool {
    if super::attr_i(n, "keepdims") == Some(0) {
        return false;
    }
    let Ok(rank) = v.dims(&v.c.inputs[0].0).map(|d| d.len() as i64) else { return false };
    let axes: Vec<i64> = match super::attr(n, "axes") {
        Some(a) => a.ints.clone(),
        None => match n.input.get(1).and_then(|t| v.inits.get(t.as_str())) {
            Some(t) if !t.raw_data.is_empty() => {
                t.raw_data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()
            }
            Some(t) => t.int64_data.clone(),
            None => return false,
        },
    };
    axes.len() == 1 && (axes[0] == -1 || axes[0] == rank - 1)
}
