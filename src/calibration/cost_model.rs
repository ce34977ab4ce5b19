//! Cost model: what a graph partitioner asks of a calibration file.
//!
//! [`FusionCostModel`] is built from `FusionCalibration` records (a `fuseval bench` calibration.json, a
//! `fuseval calibrate` hardware calibration, or a merged file of one machine) and answers, per pattern
//! and workload:
//!
//! - [`FusionCostModel::fusion_benefit`]: the expected speedup (unfused / fused latency) with its 95% CI,
//!   where it came from ([`Source`]) and what to be wary of (`warnings`);
//! - [`FusionCostModel::should_fuse`]: a [`Decision`] against a configurable threshold (1.2 by default,
//!   the design's 20%).
//!
//! Lookups are size-aware: each pattern's records are placed on one scalar, [`Workload::size`]
//! (`max(flops, unfused bytes)`), and the speedup is interpolated in log(size) between the two nearest
//! calibrated sizes; outside the calibrated range the nearest size's value is used and the result says
//! it is extrapolated, and by what factor. A pattern that was never measured gets the configured
//! [`Fallback`], named in the result's `source`, `warnings` and the decision's `reason`.
//!
//! Pattern names are resolved by [`resolve_pattern`] (keys, common spellings and a table of true
//! synonyms), in the records and in the queries alike, so `Conv2d_BatchNorm2d_ReLU` finds the records of
//! `Conv2d_BN_ReLU`. Rules and tables: docs/cost-model.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::calibration::decision::{decide, Ground, Judgement, Rule};
use crate::calibration::spelling::edit_distance;
use crate::calibration::{FusionCalibration, Status, Variant};
use crate::estimate::Estimate;
use crate::graph::ModelGraph;
use crate::patterns::{Instance, Pattern};
use crate::runtime::Precision;

/// The design's threshold (1.2: fuse when fusing is at least 20% faster), the decision rule's default.
pub use crate::calibration::decision::DEFAULT_THRESHOLD;

/// Two sizes within this relative distance are the same size: records there are combined, and a query
/// there is a `Measured` hit. Small enough to never merge the points of a size grid (which step by 2×
/// or more), large enough to absorb the few elementwise FLOPs and bytes that a pattern's variants
/// (a bias inside the Gemm or after it, ReLU or not) add to the same shapes.
pub const SAME_SIZE_TOLERANCE: f64 = 0.02;

/// Bytes per f32 element, the dtype the workload constructors assume.
const F32: u64 = 4;

// ---------- workloads ----------

/// How much work a pattern instance does: FLOPs and bytes moved, counted from shapes the way the
/// calibration counts them (`calibration::flops`, `calibration::memory_bytes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub flops: u64,
    /// Bytes moved unfused: every node reads its inputs and writes its outputs.
    pub unfused_bytes: u64,
    /// Bytes moved fused: the pattern's inputs and weights read once, its output written once.
    pub fused_bytes: u64,
}

/// Saturating product of dimensions, so absurd shapes give a huge size rather than a wrapped one.
fn prod(dims: &[usize]) -> u64 {
    dims.iter().fold(1u64, |p, &d| p.saturating_mul(d as u64))
}

/// Saturating sum.
fn sum(xs: &[u64]) -> u64 {
    xs.iter().fold(0u64, |s, &x| s.saturating_add(x))
}

impl Workload {
    /// The workload of a detected instance, counted exactly as its calibration record would be.
    pub fn of_instance(g: &ModelGraph, inst: &Instance) -> Workload {
        let (unfused_bytes, fused_bytes) = crate::calibration::memory_bytes(g, inst);
        Workload { flops: crate::calibration::flops(g, inst), unfused_bytes, fused_bytes }
    }

    /// [`Workload::of_instance`] computed in `precision` (in fp16 its fp32 tensors move half the bytes).
    pub fn of_instance_in(g: &ModelGraph, inst: &Instance, precision: Precision) -> Workload {
        let (unfused_bytes, fused_bytes) = crate::calibration::memory_bytes_in(g, inst, Some(precision));
        Workload { flops: crate::calibration::flops(g, inst), unfused_bytes, fused_bytes }
    }

    /// The workload a calibration record was measured at.
    pub fn of_record(r: &FusionCalibration) -> Workload {
        Workload { flops: r.flops, unfused_bytes: r.unfused_memory_bytes, fused_bytes: r.fused_memory_bytes }
    }

    /// A linear layer with bias, `[m,k] @ [k,n] + [n]` in f32, counted as the MatMul+Add form:
    /// `2mkn + mn` FLOPs; unfused the MatMul reads X and W and writes Y, the Add reads Y and the bias and
    /// writes again; fused X, W and the bias are read once and the output written once.
    pub fn linear(m: usize, k: usize, n: usize) -> Workload {
        let (x, w, y, b) = (prod(&[m, k]), prod(&[k, n]), prod(&[m, n]), n as u64);
        Workload {
            flops: sum(&[prod(&[2, m, k, n]), y]),
            unfused_bytes: F32.saturating_mul(sum(&[x, w, y, y, b, y])),
            fused_bytes: F32.saturating_mul(sum(&[x, w, b, y])),
        }
    }

    /// A 2-D convolution with a per-channel bias Add, stride 1, same padding, f32:
    /// `[n,cin,h,w] * [cout,cin,kh,kw] + [cout]`, counted like [`Workload::linear`] (the convolution's
    /// `2·out·cin·kh·kw` FLOPs, plus one per output element for the bias).
    pub fn conv(n: usize, cin: usize, h: usize, w: usize, cout: usize, kh: usize, kw: usize) -> Workload {
        let (x, wt, y, b) = (prod(&[n, cin, h, w]), prod(&[cout, cin, kh, kw]), prod(&[n, cout, h, w]), cout as u64);
        Workload {
            flops: sum(&[prod(&[cin, kh, kw]).saturating_mul(y).saturating_mul(2), y]),
            unfused_bytes: F32.saturating_mul(sum(&[x, wt, y, y, b, y])),
            fused_bytes: F32.saturating_mul(sum(&[x, wt, b, y])),
        }
    }

    /// A chain of `ops` elementwise ops over `numel` f32 elements, the first reading `inputs` tensors of
    /// that size (constants of per-channel size are left out). One FLOP per element per op; unfused the
    /// first op reads its inputs and every op writes its result, which the next reads; fused the inputs
    /// are read once and the result written once. `Add_ReLU` is `elementwise(n, 2, 2)`, `Mul_Add_ReLU`
    /// `elementwise(n, 1, 3)`.
    pub fn elementwise(numel: usize, inputs: usize, ops: usize) -> Workload {
        let (n, inputs, ops) = (numel as u64, inputs.max(1) as u64, ops.max(1) as u64);
        let unfused_elems = sum(&[inputs, 1, (ops - 1).saturating_mul(2)]);
        Workload {
            flops: n.saturating_mul(ops),
            unfused_bytes: F32.saturating_mul(n).saturating_mul(unfused_elems),
            fused_bytes: F32.saturating_mul(n).saturating_mul(inputs + 1),
        }
    }

    /// A full attention head, `softmax(Q·Kᵀ · scale) · V` per batch and head, f32: `4·s²·d + 2·s²` FLOPs
    /// per head (two matmuls, the scale, the softmax); unfused the `s×s` scores are written and read
    /// three times, fused only Q, K, V and the output move.
    pub fn attention(batch: usize, heads: usize, seq: usize, head_dim: usize) -> Workload {
        let scores = prod(&[batch, heads, seq, seq]);
        let act = prod(&[batch, heads, seq, head_dim]);
        Workload {
            flops: sum(&[scores.saturating_mul(head_dim as u64).saturating_mul(4), scores.saturating_mul(2)]),
            unfused_bytes: F32.saturating_mul(sum(&[act.saturating_mul(4), scores.saturating_mul(6)])),
            fused_bytes: F32.saturating_mul(act.saturating_mul(4)),
        }
    }

    /// The scalar the lookup interpolates on: `max(flops, unfused_bytes)`.
    ///
    /// That is the FLOPs when the workload is compute-heavy (at least one FLOP per byte moved: GEMMs,
    /// convolutions, attention at any useful size) and the bytes moved otherwise (elementwise chains,
    /// layer norms, a GEMV), decided by the workload itself, so records and queries of every pattern go
    /// through the same function. It is continuous where it switches, so a pattern whose sizes span both
    /// sides (a Linear from batch 1 to batch 512) still lies on one monotone axis.
    pub fn size(&self) -> f64 {
        self.flops.max(self.unfused_bytes) as f64
    }
}

// ---------- options ----------

/// What to assume for a pattern the calibration has no usable measurement of. Whichever applies is named
/// in the result: `Source::Fallback`, a warning, and the decision's reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fallback {
    /// The design's "assume fusion is beneficial": a speedup of `fallback_speedup` with no uncertainty
    /// (by default the threshold, so the decision is to fuse). The default.
    #[default]
    AssumeBeneficial,
    /// A speedup of exactly 1.0: nothing to gain, so not fused.
    AssumeNeutral,
    /// No guess: the lookup is an error naming the pattern and the calibrated ones.
    Refuse,
}

/// Which measured speedup of a record the model uses (which [`Variant`]'s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum VariantChoice {
    /// `speedup_factor` and its CI: what ONNX Runtime's own optimiser buys ([`Variant::RuntimeExtended`],
    /// the headline).
    #[default]
    Headline,
    /// The record's `best_variant` (runtime extended, runtime full or explicit); the headline when that
    /// is [`Variant::Unfused`] (no fused variant beat unfused beyond the noise: the headline says by how
    /// little).
    Best,
    /// The explicit fused kernel's speedup ([`Variant::Explicit`]); records without an explicit variant
    /// (no such kernel on the provider, or its session failed) are left out, with a warning saying why.
    Explicit,
}

#[derive(Clone, Debug)]
pub struct CostModelOptions {
    /// Fuse when the speedup's CI lower bound reaches this (1.2 by default) and clears the noise band
    /// ([`crate::calibration::decision`]). At least 1.0.
    pub threshold: f64,
    pub fallback: Fallback,
    /// The speedup `Fallback::AssumeBeneficial` assumes; 1.2 by default (the default threshold). Below
    /// the threshold it makes an unmeasured pattern `Marginal` (not fused), and the model warns.
    pub fallback_speedup: f64,
    pub variant: VariantChoice,
    /// The precision lookups without one answer in ([`FusionCostModel::benefit`], [`FusionCostModel::decide`]);
    /// `None`: the calibration's only precision, or the first of fp32, tf32, fp16 it holds.
    pub precision: Option<Precision>,
}

impl Default for CostModelOptions {
    fn default() -> Self {
        CostModelOptions::with_threshold(DEFAULT_THRESHOLD)
    }
}

impl CostModelOptions {
    /// The defaults with another threshold; `fallback_speedup` follows it, so `AssumeBeneficial` still
    /// fuses.
    pub fn with_threshold(threshold: f64) -> Self {
        CostModelOptions {
            threshold,
            fallback: Fallback::AssumeBeneficial,
            fallback_speedup: threshold,
            variant: VariantChoice::Headline,
            precision: None,
        }
    }

    fn check(&self) -> Result<()> {
        if !(self.threshold.is_finite() && self.threshold >= 1.0) {
            bail!("cost model threshold must be a finite speedup of at least 1.0, got {}", self.threshold);
        }
        if !(self.fallback_speedup.is_finite() && self.fallback_speedup > 0.0) {
            bail!("cost model fallback_speedup must be a finite positive speedup, got {}", self.fallback_speedup);
        }
        Ok(())
    }
}

// ---------- results ----------

/// Where a benefit came from. Sizes are [`Workload::size`] values.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Source {
    /// A calibrated size (within [`SAME_SIZE_TOLERANCE`] of the query).
    Measured { size: f64 },
    /// Interpolated in log(size) between two calibrated sizes.
    Interpolated { below: f64, above: f64 },
    /// Outside the calibrated range: the value at the `nearest` calibrated size; `ratio` = query size /
    /// nearest (below 1: under the range, above 1: over it).
    Extrapolated { nearest: f64, ratio: f64 },
    /// No usable measurement: the configured fallback's assumption.
    Fallback(Fallback),
}

impl Source {
    /// Its name: `measured`, `interpolated`, `extrapolated` or `fallback`.
    pub fn name(&self) -> &'static str {
        match self {
            Source::Measured { .. } => "measured",
            Source::Interpolated { .. } => "interpolated",
            Source::Extrapolated { .. } => "extrapolated",
            Source::Fallback(_) => "fallback",
        }
    }

    /// One phrase for a reason string, e.g. `interpolated between sizes 1.00e6 and 1.00e8`.
    pub fn describe(&self) -> String {
        match self {
            Source::Measured { size } => format!("measured at size {size:.3e}"),
            Source::Interpolated { below, above } => format!("interpolated between sizes {below:.3e} and {above:.3e}"),
            Source::Extrapolated { nearest, ratio } => {
                format!("extrapolated from size {nearest:.3e}, the query {}", factor_phrase(*ratio))
            }
            Source::Fallback(f) => format!("Fallback::{f:?}, no usable measurement"),
        }
    }
}

/// `12.5× above the calibrated range` / `3.0× below ...`.
fn factor_phrase(ratio: f64) -> String {
    if ratio >= 1.0 {
        format!("{ratio:.3}× above the calibrated range")
    } else {
        format!("{:.3}× below the calibrated range", 1.0 / ratio)
    }
}

/// The expected speedup of fusing one pattern at one workload size.
#[derive(Clone, Debug, Serialize)]
pub struct Benefit {
    pub pattern: crate::patterns::Pattern,
    /// Unfused / fused latency with its 95% CI: above 1, fusing is faster. Exactly 1.0 when `equivalent`
    /// is false (a mismatch is never reported as a speedup).
    pub speedup: Estimate,
    pub source: Source,
    /// Calibration records the value rests on (0 for a fallback).
    pub records_used: usize,
    /// Extrapolation, fallback, untrustworthy timings, records left out: each as a sentence.
    pub warnings: Vec<String>,
    /// False when every record at a calibrated size the lookup used had fused outputs that disagree with
    /// the unfused ones: fusing this pattern there is wrong, whatever it saves.
    pub equivalent: bool,
    /// The query's [`Workload::size`].
    pub size: f64,
}

/// [`decide`]'s judgement in the cost model's three words. Only `Fuse` fuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Choice {
    /// `keep`: the CI's lower bound reaches the threshold and clears the noise band: fusing pays, with
    /// 95% confidence.
    Fuse,
    /// `marginal` with a point above 1.0: faster, but the CI's lower bound misses the threshold (the
    /// point is below it, or the CI straddles it) or touches the noise band; or an untrustworthy
    /// measurement. Not fused.
    Marginal,
    /// `harmful` (the fused outputs disagree, or the whole CI lies below the noise band), or `marginal`
    /// with a point of at most 1.0 (no faster) or no usable speedup. Not fused.
    DontFuse,
}

impl Choice {
    /// The choice a judgement stands for.
    pub fn of(j: &Judgement) -> Choice {
        match j.ground {
            Ground::ClearsThreshold => Choice::Fuse,
            Ground::UnderThreshold | Ground::WithinNoise | Ground::Untrustworthy => Choice::Marginal,
            Ground::NotEquivalent | Ground::Slower | Ground::NoFaster | Ground::NoSpeedup => Choice::DontFuse,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    /// `choice == Choice::Fuse`.
    pub fuse: bool,
    pub choice: Choice,
    pub benefit: Benefit,
    pub threshold: f64,
    /// One sentence: the pattern, the speedup and where it came from, and the rule that decided.
    pub reason: String,
}

// ---------- pattern names ----------

/// True synonyms of the stable keys beyond what `Pattern::from_key` accepts (case, `_ + - space` and
/// `BatchNorm2d`/`Conv2d` are normalised away), and beyond each pattern's operator list joined
/// (`Q@K.T+Softmax`), which resolves too. Each names the same computation as its key; names that only
/// resemble a pattern are left out on purpose (docs/cost-model.md lists them).
pub const ALIASES: &[(&str, Pattern)] = &[
    // convolutions: ONNX op names
    ("Conv_BatchNormalization", Pattern::ConvBn),
    ("Conv_BatchNormalization_Relu", Pattern::ConvBnRelu),
    ("Conv_BatchNormalization_Relu_MaxPool", Pattern::ConvBnReluMaxPool),
    // linear layers: ONNX forms, torch's addmm (bias + X @ W)
    ("MatMul_Add", Pattern::LinearBias),
    ("Gemm_Bias", Pattern::LinearBias),
    ("addmm", Pattern::LinearBias),
    ("MatMul_Add_Relu", Pattern::LinearBiasRelu),
    ("Gemm_Bias_ReLU", Pattern::LinearBiasRelu),
    ("MatMul_Add_Relu_Dropout", Pattern::LinearBiasReluDropout),
    ("MatMul_Add_Gelu", Pattern::LinearBiasGelu),
    ("Gemm_Bias_GELU", Pattern::LinearBiasGelu),
    ("MLP", Pattern::Mlp),
    ("MatMul_Add_Relu_MatMul_Add", Pattern::Mlp),
    // attention: the design's names, torch's
    ("attention", Pattern::AttentionHead),
    ("attention_qkv", Pattern::AttentionHead),
    ("QK_Softmax_V", Pattern::AttentionHead),
    ("scaled_dot_product_attention", Pattern::AttentionHead),
    ("sdpa", Pattern::AttentionHead),
    ("QKT_Softmax", Pattern::QkSoftmax),
    // elementwise: ONNX op names, ORT's fused op, the activation's names
    ("Sum_Relu", Pattern::AddRelu),
    ("Add_LayerNormalization", Pattern::AddLayerNorm),
    ("Add_LN", Pattern::AddLayerNorm),
    ("SkipLayerNorm", Pattern::AddLayerNorm),
    ("SkipLayerNormalization", Pattern::AddLayerNorm),
    ("SiLU", Pattern::SigmoidMul),
    ("Swish", Pattern::SigmoidMul),
];

/// Lower case, letters and digits only, long spellings shortened: `Conv2d_BatchNormalization+ReLU` →
/// `convbnrelu`.
fn normalize(s: &str) -> String {
    let s: String = s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
    s.replace("batchnormalization", "bn")
        .replace("batchnorm2d", "bn")
        .replace("batchnorm", "bn")
        .replace("layernormalization", "layernorm")
        .replace("conv2d", "conv")
}

/// Every accepted spelling (key, operator list, alias), normalised, with its pattern.
fn spellings() -> Vec<(String, &'static str, Pattern)> {
    let mut v = vec![];
    for p in Pattern::ALL {
        v.push((normalize(p.key()), p.key(), p));
    }
    for p in Pattern::ALL {
        let ops = p.operators().join("+");
        v.push((normalize(&ops), p.key(), p));
    }
    for &(a, p) in ALIASES {
        v.push((normalize(a), a, p));
    }
    v
}

/// Resolve any common spelling of a pattern to its stable key: the key in any case or separator style,
/// `Pattern::from_key`'s spellings, the operator list (`Conv2d+BatchNorm+ReLU`), and [`ALIASES`].
/// An unknown name is an error listing the valid keys and the closest spelling.
pub fn resolve_pattern(name: &str) -> Result<Pattern> {
    let trimmed = name.trim();
    if let Some(p) = Pattern::from_key(trimmed) {
        return Ok(p);
    }
    let want = normalize(trimmed);
    let all = spellings();
    if !want.is_empty() {
        if let Some((_, _, p)) = all.iter().find(|(n, _, _)| *n == want) {
            return Ok(*p);
        }
    }
    let keys: Vec<&str> = Pattern::ALL.iter().map(|p| p.key()).collect();
    let closest = all
        .iter()
        .map(|(n, spelled, p)| (edit_distance(&want, n, 2), *spelled, *p))
        .min_by_key(|(d, _, _)| *d)
        .map(
            |(_, spelled, p)| {
                if spelled == p.key() {
                    format!("`{spelled}`")
                } else {
                    format!("`{}` (alias `{spelled}`)", p.key())
                }
            },
        )
        .unwrap_or_default();
    Err(anyhow!(
        "unknown fusion pattern `{name}`; closest: {closest}. Valid keys: {} (aliases: docs/cost-model.md)",
        keys.join(", ")
    ))
}

// ---------- the model ----------

/// One record's contribution, before records of the same size are combined.
#[derive(Clone, Copy, Debug)]
struct Sample {
    size: f64,
    speedup: Estimate,
    /// The chosen variant's outputs agree with unfused.
    agrees: bool,
    /// The unfused latency, ms.
    unfused_ms: f64,
}

/// The records of one pattern at one calibrated size.
#[derive(Clone, Debug)]
struct Point {
    size: f64,
    /// Median point and widest CI of the agreeing records; `None` when none agrees.
    speedup: Option<Estimate>,
    agree: usize,
    disagree: usize,
    /// Median unfused latency of its records, ms.
    unfused_ms: f64,
}

/// A pattern's calibrated sizes, ascending, and what was left out.
#[derive(Clone, Debug, Default)]
struct Curve {
    points: Vec<Point>,
    /// Measured records without the chosen variant, with the reason.
    unavailable: Vec<String>,
    /// Skipped records (never measured).
    skipped: usize,
    /// Measured records whose A/A control failed: left out, never used.
    aa_failed: usize,
}

/// The partitioner's cost model over one machine's calibration. See the module header.
#[derive(Clone, Debug)]
pub struct FusionCostModel {
    opts: CostModelOptions,
    /// Per precision and pattern (records without a precision count as fp32).
    curves: BTreeMap<(Precision, Pattern), Curve>,
    /// What lookups without a precision answer in ([`CostModelOptions::precision`]).
    precision: Precision,
    /// About the calibration as a whole: records left out, an incomplete file.
    warnings: Vec<String>,
    /// `fusion_pattern` values no spelling resolves, so a fallback can say they exist.
    unknown_names: Vec<String>,
}

/// The chosen variant's speedup of a measured record and whether its outputs agree, or why it has none.
fn pick(r: &FusionCalibration, choice: VariantChoice) -> std::result::Result<(Estimate, bool), String> {
    let headline = (Estimate { point: r.speedup_factor, lo: r.speedup_ci_low, hi: r.speedup_ci_high }, r.equivalent);
    let of = |v: Variant| r.variant(v).map(|l| (l.speedup, l.equivalence.passed));
    match choice {
        VariantChoice::Headline => Ok(headline),
        VariantChoice::Best => Ok(of(r.best_variant).unwrap_or(headline)),
        VariantChoice::Explicit => of(Variant::Explicit).ok_or_else(|| {
            r.explicit_unavailable.as_ref().map_or_else(|| "no explicit variant was measured".into(), |u| u.to_string())
        }),
    }
}

/// Whether two sizes count as the same.
fn same_size(a: f64, b: f64) -> bool {
    a.max(b) / a.min(b) - 1.0 <= SAME_SIZE_TOLERANCE
}

/// Combine the records of one size (sorted by size): median point, widest CI (the envelope of their
/// CIs), so shapes or forms that differ at equal size widen the interval rather than vanish into an
/// average. The point's size is the middle record's.
fn combine(samples: &[Sample]) -> Point {
    // a real record's size: the middle one (samples are sorted by size)
    let size = samples[samples.len() / 2].size;
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.agrees).collect();
    let speedup = (!ok.is_empty()).then(|| {
        let points: Vec<f64> = ok.iter().map(|s| s.speedup.point).collect();
        Estimate {
            point: crate::estimate::median(&points),
            lo: ok.iter().map(|s| s.speedup.lo).fold(f64::INFINITY, f64::min),
            hi: ok.iter().map(|s| s.speedup.hi).fold(f64::NEG_INFINITY, f64::max),
        }
    });
    let unfused_ms = crate::estimate::median(&samples.iter().map(|s| s.unfused_ms).collect::<Vec<_>>());
    Point { size, speedup, agree: ok.len(), disagree: samples.len() - ok.len(), unfused_ms }
}

fn lerp(a: f64, b: f64, t: f64) -> f64 {
    a + (b - a) * t
}

impl FusionCostModel {
    /// Build the model from calibration records, of any patterns, forms and sizes. Records are used when
    /// measured; their pattern names go through [`resolve_pattern`] (a name nothing resolves is left out
    /// with a warning, see [`FusionCostModel::warnings`]). Fails only on invalid options.
    pub fn from_calibration(profiles: &[FusionCalibration], opts: CostModelOptions) -> Result<Self> {
        opts.check()?;
        let mut warnings = vec![];
        let mut unknown_names: Vec<String> = vec![];
        let mut curves: BTreeMap<(Precision, Pattern), Curve> = BTreeMap::new();
        let mut samples: BTreeMap<(Precision, Pattern), Vec<Sample>> = BTreeMap::new();
        if profiles.is_empty() {
            warnings.push(format!("the calibration holds no records: every lookup uses Fallback::{:?}", opts.fallback));
        }
        if opts.fallback == Fallback::AssumeBeneficial && opts.fallback_speedup < opts.threshold {
            warnings.push(format!(
                "fallback_speedup {:.3} is below the threshold {:.3}: Fallback::AssumeBeneficial will not fuse unmeasured patterns",
                opts.fallback_speedup, opts.threshold
            ));
        }
        for (i, r) in profiles.iter().enumerate() {
            let Ok(p) = resolve_pattern(&r.fusion_pattern) else {
                if !unknown_names.contains(&r.fusion_pattern) {
                    unknown_names.push(r.fusion_pattern.clone());
                }
                warnings.push(format!("record {i}: unknown fusion pattern `{}`, left out", r.fusion_pattern));
                continue;
            };
            let key = (r.precision.unwrap_or(Precision::Fp32), p);
            let curve = curves.entry(key).or_default();
            if r.status != Status::Measured {
                curve.skipped += 1;
                continue;
            }
            if r.aa_failed() {
                curve.aa_failed += 1;
                continue;
            }
            let size = Workload::of_record(r).size();
            if !(size.is_finite() && size > 0.0) {
                warnings.push(format!("record {i} ({p}): no FLOPs or bytes counted, so no size; left out"));
                continue;
            }
            let (est, agrees) = match pick(r, opts.variant) {
                Ok(x) => x,
                Err(why) => {
                    curve.unavailable.push(why);
                    continue;
                }
            };
            if !(est.point.is_finite() && est.point > 0.0 && est.lo.is_finite() && est.hi.is_finite()) {
                warnings.push(format!("record {i} ({p}): speedup {:?} is not a positive number; left out", est));
                continue;
            }
            // a CI must hold its point
            let speedup = Estimate { point: est.point, lo: est.lo.min(est.point), hi: est.hi.max(est.point) };
            samples.entry(key).or_default().push(Sample { size, speedup, agrees, unfused_ms: r.unfused_latency_ms });
        }
        for (key, mut s) in samples {
            s.sort_by(|a, b| a.size.total_cmp(&b.size));
            let curve = curves.entry(key).or_default();
            let mut start = 0;
            for i in 1..=s.len() {
                if i == s.len() || !same_size(s[start].size, s[i].size) {
                    curve.points.push(combine(&s[start..i]));
                    start = i;
                }
            }
        }
        let held: Vec<Precision> = Precision::ALL.into_iter().filter(|q| curves.keys().any(|(k, _)| k == q)).collect();
        let precision = opts.precision.or(held.first().copied()).unwrap_or(Precision::Fp32);
        if opts.precision.is_none() && held.len() > 1 {
            let names: Vec<&str> = held.iter().map(|q| q.name()).collect();
            warnings.push(format!(
                "the calibration holds records in {}: lookups that name no precision answer in {}",
                names.join(", "),
                precision.name()
            ));
        }
        Ok(FusionCostModel { opts, curves, precision, warnings, unknown_names })
    }

    /// The precision lookups without one answer in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The precisions the calibration holds records in, fp32, tf32, fp16 order.
    pub fn precisions(&self) -> Vec<Precision> {
        Precision::ALL.into_iter().filter(|q| self.curves.keys().any(|(k, _)| k == q)).collect()
    }

    fn curve(&self, p: Pattern, precision: Precision) -> Option<&Curve> {
        self.curves.get(&(precision, p))
    }

    /// Read any JSON with a top-level `fusion_profiles` array (a `fuseval bench` calibration.json, a
    /// `fuseval calibrate` hardware calibration), or a merged file whose runs all come from one machine
    /// and provider, through [`crate::calibration::read::read`]. Errors name the file.
    pub fn from_path(path: &Path, opts: CostModelOptions) -> Result<Self> {
        Self::from_source(&crate::calibration::read::read(path)?, opts)
    }

    /// [`FusionCostModel::from_path`] for a file already read: refuses a merged file of several machines
    /// or providers, and warns of interrupted runs, whose finished records are used.
    pub fn from_source(src: &crate::calibration::read::Source, opts: CostModelOptions) -> Result<Self> {
        let shown = src.path.display();
        let machines = src.machines();
        if machines.len() > 1 {
            return Err(crate::error::user(format!(
                "{shown}: a merged file of {} machines or providers ({}); a cost model is for one: merge only that machine's runs",
                machines.len(),
                machines.join("; ")
            )));
        }
        let runs = src.runs();
        let notes: Vec<String> = runs
            .iter()
            .filter(|r| !r.complete)
            .map(|r| format!("{shown}: {}incomplete (an interrupted run): only its finished records are used", r.at))
            .collect();
        let profiles: Vec<FusionCalibration> = runs.iter().flat_map(|r| r.records.iter().cloned()).collect();
        let mut model = Self::from_calibration(&profiles, opts).with_context(|| format!("cost model from {shown}"))?;
        model.warnings.splice(0..0, notes);
        Ok(model)
    }

    /// The expected speedup of fusing `pattern` (any spelling [`resolve_pattern`] accepts) at workload `w`
    /// in `precision` (the workload's bytes in that precision: [`Workload::of_instance_in`]), from the
    /// records of that precision only. Errors: an unknown name, a workload of size 0, or
    /// `Fallback::Refuse` for a pattern unmeasured in that precision.
    pub fn fusion_benefit(&self, pattern: &str, w: &Workload, precision: Precision) -> Result<Benefit> {
        self.benefit_in(resolve_pattern(pattern)?, w, precision)
    }

    /// Whether to fuse `pattern` at workload `w` in `precision`: see [`Choice`].
    pub fn should_fuse(&self, pattern: &str, w: &Workload, precision: Precision) -> Result<Decision> {
        self.decide_in(resolve_pattern(pattern)?, w, precision)
    }

    /// The unfused latency the calibration measured for `pattern` at workload `w`, ms: at a calibrated
    /// size its records' median; between two, interpolated on log-log axes; outside, scaled from the
    /// nearest in proportion to the size. `None` without a measured record of the pattern.
    pub fn unfused_latency_ms(&self, pattern: Pattern, w: &Workload) -> Option<f64> {
        let size = w.size();
        let pts: Vec<&Point> =
            self.curve(pattern, self.precision)?.points.iter().filter(|p| p.unfused_ms > 0.0).collect();
        let (first, last) = (pts.first()?, pts.last()?);
        if size.is_nan() || size <= 0.0 {
            return None;
        }
        if size <= first.size {
            return Some(first.unfused_ms * size / first.size);
        }
        if size >= last.size {
            return Some(last.unfused_ms * size / last.size);
        }
        let i = pts.iter().rposition(|p| p.size <= size)?;
        let (a, b) = (pts[i], pts[(i + 1).min(pts.len() - 1)]);
        if same_size(a.size, size) || a.size == b.size {
            return Some(a.unfused_ms);
        }
        let t = (size.ln() - a.size.ln()) / (b.size.ln() - a.size.ln());
        Some((a.unfused_ms.ln() + t * (b.unfused_ms.ln() - a.unfused_ms.ln())).exp())
    }

    /// [`FusionCostModel::fusion_benefit`] for a resolved pattern in the model's precision.
    pub fn benefit(&self, p: Pattern, w: &Workload) -> Result<Benefit> {
        self.benefit_in(p, w, self.precision)
    }

    /// [`FusionCostModel::fusion_benefit`] for a resolved pattern.
    pub fn benefit_in(&self, p: Pattern, w: &Workload, precision: Precision) -> Result<Benefit> {
        let size = w.size();
        if size.is_nan() || size <= 0.0 {
            bail!("{p}: the workload has no FLOPs and no bytes (size 0), so there is no size to look up");
        }
        let curve = self.curve(p, precision);
        let pts = curve.map(|c| c.points.as_slice()).unwrap_or(&[]);
        if pts.is_empty() {
            return self.fallback(p, size, curve, precision);
        }
        let mut b = Benefit {
            pattern: p,
            speedup: Estimate::exact(1.0),
            source: Source::Measured { size: 0.0 },
            records_used: 0,
            warnings: vec![],
            equivalent: true,
            size,
        };
        let (first, last) = (&pts[0], &pts[pts.len() - 1]);
        let used: Vec<&Point>;
        let nearest =
            pts.iter().min_by(|a, b| (a.size.ln() - size.ln()).abs().total_cmp(&(b.size.ln() - size.ln()).abs()));
        if let Some(pt) = nearest.filter(|pt| same_size(pt.size, size)) {
            b.source = Source::Measured { size: pt.size };
            used = vec![pt];
        } else if size < first.size || size > last.size {
            let pt = if size < first.size { first } else { last };
            let ratio = size / pt.size;
            b.source = Source::Extrapolated { nearest: pt.size, ratio };
            b.warnings.push(format!(
                "{p}: size {size:.3e} is {}, which spans {:.3e} to {:.3e}; using the value measured at {:.3e}",
                factor_phrase(ratio),
                first.size,
                last.size,
                pt.size
            ));
            used = vec![pt];
        } else {
            // size lies strictly between two calibrated sizes
            let i = pts.iter().rposition(|pt| pt.size < size).unwrap_or(0);
            let (lo, hi) = (&pts[i], &pts[(i + 1).min(pts.len() - 1)]);
            b.source = Source::Interpolated { below: lo.size, above: hi.size };
            used = vec![lo, hi];
        }
        b.records_used = used.iter().map(|pt| pt.agree + pt.disagree).sum();
        for pt in &used {
            if pt.speedup.is_none() {
                b.equivalent = false;
                b.warnings.push(format!(
                    "{p}: the fused outputs disagree with the unfused ones in all {} record(s) at size {:.3e}; fusing is wrong there, the speedup is not used",
                    pt.disagree, pt.size
                ));
            } else if pt.disagree > 0 {
                b.warnings.push(format!(
                    "{p}: {} of {} record(s) at size {:.3e} have fused outputs that disagree with the unfused ones; using the {} that agree",
                    pt.disagree,
                    pt.agree + pt.disagree,
                    pt.size,
                    pt.agree
                ));
            }
        }
        if let Some(c) = curve.filter(|c| c.aa_failed > 0) {
            b.warnings.push(format!(
                "{p}: {} untrustworthy record(s) left out: their A/A control failed (the machine was busy when they were timed)",
                c.aa_failed
            ));
        }
        if let Some(c) = curve.filter(|c| !c.unavailable.is_empty()) {
            b.warnings.push(format!(
                "{p}: {} record(s) without the {:?} variant left out ({})",
                c.unavailable.len(),
                self.opts.variant,
                c.unavailable[0]
            ));
        }
        if b.equivalent {
            b.speedup = match used.as_slice() {
                [one] => one.speedup.unwrap_or(Estimate::exact(1.0)),
                [lo, hi] => {
                    let (a, z) =
                        (lo.speedup.unwrap_or(Estimate::exact(1.0)), hi.speedup.unwrap_or(Estimate::exact(1.0)));
                    let t = (size.ln() - lo.size.ln()) / (hi.size.ln() - lo.size.ln());
                    Estimate { point: lerp(a.point, z.point, t), lo: lerp(a.lo, z.lo, t), hi: lerp(a.hi, z.hi, t) }
                }
                _ => Estimate::exact(1.0),
            };
        }
        Ok(b)
    }

    /// The configured fallback for a pattern with no usable measurement.
    fn fallback(&self, p: Pattern, size: f64, curve: Option<&Curve>, precision: Precision) -> Result<Benefit> {
        let elsewhere: Vec<&str> = self
            .curves
            .iter()
            .filter(|((q, k), c)| *k == p && *q != precision && !c.points.is_empty())
            .map(|((q, _), _)| q.name())
            .collect();
        let mut why = match curve {
            None if elsewhere.is_empty() => format!("no record of {p} in {} in the calibration", precision.name()),
            None => format!(
                "no record of {p} in {}; the calibration measured it in {} (pass that precision)",
                precision.name(),
                elsewhere.join(", ")
            ),
            Some(c) if !c.unavailable.is_empty() => format!(
                "none of its {} measured record(s) has the {:?} variant: {}",
                c.unavailable.len(),
                self.opts.variant,
                c.unavailable[0]
            ),
            Some(c) if c.aa_failed > 0 => format!(
                "its {} measured record(s) are untrustworthy, left out: their A/A control failed (the machine was busy)",
                c.aa_failed
            ),
            Some(c) if c.skipped > 0 => format!("its {} record(s) were all skipped, never measured", c.skipped),
            Some(_) => format!("no usable record of {p}"),
        };
        if !self.unknown_names.is_empty() {
            let _ = write!(
                why,
                "; the calibration also holds records named {:?}, which no pattern name matches",
                self.unknown_names
            );
        }
        let speedup = match self.opts.fallback {
            Fallback::AssumeBeneficial => self.opts.fallback_speedup,
            Fallback::AssumeNeutral => 1.0,
            Fallback::Refuse => {
                let have: Vec<&str> = self.patterns().iter().map(|p| p.key()).collect();
                bail!(
                    "{p} has no calibration ({why}) and the fallback is Fallback::Refuse; calibrated patterns: {}",
                    if have.is_empty() { "none".to_string() } else { have.join(", ") }
                );
            }
        };
        Ok(Benefit {
            pattern: p,
            speedup: Estimate::exact(speedup),
            source: Source::Fallback(self.opts.fallback),
            records_used: 0,
            warnings: vec![format!(
                "{p} has no calibration ({why}); Fallback::{:?} assumes a speedup of {speedup:.3}×",
                self.opts.fallback
            )],
            equivalent: true,
            size,
        })
    }

    /// [`FusionCostModel::should_fuse`] for a resolved pattern: the benefit, judged by
    /// [`crate::calibration::decision::decide`] at the model's threshold (as trustworthy: untrustworthy
    /// records are used, and the benefit's warnings say so).
    pub fn decide(&self, p: Pattern, w: &Workload) -> Result<Decision> {
        self.decide_in(p, w, self.precision)
    }

    /// [`FusionCostModel::decide`] in `precision`.
    pub fn decide_in(&self, p: Pattern, w: &Workload, precision: Precision) -> Result<Decision> {
        let benefit = self.benefit_in(p, w, precision)?;
        let t = self.opts.threshold;
        let s = benefit.speedup;
        let j = decide(&s, benefit.equivalent, true, Rule::new(t));
        let choice = Choice::of(&j);
        let word = match choice {
            Choice::Fuse => "fuse",
            Choice::Marginal => "marginal, not fused",
            Choice::DontFuse => "don't fuse",
        };
        let reason = format!(
            "{p}: {:.3}× [{:.3}, {:.3}], {}; {}: {word}",
            s.point,
            s.lo,
            s.hi,
            benefit.source.describe(),
            j.rule
        );
        Ok(Decision { fuse: j.fuse, choice, benefit, threshold: t, reason })
    }

    /// The patterns with at least one measured record (the calibrated ones) in the model's precision, in
    /// `Pattern::ALL` order.
    pub fn patterns(&self) -> Vec<Pattern> {
        Pattern::ALL
            .into_iter()
            .filter(|&p| self.curve(p, self.precision).is_some_and(|c| !c.points.is_empty()))
            .collect()
    }

    /// A pattern's calibrated sizes in the model's precision, ascending, with the combined speedup at each
    /// (`None` where every record disagrees with unfused).
    pub fn calibrated_sizes(&self, p: Pattern) -> Vec<(f64, Option<Estimate>)> {
        self.curve(p, self.precision)
            .map(|c| c.points.iter().map(|pt| (pt.size, pt.speedup)).collect())
            .unwrap_or_default()
    }

    /// About the calibration as a whole: records left out (unknown names, no size, bad numbers), an
    /// incomplete file, a fallback that will not fuse.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn options(&self) -> &CostModelOptions {
        &self.opts
    }
}
