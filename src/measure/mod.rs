//! The timing harness: one model, four (or five) ORT sessions, honest statistics.
//!
//! [`compare`] builds four sessions of the same model in the same environment: unfused A (`Disable`),
//! unfused B (`Disable`, an independent second session: the A/A control), fused-extended and fused-all.
//! [`compare_variants`] may add a fifth: an explicit-fused model (the same computation rewritten by
//! `crate::fuse` into ORT's fused kernel) at `Disable`, so it measures the kernel and not the optimiser.
//! All sessions get the same seeded random inputs, bound once with pre-allocated outputs (IoBinding), so
//! allocation and page faults stay out of the timing. After checking every fused variant's outputs against
//! unfused A (on two input sets, and through the binding), it times interleaved rounds: each round runs every
//! session for `k` back-to-back iterations in a freshly shuffled order (cut into sub-slices whose median drops
//! preempted ones), and the speedups are per-round ratios `A / fused`, summarised by their median with a
//! 95% CI. The A/A ratio `A / B` must come out at 1.00; if it does not, the host was too noisy to trust the
//! other numbers ([`Comparison::aa_ok`]). An explicit model that fails to build or run is dropped with its
//! reason ([`Comparison::explicit_error`]); the other four are measured regardless.
//!
//! Sameness: the sessions read the same input tensors, write the same output tensors, take intermediates from
//! one shared arena and (with more than one thread) run on one shared thread pool, so no session is luckier
//! than another in cache placement or thread scheduling. All measurement in a process is serialised by one
//! global lock.

pub mod configs;
mod equivalence;
pub mod events;
mod inputs;
pub mod optimizers;
pub mod reference;
pub mod replicates;
mod session;
pub mod timing;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ort::session::Session;
use ort::value::TensorElementType;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use self::equivalence::{
    check_equivalence, check_equivalence_ep, check_equivalence_for, tolerance, tolerance_ep, tolerance_for,
    tolerance_in, Equivalence, OutputValues, Values,
};
pub use self::inputs::{random_inputs, HostTensor};
pub use self::replicates::{ReplicateResult, SessionNoise};
pub use self::session::{model_nodes, model_ops};
use self::timing::{Rounds, WallClock, ALL, CONTROL, EXPLICIT, EXTENDED, UNFUSED};
use crate::estimate::{median_ci, Estimate};
pub use crate::onnx::DType;
use crate::runtime::{Ep, TempDir};

/// Bootstrap resamples for the reported CIs.
pub const RESAMPLES: usize = 2000;
/// Ratio CIs are never narrower than ± this fraction of their point. Two sessions of one graph, run
/// interleaved in one process, still differed by up to 0.15% (1 thread) and 0.35% (2 threads) after hundreds
/// of rounds on the development host: a systematic floor no number of rounds removes.
pub const SESSION_FLOOR: f64 = 0.003;
/// The A/A control may miss 1.00 by at most this much and still count as fine (see [`Comparison::aa_ok`]).
pub const AA_TOLERANCE: f64 = 0.01;

impl DType {
    pub(crate) fn to_ort(self) -> TensorElementType {
        match self {
            DType::F32 => TensorElementType::Float32,
            DType::F64 => TensorElementType::Float64,
            DType::F16 => TensorElementType::Float16,
            DType::I64 => TensorElementType::Int64,
            DType::I32 => TensorElementType::Int32,
            DType::I8 => TensorElementType::Int8,
            DType::U8 => TensorElementType::Uint8,
            DType::Bool => TensorElementType::Bool,
        }
    }

    pub(crate) fn from_ort(t: TensorElementType) -> Option<DType> {
        Some(match t {
            TensorElementType::Float32 => DType::F32,
            TensorElementType::Float64 => DType::F64,
            TensorElementType::Float16 => DType::F16,
            TensorElementType::Int64 => DType::I64,
            TensorElementType::Int32 => DType::I32,
            TensorElementType::Int8 => DType::I8,
            TensorElementType::Uint8 => DType::U8,
            TensorElementType::Bool => DType::Bool,
            _ => return None,
        })
    }
}

/// A model input to feed: name, element type, concrete shape, and for integers the value range `[lo, hi)`
/// (`None`: `[0, 2)`). For floats a range, when given, replaces the default `[-1, 1)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub range: Option<(i64, i64)>,
}

/// ORT graph optimisation level of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `ORT_DISABLE_ALL`: the graph as written.
    Disable,
    /// `ORT_ENABLE_EXTENDED`: basic + extended fusions.
    Extended,
    /// `ORT_ENABLE_ALL`: everything, including layout (NCHWc) transformations.
    All,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Disable => "disable",
            Level::Extended => "extended",
            Level::All => "all",
        })
    }
}

/// A session's optimizer settings: ORT's level and the graph transformers and rewrite rules switched off
/// by name (`optimization.disable_specified_optimizers`; see [`optimizers`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionConfig {
    pub level: Level,
    #[serde(default)]
    pub disabled: Vec<String>,
}

impl SessionConfig {
    pub fn level(level: Level) -> SessionConfig {
        SessionConfig { level, disabled: vec![] }
    }

    /// ORT's session config value: the names separated by `;` (a comma list is silently ignored).
    pub fn disabled_entry(&self) -> String {
        self.disabled.join(";")
    }
}

impl fmt::Display for SessionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.disabled.is_empty() {
            write!(f, "{}", self.level)
        } else {
            write!(f, "{} without {}", self.level, self.disabled.join(", "))
        }
    }
}

/// Where the model comes from. A path keeps external data (`.onnx.data`) resolvable.
#[derive(Clone, Copy, Debug)]
pub enum ModelSource<'a> {
    Bytes(&'a [u8]),
    Path(&'a Path),
}

/// How to measure.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasureOptions {
    pub ep: Ep,
    /// Intra-op threads: 1 (everything on the calling thread), or the size of the shared pool
    /// (see [`crate::runtime::configure_pool`]; the first multi-threaded comparison fixes it).
    pub threads: usize,
    pub quick: bool,
    /// Seeds inputs, round order and bootstrap.
    pub seed: u64,
    /// Stop once the A/A and every fused speedup CI (explicit too, when its outputs agree) are within ± this
    /// fraction of their point.
    pub target_rel_ci: f64,
    /// Time budget per comparison (warm-up and rounds; session building not included).
    pub budget: Duration,
    pub min_rounds: usize,
    pub max_rounds: usize,
    /// The longest reduction in the model (a MatMul's K, a Conv's Cin·kh·kw, a norm's width): float
    /// error grows with it, and so does the equivalence tolerance (see [`tolerance_for`]).
    pub reduction: usize,
    /// CUDA: fail a session rather than let ORT place any node on the CPU (`session.disable_cpu_ep_fallback`),
    /// so a pattern's time is never partly the CPU's and PCIe's. Off for whole models, whose shape
    /// arithmetic ORT rightly keeps on the CPU.
    pub strict_placement: bool,
    /// CUDA: capture each session's run in a CUDA graph and time its replays (`enable_cuda_graph`),
    /// which removes the per-kernel launch overhead that fusion also removes.
    pub cuda_graph: bool,
    /// Independent replicates per instance (fresh sessions, own build order, different points of the run);
    /// see [`replicates`].
    pub replicates: usize,
    /// CUDA: the stream (a `cudaStream_t` as an integer) the sessions run on; set inside
    /// [`compare_variants`] for its clock check, `None` otherwise (ORT's own streams).
    pub cuda_stream: Option<usize>,
    /// What the sessions compute in ([`crate::runtime::Precision`]): on CUDA, `fp32` turns TF32 off; `fp16`
    /// models are converted before they get here.
    pub precision: crate::runtime::Precision,
    /// Whole models: stretch `budget` (up to [`ROUNDS_BUDGET_MAX`]) so that it affords at least this many
    /// rounds at the latencies the warm-up measured; 0 leaves it as it is. A carved pattern's budget would
    /// give a whole model a handful of rounds, and a CI of a median needs about 25.
    pub rounds_in_budget: usize,
}

/// The most a budget is stretched to by [`MeasureOptions::rounds_in_budget`].
pub const ROUNDS_BUDGET_MAX: Duration = Duration::from_secs(120);

/// Rounds a set of whole-model rounds affords ([`MeasureOptions::rounds_in_budget`]), `--quick` too: on
/// the 2-core host 12 rounds left the whole model's A/A control wider than ±5% and measured again.
pub const WHOLE_MODEL_ROUNDS: usize = 25;

impl MeasureOptions {
    /// Defaults: full = ±2% target, 10 s budget, 15..2000 rounds; quick = ±5%, 1.5 s, 7..500 rounds.
    pub fn new(ep: Ep, threads: usize, quick: bool) -> Self {
        if quick {
            MeasureOptions {
                ep,
                threads,
                quick,
                seed: 42,
                target_rel_ci: 0.05,
                budget: Duration::from_millis(1500),
                min_rounds: 7,
                max_rounds: 500,
                reduction: 1,
                strict_placement: true,
                cuda_graph: false,
                replicates: replicates::DEFAULT_REPLICATES,
                cuda_stream: None,
                rounds_in_budget: 0,
                precision: crate::runtime::Precision::default_for(ep),
            }
        } else {
            MeasureOptions {
                ep,
                threads,
                quick,
                seed: 42,
                target_rel_ci: 0.02,
                budget: Duration::from_secs(10),
                min_rounds: 15,
                max_rounds: 2000,
                reduction: 1,
                strict_placement: true,
                cuda_graph: false,
                replicates: replicates::DEFAULT_REPLICATES,
                cuda_stream: None,
                rounds_in_budget: 0,
                precision: crate::runtime::Precision::default_for(ep),
            }
        }
    }

    fn validate(&self) -> Result<()> {
        if self.replicates == 0 {
            return Err(crate::error::user("replicates must be at least 1"));
        }
        if self.threads == 0 {
            return Err(crate::error::user("threads must be at least 1"));
        }
        if self.target_rel_ci.is_nan() || self.target_rel_ci <= 0.0 {
            return Err(crate::error::user(format!("target relative CI must be > 0, got {}", self.target_rel_ci)));
        }
        Ok(())
    }
}

/// Per-iteration latency of one session over the rounds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub median_ms: f64,
    /// 95% CI of the median per-iteration time, in ms ([`median_ci`]).
    pub ci_ms: Estimate,
    pub min_ms: f64,
    /// Rounds (one per-iteration time per round).
    pub samples: usize,
}

impl Latency {
    pub(crate) fn from_seconds(xs: &[f64], seed: u64) -> Latency {
        let ci_ms = median_ci(xs, RESAMPLES, seed).scale(1e3);
        let min_ms = xs.iter().copied().fold(f64::INFINITY, f64::min) * 1e3;
        Latency {
            median_ms: ci_ms.point,
            ci_ms,
            min_ms: if min_ms.is_finite() { min_ms } else { 0.0 },
            samples: xs.len(),
        }
    }
}

/// Unfused vs fused, for one model.
///
/// Speedups are `unfused A time / fused time` (> 1: fusion is faster): the median over rounds of the per-round
/// ratio, with a 95% CI ([`ratio_estimate`]). `aa_control` is the same for `A / B`, two identical unfused sessions.
/// Latencies are per-iteration times with the CI of their median ([`median_ci`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub unfused: Latency,
    pub unfused_control: Latency,
    pub fused_extended: Latency,
    pub fused_all: Latency,
    pub speedup_extended: Estimate,
    pub speedup_all: Estimate,
    pub aa_control: Estimate,
    /// The A/A control is consistent with 1.00: its CI contains 1.0, or the whole CI lies within
    /// `1 ± AA_TOLERANCE` (a tight CI may exclude 1.0 by a practically irrelevant margin). When false the
    /// host was too noisy (or the sessions interfered): treat every number of this comparison as untrustworthy.
    pub aa_ok: bool,
    pub equivalence_extended: Equivalence,
    pub equivalence_all: Equivalence,
    pub fused_ops_extended: Vec<String>,
    pub fused_ops_all: Vec<String>,
    pub unfused_ops: Vec<String>,
    /// The explicit-fused model's result, when one was given and it ran.
    #[serde(default)]
    pub explicit: Option<ExplicitResult>,
    /// Why an explicit-fused model that was given could not be built or run (the other variants are measured).
    #[serde(default)]
    pub explicit_error: Option<String>,
    /// CUDA: the sessions (by label) in which ORT placed some nodes on the CPU (shape arithmetic), which
    /// strict placement refused; empty on the CPU.
    #[serde(default)]
    pub cpu_fallback: Vec<String>,
    pub rounds: usize,
    pub iters_per_round: usize,
    pub budget_exhausted: bool,
    pub wall_s: f64,
    pub threads: usize,
    pub ep: Ep,
    /// The seed of its inputs, build order and bootstrap (the first replicate's, when combined).
    #[serde(default)]
    pub seed: u64,
    /// The order its sessions were built in (labels).
    #[serde(default)]
    pub build_order: Vec<String>,
    /// How many times it was measured (more than the replicates when an A/A control failed).
    #[serde(default = "one")]
    pub attempts: usize,
    /// Each replicate's own reading, when this comparison combines several ([`replicates::combine`]).
    #[serde(default)]
    pub replicates: Vec<ReplicateResult>,
    /// CUDA: the measured session's clock checked against CUDA events on its own stream
    /// ([`events::ClockCheck`]), or why it could not be.
    #[serde(default)]
    pub clock_check: Option<events::ClockCheck>,
    #[serde(default)]
    pub clock_check_error: Option<String>,
    /// A reduced precision (tf32, fp16) against strict fp32 on the same inputs ([`reference`]), measured
    /// once per instance (the first replicate's).
    #[serde(default)]
    pub precision_error: Option<reference::PrecisionError>,
    /// With CUDA graphs: the sessions ORT could not capture (a node on the CPU), timed without a graph.
    #[serde(default)]
    pub no_cuda_graph: Vec<String>,
}

fn one() -> usize {
    1
}

/// The explicit-fused variant: fuseval's rewrite into ORT's fused kernel, run with optimisations disabled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplicitResult {
    pub latency: Latency,
    /// `unfused A / explicit`, per round, like the other speedups. Meaningless when `equivalence` failed.
    pub speedup: Estimate,
    /// Against unfused A, like the runtime-fused levels.
    pub equivalence: Equivalence,
    /// Ops of the explicit model as given, e.g. `["com.microsoft.FusedConv"]`.
    pub ops: Vec<String>,
}

/// Median per-round ratio with its CI ([`median_ci`]), widened to at least `±SESSION_FLOOR`.
pub fn ratio_estimate(ratios: &[f64], seed: u64) -> Estimate {
    let e = median_ci(ratios, RESAMPLES, seed);
    Estimate {
        point: e.point,
        lo: e.lo.min(e.point * (1.0 - SESSION_FLOOR)),
        hi: e.hi.max(e.point * (1.0 + SESSION_FLOOR)),
    }
}

/// Whether one set of sessions' A/A control passes: consistent with 1.00 ([`aa_consistent`]) and no wider
/// than the verdict band `1 ± NOISE`: a control of 0.91 [0.75, 1.14] contains 1.00 but cannot tell a 10%
/// speedup from noise. (A combined control, whose CI includes the session-to-session spread, is judged by
/// [`aa_consistent`] alone.)
pub fn aa_ok(aa_control: &Estimate) -> bool {
    aa_ok_at(aa_control, crate::estimate::NOISE)
}

/// [`aa_ok`] for a run whose CI target is `target_rel_ci`: the control may be as wide as that target when
/// it is looser than the band (`--quick`'s ±5%), never narrower than the band demands.
pub fn aa_ok_at(aa_control: &Estimate, target_rel_ci: f64) -> bool {
    let half = crate::estimate::NOISE.max(target_rel_ci);
    aa_consistent(aa_control) && aa_control.hi - aa_control.lo <= 2.0 * half * aa_control.point
}

/// Whether an A/A control estimate is consistent with 1.00: its CI contains it, or lies within
/// `1 ± AA_TOLERANCE`.
pub fn aa_consistent(aa_control: &Estimate) -> bool {
    aa_control.contains(1.0) || (aa_control.lo >= 1.0 - AA_TOLERANCE && aa_control.hi <= 1.0 + AA_TOLERANCE)
}

/// What a comparison reports from its rounds: each variant's latency, the speedups `unfused / fused` and the
/// A/A control `unfused / control` ([`ratio_estimate`]), and whether that control reads 1.00 ([`aa_ok`]).
/// Each estimate has its own bootstrap seed, derived from the comparison's.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub unfused: Latency,
    pub unfused_control: Latency,
    pub fused_extended: Latency,
    pub fused_all: Latency,
    pub speedup_extended: Estimate,
    pub speedup_all: Estimate,
    pub aa_control: Estimate,
    pub aa_ok: bool,
    /// The explicit-fused variant's latency and speedup, when the rounds timed it.
    pub explicit: Option<(Latency, Estimate)>,
}

impl Summary {
    /// The statistics of `rounds` (indexed as [`timing::run_rounds`] indexes its variants).
    pub fn of(rounds: &Rounds, seed: u64) -> Summary {
        let aa_control = ratio_estimate(&rounds.ratios(UNFUSED, CONTROL), seed ^ 1);
        Summary {
            unfused: Latency::from_seconds(&rounds.times[UNFUSED], seed ^ 2),
            unfused_control: Latency::from_seconds(&rounds.times[CONTROL], seed ^ 3),
            fused_extended: Latency::from_seconds(&rounds.times[EXTENDED], seed ^ 4),
            fused_all: Latency::from_seconds(&rounds.times[ALL], seed ^ 5),
            speedup_extended: ratio_estimate(&rounds.ratios(UNFUSED, EXTENDED), seed ^ 6),
            speedup_all: ratio_estimate(&rounds.ratios(UNFUSED, ALL), seed ^ 7),
            aa_ok: aa_ok(&aa_control),
            aa_control,
            explicit: (rounds.times.len() > EXPLICIT).then(|| {
                (
                    Latency::from_seconds(&rounds.times[EXPLICIT], seed ^ 8),
                    ratio_estimate(&rounds.ratios(UNFUSED, EXPLICIT), seed ^ 9),
                )
            }),
        }
    }
}

/// The whole model timed at each level (same four-session design as [`compare`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WholeModel {
    pub disabled: Latency,
    pub disabled_control: Latency,
    pub extended: Latency,
    pub all: Latency,
    pub speedup_extended: Estimate,
    pub speedup_all: Estimate,
    pub aa_control: Estimate,
    pub aa_ok: bool,
    pub equivalence_extended: Equivalence,
    pub equivalence_all: Equivalence,
    pub nodes_disabled: usize,
    pub nodes_extended: usize,
    pub nodes_all: usize,
    pub rounds: usize,
    pub iters_per_round: usize,
    pub budget_exhausted: bool,
    pub wall_s: f64,
    pub threads: usize,
    pub ep: Ep,
    /// What each replicate read.
    #[serde(default)]
    pub replicates: Vec<ReplicateResult>,
    /// CUDA: the sessions in which ORT placed some nodes on the CPU; empty when every node ran on the
    /// GPU, and on the CPU.
    #[serde(default)]
    pub cpu_fallback: Vec<String>,
    /// With `--cuda-graph`: the levels ORT could not capture in a CUDA graph (nodes on the CPU), timed
    /// without one.
    #[serde(default)]
    pub no_cuda_graph: Vec<String>,
}

impl From<Comparison> for WholeModel {
    fn from(c: Comparison) -> Self {
        WholeModel {
            disabled: c.unfused,
            disabled_control: c.unfused_control,
            extended: c.fused_extended,
            all: c.fused_all,
            speedup_extended: c.speedup_extended,
            speedup_all: c.speedup_all,
            aa_control: c.aa_control,
            aa_ok: c.aa_ok,
            equivalence_extended: c.equivalence_extended,
            equivalence_all: c.equivalence_all,
            nodes_disabled: c.unfused_ops.len(),
            nodes_extended: c.fused_ops_extended.len(),
            nodes_all: c.fused_ops_all.len(),
            rounds: c.rounds,
            iters_per_round: c.iters_per_round,
            budget_exhausted: c.budget_exhausted,
            wall_s: c.wall_s,
            threads: c.threads,
            ep: c.ep,
            replicates: c.replicates,
            cpu_fallback: c.cpu_fallback,
            no_cuda_graph: c.no_cuda_graph,
        }
    }
}

/// Serialises all measurement in the process: timings must never overlap.
pub(crate) static MEASURE_LOCK: Mutex<()> = Mutex::new(());

/// Time a whole model file: `Disable` (twice, A/A) vs `Extended` vs `All`, its replicates back to back,
/// combined with the session noise they show alone. `bench` spreads them over its run instead
/// ([`whole_model_replicate`]) and pools the noise with the instances'.
pub fn whole_model(path: &Path, inputs: &[InputSpec], opts: &MeasureOptions) -> Result<WholeModel> {
    let reps =
        (0..opts.replicates).map(|r| whole_model_replicate(path, inputs, opts, r)).collect::<Result<Vec<_>>>()?;
    let noise = SessionNoise::pooled([reps.as_slice()]);
    Ok(replicates::combine(&reps, &noise).into())
}

/// One replicate of the whole model ([`replicate`]). On CUDA each session is built strictly on the GPU
/// first and, when ORT must keep nodes on the CPU (shape arithmetic), again with fallback allowed; the
/// sessions that fell back are recorded ([`WholeModel::cpu_fallback`]), as for carved patterns. Inputs and
/// outputs stay on the device either way.
pub fn whole_model_replicate(
    path: &Path,
    inputs: &[InputSpec],
    opts: &MeasureOptions,
    replicate: usize,
) -> Result<Comparison> {
    let opts = &MeasureOptions { strict_placement: true, rounds_in_budget: WHOLE_MODEL_ROUNDS, ..opts.clone() };
    self::replicate(ModelSource::Path(path), None, inputs, opts, "whole model", replicate)
        .with_context(|| format!("timing the whole model {}", path.display()))
}

/// Build the four sessions, check equivalence, time them, and summarise. See the module docs.
/// The same as [`compare_variants`] without an explicit-fused model.
pub fn compare(model: ModelSource<'_>, inputs: &[InputSpec], opts: &MeasureOptions) -> Result<Comparison> {
    compare_variants(model, None, inputs, opts)
}

/// [`compare`], plus an optional explicit-fused model: the same computation rewritten into a fused kernel (same
/// input and output names and shapes). It becomes a fifth session at [`Level::Disable`], interleaved in the same
/// rounds and checked against unfused A. If it cannot be built or run, [`Comparison::explicit_error`] says why
/// and the other four are measured as usual.
pub fn compare_variants(
    model: ModelSource<'_>,
    explicit: Option<&[u8]>,
    inputs: &[InputSpec],
    opts: &MeasureOptions,
) -> Result<Comparison> {
    opts.validate()?;
    let _guard = MEASURE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let wall = Instant::now();
    if opts.threads > 1 {
        crate::runtime::configure_pool(opts.threads)?;
    }
    crate::runtime::environment()?;

    let owned_bytes;
    let model_bytes: &[u8] = match model {
        ModelSource::Bytes(b) => b,
        ModelSource::Path(p) => {
            owned_bytes = std::fs::read(p).with_context(|| format!("reading model {}", p.display()))?;
            &owned_bytes
        }
    };
    let unfused_ops = model_ops(model_bytes).context("parsing the model as ONNX")?;

    let (names, values1, values2) = input_sets(inputs, opts)?;

    let tmp = TempDir::new().context("creating a temporary directory for optimised models")?;
    let plan: [(&'static str, Level, Option<PathBuf>); 5] = [
        ("unfused", Level::Disable, None),
        ("unfused control", Level::Disable, None),
        ("fused extended", Level::Extended, Some(tmp.0.join("extended.onnx"))),
        ("fused all", Level::All, Some(tmp.0.join("all.onnx"))),
        ("explicit fused", Level::Disable, None),
    ];

    // The explicit model's ops are its own (it runs unoptimised); a model that does not even parse is an
    // explicit error, not a failed comparison.
    let mut explicit_error: Option<String> = None;
    let mut explicit_ops = vec![];
    let mut explicit = explicit;
    if let Some(bytes) = explicit {
        match model_ops(bytes) {
            Ok(ops) => explicit_ops = ops,
            Err(e) => {
                explicit_error = Some(format!("the explicit-fused model does not parse: {e:#}"));
                explicit = None;
            }
        }
    }

    // CUDA: every session runs on a stream of ours, so that the clock check below can time the measured
    // session with events on the very stream it ran on. Declared before the sessions: dropped after them.
    let cudart = match opts.ep {
        Ep::Cuda { .. } if opts.cuda_stream.is_none() => Some(events::Cudart::open()),
        _ => None,
    };
    let mut clock_check_error = None;
    let stream = match (&cudart, opts.ep) {
        (Some(Ok(rt)), Ep::Cuda { device_id }) => match rt.stream(device_id) {
            Ok(s) => Some(s),
            Err(e) => {
                clock_check_error = Some(format!("{e:#}"));
                None
            }
        },
        (Some(Err(e)), _) => {
            clock_check_error = Some(format!("{e:#}"));
            None
        }
        _ => None,
    };
    let opts =
        &MeasureOptions { cuda_stream: stream.as_ref().map(|s| s.ptr as usize).or(opts.cuda_stream), ..opts.clone() };
    // CUDA graphs replay the addresses of the run they captured, so the plain runs (other inputs, outputs
    // ORT allocates) use sessions without graphs, and the timed sessions are built again with them below.
    let plain_opts = MeasureOptions { cuda_graph: false, ..opts.clone() };
    // sessions ORT could not build without placing some nodes on the CPU
    let mut cpu_fallback: Vec<String> = vec![];
    // Sessions and their plain runs on both input sets, built in a seeded random order: the first session
    // created gets first pick of the shared arena, and that must not always be the same role.
    let build_order = build_order(opts.seed, explicit.is_some());
    let build_labels: Vec<String> = build_order.iter().map(|&i| plan[i].0.to_string()).collect();
    let mut built: [Option<Session>; 5] = Default::default();
    let mut ops: [Vec<String>; 4] = Default::default();
    let mut inputs_checked = false;
    // Each session's plain outputs are checked against unfused A's as soon as both exist, then dropped but
    // for their names and shapes: a large tensor's outputs (widened to f64) held for every session and input
    // set would be most of the run's memory.
    let mut plain = PlainChecks::default();
    let mut plain_runs: Vec<usize> = Vec::with_capacity(5);
    for &i in &build_order {
        let (label, level, optimized) = &plan[i];
        if i == EXPLICIT {
            let source = ModelSource::Bytes(explicit.unwrap_or_default());
            match build_explicit(source, &plain_opts, inputs) {
                Ok(s) => {
                    built[i] = Some(s);
                    plain_runs.push(i);
                }
                Err(e) => explicit_error = Some(format!("{e:#}")),
            }
            continue;
        }
        let (s, fell_back) = session::build_session_placed(model, *level, &plain_opts, optimized.as_deref(), label)?;
        if fell_back {
            cpu_fallback.push(label.to_string());
        }
        if !inputs_checked {
            session::check_inputs(&s, inputs).context("checking inputs against the model")?;
            inputs_checked = true;
        }
        if let Some(p) = optimized {
            let bytes = std::fs::read(p)
                .with_context(|| format!("reading the {label} optimised model ORT saved at {}", p.display()))?;
            ops[i] = model_ops(&bytes).with_context(|| format!("listing the {label} model's ops"))?;
        }
        built[i] = Some(s);
        plain_runs.push(i);
    }
    // The plain runs, unfused A first (whatever the build order): each other session's outputs are then
    // checked and dropped at once instead of waiting, all of them, for the reference.
    plain_runs.sort_by_key(|&i| i != UNFUSED);
    for i in plain_runs {
        let label = plan[i].0;
        let Some(s) = built[i].as_mut() else { continue };
        let outs = session::run_plain(s, &names, &values1, label)
            .and_then(|o1| session::run_plain(s, &names, &values2, label).map(|o2| (o1, o2)));
        match outs {
            Ok((out1, out2)) => plain.add(i, out1, out2, opts),
            Err(e) if i == EXPLICIT => {
                explicit_error = Some(format!("{e:#}"));
                built[i] = None;
            }
            Err(e) => return Err(e),
        }
    }
    let reference = plain.reference.take().context("internal: unfused A was not run")?;
    let mut sessions = Vec::with_capacity(5);
    let mut like = Vec::with_capacity(5);
    let mut no_graph: Vec<String> = vec![];
    for (i, b) in built.into_iter().enumerate() {
        let Some(s) = b else {
            if i < EXPLICIT {
                bail!("internal: session {i} was not built");
            }
            continue;
        };
        let s = if opts.cuda_graph {
            let (label, level, _) = &plan[i];
            let source = if i == EXPLICIT { ModelSource::Bytes(explicit.unwrap_or_default()) } else { model };
            if i == EXPLICIT {
                drop(s);
                match session::build_session(source, *level, opts, None, label) {
                    Ok(g) => g,
                    Err(e) => {
                        explicit_error = Some(format!("{e:#}"));
                        continue;
                    }
                }
            } else {
                match session::build_session_placed(source, *level, opts, None, label) {
                    Ok((g, _)) => g,
                    // ORT captures only a graph whose every node runs on the GPU: a whole model at a level
                    // that keeps shape arithmetic on the CPU is timed without a graph, and says so
                    Err(e) if capture_refused(&format!("{e:#}")) => {
                        no_graph.push(label.to_string());
                        s
                    }
                    Err(e) => return Err(e.context("building the CUDA-graph session")),
                }
            }
        } else {
            s
        };
        sessions.push((s, plan[i].0));
        like.push(plain.like[i].take().unwrap_or_default());
    }
    // All sessions share the input tensors and, when the shapes agree (they should: same model), one set of
    // output tensors, so every session reads and writes the very same memory.
    let mut out_sets = vec![session::Outputs::allocate(&reference.0, opts.ep)?];
    let mut out_set_of = Vec::with_capacity(5);
    let mut variants = Vec::with_capacity(5);
    for (i, (s, label)) in sessions.into_iter().enumerate() {
        let k = if out_sets[0].fits(&like[i]) {
            0
        } else {
            match session::Outputs::allocate(&like[i], opts.ep) {
                Ok(o) => out_sets.push(o),
                Err(e) if i == EXPLICIT => {
                    explicit_error = Some(format!("{e:#}"));
                    break;
                }
                Err(e) => return Err(e),
            }
            out_sets.len() - 1
        };
        match session::bind(s, &names, &values1, &mut out_sets[k], label) {
            Ok(v) => variants.push(v),
            Err(e) if i == EXPLICIT => {
                explicit_error = Some(format!("{e:#}"));
                break;
            }
            Err(e) => return Err(e),
        }
        out_set_of.push(k);
    }

    // What the bound runs (the timed path) compute, read right after each one and checked against unfused A.
    let mut bound = Vec::with_capacity(5);
    for (i, (v, &k)) in variants.iter().zip(&out_set_of).enumerate() {
        let read =
            v.run_bound().and_then(|()| out_sets[k].read().with_context(|| format!("reading {} outputs", v.label)));
        match read {
            Ok(o) => bound.push(check_equivalence_ep(&reference.0, &o, opts)),
            Err(e) if i == EXPLICIT => {
                explicit_error = Some(format!("{e:#}"));
                break;
            }
            Err(e) => return Err(e),
        }
    }
    // Whatever failed above, the explicit variant either has everything or is dropped.
    variants.truncate(bound.len());

    // Equivalence on both input sets and through the binding, before spending the time budget.
    drop(reference);
    let equiv = |i: usize| match plain.checked[i].clone() {
        Some(e) => e.merge(bound[i].clone()),
        None => bound[i].clone(),
    };
    let control = equiv(CONTROL);
    if !control.passed {
        bail!(
            "the two unfused sessions disagree (max abs err {:e}): the model is not deterministic, \
             so neither fusion nor timing can be checked",
            control.max_abs_err
        );
    }
    let equivalence_extended = equiv(EXTENDED);
    let equivalence_all = equiv(ALL);
    let equivalence_explicit = (variants.len() > EXPLICIT).then(|| equiv(EXPLICIT));

    // The stopping rule waits for the explicit ratio only when its outputs agree: a wrong kernel is timed
    // (its latency is shown) but its speedup is never reported, so its CI does not matter.
    let mut wait_for = vec![EXTENDED, ALL];
    if equivalence_explicit.as_ref().is_some_and(|e| e.passed) {
        wait_for.push(EXPLICIT);
    }
    let (rounds, explicit_failure) = timing::time_variants(&mut variants, &wait_for, opts, &WallClock::new())?;
    if let Some(e) = explicit_failure {
        explicit_error = Some(format!("{e:#}"));
    }

    let clock_check = match &stream {
        Some(st) => match events::clock_check(&variants[UNFUSED], st) {
            Ok(c) => Some(c),
            Err(e) => {
                clock_check_error = Some(format!("{e:#}"));
                None
            }
        },
        None => None,
    };
    let stats = Summary::of(&rounds, opts.seed);
    let explicit_result = match (stats.explicit, equivalence_explicit) {
        (Some((latency, speedup)), Some(equivalence)) => {
            Some(ExplicitResult { latency, speedup, equivalence, ops: explicit_ops })
        }
        _ => None,
    };
    Ok(Comparison {
        unfused: stats.unfused,
        unfused_control: stats.unfused_control,
        fused_extended: stats.fused_extended,
        fused_all: stats.fused_all,
        speedup_extended: stats.speedup_extended,
        speedup_all: stats.speedup_all,
        aa_ok: aa_ok_at(&stats.aa_control, opts.target_rel_ci),
        aa_control: stats.aa_control,
        equivalence_extended,
        equivalence_all,
        fused_ops_extended: std::mem::take(&mut ops[EXTENDED]),
        fused_ops_all: std::mem::take(&mut ops[ALL]),
        unfused_ops,
        explicit: explicit_result,
        explicit_error,
        cpu_fallback,
        rounds: rounds.len(),
        iters_per_round: rounds.iters,
        budget_exhausted: rounds.budget_exhausted,
        wall_s: wall.elapsed().as_secs_f64(),
        threads: opts.threads,
        ep: opts.ep,
        seed: opts.seed,
        build_order: build_labels,
        attempts: 1,
        replicates: vec![],
        clock_check,
        clock_check_error,
        precision_error: None,
        no_cuda_graph: no_graph,
    })
}

/// Whether ORT refused to capture a session in a CUDA graph (a node not on the CUDA provider). ORT 1.31
/// says "cannot use the graph capture feature"; older versions "CUDA Graph".
fn capture_refused(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("graph capture") || m.contains("cuda graph")
}

/// One replicate of a comparison: [`compare_variants`] with a seed of its own (inputs, build order,
/// bootstrap) from `opts.seed`, `salt` (say, the instance's signature) and the replicate's number. While its
/// A/A control fails ([`aa_ok`]) it is measured again in fresh sessions with a fresh seed, at most
/// [`replicates::AA_RETRIES`] times; [`Comparison::attempts`] says how many it took, and a control that
/// still fails is returned as it is (`aa_ok` false) for the caller to leave out.
pub fn replicate(
    model: ModelSource<'_>,
    explicit: Option<&[u8]>,
    inputs: &[InputSpec],
    opts: &MeasureOptions,
    salt: &str,
    replicate: usize,
) -> Result<Comparison> {
    let mut attempt = 0;
    loop {
        let seed = replicate_seed(opts.seed, salt, replicate, attempt);
        let mut c = compare_variants(model, explicit, inputs, &MeasureOptions { seed, ..opts.clone() })?;
        c.attempts = attempt + 1;
        if c.aa_ok || attempt == replicates::AA_RETRIES {
            return Ok(c);
        }
        attempt += 1;
    }
}

/// The seed of one attempt of one replicate of one instance: different for every instance, replicate and
/// attempt, the same from one run to the next.
pub fn replicate_seed(seed: u64, salt: &str, replicate: usize, attempt: usize) -> u64 {
    // FNV-1a over the salt, then splitmix64 over the mix
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = seed ^ h ^ ((replicate as u64) << 32) ^ ((attempt as u64) << 48);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The two seeded random input sets every comparison runs on, as ORT values on `opts.ep`'s device, and the
/// input names. The host copies are dropped here.
pub(crate) fn input_sets(
    inputs: &[InputSpec],
    opts: &MeasureOptions,
) -> Result<(Vec<String>, Vec<ort::value::DynTensor>, Vec<ort::value::DynTensor>)> {
    let set1 = random_inputs(inputs, opts.seed).context("generating inputs")?;
    let set2 = random_inputs(inputs, opts.seed.wrapping_add(0x9e37_79b9_7f4a_7c15))
        .context("generating the second input set")?;
    let names: Vec<String> = set1.iter().map(|h| h.name.clone()).collect();
    let values1 = session::to_ort_values(&set1, opts.ep)?;
    let values2 = session::to_ort_values(&set2, opts.ep)?;
    Ok((names, values1, values2))
}

/// The order [`compare_variants`] builds its sessions in for `seed`: indexes into unfused, control,
/// extended, full (and explicit when `explicit`).
pub fn build_order(seed: u64, explicit: bool) -> Vec<usize> {
    build_order_of(seed, if explicit { EXPLICIT + 1 } else { EXPLICIT })
}

/// `0..n` in the seeded random order sessions are built in.
pub fn build_order_of(seed: u64, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x0062_7569_6c64));
    order
}

/// The explicit-fused session and its plain runs on both input sets: built at `Disable`, its inputs checked
/// against the same input set as the others.
fn build_explicit(source: ModelSource<'_>, opts: &MeasureOptions, inputs: &[InputSpec]) -> Result<Session> {
    let s = session::build_session(source, Level::Disable, opts, None, "explicit fused")?;
    session::check_inputs(&s, inputs).context("checking inputs against the explicit-fused model")?;
    Ok(s)
}

/// The plain runs' equivalence checks, made as soon as unfused A's outputs and a session's are both there.
#[derive(Default)]
struct PlainChecks {
    /// Unfused A's outputs on both input sets.
    reference: Option<(Vec<OutputValues>, Vec<OutputValues>)>,
    /// Sessions run before unfused A, waiting for it.
    pending: Vec<(usize, Vec<OutputValues>, Vec<OutputValues>)>,
    /// Each session's check on both input sets.
    checked: [Option<Equivalence>; 5],
    /// Each session's output names, dtypes and shapes (values dropped), to allocate and bind outputs.
    like: [Option<Vec<OutputValues>>; 5],
}

impl PlainChecks {
    fn add(&mut self, i: usize, out1: Vec<OutputValues>, out2: Vec<OutputValues>, opts: &MeasureOptions) {
        self.like[i] = Some(out1.iter().map(OutputValues::shape_only).collect());
        let check = |r: &(Vec<OutputValues>, Vec<OutputValues>), o1: &[OutputValues], o2: &[OutputValues]| {
            check_equivalence_ep(&r.0, o1, opts).merge(check_equivalence_ep(&r.1, o2, opts))
        };
        if i == UNFUSED {
            let r = (out1, out2);
            for (j, o1, o2) in std::mem::take(&mut self.pending) {
                self.checked[j] = Some(check(&r, &o1, &o2));
            }
            self.reference = Some(r);
        } else if let Some(r) = &self.reference {
            self.checked[i] = Some(check(r, &out1, &out2));
        } else {
            self.pending.push((i, out1, out2));
        }
    }
}
