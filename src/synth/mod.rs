//! Synthetic models for `fuseval calibrate`: every catalog pattern built as a standalone ONNX model at
//! each size of its grid, so it can be measured without a real model.
//!
//! A model (opset 17, IR 8, batch 1, static shapes) holds exactly one instance of its pattern and no other
//! node: activations are graph inputs, weights are initializers of seeded random values. Each pattern's
//! file says how (its descriptor's `synth`: the grid from `patterns::sweep`, the FLOPs, the builder), in
//! the forms PyTorch's exporter writes and `crate::patterns` accepts. `gemm_model` and `add_model` are
//! the peak-compute and bandwidth probes.

use anyhow::{bail, Result};

use crate::onnx::build::Model;
pub use crate::onnx::build::Size;
use crate::onnx::DType;
use crate::patterns::Pattern;
use crate::runtime::Ep;

/// The sizes to sweep for a pattern, smallest work first (see `patterns::sweep`).
pub fn grid(pattern: Pattern, quick: bool, ep: Ep) -> Vec<Size> {
    (pattern.descriptor().synth.grid)(quick, ep != Ep::Cpu)
}

/// Floating-point operations of `pattern` at `size`, as built: 2 per multiply-add, 1 per element of each
/// element-wise node (a rough count, to order sizes and compare with a roofline).
pub fn flops(pattern: Pattern, size: &Size) -> Result<f64> {
    (pattern.descriptor().synth.flops)(size)
}

/// A standalone ONNX model holding exactly one instance of `pattern` at `size`, weights drawn from a
/// ChaCha8 generator seeded with `seed`.
pub fn build(pattern: Pattern, size: &Size, seed: u64) -> Result<Vec<u8>> {
    let mut m = Model::new(seed);
    let out = (pattern.descriptor().synth.build)(&mut m, size)?;
    m.finish(&out)
}

/// Peak-compute probe: `Y = MatMul(A, B)`, A and B graph inputs `[n, n]` of `dtype` (F32 or F16).
pub fn gemm_model(n: usize, dtype: DType) -> Result<Vec<u8>> {
    if !matches!(dtype, DType::F32 | DType::F16) {
        bail!("gemm_model: dtype {dtype:?} is not supported (F32 or F16)");
    }
    if n == 0 {
        bail!("gemm_model: n is 0");
    }
    let mut m = Model::new(0);
    m.elem = dtype.onnx_code();
    let a = m.input("A", &[n, n]);
    let b = m.input("B", &[n, n]);
    m.op("matmul", "MatMul", &[&a, &b], vec![]);
    m.finish(&[n, n])
}

/// Bandwidth probe: `Y = Add(A, B)`, A and B graph inputs `[numel]` f32 (bytes moved: 3·4·numel).
pub fn add_model(numel: usize) -> Result<Vec<u8>> {
    if numel == 0 {
        bail!("add_model: numel is 0");
    }
    let mut m = Model::new(0);
    let a = m.input("A", &[numel]);
    let b = m.input("B", &[numel]);
    m.op("add", "Add", &[&a, &b], vec![]);
    m.finish(&[numel])
}
