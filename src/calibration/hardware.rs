//! The hardware's calibration, `HardwareCalibration` in the design's schema: ceilings, operation profiles,
//! a size sweep of every pattern, crossovers and the fusion-rule table. `fuseval calibrate` writes it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::roofline::{BottleneckType, Ceilings};
use super::{FusionCalibration, Status};
use crate::estimate::{Estimate, Verdict};
use crate::measure::Latency;

/// Version of the HardwareCalibration schema.
pub const HW_SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CalibrationMetadata {
    pub hardware_name: String,
    pub date: String,
    pub tool: String,
    pub fuseval_version: String,
    /// `cpu` or `gpu`.
    pub device_type: String,
    /// The precisions the sweeps were measured in (each record says its own).
    #[serde(default)]
    pub precisions: Vec<crate::runtime::Precision>,
    pub hardware: crate::runtime::Hardware,
    pub runtime: String,
    pub ort_version: String,
    /// The ONNX Runtime library, the fuseval commit and the command line that made it.
    #[serde(flatten)]
    pub provenance: crate::runtime::Provenance,
    pub execution_provider: String,
    #[serde(default)]
    pub cuda_graph: bool,
    pub threads: usize,
    pub quick: bool,
    pub seed: u64,
    /// How warm-up and measurement runs are chosen (they adapt per measurement; each record has its own
    /// `rounds`, `iters_per_round` and `num_trials`).
    pub warmup: String,
    pub measurement: String,
    pub target_rel_ci: f64,
    pub budget_per_measurement_s: f64,
    pub min_rounds: usize,
    pub max_rounds: usize,
    pub patterns: Vec<String>,
    /// Wall time of the whole calibration.
    pub measured: String,
}

/// One operation on the hardware: a ceiling probe.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OperationProfile {
    pub operation: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub supported: bool,
    /// Why it is unsupported, or what it measures.
    pub note: String,
    pub flops: u64,
    pub bytes: u64,
    pub arithmetic_intensity: f64,
    pub latency: Option<Latency>,
    pub measured_gflops: f64,
    /// measured / theoretical, when a theoretical peak is known.
    pub efficiency: Option<f64>,
    pub achieved_bandwidth_gbps: f64,
    pub bandwidth_efficiency: Option<f64>,
    pub bottleneck: Option<BottleneckType>,
}

/// One size of a pattern's sweep, in grid order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepPoint {
    pub size: String,
    pub flops: u64,
    pub unfused_memory_bytes: u64,
    pub unfused_latency_ms: f64,
    /// The headline (runtime, extended level) speedup.
    pub speedup: Option<Estimate>,
    /// The best agreeing variant and its speedup (`unfused` with the headline when none is faster).
    pub best_variant: super::Variant,
    pub best_speedup: Option<Estimate>,
    pub verdict: Option<Verdict>,
    pub bottleneck_unfused: Option<BottleneckType>,
    /// False when its A/A control failed: shown, but left out of where fusion pays.
    #[serde(default = "crate::calibration::yes")]
    pub trustworthy: bool,
}

/// Where fusion starts or stops paying for one pattern (the design's open question 2).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Crossover {
    pub fusion_pattern: String,
    /// The precision its sizes were measured in (absent in older files).
    #[serde(default)]
    pub precision: Option<crate::runtime::Precision>,
    pub points: Vec<SweepPoint>,
    /// Sizes where the best fused variant is faster beyond noise.
    pub pays_at: Vec<String>,
    pub summary: String,
}

impl Crossover {
    /// The pattern, with its precision when the file says it: `Linear_Bias_GELU (fp16)`.
    pub fn label(&self) -> String {
        match self.precision {
            Some(q) => format!("{} ({})", self.fusion_pattern, q.name()),
            None => self.fusion_pattern.clone(),
        }
    }
}

/// The nn-Meter fusion rule for one producer→consumer pair on one provider.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FusionRule {
    pub execution_provider: String,
    pub first: String,
    pub second: String,
    /// The synthetic pattern model and size the pair was carved from.
    pub from: String,
    pub t1_ms: f64,
    pub t2_ms: f64,
    pub t_block_ms: f64,
    /// T1 + T2 − T_block.
    pub saving_ms: f64,
    /// 0.5 · min(T1, T2).
    pub threshold_ms: f64,
    /// nn-Meter's rule: saving > threshold.
    pub rule_says_fused: bool,
    /// ORT's optimized block has fewer compute kernels than the two nodes optimized alone (data
    /// movement such as Reshape not counted).
    pub graph_says_fused: bool,
    pub block_ops: Vec<String>,
}

/// The design's `HardwareCalibration`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HardwareCalibration {
    pub schema_version: u32,
    pub metadata: CalibrationMetadata,
    pub theoretical_peak_gflops: Option<f64>,
    pub theoretical_bandwidth_gbps: Option<f64>,
    pub theoretical_source: Option<String>,
    /// Best f32 MatMul.
    pub measured_peak_gflops: f64,
    /// Largest Add (out of cache).
    pub measured_bandwidth_gbps: f64,
    pub peak_efficiency: Option<f64>,
    pub bandwidth_efficiency: Option<f64>,
    /// The ceilings of the first precision measured (every roofline's, with one precision).
    pub ceilings: Ceilings,
    /// With several precisions: each one's ceilings, on which its records' rooflines sit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub precision_ceilings: Vec<Ceilings>,
    pub operation_profiles: Vec<OperationProfile>,
    /// One `FusionCalibration` per pattern and size (`extra_params.size`).
    pub fusion_profiles: Vec<FusionCalibration>,
    pub crossovers: Vec<Crossover>,
    pub fusion_rules: Vec<FusionRule>,
    pub warnings: Vec<String>,
    pub complete: bool,
}

/// Read a HardwareCalibration file ([`super::read::read`]); errors name it.
pub fn read(path: &Path) -> Result<HardwareCalibration> {
    super::read::read(path)?.into_hardware()
}

/// The `ceilings` of any fuseval calibration file (calibrate's, bench's, or a merged file of one
/// machine; [`super::read::Source::ceilings_in`]) for records in `precision`, and a warning when they were
/// measured in another precision; errors name the file.
pub fn read_ceilings(path: &Path, precision: crate::runtime::Precision) -> Result<(Ceilings, Option<String>)> {
    let c = super::read::read(path)?.ceilings_in(precision).cloned().ok_or_else(|| {
        crate::error::user(format!("{} has no `ceilings` (make one with `fuseval calibrate`)", path.display()))
    })?;
    let warning = match c.precision {
        Some(q) if q != precision => Some(format!(
            "the ceilings of {} were measured in {}: this run's {} records sit on that roofline (calibrate with --precision {} for theirs)",
            path.display(),
            q.name(),
            precision.name(),
            precision.name()
        )),
        _ => None,
    };
    Ok((c, warning))
}

/// Counts of measured records per pattern (the acceptance check: every pattern at ≥ 3 sizes).
pub fn sizes_per_pattern(cal: &HardwareCalibration) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for r in cal.fusion_profiles.iter().filter(|r| r.status == Status::Measured) {
        *m.entry(r.fusion_pattern.clone()).or_insert(0) += 1;
    }
    m
}

/// The measured speedup of the best agreeing variant (the headline when none is faster).
pub fn best_speedup(r: &FusionCalibration) -> Option<Estimate> {
    r.variant(r.best_variant).or(r.extended.as_ref()).map(|l| l.speedup)
}

pub fn size_label(r: &FusionCalibration) -> String {
    r.extra_params
        .get("size")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| r.input_shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"))
}
