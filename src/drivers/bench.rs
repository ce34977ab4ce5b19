//! Bench: the whole pipeline for one model. Load, build the graph, detect patterns, carve each distinct
//! instance, rewrite it into ORT's fused kernel where one exists (`crate::fuse`), measure it unfused,
//! runtime-fused and explicit-fused, time the whole model, and assemble the calibration file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use crate::calibration::utc_now;
use crate::calibration::{AaCheck, CalibrationFile, FusionCalibration, Metadata, WholeModelResult, HEADLINE_LEVEL};
use crate::carve::ConstValues;
use crate::measure::{self, MeasureOptions};
use crate::patterns::Instance;
use crate::pipeline::{check_ep, distinct_groups, model_input_specs, Prepared, Replicated};
use crate::runtime::Ep;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub ep: Ep,
    pub threads: usize,
    pub quick: bool,
    /// Measure every match, overlapping sub-matches too, not only the longest-match cover.
    pub all_patterns: bool,
    pub seed: u64,
    /// Also time the whole model (Disable vs extended vs full).
    pub whole_model: bool,
    pub progress: bool,
    /// Recorded in the metadata for `--resume`.
    pub run: Option<crate::calibration::RunOptions>,
    /// The ceilings for the roofline figures; measured at the start of the run when absent.
    pub ceilings: Option<crate::calibration::roofline::Ceilings>,
    /// A calibration file (`fuseval calibrate`, or another bench) whose cost model also predicts the
    /// whole model.
    pub calibration: Option<PathBuf>,
    /// CUDA: time CUDA-graph replays (see [`MeasureOptions::cuda_graph`]).
    pub cuda_graph: bool,
    /// Replicates per instance ([`MeasureOptions::replicates`]), each with the whole time budget.
    pub replicates: usize,
    /// With the whole model: which of ORT's transformers act on it, each one's saving in context, and
    /// the fastest configuration verified (`drivers::attribution`).
    pub attribution: bool,
    /// Measure the pattern instances (false: only the whole model, `--whole-model-only`).
    pub instances: bool,
    /// What the sessions compute in. fp16: each carved instance is converted (`onnx::fp16`) and the
    /// whole model is `whole_model_path`, the model converted.
    pub precision: crate::runtime::Precision,
    /// The file the whole model and the attribution time, when it is not the model the instances are
    /// carved from (fp16: the converted model).
    pub whole_model_path: Option<PathBuf>,
}

/// A bench run's result, and whether Ctrl-C or SIGTERM cut it short.
pub struct Outcome {
    pub cal: CalibrationFile,
    pub interrupted: bool,
}

/// The measurement options a bench run uses.
pub fn measure_options(opts: &BenchOptions) -> MeasureOptions {
    let m = MeasureOptions::new(opts.ep, opts.threads, opts.quick);
    // each replicate is a full measurement with the whole budget: a replicate's A/A control must reach the
    // CI target to pass, and half the rounds would leave it short
    MeasureOptions {
        seed: opts.seed,
        cuda_graph: opts.cuda_graph,
        replicates: opts.replicates.max(1),
        precision: opts.precision,
        ..m
    }
}

/// Measure the distinct instances not already in `previous` (a file being resumed, whose records are
/// kept as they are), calling `on_record` with the file as it stands after each one (`complete` false),
/// so that a killed run leaves its finished instances on disk. Stops after the current instance on
/// Ctrl-C or SIGTERM ([`crate::drivers::run::interrupted`]).
pub fn bench_run(
    p: &Prepared,
    opts: &BenchOptions,
    previous: Option<&CalibrationFile>,
    on_record: &mut dyn FnMut(&CalibrationFile) -> Result<()>,
) -> Result<Outcome> {
    check_ep(opts.ep)?;
    let g = &p.graph;
    let started = Instant::now();
    let mopts = measure_options(opts);
    let chosen: Vec<&Instance> = if !opts.instances {
        vec![]
    } else if opts.all_patterns {
        p.detection.all.iter().collect()
    } else {
        p.detection.longest_instances().collect()
    };
    let groups = distinct_groups(g, &chosen);
    let done: HashMap<&str, &FusionCalibration> =
        previous.map(|c| c.fusion_profiles.iter().map(|r| (r.signature.as_str(), r)).collect()).unwrap_or_default();
    // a record of an earlier run counts as done when it has every replicate planned for it (or was skipped)
    let planned: HashMap<&str, usize> = groups
        .iter()
        .zip(crate::pipeline::planned_replicates(groups.len(), &mopts))
        .map(|((sig, _), n)| (sig.as_str(), n))
        .collect();
    let done: HashMap<&str, &FusionCalibration> = done
        .into_iter()
        .filter(|(sig, r)| {
            r.status != crate::calibration::Status::Measured
                || r.replicates.len() >= planned.get(sig).copied().unwrap_or(mopts.replicates)
        })
        .collect();
    let todo: Vec<&Instance> = groups
        .iter()
        .filter(|(sig, v)| !done.contains_key(sig.as_str()) && v[0].resolved(g))
        .map(|(_, v)| v[0])
        .collect();
    let consts = ConstValues::evaluate(&p.loaded, g, &todo)?;
    let t_ceilings = Instant::now();
    let ceilings = match (&opts.ceilings, previous.and_then(|c| c.ceilings.clone())) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(c)) => Some(c),
        // nothing to place on the roofline
        (None, None) if !opts.instances => None,
        (None, None) => match crate::drivers::calibrate::measure_ceilings(
            crate::drivers::calibrate::CeilingOptions::minimal(opts.ep, opts.threads, opts.seed, opts.precision),
        ) {
            Ok((_, c)) => Some(c),
            Err(e) => {
                eprintln!(
                    "warning: the hardware ceilings could not be measured, so there are no roofline figures: {e:#}"
                );
                None
            }
        },
    };

    let name = |m: BTreeMap<crate::patterns::Pattern, usize>| -> BTreeMap<String, usize> {
        m.into_iter().map(|(k, v)| (k.key().to_string(), v)).collect()
    };
    let mut cal = CalibrationFile {
        schema_version: crate::calibration::SCHEMA_VERSION,
        metadata: match previous {
            Some(prev) => prev.metadata.clone(),
            None => Metadata {
                tool: "fuseval".into(),
                fuseval_version: env!("CARGO_PKG_VERSION").into(),
                date: utc_now(),
                model: p.loaded.path.display().to_string(),
                model_inputs: p.loaded.input_dims().into_iter().collect(),
                hardware: crate::runtime::hardware_for(opts.ep),
                runtime: "onnxruntime".into(),
                ort_version: crate::runtime::ort_version(),
                provenance: crate::runtime::Provenance::current(),
                execution_provider: opts.ep.to_string(),
                cuda_graph: opts.cuda_graph,
                threads: opts.threads,
                quick: opts.quick,
                seed: opts.seed,
                target_rel_ci: mopts.target_rel_ci,
                budget_per_instance_s: mopts.budget.as_secs_f64(),
                headline_level: HEADLINE_LEVEL.into(),
                replicates: mopts.replicates,
                gpu_clock_check: None,
                measured: String::new(),
                phases: vec![],
                precision: Some(opts.precision),
                run: opts.run.clone(),
            },
        },
        patterns_found_longest: name(p.detection.counts(true)),
        patterns_found_all: name(p.detection.counts(false)),
        fusion_profiles: vec![],
        whole_model: None,
        ceilings: ceilings.clone(),
        warnings: previous.map(|c| c.warnings.clone()).unwrap_or_else(|| p.loaded.warnings.clone()),
        session_noise: None,
        aa_check: None,
        recommended_config: None,
        complete: false,
    };
    if opts.instances && opts.ceilings.is_none() && previous.and_then(|c| c.ceilings.as_ref()).is_none() {
        add_phase(&mut cal, "ceilings", t_ceilings);
    }
    // wall time so far: a resumed run adds to the earlier one
    let earlier_s: f64 = previous.and_then(|c| c.metadata.measured.trim_end_matches(" s").parse().ok()).unwrap_or(0.0);
    let wall = |started: &Instant| format!("{:.1} s", earlier_s + started.elapsed().as_secs_f64());

    // the whole model's replicates: the first before the instances, the rest after them
    let whole = opts.whole_model && previous.and_then(|c| c.whole_model.as_ref()).is_none();
    let whole_path: &Path = opts.whole_model_path.as_deref().unwrap_or(&p.loaded.path);
    let specs = if whole { Some(model_input_specs(&p.loaded, g)?) } else { None };
    // the whole model's outputs are checked with the tolerance of its longest reduction
    let whole_opts = MeasureOptions { reduction: crate::calibration::model_reduction(g), ..mopts.clone() };
    let mut whole_reps: Vec<measure::Comparison> = vec![];
    let mut whole_error: Option<String> = None;
    let time_whole = |r: usize, reps: &mut Vec<measure::Comparison>, err: &mut Option<String>| {
        if let (Some(specs), None) = (&specs, &err) {
            match measure::whole_model_replicate(whole_path, specs, &whole_opts, r) {
                Ok(c) => reps.push(c),
                Err(e) => *err = Some(format!("the whole model could not be timed: {e:#}")),
            }
        }
    };

    let visits: usize = planned.values().sum();
    let bar = if opts.progress { ProgressBar::new(visits as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if whole {
        bar.set_message("whole model, replicate 1");
        let t = Instant::now();
        time_whole(0, &mut whole_reps, &mut whole_error);
        add_phase(&mut cal, "whole_model", t);
    }
    // one slot per group, in model order; the file lists the finished ones
    let mut slots: Vec<Option<FusionCalibration>> =
        groups.iter().map(|(sig, _)| done.get(sig.as_str()).map(|r| (*r).clone())).collect();
    let earlier: Vec<bool> = slots.iter().map(|s| s.is_some()).collect();
    bar.inc(groups.iter().zip(&earlier).filter(|(_, &d)| d).map(|((sig, _), _)| planned[sig.as_str()] as u64).sum());
    let mut runs = Replicated::new(p, &groups, &consts, &mopts);
    let mut interrupted = false;
    let t_instances = Instant::now();
    for (pass, k) in runs.schedule() {
        if earlier[k] {
            continue;
        }
        if crate::drivers::run::interrupted() {
            interrupted = true;
            break;
        }
        let inst = groups[k].1[0];
        bar.set_message(format!(
            "{} ({}), replicate {}",
            inst.pattern.key(),
            inst.node_names(g).first().cloned().unwrap_or_default(),
            pass + 1
        ));
        runs.measure(pass, k);
        let noise = runs.noise();
        for (j, slot) in slots.iter_mut().enumerate() {
            if earlier[j] {
                continue;
            }
            if let Some(rec) = runs.record_with(j, &noise) {
                *slot = Some(match &ceilings {
                    Some(c) => rec.with_roofline(c),
                    None => rec,
                });
            }
        }
        bar.inc(1);
        cal.fusion_profiles = slots.iter().flatten().cloned().collect();
        cal.session_noise = Some(noise);
        cal.aa_check = Some(AaCheck::of(&cal.fusion_profiles, None));
        cal.metadata.measured = wall(&started);
        bar.suspend(|| on_record(&cal))?;
    }
    cal.fusion_profiles = slots.iter().flatten().cloned().collect();
    add_phase(&mut cal, "instances", t_instances);
    interrupted |= crate::drivers::run::interrupted();

    if let Some(prev) = previous.and_then(|c| c.whole_model.as_ref()) {
        cal.whole_model = Some(whole_model_result(prev.measurement.clone(), &cal.fusion_profiles));
    } else if whole && !interrupted {
        let t = Instant::now();
        // --quick: one replicate, whose CIs take the session noise pooled over the instances; with no
        // instances to pool, every replicate
        let whole_planned = if mopts.quick && opts.instances { 1 } else { mopts.replicates };
        for r in 1..whole_planned {
            bar.set_message(format!("whole model, replicate {}", r + 1));
            time_whole(r, &mut whole_reps, &mut whole_error);
        }
        add_phase(&mut cal, "whole_model", t);
        if let Some(e) = whole_error {
            cal.warnings.push(e);
        } else if !whole_reps.is_empty() {
            // the whole model's session noise, pooled with the instances'
            let mut all: Vec<&[measure::Comparison]> = runs.replicates().collect();
            all.push(&whole_reps);
            let noise = measure::SessionNoise::pooled(all);
            let m: measure::WholeModel = measure::replicates::combine(&whole_reps, &noise).into();
            cal.whole_model = Some(whole_model_result(m, &cal.fusion_profiles));
        }
    }
    if opts.attribution && whole && !interrupted && cal.whole_model.is_some() {
        bar.set_message("whole model: ORT's transformers one by one");
        let t = Instant::now();
        if let Some(specs) = &specs {
            let ctx = crate::drivers::attribution::Context {
                threads: opts.threads,
                execution_provider: opts.ep.to_string(),
                ort_version: cal.metadata.ort_version.clone(),
                hardware: match &cal.metadata.hardware.gpu {
                    Some(g) => format!("{} ({})", g.name, cal.metadata.hardware.cpu_model),
                    None => cal.metadata.hardware.cpu_model.clone(),
                },
            };
            match crate::drivers::attribution::run(whole_path, specs, &whole_opts, &cal.fusion_profiles, &ctx) {
                Ok((a, rc)) => {
                    if let Some(w) = cal.whole_model.as_mut() {
                        w.attribution = Some(a);
                    }
                    cal.recommended_config = Some(rc);
                }
                Err(e) => cal.warnings.push(format!("no attribution to ORT's transformers: {e:#}")),
            }
        }
        add_phase(&mut cal, "attribution", t);
        interrupted |= crate::drivers::run::interrupted();
    }
    if let Some(w) = cal.whole_model.as_mut() {
        if !opts.instances {
            // --whole-model-only: no parts to predict it from
            w.prediction = None;
            w.explained_fraction = None;
        } else if opts.all_patterns {
            // overlapping matches would count the same saving twice
            w.prediction = None;
        } else if let (Some(pred), Some(path)) = (w.prediction.as_mut(), &opts.calibration) {
            match predict_from_calibration(p, &cal.fusion_profiles, &w.measurement, path, opts.precision) {
                Ok(c) => pred.from_calibration = Some(c),
                Err(e) => cal.warnings.push(format!("no prediction from {}: {e:#}", path.display())),
            }
        }
    }
    bar.finish_and_clear();
    cal.aa_check = Some(AaCheck::of(&cal.fusion_profiles, cal.whole_model.as_ref().map(|w| &w.measurement)));
    cal.metadata.gpu_clock_check = crate::calibration::ClockSummary::of(&cal.fusion_profiles);
    cal.metadata.measured = wall(&started);
    cal.complete = !interrupted;
    Ok(Outcome { cal, interrupted })
}

/// Add the time since `since` to the run's phase `name` (a resumed run, or a phase in two stretches,
/// adds to the earlier figure).
fn add_phase(cal: &mut CalibrationFile, name: &str, since: Instant) {
    let s = since.elapsed().as_secs_f64();
    let phases = &mut cal.metadata.phases;
    match phases.iter_mut().find(|p| p.name == name) {
        Some(p) => p.wall_s += s,
        None => phases.push(crate::calibration::Phase { name: name.into(), wall_s: s }),
    }
}

fn whole_model_result(m: measure::WholeModel, profiles: &[FusionCalibration]) -> WholeModelResult {
    let saving_all_ms = m.disabled.median_ms - m.all.median_ms;
    let saving_extended_ms = m.disabled.median_ms - m.extended.median_ms;
    let sum_pattern_saving_ms: f64 = profiles
        .iter()
        .filter(|p| p.counts())
        .map(|p| (p.unfused_latency_ms - p.fused_latency_ms) * p.instances.len() as f64)
        .sum();
    let explained_fraction = (saving_extended_ms.abs() > 1e-9).then(|| sum_pattern_saving_ms / saving_extended_ms);
    let prediction = Some(crate::calibration::predict(&m, profiles));
    WholeModelResult {
        measurement: m,
        saving_all_ms,
        saving_extended_ms,
        sum_pattern_saving_ms,
        explained_fraction,
        prediction,
        attribution: None,
    }
}

/// Predict the whole model's saving from a calibration file alone: for each distinct instance of this
/// model (its shapes), the calibration's unfused latency and speedup at its size, at the level the cost
/// model uses (its headline, extended); scored against this run's whole model at that level. This run's
/// own per-instance measurements are not used.
fn predict_from_calibration(
    p: &Prepared,
    profiles: &[FusionCalibration],
    m: &measure::WholeModel,
    path: &Path,
    precision: crate::runtime::Precision,
) -> Result<crate::calibration::CalibrationPrediction> {
    use crate::calibration::cost_model::{CostModelOptions, FusionCostModel, Workload};
    // the calibration's records of this run's precision
    let opts = CostModelOptions { precision: Some(precision), ..CostModelOptions::default() };
    let model = FusionCostModel::from_path(path, opts)?;
    let by_sig: HashMap<String, &Instance> = p.detection.all.iter().map(|i| (i.signature(&p.graph), i)).collect();
    let mut sources: BTreeMap<String, usize> = BTreeMap::new();
    let mut warnings = vec![];
    let mut speedups = vec![];
    // every distinct instance of the cover, measured here or not: the calibration speaks for all
    for r in profiles {
        let Some(inst) = by_sig.get(&r.signature) else { continue };
        let w = Workload::of_instance_in(&p.graph, inst, precision);
        let b = model.benefit(inst.pattern, &w)?;
        let Some(unfused_ms) = model.unfused_latency_ms(inst.pattern, &w) else {
            let why =
                format!("{}: no measured unfused latency in the calibration; its saving counts as 0", inst.pattern);
            if !warnings.contains(&why) {
                warnings.push(why);
            }
            continue;
        };
        *sources.entry(b.source.name().into()).or_insert(0) += r.instances.len();
        speedups.push((r.instances.len(), unfused_ms, b.speedup));
        for w in b.warnings {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }
    Ok(crate::calibration::CalibrationPrediction {
        calibration: path.display().to_string(),
        prediction: crate::calibration::LevelPrediction::from_speedups(
            "calibration",
            m.disabled.median_ms,
            &m.speedup_extended,
            &m.aa_control,
            speedups,
        ),
        sources,
        warnings,
    })
}

/// Default output directory for a model: `fuseval-out/<model stem>`.
pub fn default_out_dir(model: &Path) -> PathBuf {
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    PathBuf::from("fuseval-out").join(stem)
}
