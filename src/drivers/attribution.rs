//! The whole model, in context: which of ORT's transformers act on it, what each one saves inside the
//! whole model, and the fastest configuration verified.
//!
//! 1. Discover (`measure::optimizers::discover`): one logged session at ORT's default level, then each
//!    candidate switched off alone and its effect read from the optimized graph.
//! 2. Baseline: the default against Disable, fusion-off (every fusion transformer that acts switched off)
//!    and Extended, in one set of rounds.
//! 3. Leave-one-out: the default against the default without each transformer that acts, a few per set of
//!    rounds (each set has its own reference and A/A control, so memory stays at a few sessions).
//! 4. Recommend: the default without every transformer that measurably hurts, and Extended when it was
//!    faster, verified against the default in one set of rounds (when nothing hurts, that set is the
//!    baseline's, which timed Extended against the default); the default stays unless a candidate is
//!    measurably faster with outputs equal.
//!
//! The timing goes through [`Timer`], so that the logic runs in tests on a fake clock.

use std::time::Instant;

use anyhow::Result;

use crate::calibration::attribution::{
    carved_shares, carved_total_ms, difference, fraction, pick, relative_speedup, saving_ms, speedup_from_ratio, sum,
    verdict, Attribution, Baseline, RecommendedConfig, Timed, TransformerAttribution,
};
use crate::calibration::FusionCalibration;
use crate::estimate::Estimate;
use crate::measure::configs::ConfigComparison;
use crate::measure::optimizers::{Discovery, Kind};
use crate::measure::{Level, SessionConfig};

/// Times configurations against the first of them in one set of rounds.
pub trait Timer {
    fn time(&mut self, configs: &[SessionConfig]) -> Result<ConfigComparison>;
}

/// The least time budget of one set of whole-model rounds, seconds (full and `--quick`).
pub const ATTRIBUTION_BUDGET_S: u64 = 15;
pub const ATTRIBUTION_BUDGET_QUICK_S: u64 = 6;

/// The options of the whole-model rounds: at least the floor, stretched to afford
/// [`crate::measure::WHOLE_MODEL_ROUNDS`] rounds (BERT-base on two cores: 0.9 s a round) up to
/// [`crate::measure::ROUNDS_BUDGET_MAX`]. A carved pattern's budget would give a whole model a handful.
pub fn rounds_options(opts: &crate::measure::MeasureOptions) -> crate::measure::MeasureOptions {
    let floor = if opts.quick { ATTRIBUTION_BUDGET_QUICK_S } else { ATTRIBUTION_BUDGET_S };
    crate::measure::MeasureOptions {
        budget: opts.budget.max(std::time::Duration::from_secs(floor)),
        rounds_in_budget: crate::measure::WHOLE_MODEL_ROUNDS,
        ..opts.clone()
    }
}

/// The smallest carved share, as a fraction of the default's latency, that a context factor is given for.
pub const MIN_CARVED_SHARE: f64 = 0.002;

/// How many configurations share one set of rounds beside the reference and its control.
pub const PER_BATCH: usize = 3;

/// What the run is, for the recommendation file.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub threads: usize,
    pub execution_provider: String,
    pub ort_version: String,
    pub hardware: String,
}

/// Attribute the default level's optimization of the model to the transformers `discovery` found, and
/// verify a recommendation. `records` are the run's carved measurements (for the reconciliation).
pub fn attribute(
    discovery: &Discovery,
    records: &[FusionCalibration],
    timer: &mut dyn Timer,
    ctx: &Context,
) -> Result<(Attribution, RecommendedConfig)> {
    let start = Instant::now();
    let level = discovery.level.unwrap_or(Level::All);
    let default = SessionConfig::level(level);
    let mut notes = vec![];
    let mut failed: Vec<(String, String)> = vec![];
    let fusion: Vec<String> =
        discovery.acting.iter().filter(|e| e.kind == Kind::Fusion).map(|e| e.name.clone()).collect();
    let fusion_off = SessionConfig { level, disabled: fusion.clone() };

    // 2. baseline
    let mut configs = vec![default.clone(), SessionConfig::level(Level::Disable)];
    if !fusion.is_empty() {
        configs.push(fusion_off.clone());
    }
    if level == Level::All {
        configs.push(SessionConfig::level(Level::Extended));
    }
    let base = timer.time(&configs)?;
    note_batch(&base, "the baseline", &mut notes, &mut failed);
    let timed = |c: &SessionConfig| base.result(c).map(|r| Timed::of(r, &base));
    let reference_ms = base.reference.latency.median_ms;
    let baseline = Baseline {
        disable: timed(&SessionConfig::level(Level::Disable)),
        fusion_off: if fusion.is_empty() { None } else { timed(&fusion_off) },
        extended: timed(&SessionConfig::level(Level::Extended)),
        default: Timed::of(&base.reference, &base),
    };
    let fusion_saving = if fusion.is_empty() {
        Some(Estimate::exact(0.0))
    } else {
        baseline.fusion_off.as_ref().map(|t| saving_ms(&t.ratio_to_default, reference_ms))
    };
    let non_fusion_saving = match (&baseline.disable, &fusion_saving) {
        (Some(d), Some(f)) => Some(difference(&saving_ms(&d.ratio_to_default, reference_ms), f)),
        _ => None,
    };

    // 3. leave-one-out, a few per set of rounds
    let shares = carved_shares(&discovery.acting, records);
    let mut transformers = vec![];
    for (chunk_no, chunk) in discovery.acting.chunks(PER_BATCH).enumerate() {
        let mut configs = vec![default.clone()];
        configs.extend(chunk.iter().map(|e| SessionConfig { level, disabled: vec![e.name.clone()] }));
        let batch = match timer.time(&configs) {
            Ok(b) => Some(b),
            Err(e) => {
                for x in chunk {
                    failed.push((x.name.clone(), format!("{e:#}")));
                }
                None
            }
        };
        if let Some(b) = &batch {
            note_batch(b, &format!("leave-one-out set {}", chunk_no + 1), &mut notes, &mut failed);
        }
        for (k, e) in chunk.iter().enumerate() {
            let config = &configs[k + 1];
            let r = batch.as_ref().and_then(|b| b.result(config).map(|r| (r, b)));
            let (carved, instances) = shares[chunk_no * PER_BATCH + k].clone();
            let (saving, fraction_of_default, v) = match r {
                Some((r, b)) => {
                    let ms = b.reference.latency.median_ms;
                    let s = saving_ms(&r.ratio, ms);
                    let f = saving_ms(&r.ratio, 1.0);
                    (Some(s), Some(f), verdict(&s, r.equivalence.passed, b.aa_ok))
                }
                None => (None, None, "not timed"),
            };
            transformers.push(TransformerAttribution {
                name: e.name.clone(),
                kind: e.kind,
                fires: true,
                nodes_consumed: e.nodes_without.saturating_sub(e.nodes_with).max(e.consumed.len()),
                consumed: e.consumed.clone(),
                ops_changed: e.ops_changed.clone(),
                // a ratio to a carved share that is next to nothing says nothing
                context_factor: match (saving, carved) {
                    (Some(s), Some(c)) if c.abs() >= MIN_CARVED_SHARE * reference_ms => Some(s.point / c),
                    _ => None,
                },
                saving_ms: saving,
                saving_fraction: fraction_of_default,
                carved_saving_ms: carved,
                instances,
                verdict: v.to_string(),
            });
        }
    }
    for (name, _) in &discovery.no_effect {
        transformers.push(TransformerAttribution {
            name: name.clone(),
            kind: crate::measure::optimizers::kind_of(name),
            fires: false,
            nodes_consumed: 0,
            consumed: vec![],
            ops_changed: Default::default(),
            saving_ms: None,
            saving_fraction: None,
            carved_saving_ms: None,
            context_factor: None,
            instances: vec![],
            verdict: "does not change this model".into(),
        });
    }
    for (name, msg) in &discovery.failed {
        failed.push((name.clone(), msg.clone()));
    }

    // 4. explained fraction, over the fusion transformers timed
    let fusion_loo: Vec<_> =
        transformers.iter().filter(|t| t.kind == Kind::Fusion && t.fires).filter_map(|t| t.saving_ms).collect();
    let loo_sum = sum(&fusion_loo);
    let (explained_fraction, interaction) = match &fusion_saving {
        Some(f) if !fusion.is_empty() => {
            let fr = fraction(&loo_sum, f);
            if fr.is_none() {
                notes.push(format!(
                    "the fusion saving {:.2} ms [{:.2}, {:.2}] is not distinguishable from zero, so no explained \
                     fraction is given",
                    f.point, f.lo, f.hi
                ));
            }
            (fr, Some(difference(f, &loo_sum)))
        }
        _ => (None, None),
    };

    // 5. recommendation
    let hurts: Vec<String> = transformers.iter().filter(|t| t.verdict == "hurts").map(|t| t.name.clone()).collect();
    let mut candidates = vec![default.clone()];
    if !hurts.is_empty() {
        candidates.push(SessionConfig { level, disabled: hurts.clone() });
    }
    let extended = SessionConfig::level(Level::Extended);
    if level == Level::All {
        candidates.push(extended.clone());
    }
    // with nothing to switch off, the only candidate is Extended, which the baseline timed against the
    // default in the same rounds already
    let fresh = if hurts.is_empty() { None } else { Some(timer.time(&candidates)?) };
    if let Some(v) = &fresh {
        note_batch(v, "the verification", &mut notes, &mut failed);
    }
    let verify = fresh.as_ref().or(if candidates.len() > 1 { Some(&base) } else { None });
    let (chosen, vs_extended) = match verify {
        Some(v) => {
            let timed: Vec<Timed> =
                candidates[1..].iter().filter_map(|c| v.result(c)).map(|r| Timed::of(r, v)).collect();
            let ext = timed.iter().find(|t| t.config == extended).map(|t| t.ratio_to_default);
            let chosen = pick(&timed).cloned();
            let vs_ext = match (&chosen, ext) {
                (Some(c), Some(e)) if c.config != extended => Some(relative_speedup(&c.ratio_to_default, &e)),
                (Some(_), Some(_)) => None,
                (None, Some(e)) => Some(e),
                _ => None,
            };
            (chosen, vs_ext)
        }
        None => (None, None),
    };
    let recommended = match chosen {
        Some(c) => {
            let s = speedup_from_ratio(&c.ratio_to_default);
            RecommendedConfig {
                verdict: format!(
                    "{} is {:.3}x [{:.3}, {:.3}] as fast as ORT's default, outputs equal",
                    c.config, s.point, s.lo, s.hi
                ),
                level: c.config.level,
                disabled_optimizers: c.config.disabled.clone(),
                speedup_vs_default: s,
                speedup_vs_extended: vs_extended,
                outputs_agree: true,
                threads: ctx.threads,
                execution_provider: ctx.execution_provider.clone(),
                ort_version: ctx.ort_version.clone(),
                hardware: ctx.hardware.clone(),
            }
        }
        None => RecommendedConfig {
            level,
            disabled_optimizers: vec![],
            speedup_vs_default: Estimate::exact(1.0),
            speedup_vs_extended: vs_extended,
            outputs_agree: true,
            verdict: "ORT's default is the fastest measured here".into(),
            threads: ctx.threads,
            execution_provider: ctx.execution_provider.clone(),
            ort_version: ctx.ort_version.clone(),
            hardware: ctx.hardware.clone(),
        },
    };
    let carved_total = carved_total_ms(records);
    let carved_explained_fraction = match (carved_total, &fusion_saving) {
        (Some(c), Some(f)) if !fusion.is_empty() => fraction(&Estimate::exact(c), f),
        _ => None,
    };
    let fusion_transformers = fusion;
    let attribution = Attribution {
        level,
        baseline,
        fusion_transformers,
        fusion_saving_ms: fusion_saving,
        non_fusion_saving_ms: non_fusion_saving,
        explained_fraction,
        interaction_ms: interaction,
        carved_saving_ms: carved_total,
        carved_explained_fraction,
        transformers,
        no_effect: discovery.no_effect.clone(),
        failed,
        wall_s: start.elapsed().as_secs_f64(),
        discovery_s: 0.0,
        notes,
    };
    Ok((attribution, recommended))
}

/// Record a set of rounds' failed configurations and a failed A/A control.
fn note_batch(b: &ConfigComparison, what: &str, notes: &mut Vec<String>, failed: &mut Vec<(String, String)>) {
    if !b.aa_ok {
        notes.push(format!(
            "the A/A control of {what} is {:.3} [{:.3}, {:.3}] after {} attempts: its figures are untrustworthy",
            b.aa_control.point, b.aa_control.lo, b.aa_control.hi, b.attempts
        ));
    }
    for (c, msg) in &b.failed {
        failed.push((c.to_string(), msg.clone()));
    }
}

/// The real timer: [`crate::measure::configs::compare_configs`] on the model file.
pub struct OrtTimer<'a> {
    pub model: &'a std::path::Path,
    pub inputs: &'a [crate::measure::InputSpec],
    pub opts: crate::measure::MeasureOptions,
}

impl Timer for OrtTimer<'_> {
    fn time(&mut self, configs: &[SessionConfig]) -> Result<ConfigComparison> {
        crate::measure::configs::compare_configs(self.model, configs, self.inputs, &self.opts)
    }
}

/// Discover and attribute on the model file at ORT's default level, with ONNX Runtime.
pub fn run(
    model: &std::path::Path,
    inputs: &[crate::measure::InputSpec],
    opts: &crate::measure::MeasureOptions,
    records: &[FusionCalibration],
    ctx: &Context,
) -> Result<(Attribution, RecommendedConfig)> {
    use anyhow::Context as _;
    let start = Instant::now();
    let bytes = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    let original = crate::measure::model_nodes(&bytes).context("listing the model's nodes")?;
    drop(bytes);
    let discovery = crate::measure::optimizers::discover(
        crate::measure::ModelSource::Path(model),
        &original,
        Level::All,
        &crate::measure::MeasureOptions { strict_placement: false, ..opts.clone() },
    )?;
    let discovery_s = start.elapsed().as_secs_f64();
    let mut timer = OrtTimer { model, inputs, opts: rounds_options(opts) };
    let (mut a, rc) = attribute(&discovery, records, &mut timer, ctx)?;
    a.wall_s = start.elapsed().as_secs_f64();
    a.discovery_s = discovery_s;
    Ok((a, rc))
}
