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
    /// Measured figures read from a calibration file (`inspect --patterns --calibration FILE`): one line per
    /// counted record of the pattern, with the machine it ran on. Nothing is compiled in: the binary prints
    /// no number it did not read.
    pub measured: Vec<String>,
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
            measured: vec![],
        })
        .collect()
}

/// The catalog with each pattern's measured figures from a calibration file: every record that counts
/// (outputs agree, A/A passed), its shapes, its best variant's speedup with the CI, and the machine.
pub fn catalog_with(source: &crate::calibration::read::Source) -> Vec<CatalogEntry> {
    let mut entries = catalog();
    for run in source.runs() {
        for r in run.records.iter().filter(|r| r.counts()) {
            let Some(e) = entries.iter_mut().find(|e| e.key == r.fusion_pattern) else { continue };
            let best = crate::calibration::best_estimate(r).unwrap_or(crate::estimate::Estimate::exact(1.0));
            e.measured.push(format!(
                "{}: {} {:.2}× [{:.2}, {:.2}] on {}",
                r.label(),
                r.best_variant,
                best.point,
                best.lo,
                best.hi,
                run.machine()
            ));
        }
    }
    entries
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
        for m in &e.measured {
            let _ = writeln!(s, "  measured: {m}");
        }
    }
    s
}
