//! Hand-made results around real fixtures (loaded, graphed and detected, never timed), for the report tests.

use fuseval::calibration::{Metadata, HEADLINE_LEVEL};
use fuseval::pipeline::Prepared;
use fuseval::runtime::Hardware;

pub const CPU: &str = "Test CPU @ 3.0GHz";

/// A bench run's metadata for the fixture `p`, as a run on a 2-core test machine would write it.
pub fn metadata(p: &Prepared, quick: bool) -> Metadata {
    Metadata {
        tool: "fuseval".into(),
        fuseval_version: env!("CARGO_PKG_VERSION").into(),
        date: "2026-01-02T03:04:05Z".into(),
        model: p.loaded.path.display().to_string(),
        model_inputs: p.loaded.input_dims().into_iter().collect(),
        hardware: Hardware {
            cpu_model: CPU.into(),
            logical_cores: 2,
            memory_bytes: 8 << 30,
            os: "Test OS".into(),
            gpu: None,
        },
        runtime: "onnxruntime".into(),
        ort_version: "1.31.1".into(),
        provenance: Default::default(),
        execution_provider: "cpu".into(),
        cuda_graph: false,
        threads: 2,
        quick,
        seed: 42,
        target_rel_ci: if quick { 0.05 } else { 0.02 },
        budget_per_instance_s: if quick { 1.5 } else { 10.0 },
        headline_level: HEADLINE_LEVEL.into(),
        replicates: 1,
        gpu_clock_check: None,
        measured: "1.0 s".into(),
        phases: vec![],
        precision: None,
        run: None,
    }
}
