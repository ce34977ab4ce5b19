//! `fuseval inspect --patterns`: the pattern catalog, derived from the pattern descriptors
//! (`src/patterns/*.rs`): each pattern's key, title, the ONNX forms it accepts and the fused kernel
//! fuseval's explicit rewrite maps it to on CPU and on CUDA.

use std::fmt::Write;

use serde::Serialize;

use crate::patterns::Pattern;
use crate::runtime::Ep;

/// One pattern of the catalog.
#[derive(Clone, Debug, Serialize)]
pub struct CatalogEntry {
    pub key: String,
    pub title: String,
    pub operators: Vec<String>,
    pub forms: Vec<String>,
    /// The fused kernel on each provider; `none` when ORT has none there.
    pub kernel_cpu: String,
    pub kernel_cuda: String,
    /// What was measured on a GPU (results/h100, ONNX Runtime 1.31.1): whether ORT fuses it by itself
    /// on CUDA, and how the explicit kernel fared. Empty where nothing was measured.
    pub cuda_measured: String,
}

/// Every pattern, in `Pattern::ALL` order.
pub fn catalog() -> Vec<CatalogEntry> {
    Pattern::ALL
        .iter()
        .map(|&p| CatalogEntry {
            key: p.key().into(),
            title: p.title(),
            operators: p.operators().iter().map(|s| s.to_string()).collect(),
            forms: p.descriptor().forms.iter().map(|s| s.to_string()).collect(),
            kernel_cpu: crate::fuse::kernel_for(p, Ep::Cpu).into(),
            kernel_cuda: crate::fuse::kernel_for(p, Ep::Cuda { device_id: 0 }).into(),
            cuda_measured: p.descriptor().cuda_measured.into(),
        })
        .collect()
}

/// The catalog as text: one block per pattern.
pub fn catalog_text(entries: &[CatalogEntry]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Pattern catalog: {} patterns", entries.len());
    for e in entries {
        let _ = writeln!(s);
        let _ = writeln!(s, "{} ({})", e.key, e.title);
        for f in &e.forms {
            let _ = writeln!(s, "  form: {f}");
        }
        let _ = writeln!(s, "  kernel: CPU {}; CUDA {}", e.kernel_cpu, e.kernel_cuda);
        if !e.cuda_measured.is_empty() {
            let _ = writeln!(s, "  measured on CUDA (H100): {}", e.cuda_measured);
        }
    }
    s
}
