//! Calibration: the results file. One `FusionCalibration` per distinct pattern instance, in the design's
//! schema (`fusion_pattern`, `speedup_factor` = unfused / fused latency, `memory_reduction`, ...), plus
//! confidence intervals, what ONNX Runtime fused it into, the equivalence check and the A/A control.
//! The schema is documented in docs/calibration.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::estimate::Estimate;
use crate::graph::ModelGraph;
use crate::measure::{Comparison, Equivalence, Latency, WholeModel};
use crate::patterns::Instance;

pub mod attribution;
pub mod cost_model;
pub mod decision;
pub mod hardware;
pub mod merge;
pub mod read;
pub mod roofline;
pub mod spelling;
pub mod variant;

pub use variant::{ExplicitUnavailable, Variant};

/// Version of the calibration file's schema.
pub const SCHEMA_VERSION: u32 = 1;

/// Which ORT level the headline speedup uses.
pub const HEADLINE_LEVEL: &str = "extended";

/// Everything `fuseval bench` measured on one model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CalibrationFile {
    pub schema_version: u32,
    pub metadata: Metadata,
    /// Pattern counts in the model: each place once by its longest match, and all matches.
    pub patterns_found_longest: BTreeMap<String, usize>,
    pub patterns_found_all: BTreeMap<String, usize>,
    pub fusion_profiles: Vec<FusionCalibration>,
    pub whole_model: Option<WholeModelResult>,
    /// The hardware ceilings the roofline figures use (measured at the start of the run, or read from
    /// `--ceilings`/`--calibration`).
    #[serde(default)]
    pub ceilings: Option<crate::calibration::roofline::Ceilings>,
    pub warnings: Vec<String>,
    /// The session-to-session spread of replicate points, pooled over the run (see
    /// `measure::replicates`); absent in files written before replicates.
    #[serde(default)]
    pub session_noise: Option<crate::measure::SessionNoise>,
    /// The A/A controls over the run: how many failed, which, and whether copy A ran faster about as often
    /// as copy B.
    #[serde(default)]
    pub aa_check: Option<AaCheck>,
    /// False while the run is going on, and after it was interrupted: `fusion_profiles` then holds only
    /// the instances finished so far, and `fuseval bench --resume` measures the rest. Files without
    /// the field are complete.
    #[serde(default = "yes")]
    pub complete: bool,
    /// The fastest ORT configuration verified on this model (with the attribution).
    #[serde(default)]
    pub recommended_config: Option<attribution::RecommendedConfig>,
}

impl CalibrationFile {
    /// Whether the run measured the pattern instances (all but `--whole-model-only`; older files did).
    pub fn instances_measured(&self) -> bool {
        self.metadata.run.as_ref().is_none_or(|r| r.instances)
    }
}

/// The CUDA clock checks of a run ([`crate::measure::events::ClockCheck`]), together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockSummary {
    /// Records checked, and the host-clock time per run over the event time per run, minus 1: median
    /// and the largest in absolute value.
    pub checked: usize,
    pub median_host_vs_events: f64,
    pub max_host_vs_events: f64,
}

impl ClockSummary {
    pub fn of(profiles: &[FusionCalibration]) -> Option<ClockSummary> {
        let d: Vec<f64> = profiles.iter().filter_map(|p| p.clock_check.map(|c| c.host_vs_events)).collect();
        (!d.is_empty()).then(|| ClockSummary {
            checked: d.len(),
            median_host_vs_events: crate::estimate::median(&d),
            max_host_vs_events: d.iter().copied().fold(0.0, |a: f64, x| if x.abs() > a.abs() { x } else { a }),
        })
    }
}

/// The A/A controls of a run, together.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AaCheck {
    /// A/A points (copy A's time over copy B's) over every replicate of every measured record and of the
    /// whole model, and how many read below 1.00 (copy A ran faster).
    pub points: usize,
    pub below_one: usize,
    /// Two-sided binomial test of `below_one` against one half: below 0.05, the build order or the
    /// sessions favour one copy.
    pub p_value: f64,
    /// Replicates measured again because their control failed.
    pub remeasured: usize,
    /// Records whose control still failed, left out of every total, best variant, crossover, prediction
    /// and cost model: `pattern shapes` each.
    pub failed: Vec<String>,
}

impl AaCheck {
    pub fn of(profiles: &[FusionCalibration], whole: Option<&WholeModel>) -> AaCheck {
        let measured = profiles.iter().filter(|p| p.status == Status::Measured);
        let mut reps: Vec<&crate::measure::ReplicateResult> = measured.clone().flat_map(|p| &p.replicates).collect();
        reps.extend(whole.into_iter().flat_map(|w| &w.replicates));
        let points = reps.len();
        let below_one = reps.iter().filter(|r| r.aa_control.point < 1.0).count();
        AaCheck {
            points,
            below_one,
            p_value: crate::estimate::binomial_half_p(below_one, points),
            remeasured: reps.iter().map(|r| r.attempts.saturating_sub(1)).sum(),
            failed: measured.filter(|p| p.aa_failed()).map(|p| p.label()).collect(),
        }
    }
}

/// How the run was asked for, so that `--resume` can redo it and refuse when anything differs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    /// The model's absolute path.
    pub model_path: String,
    /// Its size and mtime when measured.
    pub model_fingerprint: crate::calibration::merge::Fingerprint,
    /// `--input` as given.
    pub inputs: Vec<String>,
    pub all_patterns: bool,
    pub whole_model: bool,
    /// Files from before the attribution have none.
    #[serde(default)]
    pub attribution: bool,
    /// The pattern instances were measured (false: `--whole-model-only`).
    #[serde(default = "crate::calibration::yes")]
    pub instances: bool,
}

pub(crate) fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Metadata {
    pub tool: String,
    pub fuseval_version: String,
    /// UTC, RFC 3339.
    pub date: String,
    pub model: String,
    pub model_inputs: BTreeMap<String, Vec<usize>>,
    pub hardware: crate::runtime::Hardware,
    pub runtime: String,
    pub ort_version: String,
    /// The ONNX Runtime library, the fuseval commit and the command line that made it.
    #[serde(flatten)]
    pub provenance: crate::runtime::Provenance,
    pub execution_provider: String,
    /// CUDA-graph replays were timed (`--cuda-graph`).
    #[serde(default)]
    pub cuda_graph: bool,
    pub threads: usize,
    pub quick: bool,
    pub seed: u64,
    pub target_rel_ci: f64,
    pub budget_per_instance_s: f64,
    /// `extended` (ORT level 2) or `all`: which level `speedup_factor` and `fused_latency_ms` report.
    pub headline_level: String,
    /// Replicates per instance (1 in files written before replicates).
    #[serde(default = "one")]
    pub replicates: usize,
    /// CUDA: how the host clock fuseval times with compares with CUDA events, over the run's records.
    #[serde(default)]
    pub gpu_clock_check: Option<ClockSummary>,
    pub measured: String,
    /// Wall seconds per phase of the run (`ceilings`, `instances`, `whole_model`, `attribution`), in the
    /// order they ran; empty in files from before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<Phase>,
    /// What the sessions computed in (`fp32`, `tf32`, `fp16`); absent in files from before it was
    /// recorded, whose CPU runs are fp32 and CUDA runs TF32 (ORT's default).
    #[serde(default)]
    pub precision: Option<crate::runtime::Precision>,
    /// The options `--resume` reuses; absent in files from before it existed.
    #[serde(default)]
    pub run: Option<RunOptions>,
}

/// How long one phase of a run took.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    pub name: String,
    pub wall_s: f64,
}

/// One ORT optimisation level's result for an instance.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LevelResult {
    pub latency: Latency,
    pub speedup: Estimate,
    /// Ops the carved model became at this level, e.g. `["com.microsoft.FusedConv"]`.
    pub ort_ops: Vec<String>,
    /// Whether ORT reduced the pattern to fewer kernels than it has nodes.
    pub fused_by_ort: bool,
    pub equivalence: Equivalence,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Measured,
    Skipped,
}

/// The design's `FusionCalibration`, for one distinct instance (and every identical one).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FusionCalibration {
    pub fusion_pattern: String,
    pub operators: Vec<String>,
    pub num_operators: usize,
    pub form: String,
    pub status: Status,
    pub skip_reason: Option<String>,
    pub unfused_latency_ms: f64,
    /// The unfused latency with its CI (per-iteration median over rounds).
    #[serde(default)]
    pub unfused: Option<Latency>,
    /// Longest reduction in the instance; the equivalence tolerance widens with it.
    #[serde(default)]
    pub reduction_size: usize,
    pub fused_latency_ms: f64,
    pub unfused_gflops: f64,
    pub fused_gflops: f64,
    pub flops: u64,
    pub unfused_memory_bytes: u64,
    pub fused_memory_bytes: u64,
    pub speedup_factor: f64,
    pub speedup_ci_low: f64,
    pub speedup_ci_high: f64,
    pub memory_reduction: f64,
    pub input_shape: Vec<usize>,
    pub input_shapes: BTreeMap<String, Vec<usize>>,
    pub output_shapes: BTreeMap<String, Vec<usize>>,
    pub extra_params: BTreeMap<String, serde_json::Value>,
    pub num_trials: usize,
    pub rounds: usize,
    pub iters_per_round: usize,
    pub budget_exhausted: bool,
    pub headline_level: String,
    /// What ORT fused it into at the headline level (ops of the optimized carved model).
    pub ort_fused_into: Vec<String>,
    pub fused_by_ort: bool,
    pub extended: Option<LevelResult>,
    pub all: Option<LevelResult>,
    /// fuseval's explicit rewrite into ORT's fused kernel, run with optimisations disabled; `ort_ops` are
    /// the explicit model's ops. Null when there is no such kernel, the rewrite or its session failed, or
    /// the record is skipped (see `explicit_unavailable`).
    #[serde(default)]
    pub explicit: Option<LevelResult>,
    /// The fused kernels the explicit rewrite used, e.g. `["com.microsoft.FusedConv"]`.
    #[serde(default)]
    pub explicit_kernels: Vec<String>,
    /// What the rewrite did beyond the kernel (e.g. BN folded into the Conv weights).
    #[serde(default)]
    pub explicit_note: Option<String>,
    /// Why there is no explicit result: ORT has no fused kernel for this pattern on this provider, or
    /// (written prefixed `failed: `) the rewrite or its session failed.
    #[serde(default)]
    pub explicit_unavailable: Option<ExplicitUnavailable>,
    /// The fastest variant whose outputs agree and that is faster than unfused beyond the noise band;
    /// `unfused` when none is (and in files without the field).
    #[serde(default)]
    pub best_variant: Variant,
    pub unfused_ops: Vec<String>,
    pub aa_control: Option<Estimate>,
    /// False when the A/A control failed (in a replicate, after its re-measurements, or combined), or
    /// outputs disagree. An untrustworthy record counts in no verdict total, best variant, crossover,
    /// prediction or cost model ([`FusionCalibration::counts`]).
    pub trustworthy: bool,
    /// The band around 1.00 inside which its speedups are noise: `NOISE` widened by the A/A control's
    /// offset ([`crate::estimate::noise_band`]).
    #[serde(default = "default_band")]
    pub noise_band: f64,
    /// Whether the A/A control passed: in every replicate (after re-measurement) and combined. Absent in
    /// files written before replicates, where a control whose CI contains 1.00 passed.
    #[serde(default)]
    pub aa_ok: Option<bool>,
    /// What each replicate read (fresh sessions, own build order, own seed), and how many attempts its A/A
    /// control took.
    #[serde(default)]
    pub replicates: Vec<crate::measure::ReplicateResult>,
    /// CUDA: the measured session's host clock against CUDA events on its own stream (first replicate).
    #[serde(default)]
    pub clock_check: Option<crate::measure::events::ClockCheck>,
    pub equivalent: bool,
    /// `faster`, `slower` or `within_noise` at the headline level.
    pub verdict: Option<crate::estimate::Verdict>,
    /// Node names of every instance this result applies to (identical pattern, shapes and attributes).
    pub instances: Vec<Vec<String>>,
    pub signature: String,
    /// CUDA: the sessions in which ORT placed some nodes (shape arithmetic) on the CPU; see
    /// docs/calibration.md. Empty when every node ran on the GPU, and on the CPU.
    #[serde(default)]
    pub cpu_fallback: Vec<String>,
    /// The instance on the roofline of the run's ceilings (unfused and fused at the headline level).
    #[serde(default)]
    pub roofline: Option<crate::calibration::roofline::Roofline>,
    /// What the sessions computed in (records are keyed by it: a file may hold one instance in several
    /// precisions). Absent in older files: the run's (`metadata.precision`), else the provider's default.
    #[serde(default)]
    pub precision: Option<crate::runtime::Precision>,
    /// tf32 and fp16: the outputs against strict fp32 on the same inputs, with their relative error
    /// ([`crate::measure::reference`]).
    #[serde(default)]
    pub precision_error: Option<crate::measure::reference::PrecisionError>,
    /// With `--cuda-graph`: the sessions ORT could not capture (a node on the CPU), timed without a graph
    /// while the others replayed one.
    #[serde(default)]
    pub no_cuda_graph: Vec<String>,
}

/// Whole-model timing beside the sum of the per-pattern savings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WholeModelResult {
    pub measurement: WholeModel,
    /// Disable minus full-level latency, per inference.
    pub saving_all_ms: f64,
    pub saving_extended_ms: f64,
    /// Sum over distinct measured instances of (unfused - fused) × instances, at the headline level.
    pub sum_pattern_saving_ms: f64,
    /// sum_pattern_saving_ms / saving at the headline level.
    pub explained_fraction: Option<f64>,
    /// The fused latency predicted from the unfused latency and the per-pattern savings, against the
    /// measured one.
    #[serde(default)]
    pub prediction: Option<Prediction>,
    /// What each of ORT's transformers does inside the whole model (absent when not measured).
    #[serde(default)]
    pub attribution: Option<attribution::Attribution>,
}

/// The design's validation step 4: predict the fused whole model from its parts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Prediction {
    /// The whole model at ORT's Disable level, ms.
    pub unfused_ms: f64,
    /// Instances whose savings are summed (measured, equivalent), and those left out.
    pub instances_used: usize,
    pub instances_left_out: usize,
    /// From this run's own per-instance measurements: at `extended` (against the whole model at
    /// extended), at `all` and with each instance's `best` agreeing variant (both against the full level).
    pub levels: Vec<LevelPrediction>,
    /// From a calibration file's cost model instead (`bench --calibration`): each instance's unfused
    /// latency times the estimated speedup at its size, against the full level.
    pub from_calibration: Option<CalibrationPrediction>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LevelPrediction {
    pub level: String,
    pub predicted_ms: f64,
    /// The prediction's interval: the speedups' CI bounds, widened by the whole model's own timing noise
    /// (the half-widths of its unfused and measured latencies' CIs, in quadrature).
    pub predicted_low_ms: f64,
    pub predicted_high_ms: f64,
    pub measured_ms: f64,
    /// (predicted − measured) / measured.
    pub error: f64,
    /// What it is really about: the saving the parts predict against the saving measured on the whole
    /// model (unfused − measured), with their intervals.
    #[serde(default)]
    pub predicted_saving: Option<Estimate>,
    #[serde(default)]
    pub measured_saving: Option<Estimate>,
    /// predicted saving / measured saving, with its interval; `None` when the measured saving is within
    /// its own noise of zero.
    #[serde(default)]
    pub explained: Option<Estimate>,
    /// The error of the simplest guess, "fusion changes nothing" (predicted = unfused), beside
    /// `error`: a prediction is only worth something when it beats it.
    #[serde(default)]
    pub no_change_error: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CalibrationPrediction {
    pub calibration: String,
    pub prediction: LevelPrediction,
    /// How many instances each lookup kind served: measured, interpolated, extrapolated, fallback.
    pub sources: BTreeMap<String, usize>,
    pub warnings: Vec<String>,
}

impl LevelPrediction {
    /// The whole model at `unfused_ms` (ORT's Disable level), less the saving of every `(instances,
    /// unfused latency, speedup)` part, against the whole model at this level: its measured speedup over
    /// Disable (`measured`, with its CI) gives the measured latency and saving; its A/A control (`aa`)
    /// gives the whole model's own timing noise, which widens the prediction's interval.
    pub fn from_speedups(
        level: &str,
        unfused_ms: f64,
        measured: &Estimate,
        aa: &Estimate,
        parts: impl IntoIterator<Item = (usize, f64, Estimate)>,
    ) -> LevelPrediction {
        let (mut s, mut lo, mut hi) = (0.0, 0.0, 0.0);
        for (n, u, e) in parts {
            let n = n as f64;
            s += n * saving_ms(u, e.point);
            lo += n * saving_ms(u, e.lo);
            hi += n * saving_ms(u, e.hi);
        }
        let u = unfused_ms;
        // two identical whole-model sessions differ by this much: the prediction cannot be closer
        let noise = if aa.point > 0.0 { u * ((aa.hi - aa.lo) / 2.0 / aa.point).max(0.0) } else { 0.0 };
        let predicted_ms = u - s;
        let m = if measured.point > 0.0 { u / measured.point } else { 0.0 };
        let measured_saving = Estimate {
            point: saving_ms(u, measured.point),
            lo: saving_ms(u, measured.lo),
            hi: saving_ms(u, measured.hi),
        };
        let predicted_saving = Estimate { point: s, lo: lo.min(s), hi: hi.max(s) };
        // a ratio of two intervals: defined when the measured saving is clear of zero
        let explained = (measured_saving.lo > 0.0).then(|| Estimate {
            point: s / measured_saving.point,
            lo: predicted_saving.lo / measured_saving.hi,
            hi: predicted_saving.hi / measured_saving.lo,
        });
        LevelPrediction {
            level: level.into(),
            predicted_ms,
            // a larger speedup saves more: the high bound gives the lowest latency
            predicted_low_ms: u - hi - noise,
            predicted_high_ms: u - lo + noise,
            measured_ms: m,
            error: if m > 0.0 { (predicted_ms - m) / m } else { 0.0 },
            predicted_saving: Some(predicted_saving),
            measured_saving: Some(measured_saving),
            explained,
            no_change_error: (m > 0.0).then(|| (u - m) / m),
        }
    }

    /// Whether the prediction beats "fusion changes nothing" (a smaller error on the whole model).
    pub fn beats_no_change(&self) -> Option<bool> {
        self.no_change_error.map(|n| self.error.abs() < n.abs())
    }
}

/// A saving per inference, ms, from an unfused latency and a speedup: u · (1 − 1/s).
pub fn saving_ms(unfused_ms: f64, speedup: f64) -> f64 {
    if speedup > 0.0 {
        unfused_ms * (1.0 - 1.0 / speedup)
    } else {
        0.0
    }
}

/// Predict the whole model at each level from the per-instance speedups (counted once per instance).
/// Only for a non-overlapping cover: with `--all-patterns` the savings would be counted twice.
pub fn predict(m: &WholeModel, profiles: &[FusionCalibration]) -> Prediction {
    let used: Vec<&FusionCalibration> = profiles.iter().filter(|p| p.counts()).collect();
    let left_out: usize = profiles.iter().filter(|p| !p.counts()).map(|p| p.instances.len()).sum();
    let level = |name: &str, measured: &Estimate, pick: &dyn Fn(&FusionCalibration) -> Option<Estimate>| {
        let speedups = used.iter().filter_map(|p| Some((p.instances.len(), p.unfused_latency_ms, pick(p)?)));
        LevelPrediction::from_speedups(name, m.disabled.median_ms, measured, &m.aa_control, speedups)
    };
    let levels = vec![
        level("extended", &m.speedup_extended, &|p| p.extended.as_ref().map(|l| l.speedup)),
        level("all", &m.speedup_all, &|p| p.all.as_ref().filter(|l| l.equivalence.passed).map(|l| l.speedup)),
        level("best", &m.speedup_all, &|p| best_estimate(p)),
    ];
    Prediction {
        unfused_ms: m.disabled.median_ms,
        instances_used: used.iter().map(|p| p.instances.len()).sum(),
        instances_left_out: left_out,
        levels,
        from_calibration: None,
    }
}

/// The speedup of a record's best agreeing variant; 1.00 when that is unfused (no saving).
pub fn best_estimate(p: &FusionCalibration) -> Option<Estimate> {
    if p.best_variant == Variant::Unfused {
        return Some(Estimate::exact(1.0));
    }
    p.variant(p.best_variant).map(|l| l.speedup)
}

/// Ops that only move or relabel data (reshapes, NCHWc reorders), which ORT adds around the kernels
/// it fuses: MatMul+Add becomes Reshape, Gemm, Reshape.
const PLUMBING: &[&str] = &["Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "ReorderInput", "ReorderOutput"];

/// How many compute kernels a list of ops holds, plumbing left out.
pub fn kernel_count(ops: &[String]) -> usize {
    ops.iter().filter(|o| !PLUMBING.contains(&o.rsplit('.').next().unwrap_or(o))).count()
}

/// Floating-point operations of an instance, counted from shapes.
pub fn flops(g: &ModelGraph, inst: &Instance) -> u64 {
    inst.nodes.iter().map(|&n| node_flops(g, n)).sum()
}

fn numel(s: &[usize]) -> u64 {
    s.iter().map(|&d| d as u64).product()
}

fn node_flops(g: &ModelGraph, n: petgraph::graph::NodeIndex) -> u64 {
    let node = g.node(n);
    let out = node.outputs.first().and_then(|o| g.shape(o)).map(numel).unwrap_or(0);
    let input = |i: usize| node.inputs.get(i).and_then(|t| g.shape(t));
    match node.op.as_str() {
        "Conv" => {
            // 2 · outputs · (Cin/groups · kh · kw), plus the bias
            let w = input(1).map(|w| w.iter().skip(1).map(|&d| d as u64).product::<u64>()).unwrap_or(0);
            2 * out * w + if node.inputs.get(2).is_some_and(|b| !b.is_empty()) { out } else { 0 }
        }
        "MatMul" | "Gemm" => {
            let k = input(0)
                .and_then(|a| {
                    let trans = node.op == "Gemm" && node.attr_int("transA") == Some(1);
                    if trans {
                        a.first()
                    } else {
                        a.last()
                    }
                })
                .copied()
                .unwrap_or(0) as u64;
            2 * out * k + if node.op == "Gemm" && node.inputs.get(2).is_some_and(|c| !c.is_empty()) { out } else { 0 }
        }
        "BatchNormalization" => 2 * out,
        "MaxPool" | "AveragePool" => {
            let k: u64 = node.attr_ints("kernel_shape").map(|k| k.iter().map(|&v| v as u64).product()).unwrap_or(1);
            out * k
        }
        "LayerNormalization" => 8 * out,
        "Gelu" => 8 * out,
        "Erf" | "Tanh" | "Sqrt" | "Pow" => out,
        "ReduceMean" => input(0).map(numel).unwrap_or(out),
        _ => out,
    }
}

/// The longest reduction in an instance: a MatMul's or Gemm's K, a Conv's Cin/group·kh·kw, a
/// normalisation's or softmax's last axis.
pub fn reduction_size(g: &ModelGraph, inst: &Instance) -> usize {
    inst.nodes.iter().map(|&n| node_reduction(g, n)).max().unwrap_or(1)
}

/// The longest reduction of any node of the model: the whole model's equivalence tolerance.
pub fn model_reduction(g: &ModelGraph) -> usize {
    g.order.iter().map(|&n| node_reduction(g, n)).max().unwrap_or(1)
}

fn node_reduction(g: &ModelGraph, n: petgraph::graph::NodeIndex) -> usize {
    let node = g.node(n);
    let input = |i: usize| node.inputs.get(i).and_then(|t| g.shape(t));
    match node.op.as_str() {
        "Conv" | "FusedConv" => input(1).map(|w| w.iter().skip(1).product()).unwrap_or(1),
        "MatMul" => input(0).and_then(|a| a.last().copied()).unwrap_or(1),
        "Gemm" => input(0)
            .and_then(|a| if node.attr_int("transA") == Some(1) { a.first() } else { a.last() }.copied())
            .unwrap_or(1),
        "LayerNormalization" | "Softmax" | "ReduceMean" => input(0).and_then(|a| a.last().copied()).unwrap_or(1),
        _ => 1,
    }
}

/// Bytes moved unfused (every node reads its inputs and writes its outputs) and fused (the pattern's
/// inputs and constants read once, its outputs written once).
pub fn memory_bytes(g: &ModelGraph, inst: &Instance) -> (u64, u64) {
    memory_bytes_in(g, inst, None)
}

/// [`memory_bytes`] when the instance computes in `precision`: in fp16 its fp32 tensors take half the
/// bytes (`onnx::fp16` converts every one a carved pattern reads or writes).
pub fn memory_bytes_in(g: &ModelGraph, inst: &Instance, precision: Option<crate::runtime::Precision>) -> (u64, u64) {
    let half = precision == Some(crate::runtime::Precision::Fp16);
    let bytes = |t: &str| {
        g.tensor(t).and_then(|t| Some(if half && t.elem_type == 1 { t.bytes? / 2 } else { t.bytes? })).unwrap_or(0)
    };
    let unfused: u64 = inst
        .nodes
        .iter()
        .map(|&n| {
            let node = g.node(n);
            node.real_inputs().map(bytes).sum::<u64>()
                + node.outputs.iter().filter(|o| !o.is_empty()).map(|o| bytes(o)).sum::<u64>()
        })
        .sum();
    let fused: u64 = inst.inputs.iter().chain(&inst.constants).chain(&inst.outputs).map(|t| bytes(t)).sum();
    (unfused, fused)
}

/// Shape and attribute parameters worth keeping beside a result (kernel, channels, features, ...).
pub fn extra_params(g: &ModelGraph, inst: &Instance) -> BTreeMap<String, serde_json::Value> {
    use serde_json::json;
    let mut p = BTreeMap::new();
    let first = g.node(inst.anchor());
    let w = first.inputs.get(1).and_then(|w| g.shape(w));
    match first.op.as_str() {
        "Conv" => {
            if let Some(w) = w {
                p.insert("out_channels".into(), json!(w[0]));
                p.insert("in_channels_per_group".into(), json!(w.get(1)));
                p.insert("kernel".into(), json!(&w[2..]));
            }
            for a in ["strides", "pads", "dilations"] {
                if let Some(v) = first.attr_ints(a) {
                    p.insert(a.into(), json!(v));
                }
            }
            p.insert("group".into(), json!(first.attr_int("group").unwrap_or(1)));
        }
        "MatMul" | "Gemm" => {
            if let Some(w) = w {
                p.insert("weight".into(), json!(w));
            }
        }
        _ => {}
    }
    p.insert("dtype".into(), json!(inst.inputs.first().and_then(|i| g.tensor(i)).map(|t| t.dtype)));
    p
}

impl FusionCalibration {
    /// A record for a group of identical instances, from its measurement (or the reason it has none).
    pub fn new(
        g: &ModelGraph,
        group: &[&Instance],
        measured: Result<&Comparison, String>,
        signature: String,
    ) -> FusionCalibration {
        let inst = group[0];
        let flops = flops(g, inst);
        let (unfused_mem, fused_mem) = memory_bytes(g, inst);
        let shapes = |ts: &[String]| -> BTreeMap<String, Vec<usize>> {
            ts.iter().filter_map(|t| Some((t.clone(), g.shape(t)?.to_vec()))).collect()
        };
        let mut rec = FusionCalibration {
            fusion_pattern: inst.pattern.key().into(),
            operators: inst.pattern.operators().iter().map(|s| s.to_string()).collect(),
            num_operators: inst.pattern.operators().len(),
            form: inst.form.clone(),
            status: Status::Skipped,
            skip_reason: None,
            unfused_latency_ms: 0.0,
            unfused: None,
            reduction_size: reduction_size(g, inst),
            fused_latency_ms: 0.0,
            unfused_gflops: 0.0,
            fused_gflops: 0.0,
            flops,
            unfused_memory_bytes: unfused_mem,
            fused_memory_bytes: fused_mem,
            speedup_factor: 0.0,
            speedup_ci_low: 0.0,
            speedup_ci_high: 0.0,
            memory_reduction: if unfused_mem > 0 { 1.0 - fused_mem as f64 / unfused_mem as f64 } else { 0.0 },
            input_shape: inst.inputs.first().and_then(|i| g.shape(i)).map(|s| s.to_vec()).unwrap_or_default(),
            input_shapes: shapes(&inst.inputs),
            output_shapes: shapes(&inst.outputs),
            extra_params: extra_params(g, inst),
            num_trials: 0,
            rounds: 0,
            iters_per_round: 0,
            budget_exhausted: false,
            headline_level: HEADLINE_LEVEL.into(),
            ort_fused_into: vec![],
            fused_by_ort: false,
            extended: None,
            all: None,
            explicit: None,
            explicit_kernels: vec![],
            explicit_note: None,
            explicit_unavailable: None,
            best_variant: Variant::Unfused,
            unfused_ops: inst.nodes.iter().map(|&n| g.node(n).qualified_op()).collect(),
            aa_control: None,
            trustworthy: false,
            noise_band: NOISE,
            aa_ok: None,
            replicates: vec![],
            clock_check: None,
            equivalent: false,
            verdict: None,
            instances: group.iter().map(|i| i.node_names(g)).collect(),
            signature,
            cpu_fallback: vec![],
            roofline: None,
            precision: None,
            precision_error: None,
            no_cuda_graph: vec![],
        };
        let c = match measured {
            Ok(c) => c,
            Err(reason) => {
                rec.skip_reason = Some(reason);
                return rec;
            }
        };
        let n_nodes = inst.nodes.len();
        let level = |latency: &Latency, speedup: &Estimate, ops: &Vec<String>, eq: &Equivalence| LevelResult {
            latency: *latency,
            speedup: *speedup,
            ort_ops: ops.clone(),
            fused_by_ort: kernel_count(ops) < n_nodes,
            equivalence: eq.clone(),
        };
        let ext = level(&c.fused_extended, &c.speedup_extended, &c.fused_ops_extended, &c.equivalence_extended);
        let all = level(&c.fused_all, &c.speedup_all, &c.fused_ops_all, &c.equivalence_all);
        let head = &ext;
        rec.status = Status::Measured;
        rec.unfused_latency_ms = c.unfused.median_ms;
        rec.unfused = Some(c.unfused);
        rec.fused_latency_ms = head.latency.median_ms;
        let gf = |ms: f64| if ms > 0.0 { flops as f64 / (ms * 1e-3) / 1e9 } else { 0.0 };
        rec.unfused_gflops = gf(c.unfused.median_ms);
        rec.fused_gflops = gf(head.latency.median_ms);
        rec.speedup_factor = head.speedup.point;
        rec.speedup_ci_low = head.speedup.lo;
        rec.speedup_ci_high = head.speedup.hi;
        rec.rounds = c.rounds;
        rec.iters_per_round = c.iters_per_round;
        rec.num_trials = c.rounds * c.iters_per_round;
        rec.budget_exhausted = c.budget_exhausted;
        rec.ort_fused_into = head.ort_ops.clone();
        rec.fused_by_ort = head.fused_by_ort;
        rec.equivalent = c.equivalence_extended.passed && c.equivalence_all.passed;
        rec.aa_control = Some(c.aa_control);
        rec.trustworthy = c.aa_ok && rec.equivalent;
        rec.aa_ok = Some(c.aa_ok);
        rec.noise_band = crate::estimate::noise_band(Some(&c.aa_control));
        rec.verdict = Some(crate::estimate::verdict(&head.speedup, rec.noise_band));
        rec.replicates = c.replicates.clone();
        rec.clock_check = c.clock_check;
        if let Some(x) = &c.explicit {
            rec.explicit = Some(level(&x.latency, &x.speedup, &x.ops, &x.equivalence));
        }
        if let Some(e) = &c.explicit_error {
            rec.explicit_unavailable = Some(ExplicitUnavailable::failed(e));
        }
        rec.cpu_fallback = c.cpu_fallback.clone();
        rec.precision_error = c.precision_error.clone();
        rec.no_cuda_graph = c.no_cuda_graph.clone();
        rec.extended = Some(ext);
        rec.all = Some(all);
        rec.best_variant = best_variant(&rec);
        rec
    }

    /// Record what the explicit rewrite gave: its kernels and note, or why there is no explicit variant
    /// (kept when the measurement already said why).
    pub fn with_explicit(
        mut self,
        kernels: Vec<String>,
        note: Option<String>,
        unavailable: Option<ExplicitUnavailable>,
    ) -> Self {
        self.explicit_kernels = kernels;
        self.explicit_note = note.filter(|n| !n.is_empty());
        if self.explicit_unavailable.is_none() {
            self.explicit_unavailable = unavailable;
        }
        self
    }

    /// Key the record by the precision its sessions computed in; in fp16 its memory traffic is that of
    /// fp16 tensors ([`memory_bytes_in`]).
    pub fn with_precision(mut self, g: &ModelGraph, inst: &Instance, precision: crate::runtime::Precision) -> Self {
        let (unfused, fused) = memory_bytes_in(g, inst, Some(precision));
        self.unfused_memory_bytes = unfused;
        self.fused_memory_bytes = fused;
        self.memory_reduction = if unfused > 0 { 1.0 - fused as f64 / unfused as f64 } else { 0.0 };
        self.precision = Some(precision);
        self
    }

    /// Place the record on the roofline of `c` (latencies and speedup left at 0 when skipped).
    pub fn with_roofline(mut self, c: &crate::calibration::roofline::Ceilings) -> Self {
        self.roofline = Some(crate::calibration::roofline::Roofline::new(
            self.flops,
            (self.unfused_memory_bytes, self.fused_memory_bytes),
            (self.unfused_latency_ms, self.fused_latency_ms),
            self.speedup_factor,
            c,
        ));
        self
    }

    /// A fused variant's result; `None` for `unfused`, or a variant not measured.
    pub fn variant(&self, v: Variant) -> Option<&LevelResult> {
        match v {
            Variant::RuntimeExtended => self.extended.as_ref(),
            Variant::RuntimeAll => self.all.as_ref(),
            Variant::Explicit => self.explicit.as_ref(),
            Variant::Unfused => None,
        }
    }

    /// Whether the record counts in totals, best variants, crossovers, predictions and the cost model:
    /// measured, its outputs agree, and its A/A control passed.
    pub fn counts(&self) -> bool {
        self.status == Status::Measured && self.trustworthy
    }

    /// Its pattern and shapes, e.g. `Conv2d_BN_ReLU 1x64x56x56->1x64x56x56`.
    pub fn label(&self) -> String {
        let dims = |d: &[usize]| d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x");
        let out = self.output_shapes.values().next().map(|d| dims(d)).unwrap_or_default();
        // convolutions of one shape differ by their kernel and stride
        let kernel = self.extra_params.get("kernel").and_then(|k| k.as_array()).map(|k| {
            let k: Vec<String> = k.iter().map(|x| x.to_string()).collect();
            let s = self
                .extra_params
                .get("strides")
                .and_then(|s| s.as_array())
                .and_then(|s| s.first())
                .and_then(|s| s.as_i64());
            format!(" {}{}", k.join("x"), s.filter(|&s| s > 1).map(|s| format!("/{s}")).unwrap_or_default())
        });
        format!("{} {}->{out}{}", self.fusion_pattern, dims(&self.input_shape), kernel.unwrap_or_default())
    }

    /// Whether it was measured and its A/A control failed (it is left out of everything that aggregates).
    pub fn aa_failed(&self) -> bool {
        let consistent = |a: &Estimate| crate::measure::aa_consistent(a);
        self.status == Status::Measured
            && !self.aa_ok.unwrap_or_else(|| self.aa_control.as_ref().is_none_or(consistent))
    }

    /// Whether the explicit variant was measured and its outputs agree with unfused.
    pub fn explicit_agrees(&self) -> bool {
        self.explicit.as_ref().is_some_and(|x| x.equivalence.passed)
    }
}

/// The fastest variant (lowest median latency) among those whose outputs agree and whose speedup CI lies
/// above the record's noise band; `unfused` when there is none, and when the A/A control failed.
pub fn best_variant(p: &FusionCalibration) -> Variant {
    if p.aa_failed() {
        return Variant::Unfused;
    }
    Variant::FUSED
        .into_iter()
        .filter_map(|v| {
            let l = p.variant(v)?;
            let faster = crate::estimate::verdict(&l.speedup, p.noise_band) == crate::estimate::Verdict::Faster;
            (l.equivalence.passed && faster).then_some((v, l.latency.median_ms))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(v, _)| v)
        .unwrap_or(Variant::Unfused)
}

/// Relative band around 1.00 inside which a speedup is called noise (before a record's A/A control widens
/// it: [`FusionCalibration::noise_band`]).
pub use crate::estimate::NOISE;

fn one() -> usize {
    1
}

fn default_band() -> f64 {
    NOISE
}

/// The current UTC time as RFC 3339, without a date crate.
pub fn utc_now() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_prediction_sums_savings_with_their_bounds() {
        // 2 instances of 1 ms at 2× [1×, 4×]: 1 ms saved [0, 1.5]; the whole model 10 ms → 8 ms (1.25×), exact
        let e = Estimate { point: 2.0, lo: 1.0, hi: 4.0 };
        let exact = Estimate::exact(1.0);
        let l = LevelPrediction::from_speedups("x", 10.0, &Estimate::exact(1.25), &exact, [(2, 1.0, e)]);
        assert!((l.predicted_ms - 9.0).abs() < 1e-12);
        assert!((l.measured_ms - 8.0).abs() < 1e-12);
        assert!((l.predicted_low_ms - 8.5).abs() < 1e-12);
        assert!((l.predicted_high_ms - 10.0).abs() < 1e-12);
        assert!((l.error - 0.125).abs() < 1e-12);
        // the saving: 1 ms predicted of 2 ms measured, explains half [0, 0.75]
        let x = l.explained.unwrap();
        assert!((x.point - 0.5).abs() < 1e-12 && x.lo.abs() < 1e-12 && (x.hi - 0.75).abs() < 1e-12, "{x:?}");
        // "no change" guesses 10 ms: +25%, worse than the prediction's +12.5%
        assert!((l.no_change_error.unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(l.beats_no_change(), Some(true));
    }

    #[test]
    fn level_prediction_interval_carries_the_whole_model_noise() {
        // 10 ms at Disable, 1.01× [0.96, 1.06] at the level: a saving within noise of zero; the A/A
        // control ±3% widens the prediction by 0.3 ms each way
        let m = Estimate { point: 1.01, lo: 0.96, hi: 1.06 };
        let aa = Estimate { point: 1.0, lo: 0.97, hi: 1.03 };
        let l = LevelPrediction::from_speedups("x", 10.0, &m, &aa, [(1, 2.0, Estimate::exact(1.25))]);
        assert!((l.predicted_ms - 9.6).abs() < 1e-12);
        assert!((l.predicted_low_ms - 9.3).abs() < 1e-9 && (l.predicted_high_ms - 9.9).abs() < 1e-9, "{l:?}");
        assert!(l.explained.is_none(), "the measured saving is within noise of zero");
        // measured 9.90 ms: "no change" errs by +1.0%, the prediction by −3.0%: no better than the guess
        assert_eq!(l.beats_no_change(), Some(false));
    }
}
