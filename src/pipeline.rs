//! The per-model flow, on one screen: load → graph → patterns ([`prepare`]); then, for each group of
//! identical instances, carve → explicit rewrite → measure, in replicates ([`Replicated`], [`measure_group`]). The drivers (`bench`,
//! `calibrate`, `validate`/`plan`) run it; `cli` runs the drivers.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::calibration::{ExplicitUnavailable, FusionCalibration};
use crate::carve::{carve, ConstValues};
use crate::graph::ModelGraph;
use crate::load::{load, InputOverride, Loaded};
use crate::measure::{self, DType, InputSpec, MeasureOptions, ModelSource};
use crate::onnx::fp16;
use crate::patterns::{detect, Detection, Instance};
use crate::runtime::{Ep, Precision};

/// A model loaded, turned into a graph, and searched for patterns.
pub struct Prepared {
    pub loaded: Loaded,
    pub graph: ModelGraph,
    pub detection: Detection,
}

/// Load → graph → patterns.
pub fn prepare(model: &Path, inputs: &[InputOverride]) -> Result<Prepared> {
    let loaded = load(model, inputs)?;
    let graph = ModelGraph::build(&loaded)?;
    let detection = detect(&graph);
    Ok(Prepared { loaded, graph, detection })
}

/// Groups of identical instances (same signature), in model order.
pub fn distinct_groups<'a>(g: &ModelGraph, instances: &[&'a Instance]) -> Vec<(String, Vec<&'a Instance>)> {
    let mut groups: Vec<(String, Vec<&Instance>)> = vec![];
    let mut at: HashMap<String, usize> = HashMap::new();
    for &i in instances {
        let sig = i.signature(g);
        match at.get(&sig) {
            Some(&k) => groups[k].1.push(i),
            None => {
                at.insert(sig.clone(), groups.len());
                groups.push((sig, vec![i]));
            }
        }
    }
    groups
}

/// Input specs for a model's inputs, with valid ranges for integer inputs: indices into a `Gather`'s
/// table stay below its size, other integers (masks, type ids) are 0 or 1.
pub fn model_input_specs(loaded: &Loaded, g: &ModelGraph) -> Result<Vec<InputSpec>> {
    loaded
        .inputs
        .iter()
        .map(|i| {
            let dtype = DType::from_onnx(i.elem_type).with_context(|| {
                format!(
                    "{}: input `{}` has element type {}, which fuseval cannot generate",
                    loaded.path.display(),
                    i.name,
                    crate::onnx::elem_name(i.elem_type)
                )
            })?;
            let range = if matches!(dtype, DType::I64 | DType::I32) { Some(index_range(g, &i.name)) } else { None };
            Ok(InputSpec { name: i.name.clone(), dtype, shape: i.dims.clone(), range })
        })
        .collect()
}

fn index_range(g: &ModelGraph, tensor: &str) -> (i64, i64) {
    let mut hi = i64::MAX;
    for (n, slot) in g.consumers.get(tensor).cloned().unwrap_or_default() {
        let node = g.node(n);
        if node.op == "Gather" && slot == 1 {
            let axis = node.attr_int("axis").unwrap_or(0);
            if let Some(s) = node.inputs.first().and_then(|d| g.shape(d)) {
                let ax = if axis < 0 { s.len() as i64 + axis } else { axis } as usize;
                if let Some(&d) = s.get(ax) {
                    hi = hi.min(d as i64);
                }
            }
        }
    }
    if hi == i64::MAX || hi < 1 {
        (0, 2)
    } else {
        (0, hi)
    }
}

pub fn carved_specs(carved: &crate::carve::Carved) -> Result<Vec<InputSpec>> {
    carved
        .inputs
        .iter()
        .map(|(name, elem, dims)| {
            let dtype = DType::from_onnx(*elem).with_context(|| {
                format!(
                    "input `{name}` has element type {}, which fuseval cannot generate",
                    crate::onnx::elem_name(*elem)
                )
            })?;
            Ok(InputSpec { name: name.clone(), dtype, shape: dims.clone(), range: None })
        })
        .collect()
}

/// The explicit-fused model of a carved instance (`crate::fuse`), or why there is none: ORT's reason for
/// having no kernel, or the rewrite's failure.
fn explicit_model(c: &crate::carve::Carved, ep: Ep) -> std::result::Result<crate::fuse::Explicit, ExplicitUnavailable> {
    match crate::fuse::explicit_fused(c, ep) {
        Ok(crate::fuse::Availability::Fused(e)) => Ok(*e),
        Ok(crate::fuse::Availability::NoKernel(why)) => Err(ExplicitUnavailable::no_kernel(why)),
        Err(e) => Err(ExplicitUnavailable::failed(format!("the explicit rewrite failed: {e:#}"))),
    }
}

/// Check that the execution provider can be registered before any work starts: a missing CUDA provider
/// or device is the user's to fix (exit code 2), never a silent fallback or a run of skipped results.
pub fn check_ep(ep: Ep) -> Result<()> {
    if ep == Ep::Cpu {
        return Ok(());
    }
    let env = crate::runtime::environment()?;
    let builder = ort::session::Session::builder(env).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::runtime::register_ep(builder, ep).map(|_| ()).map_err(|e| crate::error::user(format!("--ep {ep}: {e:#}")))
}

/// Test hook: `FUSEVAL_FAIL_PATTERN=KEY` makes every instance of pattern `KEY` fail as if ORT had
/// failed on it (`KEY!` panics instead), to exercise the skipped path. Only in builds with the
/// `fault-injection` feature, which the tests turn on (Cargo.toml) and release builds leave off.
#[cfg(feature = "fault-injection")]
pub const FAIL_PATTERN_VAR: &str = "FUSEVAL_FAIL_PATTERN";

#[cfg(feature = "fault-injection")]
fn injected_failure(key: &str) -> Result<()> {
    match std::env::var(FAIL_PATTERN_VAR) {
        Ok(v) if v == key => anyhow::bail!("injected failure ({FAIL_PATTERN_VAR}={v})"),
        Ok(v) if v.strip_suffix('!') == Some(key) => panic!("injected panic ({FAIL_PATTERN_VAR}={v})"),
        _ => Ok(()),
    }
}

/// What one measurement of a distinct instance gave: the comparison or why there is none, and what the
/// explicit rewrite gave (its kernels and note, or why it is unavailable).
struct Measured {
    result: std::result::Result<measure::Comparison, String>,
    kernels: Vec<String>,
    note: Option<String>,
    unavailable: Option<ExplicitUnavailable>,
}

/// Carve, rewrite and measure replicate `replicate` of one distinct instance (seeded by its signature `sig`);
/// any failure (a panic too) becomes the skip reason.
fn measure_instance(
    p: &Prepared,
    sig: &str,
    inst: &Instance,
    consts: &ConstValues,
    mopts: &MeasureOptions,
    replicate: usize,
) -> Measured {
    let g = &p.graph;
    let mut m = Measured { result: Err(String::new()), kernels: vec![], note: None, unavailable: None };
    if !inst.resolved(g) {
        let why = inst.unresolved_reason(g).unwrap_or_else(|| {
            "a tensor's shape could not be resolved; fix the model's dynamic dimensions with --input".to_string()
        });
        m.result = Err(why);
        return m;
    }
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        #[cfg(feature = "fault-injection")]
        injected_failure(inst.pattern.key())?;
        let c = carve(&p.loaded, g, inst, consts).context("carving the instance")?;
        let specs = carved_specs(&c)?;
        let explicit = match explicit_model(&c, mopts.ep) {
            Ok(e) => match crate::fuse::precision_unsupported(&e.kernels, mopts.ep, mopts.precision) {
                Some(why) => {
                    m.unavailable = Some(ExplicitUnavailable::no_kernel(why));
                    None
                }
                None => {
                    m.kernels = e.kernels;
                    m.note = Some(e.note);
                    Some(e.bytes)
                }
            },
            Err(why) => {
                m.unavailable = Some(why);
                None
            }
        };
        let mopts = MeasureOptions { reduction: crate::calibration::reduction_size(g, inst), ..mopts.clone() };
        // fp16: the carved model and its explicit rewrite converted, fed and read in fp16
        let (bytes, explicit, specs) = match mopts.precision {
            Precision::Fp16 => {
                let convert = |b: &[u8]| fp16::to_fp16_bytes_io(b, fp16::Io::Fp16).map(|(b, _)| b);
                let bytes = convert(&c.bytes).context("converting the carved model to fp16")?;
                let explicit =
                    explicit.as_deref().map(convert).transpose().context("converting the explicit model to fp16")?;
                let specs = specs
                    .into_iter()
                    .map(|s| InputSpec { dtype: if s.dtype == DType::F32 { DType::F16 } else { s.dtype }, ..s })
                    .collect();
                (std::borrow::Cow::Owned(bytes), explicit, specs)
            }
            _ => (std::borrow::Cow::Borrowed(c.bytes.as_slice()), explicit, specs),
        };
        let mut r =
            measure::replicate(ModelSource::Bytes(&bytes), explicit.as_deref(), &specs, &mopts, sig, replicate)?;
        if replicate == 0 {
            r.precision_error = measure::reference::against_fp32(&c.bytes, &bytes, explicit.as_deref(), &specs, &mopts)
                .context("comparing with strict fp32")?;
        }
        Ok::<_, anyhow::Error>(r)
    }));
    m.result = match run {
        Ok(r) => r.map_err(|e| format!("{e:#}")),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("internal error (panic): {msg}"))
        }
    };
    m
}

/// One group's replicates so far, or why it was skipped, and what the explicit rewrite gave.
#[derive(Default)]
struct GroupRun {
    reps: Vec<measure::Comparison>,
    skip: Option<String>,
    kernels: Vec<String>,
    note: Option<String>,
    unavailable: Option<ExplicitUnavailable>,
}

/// With `--quick`, the passes after the first visit a subset of the groups spread over the model, at least
/// this many (all of a smaller model's) or a third of them: enough pairs to pool the session-to-session
/// noise per ratio, which the CIs of the groups measured once take in full ([`measure::replicates`]).
/// Full runs replicate every group.
pub const QUICK_REPLICATED_MIN: usize = 8;

/// How many replicates each of `n` groups gets (see [`QUICK_REPLICATED_MIN`]).
pub fn planned_replicates(n: usize, mopts: &MeasureOptions) -> Vec<usize> {
    let full = mopts.replicates.max(1);
    if !mopts.quick || full == 1 || n <= QUICK_REPLICATED_MIN {
        return vec![full; n];
    }
    let m = QUICK_REPLICATED_MIN.max(n.div_ceil(3)).min(n);
    let mut planned = vec![1; n];
    // m indices spread evenly over 0..n (distinct since m <= n)
    for i in 0..m {
        planned[i * n / m] = full;
    }
    planned
}

/// The replicates of a set of groups, measured in passes: pass `r` visits the groups in model order (even
/// `r`) or in reverse (odd `r`), so an instance's replicates sit at different points of the run, and the
/// session-to-session noise is pooled over every group ([`measure::replicates`]).
pub struct Replicated<'a> {
    p: &'a Prepared,
    groups: &'a [(String, Vec<&'a Instance>)],
    consts: &'a ConstValues,
    mopts: MeasureOptions,
    runs: Vec<GroupRun>,
    planned: Vec<usize>,
}

impl<'a> Replicated<'a> {
    pub fn new(
        p: &'a Prepared,
        groups: &'a [(String, Vec<&'a Instance>)],
        consts: &'a ConstValues,
        mopts: &MeasureOptions,
    ) -> Self {
        Replicated {
            p,
            groups,
            consts,
            mopts: mopts.clone(),
            runs: groups.iter().map(|_| GroupRun::default()).collect(),
            planned: planned_replicates(groups.len(), mopts),
        }
    }

    /// How many replicates group `k` gets ([`planned_replicates`]).
    pub fn planned(&self, k: usize) -> usize {
        self.planned[k]
    }

    /// Every (pass, group) visit, in the order to make them.
    pub fn schedule(&self) -> Vec<(usize, usize)> {
        let n = self.groups.len();
        (0..self.mopts.replicates)
            .flat_map(|pass| (0..n).map(move |i| (pass, if pass % 2 == 0 { i } else { n - 1 - i })))
            .filter(|&(pass, k)| pass < self.planned[k])
            .collect()
    }

    /// Measure replicate `pass` of group `k`; nothing when the group was skipped already.
    pub fn measure(&mut self, pass: usize, k: usize) {
        if self.runs[k].skip.is_some() {
            return;
        }
        let (sig, group) = &self.groups[k];
        let m = measure_instance(self.p, sig, group[0], self.consts, &self.mopts, pass);
        let run = &mut self.runs[k];
        run.kernels = m.kernels;
        run.note = m.note;
        run.unavailable = m.unavailable;
        match m.result {
            Ok(c) => run.reps.push(c),
            Err(why) if run.reps.is_empty() => run.skip = Some(why),
            Err(why) => {
                run.skip = Some(format!("replicate {} failed after {} measured: {why}", pass + 1, run.reps.len()))
            }
        }
    }

    /// Every group's replicates so far.
    pub fn replicates(&self) -> impl Iterator<Item = &[measure::Comparison]> {
        self.runs.iter().map(|r| r.reps.as_slice())
    }

    /// The session noise pooled over every group with two replicates or more.
    pub fn noise(&self) -> measure::SessionNoise {
        measure::SessionNoise::pooled(self.runs.iter().map(|r| r.reps.as_slice()))
    }

    /// Group `k`'s record from its replicates so far (`None` before its first), with the pooled noise.
    pub fn record(&self, k: usize) -> Option<FusionCalibration> {
        self.record_with(k, &self.noise())
    }

    /// [`Replicated::record`] with a given noise.
    pub fn record_with(&self, k: usize, noise: &measure::SessionNoise) -> Option<FusionCalibration> {
        let (sig, group) = &self.groups[k];
        let run = &self.runs[k];
        let result = match (&run.skip, run.reps.as_slice()) {
            (Some(why), _) => Err(why.clone()),
            (None, []) => return None,
            (None, reps) => Ok(measure::replicates::combine(reps, noise)),
        };
        let rec = FusionCalibration::new(&self.p.graph, group, result.as_ref().map_err(|e| e.clone()), sig.clone());
        let rec = rec.with_precision(&self.p.graph, group[0], self.mopts.precision);
        Some(rec.with_explicit(run.kernels.clone(), run.note.clone(), run.unavailable.clone()))
    }
}

/// Measure one group of identical instances (carved from its first) into its calibration record, its
/// replicates back to back; a failure becomes the record's skip reason. `consts` must hold the group's
/// computed constants ([`ConstValues::evaluate`]). Several groups of one run: [`Replicated`], which pools
/// their session noise.
pub fn measure_group(
    p: &Prepared,
    sig: &str,
    group: &[&Instance],
    consts: &ConstValues,
    mopts: &MeasureOptions,
) -> FusionCalibration {
    let groups = vec![(sig.to_string(), group.to_vec())];
    let mut r = Replicated::new(p, &groups, consts, mopts);
    for (pass, k) in r.schedule() {
        r.measure(pass, k);
    }
    r.record(0).expect("every replicate was visited")
}

/// How many distinct instances a run measures.
pub fn distinct_count(p: &Prepared, all_patterns: bool) -> usize {
    let chosen: Vec<&Instance> =
        if all_patterns { p.detection.all.iter().collect() } else { p.detection.longest_instances().collect() };
    distinct_groups(&p.graph, &chosen).len()
}
