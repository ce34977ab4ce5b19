//! Explicit fusion of Add + LayerNorm (the transformer residual) into
//! `com.microsoft.SkipLayerNormalization(input, skip, gamma, beta)` with `epsilon`, read from the roles
//! detection gave each node (no matching again): the skip `Add`, and the layer norm's nodes.
//!
//! Takes the `LayerNormalization` op over the last axis (gamma, beta and epsilon taken over) and the
//! decomposed form `ReduceMean → Sub → Pow(2) → ReduceMean → Add(eps) → Sqrt → Div`, then optionally
//! `Mul(γ)` and `Add(β)`: epsilon from the eps constant, γ and β from the Mul/Add constants (γ = 1 and no
//! β when absent). Both summands must have the same 2-D or 3-D shape, as the kernel requires.
//! The kernel exists on CPU and on CUDA.

use anyhow::{anyhow, bail, Result};
use tract_onnx::pb;

use super::{is, Availability, Rewrite, View};
use crate::carve::Carved;
use crate::onnx::a_f;
use crate::patterns::Role;
use crate::runtime::Ep;

pub(crate) fn rewrite(c: &Carved, _ep: Ep) -> Result<Availability> {
    let v = View::new(c)?;
    let add = v.the(Role::Add)?;
    let ins: Vec<&str> = add.input.iter().map(|s| s.as_str()).filter(|s| !s.is_empty()).collect();
    let [a, b] = ins.as_slice() else { bail!("the skip Add has {} inputs", ins.len()) };
    let (da, db) = (v.dims(a)?, v.dims(b)?);
    if da != db || !(2..=3).contains(&da.len()) {
        return Ok(Availability::NoKernel(format!(
            "SkipLayerNormalization needs input and skip of one 2-D or 3-D shape; the Add has {da:?} and {db:?}"
        )));
    }
    let h = *da.last().unwrap_or(&0);
    let out = v.output()?;
    let ln = v.nodes(Role::LayerNorm);
    let mut rw = Rewrite::default();

    // (gamma, beta, epsilon, note)
    let (gamma, beta, eps, note) = match ln.as_slice() {
        [ln] if is(ln, "LayerNormalization") => {
            let gamma = vector(&v, &mut rw, &ln.input[1], h)?;
            let beta = match ln.input.get(2).filter(|x| !x.is_empty()) {
                Some(t) => Some(vector(&v, &mut rw, t, h)?),
                None => None,
            };
            (gamma, beta, super::attr_f(ln, "epsilon").unwrap_or(1e-5), "Add and LayerNormalization fused")
        }
        _ => {
            let d = match decomposed(&v, &ln)? {
                Ok(d) => d,
                Err(why) => return Ok(Availability::NoKernel(why)),
            };
            if v.elem_type(a) != 1 {
                return Ok(Availability::NoKernel(format!(
                    "the decomposed layer norm is read as float32; the Add's input has element type {}",
                    v.elem_type(a)
                )));
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
        }
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

/// Read the constants of the decomposed layer norm from its nodes (detection's): epsilon, and γ and β
/// when present; or why the kernel cannot take it (a `Pow` exponent other than 2).
fn decomposed(v: &View, nodes: &[&pb::NodeProto]) -> Result<std::result::Result<Decomposed, String>> {
    let reads = |n: &pb::NodeProto, t: &str| n.input.iter().any(|x| x == t);
    let find = |op: &str, t: &str| nodes.iter().copied().find(|n| is(n, op) && reads(n, t));
    let missing = |what: &str| anyhow!("the decomposed layer norm has no {what}");
    let pow = nodes.iter().copied().find(|n| is(n, "Pow")).ok_or_else(|| missing("Pow"))?;
    let exponent = v.scalar(pow.input.get(1).ok_or_else(|| missing("Pow exponent"))?)?;
    if exponent != 2.0 {
        return Ok(Err(format!("the decomposed layer norm's Pow has exponent {exponent}, not 2")));
    }
    let var = find("ReduceMean", &pow.output[0]).ok_or_else(|| missing("variance ReduceMean"))?;
    let add_eps = find("Add", &var.output[0]).ok_or_else(|| missing("epsilon Add"))?;
    let eps = v.scalar(v.other_input(add_eps, &var.output[0]).ok_or_else(|| missing("epsilon"))?)?;
    let div = nodes.iter().copied().find(|n| is(n, "Div")).ok_or_else(|| missing("Div"))?;
    let mut last = div.output[0].as_str();
    let mut gamma = None;
    let mut beta = None;
    if let Some(mul) = find("Mul", last) {
        gamma = v.other_input(mul, last).map(|g| g.to_string());
        last = mul.output[0].as_str();
    }
    if let Some(add) = find("Add", last) {
        beta = v.other_input(add, last).map(|b| b.to_string());
    }
    Ok(Ok(Decomposed { eps, gamma, beta }))
}
