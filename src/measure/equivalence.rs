//! Output equivalence: do the fused variants compute the same thing as the unfused graph?
//!
//! Floats pass when `|a - b| <= atol + rtol * |b|` elementwise (`b` the reference), with `atol` scaled to the
//! reference's magnitude: `atol = atol_unit * max(1, rms(b))`. Integers and bools must match exactly.

use serde::{Deserialize, Serialize};

use super::inputs::{decode_f64, decode_i64};
use super::DType;

/// The result of comparing a variant's outputs with the reference's.
///
/// `atol`/`rtol` are the largest tolerances used over the compared outputs. `max_rel_err` is
/// `max |a - b| / max(|b|, atol)`. When outputs cannot be compared (different names, shapes or dtypes, or a
/// NaN/infinity against a different value), `passed` is false and `max_abs_err` is `f64::MAX`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Equivalence {
    pub passed: bool,
    pub max_abs_err: f64,
    pub max_rel_err: f64,
    pub atol: f64,
    pub rtol: f64,
    pub outputs_compared: usize,
}

impl Equivalence {
    /// Nothing compared yet (passes vacuously; `outputs_compared == 0` tells).
    pub fn empty() -> Self {
        Equivalence { passed: true, max_abs_err: 0.0, max_rel_err: 0.0, atol: 0.0, rtol: 0.0, outputs_compared: 0 }
    }

    /// Combine two comparisons (e.g. two input sets): passes only if both do; errors and tolerances are maxima.
    pub fn merge(self, other: Equivalence) -> Equivalence {
        Equivalence {
            passed: self.passed && other.passed,
            max_abs_err: self.max_abs_err.max(other.max_abs_err),
            max_rel_err: self.max_rel_err.max(other.max_rel_err),
            atol: self.atol.max(other.atol),
            rtol: self.rtol.max(other.rtol),
            outputs_compared: self.outputs_compared + other.outputs_compared,
        }
    }

    fn incomparable(mut self) -> Equivalence {
        self.passed = false;
        self.max_abs_err = f64::MAX;
        self.max_rel_err = f64::MAX;
        self
    }
}

/// Element values of one output, decoded from host bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// f64 outputs.
    Float(Vec<f64>),
    /// f32 and f16 outputs, kept at f32 (half the memory of widening them; compared in f64).
    F32(Vec<f32>),
    /// Integer and bool outputs, exact.
    Int(Vec<i64>),
}

/// One named output tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputValues {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub values: Values,
}

impl OutputValues {
    /// Its name, dtype and shape, without the values.
    pub fn shape_only(&self) -> OutputValues {
        let values = match self.values {
            Values::Float(_) => Values::Float(vec![]),
            Values::F32(_) => Values::F32(vec![]),
            Values::Int(_) => Values::Int(vec![]),
        };
        OutputValues { name: self.name.clone(), dtype: self.dtype, shape: self.shape.clone(), values }
    }

    /// Decode little-endian bytes of `dtype`.
    pub fn from_bytes(name: impl Into<String>, dtype: DType, shape: Vec<usize>, bytes: &[u8]) -> Self {
        let values = if matches!(dtype, DType::F32 | DType::F16) {
            Values::F32(decode_f64(dtype, bytes).into_iter().map(|v| v as f32).collect())
        } else if dtype.is_float() {
            Values::Float(decode_f64(dtype, bytes))
        } else {
            Values::Int(decode_i64(dtype, bytes))
        };
        OutputValues { name: name.into(), dtype, shape, values }
    }

    /// Float output from f32 values (handy in tests).
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        OutputValues { name: name.into(), dtype: DType::F32, shape, values: Values::F32(values.to_vec()) }
    }
}

/// `(rtol, atol_unit)` for a dtype; `atol = atol_unit * max(1, rms(reference))`.
pub fn tolerance(dtype: DType) -> (f64, f64) {
    match dtype {
        DType::F32 => (1e-3, 1e-4),
        DType::F64 => (1e-7, 1e-9),
        DType::F16 => (1e-2, 1e-2),
        _ => (0.0, 0.0),
    }
}

/// `(rtol, atol_unit)` for a dtype and a reduction of `k` terms: a float sum's rounding error grows
/// about as √k, so the tolerances widen by √(k/256) past 256 terms (a 768-wide MatMul: ×1.7; a 3x3
/// conv over 512 channels: ×4.2).
pub fn tolerance_for(dtype: DType, k: usize) -> (f64, f64) {
    let (rtol, unit) = tolerance(dtype);
    let widen = (k as f64 / 256.0).sqrt().max(1.0);
    (rtol * widen, unit * widen)
}

/// `(rtol, atol_unit)` for a dtype, a reduction of `k` terms and the provider that computed both sides.
/// On CUDA, f32 MatMuls and convolutions run on TF32 tensor cores by default (10-bit mantissa, about
/// 5e-4 relative per product) and cuDNN picks different algorithms for fused and unfused convolutions,
/// so f32 gets (1e-2, 5e-3) before the √(k/256) widening, where the CPU gets (1e-3, 1e-4).
pub fn tolerance_ep(dtype: DType, k: usize, ep: crate::runtime::Ep) -> (f64, f64) {
    match (ep, dtype) {
        (crate::runtime::Ep::Cuda { .. }, DType::F32) => {
            let widen = (k as f64 / 256.0).sqrt().max(1.0);
            (1e-2 * widen, 5e-3 * widen)
        }
        _ => tolerance_for(dtype, k),
    }
}

/// `(rtol, atol_unit)` for an output of `dtype` computed in `precision`: computed in fp16, fp16's
/// tolerance whatever the output's dtype (a whole model converted keeps fp32 inputs and outputs around
/// fp16 arithmetic); otherwise [`tolerance_ep`].
pub fn tolerance_in(
    dtype: DType,
    k: usize,
    ep: crate::runtime::Ep,
    precision: crate::runtime::Precision,
) -> (f64, f64) {
    match (precision, dtype) {
        (crate::runtime::Precision::Fp16, DType::F32 | DType::F16) => tolerance_for(DType::F16, k),
        _ => tolerance_ep(dtype, k, ep),
    }
}

/// [`check_equivalence_for`] with the tolerances of the options' provider, precision and reduction
/// ([`tolerance_in`]).
pub fn check_equivalence_ep(
    reference: &[OutputValues],
    candidate: &[OutputValues],
    opts: &super::MeasureOptions,
) -> Equivalence {
    check_with(reference, candidate, &|d| tolerance_in(d, opts.reduction, opts.ep, opts.precision))
}

/// Compare `candidate` with `reference`, output by output (matched by name), for a reduction of `k`.
pub fn check_equivalence_for(reference: &[OutputValues], candidate: &[OutputValues], k: usize) -> Equivalence {
    check_with(reference, candidate, &|d| tolerance_for(d, k))
}

pub(crate) fn check_with(
    reference: &[OutputValues],
    candidate: &[OutputValues],
    tol: &dyn Fn(DType) -> (f64, f64),
) -> Equivalence {
    let mut eq = Equivalence::empty();
    if reference.len() != candidate.len() {
        return eq.incomparable();
    }
    for r in reference {
        let Some(c) = candidate.iter().find(|c| c.name == r.name) else {
            return eq.incomparable();
        };
        eq = eq.merge(compare_one(r, c, tol));
    }
    eq
}

/// Compare `candidate` with `reference`, output by output (matched by name).
pub fn check_equivalence(reference: &[OutputValues], candidate: &[OutputValues]) -> Equivalence {
    check_equivalence_for(reference, candidate, 1)
}

fn compare_one(r: &OutputValues, c: &OutputValues, tol: &dyn Fn(DType) -> (f64, f64)) -> Equivalence {
    let mut eq = Equivalence { outputs_compared: 1, ..Equivalence::empty() };
    if r.dtype != c.dtype || r.shape != c.shape {
        return eq.incomparable();
    }
    match (&r.values, &c.values) {
        (Values::Int(a), Values::Int(b)) => {
            if a.len() != b.len() {
                return eq.incomparable();
            }
            for (&x, &y) in b.iter().zip(a) {
                let d = (x as f64 - y as f64).abs();
                if x != y {
                    eq.passed = false;
                }
                eq.max_abs_err = eq.max_abs_err.max(d);
                eq.max_rel_err = eq.max_rel_err.max(d / (y as f64).abs().max(1.0));
            }
            eq
        }
        (Values::F32(refv), Values::F32(cand)) => compare_floats(eq, r.dtype, refv, cand, tol),
        (Values::Float(refv), Values::Float(cand)) => compare_floats(eq, r.dtype, refv, cand, tol),
        _ => eq.incomparable(),
    }
}

/// Float outputs elementwise, in f64: `|c − r| ≤ atol + rtol·|r|` (see [`tolerance`]).
fn compare_floats<T: Copy + Into<f64>>(
    mut eq: Equivalence,
    dtype: DType,
    refv: &[T],
    cand: &[T],
    tol: &dyn Fn(DType) -> (f64, f64),
) -> Equivalence {
    if refv.len() != cand.len() {
        return eq.incomparable();
    }
    let (rtol, unit) = tol(dtype);
    // the RMS of the finite reference values, in one pass (no copy of a large output)
    let (sum, n) = refv
        .iter()
        .map(|&v| v.into())
        .filter(|v: &f64| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v * v, n + 1));
    let rms = if n == 0 { 0.0 } else { (sum / n as f64).sqrt() };
    let atol = unit * rms.max(1.0);
    eq.atol = atol;
    eq.rtol = rtol;
    let mut incomparable = false;
    for (&b, &a) in refv.iter().zip(cand) {
        let (a, b): (f64, f64) = (a.into(), b.into());
        if !(a.is_finite() && b.is_finite()) {
            // NaN matches NaN, infinities match themselves; anything else cannot be measured.
            if !((a.is_nan() && b.is_nan()) || a == b) {
                incomparable = true;
            }
            continue;
        }
        let d = (a - b).abs();
        if d > atol + rtol * b.abs() {
            eq.passed = false;
        }
        eq.max_abs_err = eq.max_abs_err.max(d);
        eq.max_rel_err = eq.max_rel_err.max(d / b.abs().max(atol));
    }
    if incomparable {
        eq.incomparable()
    } else {
        eq
    }
}
