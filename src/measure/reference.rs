//! A reduced precision against strict fp32: the same computation's outputs in fp16 (the converted model)
//! or TF32 (the same model, TF32 on) against the fp32 model's with TF32 off, on the same inputs (the fp16
//! inputs widened to fp32), on the same provider.
//!
//! Tolerances ([`reference_tolerance`]): fp16 `rtol = 1e-2`, `atol = 1e-2 · max(1, rms)` (fp16 keeps
//! 11 bits: 4.9e-4 per rounding, and a fused kernel rounds at other points than the unfused chain); TF32
//! `rtol = 1e-2`, `atol = 5e-3 · max(1, rms)` (10-bit mantissa products); both widened by `√(k/256)` for a
//! reduction of `k` terms, as the fused-against-unfused check is.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::equivalence::Values;
use super::equivalence::{check_with, tolerance_ep, tolerance_for};
use super::inputs::{random_inputs, HostTensor};
use super::session::{build_session_placed, run_plain, to_ort_values};
use super::{DType, Equivalence, InputSpec, Level, MeasureOptions, ModelSource, OutputValues};
use crate::runtime::Precision;

/// How far a reduced precision's outputs are from strict fp32's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrecisionError {
    /// The precision compared (`tf32` or `fp16`).
    pub precision: Precision,
    /// Unfused (`Disable`) against the fp32 reference (unfused, TF32 off).
    pub unfused: Equivalence,
    /// Runtime-fused (the headline level, `Extended`) against the fp32 reference.
    pub fused: Equivalence,
    /// The explicit-fused model against the fp32 reference, when there is one.
    #[serde(default)]
    pub explicit: Option<Equivalence>,
    /// The largest |value| of the fp32 reference's float outputs: [`PrecisionError::rel_err`] divides by it.
    #[serde(default)]
    pub reference_max_abs: f64,
}

impl PrecisionError {
    /// The largest elementwise relative error of any variant (`|a − b| / max(|b|, atol)`: large where
    /// the reference is near zero).
    pub fn max_rel_err(&self) -> f64 {
        let e = self.unfused.max_rel_err.max(self.fused.max_rel_err);
        self.explicit.as_ref().map_or(e, |x| e.max(x.max_rel_err))
    }

    /// The largest absolute error of any variant over the largest |reference| value: the relative error
    /// fuseval reports (a value the size of the output's range, not of its smallest element).
    pub fn rel_err(&self) -> f64 {
        let e = self.unfused.max_abs_err.max(self.fused.max_abs_err);
        let e = self.explicit.as_ref().map_or(e, |x| e.max(x.max_abs_err));
        if self.reference_max_abs > 0.0 {
            e / self.reference_max_abs
        } else {
            e
        }
    }

    /// Every variant within the tolerance.
    pub fn passed(&self) -> bool {
        self.unfused.passed && self.fused.passed && self.explicit.as_ref().is_none_or(|x| x.passed)
    }
}

/// `(rtol, atol_unit)` of `precision` against strict fp32 for a reduction of `k` terms (module docs).
pub fn reference_tolerance(precision: Precision, k: usize, ep: crate::runtime::Ep) -> (f64, f64) {
    match precision {
        Precision::Fp16 => tolerance_for(DType::F16, k),
        Precision::Tf32 => tolerance_ep(DType::F32, k, ep),
        Precision::Fp32 => tolerance_for(DType::F32, k),
    }
}

/// Inputs of a reduced-precision model widened to the fp32 model's: fp16 → fp32 (exact), others as they are.
fn widened(inputs: &[HostTensor]) -> Vec<HostTensor> {
    inputs
        .iter()
        .map(|h| match h.dtype {
            DType::F16 => HostTensor {
                dtype: DType::F32,
                data: h.to_f64().iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
                ..h.clone()
            },
            _ => h.clone(),
        })
        .collect()
}

/// Run `model` once on `inputs` at `level` in `precision`.
fn outputs(
    model: &[u8],
    level: Level,
    inputs: &[HostTensor],
    opts: &MeasureOptions,
    precision: Precision,
    label: &str,
) -> Result<Vec<OutputValues>> {
    let opts = MeasureOptions { precision, cuda_graph: false, ..opts.clone() };
    let (mut s, _) = build_session_placed(ModelSource::Bytes(model), level, &opts, None, label)?;
    let names: Vec<String> = inputs.iter().map(|h| h.name.clone()).collect();
    let values = to_ort_values(inputs, opts.ep)?;
    run_plain(&mut s, &names, &values, label)
}

/// `model` (and `explicit`) in `opts.precision` against `fp32_model` in strict fp32, on seeded inputs for
/// `specs` (the reduced-precision model's). `None` for fp32 itself. The outputs must carry the same names.
pub fn against_fp32(
    fp32_model: &[u8],
    model: &[u8],
    explicit: Option<&[u8]>,
    specs: &[InputSpec],
    opts: &MeasureOptions,
) -> Result<Option<PrecisionError>> {
    let precision = opts.precision;
    if precision == Precision::Fp32 {
        return Ok(None);
    }
    let _guard = super::MEASURE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let inputs = random_inputs(specs, opts.seed ^ 0x0072_6566).context("generating the reference inputs")?;
    let reference = outputs(fp32_model, Level::Disable, &widened(&inputs), opts, Precision::Fp32, "fp32 reference")?;
    let reference_max_abs = reference
        .iter()
        .filter_map(|o| match &o.values {
            Values::F32(v) => Some(v.iter().map(|x| x.abs() as f64).filter(|x| x.is_finite()).fold(0.0, f64::max)),
            Values::Float(v) => Some(v.iter().map(|x| x.abs()).filter(|x| x.is_finite()).fold(0.0, f64::max)),
            Values::Int(_) => None,
        })
        .fold(0.0, f64::max);
    let tol = |_: DType| reference_tolerance(precision, opts.reduction, opts.ep);
    let against = |level: Level, bytes: &[u8], label: &str| -> Result<Equivalence> {
        let out = outputs(bytes, level, &inputs, opts, precision, label)?;
        // fp16 outputs are held as f32 values: compare them as the fp32 outputs they stand for
        let out: Vec<OutputValues> = out
            .into_iter()
            .map(|o| OutputValues { dtype: if o.dtype == DType::F16 { DType::F32 } else { o.dtype }, ..o })
            .collect();
        Ok(check_with(&reference, &out, &tol))
    };
    Ok(Some(PrecisionError {
        precision,
        unfused: against(Level::Disable, model, "unfused (reduced precision)")?,
        fused: against(Level::Extended, model, "runtime-fused (reduced precision)")?,
        explicit: explicit.map(|e| against(Level::Disable, e, "explicit-fused (reduced precision)")).transpose()?,
        reference_max_abs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::f32_to_f16;

    /// fp32 host inputs rounded to fp16.
    fn narrowed(inputs: &[HostTensor]) -> Vec<HostTensor> {
        inputs
            .iter()
            .map(|h| match h.dtype {
                DType::F32 => HostTensor {
                    dtype: DType::F16,
                    data: h.to_f64().iter().flat_map(|&v| f32_to_f16(v as f32).to_le_bytes()).collect(),
                    ..h.clone()
                },
                _ => h.clone(),
            })
            .collect()
    }

    #[test]
    fn widening_undoes_narrowing_of_fp16_values() {
        let vals = [0.5f32, -1.25, 3.0, 1e-3];
        let h = HostTensor {
            name: "x".into(),
            dtype: DType::F32,
            shape: vec![4],
            data: vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        let n = narrowed(std::slice::from_ref(&h));
        assert_eq!((n[0].dtype, n[0].data.len()), (DType::F16, 8));
        let w = widened(&n);
        assert_eq!(w[0].dtype, DType::F32);
        let back: Vec<f32> = w[0].data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        for (a, b) in back.iter().zip(vals) {
            assert!((a - b).abs() <= b.abs() * 1e-3, "{a} vs {b}");
        }
        let ids =
            HostTensor { name: "ids".into(), dtype: DType::I64, shape: vec![1], data: 7i64.to_le_bytes().to_vec() };
        assert_eq!(widened(std::slice::from_ref(&ids)), [ids]);
    }

    #[test]
    fn tolerances_by_precision() {
        let cpu = crate::runtime::Ep::Cpu;
        assert_eq!(reference_tolerance(Precision::Fp16, 1, cpu), (1e-2, 1e-2));
        assert_eq!(reference_tolerance(Precision::Fp16, 1024, cpu), (2e-2, 2e-2));
        assert_eq!(reference_tolerance(Precision::Tf32, 1, crate::runtime::Ep::Cuda { device_id: 0 }), (1e-2, 5e-3));
    }
}
