//! Seeded random input tensors (never all zeros) and the raw host byte layout shared by every session.

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{DType, InputSpec};
use crate::onnx::{f16_to_f32, f32_to_f16};

/// A tensor in host memory: little-endian elements of `dtype`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl HostTensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements widened to f64 (bools as 0/1).
    pub fn to_f64(&self) -> Vec<f64> {
        decode_f64(self.dtype, &self.data)
    }
}

/// Element count of `shape`, or an error on overflow.
pub(crate) fn element_count(shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).context("tensor shape overflows usize")
}

/// Random inputs for `specs`, seeded: the same seed gives the same bytes.
///
/// Floats are uniform in `[-1, 1)` (or in `range` when given), never exactly 0; integers uniform in
/// `range` = `[lo, hi)` (default `[0, 2)`); bools fair coin flips. Empty tensors are rejected.
pub fn random_inputs(specs: &[InputSpec], seed: u64) -> Result<Vec<HostTensor>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    specs.iter().map(|s| random_tensor(s, &mut rng).with_context(|| format!("input `{}`", s.name))).collect()
}

fn random_tensor(spec: &InputSpec, rng: &mut ChaCha8Rng) -> Result<HostTensor> {
    let n = element_count(&spec.shape)?;
    if n == 0 {
        bail!("shape {:?} has no elements; fuseval cannot time empty tensors", spec.shape);
    }
    let bytes = n.checked_mul(spec.dtype.size_bytes()).context("tensor byte size overflows usize")?;
    let mut data = Vec::with_capacity(bytes);
    match spec.dtype {
        DType::F32 | DType::F64 | DType::F16 => {
            let (lo, hi) = match spec.range {
                Some((lo, hi)) => (lo as f64, hi as f64),
                None => (-1.0, 1.0),
            };
            if lo >= hi {
                bail!("empty range [{lo}, {hi})");
            }
            for _ in 0..n {
                let v = nonzero_uniform(rng, lo, hi);
                match spec.dtype {
                    DType::F32 => data.extend_from_slice(&(v as f32).to_le_bytes()),
                    DType::F64 => data.extend_from_slice(&v.to_le_bytes()),
                    _ => data.extend_from_slice(&f32_to_f16(v as f32).to_le_bytes()),
                }
            }
        }
        DType::Bool => {
            for _ in 0..n {
                data.push(rng.random_bool(0.5) as u8);
            }
        }
        DType::I64 | DType::I32 | DType::I8 | DType::U8 => {
            let (lo, hi) = spec.range.unwrap_or((0, 2));
            if lo >= hi {
                bail!("empty integer range [{lo}, {hi})");
            }
            let (min, max) = spec.dtype.int_bounds();
            if lo < min || hi - 1 > max {
                bail!("range [{lo}, {hi}) does not fit in {:?}", spec.dtype);
            }
            for _ in 0..n {
                let v = rng.random_range(lo..hi);
                match spec.dtype {
                    DType::I64 => data.extend_from_slice(&v.to_le_bytes()),
                    DType::I32 => data.extend_from_slice(&(v as i32).to_le_bytes()),
                    DType::I8 => data.push(v as i8 as u8),
                    _ => data.push(v as u8),
                }
            }
        }
    }
    Ok(HostTensor { name: spec.name.clone(), dtype: spec.dtype, shape: spec.shape.clone(), data })
}

/// Uniform in `[lo, hi)`, redrawn while exactly zero (unless the range is `{0}`-only in practice).
fn nonzero_uniform(rng: &mut ChaCha8Rng, lo: f64, hi: f64) -> f64 {
    for _ in 0..16 {
        let v = rng.random_range(lo..hi);
        if v != 0.0 {
            return v;
        }
    }
    lo
}

/// Decode little-endian elements of `dtype` to f64 (bools as 0/1). Trailing partial elements are ignored.
pub(crate) fn decode_f64(dtype: DType, bytes: &[u8]) -> Vec<f64> {
    let size = dtype.size_bytes();
    bytes
        .chunks_exact(size)
        .map(|c| match dtype {
            DType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            DType::F64 => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            DType::F16 => f16_to_f32(u16::from_le_bytes([c[0], c[1]])) as f64,
            DType::I64 => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64,
            DType::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            DType::I8 => c[0] as i8 as f64,
            DType::U8 => c[0] as f64,
            DType::Bool => (c[0] != 0) as u8 as f64,
        })
        .collect()
}

/// Decode integer-like elements exactly (bools as 0/1). Floats are truncated; use [`decode_f64`] for them.
pub(crate) fn decode_i64(dtype: DType, bytes: &[u8]) -> Vec<i64> {
    let size = dtype.size_bytes();
    bytes
        .chunks_exact(size)
        .map(|c| match dtype {
            DType::I64 => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            DType::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64,
            DType::I8 => c[0] as i8 as i64,
            DType::U8 => c[0] as i64,
            DType::Bool => (c[0] != 0) as i64,
            _ => 0,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trip() {
        for (x, h) in
            [(1.0f32, 0x3c00u16), (-2.0, 0xc000), (65504.0, 0x7bff), (0.1, 0x2e66), (5.960_464_5e-8, 0x0001), (0.0, 0)]
        {
            assert_eq!(f32_to_f16(x), h, "{x}");
            assert_eq!(f16_to_f32(h), f16_to_f32(f32_to_f16(x)));
        }
        assert_eq!(f32_to_f16(1e6), 0x7c00);
        assert_eq!(f32_to_f16(1e-9), 0);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        for i in 0..0x7c00u16 {
            assert_eq!(f32_to_f16(f16_to_f32(i)), i);
        }
    }
}
