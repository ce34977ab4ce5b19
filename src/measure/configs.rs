//! The whole model under several optimizer configurations, timed against a reference in the same rounds.
//!
//! The design of [`super::compare_variants`], for any list of [`SessionConfig`]s: the reference is built
//! twice (its A/A control), every configuration once, in a seeded random order; each is run on two input
//! sets and checked against the reference before any timing; all share the input tensors and one set of
//! bound, pre-allocated outputs; rounds run every session once in shuffled order until every ratio's CI
//! reaches the target or the budget runs out. A ratio is `configuration / reference` latency per round:
//! above 1, the configuration is slower (what it switched off was saving time).
//!
//! A configuration whose session cannot be built is recorded with ORT's message and left out; one whose
//! outputs differ is timed and flagged.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::session::{self, model_ops};
use super::timing::{self, WallClock, CONTROL, UNFUSED};
use super::{
    aa_ok_at, build_order_of, check_equivalence_ep, ratio_estimate, Equivalence, InputSpec, Latency, MeasureOptions,
    ModelSource, OutputValues, SessionConfig, MEASURE_LOCK,
};
use crate::estimate::Estimate;
use crate::runtime::{Ep, TempDir};

/// One configuration as timed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigResult {
    pub config: SessionConfig,
    pub latency: Latency,
    /// `this / reference` latency, per round; 1 for the reference itself.
    pub ratio: Estimate,
    /// Against the reference, on both input sets and through the binding.
    pub equivalence: Equivalence,
    /// Nodes of ORT's optimized graph under this configuration.
    pub nodes: usize,
    /// CUDA: ORT placed some nodes on the CPU.
    #[serde(default)]
    pub cpu_fallback: bool,
}

/// Every configuration against the reference (the first of the list).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigComparison {
    pub reference: ConfigResult,
    /// Reference A / reference B: must read 1.00.
    pub aa_control: Estimate,
    pub aa_ok: bool,
    pub results: Vec<ConfigResult>,
    /// Configurations whose session could not be built, with ORT's message.
    pub failed: Vec<(SessionConfig, String)>,
    pub rounds: usize,
    pub iters_per_round: usize,
    pub budget_exhausted: bool,
    pub wall_s: f64,
    pub seed: u64,
    /// Times measured: more than 1 when the A/A control failed and it was measured again.
    pub attempts: usize,
}

impl ConfigComparison {
    /// The result of `config`: the reference's, or one of `results`.
    pub fn result(&self, config: &SessionConfig) -> Option<&ConfigResult> {
        if &self.reference.config == config {
            return Some(&self.reference);
        }
        self.results.iter().find(|r| &r.config == config)
    }
}

/// Time `configs[1..]` against `configs[0]`, measuring again in fresh sessions with a fresh seed while the
/// A/A control fails (at most [`super::replicates::AA_RETRIES`] times).
pub fn compare_configs(
    model: &Path,
    configs: &[SessionConfig],
    inputs: &[InputSpec],
    opts: &MeasureOptions,
) -> Result<ConfigComparison> {
    let mut attempt = 0;
    loop {
        let seed = super::replicate_seed(opts.seed, "configs", 0, attempt);
        let mut c = compare_once(model, configs, inputs, &MeasureOptions { seed, ..opts.clone() })?;
        c.attempts = attempt + 1;
        if c.aa_ok || attempt >= super::replicates::AA_RETRIES {
            return Ok(c);
        }
        attempt += 1;
    }
}

fn compare_once(
    model: &Path,
    configs: &[SessionConfig],
    inputs: &[InputSpec],
    opts: &MeasureOptions,
) -> Result<ConfigComparison> {
    let Some(reference_config) = configs.first() else { bail!("no configuration to time") };
    opts.validate()?;
    let _guard = MEASURE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let wall = Instant::now();
    if opts.threads > 1 {
        crate::runtime::configure_pool(opts.threads)?;
    }
    let source = ModelSource::Path(model);
    let (names, values1, values2) = super::input_sets(inputs, opts)?;

    // slot 0: reference A, 1: reference B (the control), 2..: the others
    let mut plan: Vec<SessionConfig> = vec![reference_config.clone(), reference_config.clone()];
    plan.extend(configs[1..].iter().cloned());
    let labels: Vec<String> = plan
        .iter()
        .enumerate()
        .map(|(i, c)| match i {
            0 => format!("reference ({c})"),
            1 => format!("reference control ({c})"),
            _ => format!("{c}"),
        })
        .collect();
    let tmp = TempDir::new().context("creating a temporary directory for optimised graphs")?;
    let gpu = matches!(opts.ep, Ep::Cuda { .. });
    let strict = MeasureOptions { strict_placement: gpu, ..opts.clone() };
    let mut built: Vec<Option<(ort::session::Session, bool, usize)>> = (0..plan.len()).map(|_| None).collect();
    let mut failed = vec![];
    for i in build_order_of(opts.seed, plan.len()) {
        let path = tmp.0.join(format!("config{i}.onnx"));
        let attempt = session::build_session_logged(source, &plan[i], &strict, Some(&path), &labels[i], None);
        let attempt = match attempt {
            Err(e) if gpu && format!("{e:#}").contains(session::FALLBACK_REFUSED) => {
                let relaxed = MeasureOptions { strict_placement: false, ..opts.clone() };
                session::build_session_logged(source, &plan[i], &relaxed, Some(&path), &labels[i], None)
                    .map(|s| (s, true))
            }
            other => other.map(|s| (s, false)),
        };
        match attempt {
            Ok((s, fell_back)) => {
                let nodes = std::fs::read(&path).ok().and_then(|b| model_ops(&b).ok()).map_or(0, |o| o.len());
                built[i] = Some((s, fell_back, nodes));
            }
            Err(e) if i >= 2 => failed.push((plan[i].clone(), format!("{e:#}"))),
            Err(e) => return Err(e.context("building the reference session")),
        }
    }
    if let Some((s, _, _)) = &built[UNFUSED] {
        session::check_inputs(s, inputs).context("checking inputs against the model")?;
    }

    // plain runs: the reference first, every other checked against it and its outputs dropped
    let mut reference: Option<(Vec<OutputValues>, Vec<OutputValues>)> = None;
    let mut checked: Vec<Option<Equivalence>> = vec![None; plan.len()];
    let mut like: Vec<Option<Vec<OutputValues>>> = vec![None; plan.len()];
    for i in 0..plan.len() {
        let Some((s, _, _)) = built[i].as_mut() else { continue };
        let outs = session::run_plain(s, &names, &values1, &labels[i])
            .and_then(|o1| session::run_plain(s, &names, &values2, &labels[i]).map(|o2| (o1, o2)));
        let (o1, o2) = match outs {
            Ok(o) => o,
            Err(e) if i >= 2 => {
                failed.push((plan[i].clone(), format!("{e:#}")));
                built[i] = None;
                continue;
            }
            Err(e) => return Err(e),
        };
        like[i] = Some(o1.iter().map(OutputValues::shape_only).collect());
        match &reference {
            None => reference = Some((o1, o2)),
            Some(r) => {
                checked[i] = Some(check_equivalence_ep(&r.0, &o1, opts).merge(check_equivalence_ep(&r.1, &o2, opts)))
            }
        }
    }
    let reference = reference.context("internal: the reference was not run")?;

    // bound runs on one shared set of outputs (a configuration whose outputs do not fit is left out)
    let mut outputs = session::Outputs::allocate(&reference.0, opts.ep)?;
    let mut variants = vec![];
    let mut slots = vec![];
    for (i, b) in built.into_iter().enumerate() {
        let Some((s, fell_back, nodes)) = b else { continue };
        if !outputs.fits(like[i].as_deref().unwrap_or_default()) {
            failed.push((plan[i].clone(), "its outputs differ in name, type or shape from the reference's".into()));
            continue;
        }
        match session::bind(s, &names, &values1, &mut outputs, &labels[i]) {
            Ok(v) => {
                variants.push(v);
                slots.push((i, fell_back, nodes));
            }
            Err(e) if i >= 2 => failed.push((plan[i].clone(), format!("{e:#}"))),
            Err(e) => return Err(e),
        }
    }
    if slots.len() < 2 || slots[0].0 != 0 || slots[1].0 != 1 {
        bail!("internal: the reference sessions were not bound");
    }
    let mut bound = vec![];
    for v in &variants {
        v.run_bound()?;
        let o = outputs.read().with_context(|| format!("reading {} outputs", v.label))?;
        bound.push(check_equivalence_ep(&reference.0, &o, opts));
    }
    drop(reference);
    let equivalence = |k: usize| -> Equivalence {
        let (i, _, _) = slots[k];
        match checked[i].clone() {
            Some(e) => e.merge(bound[k].clone()),
            None => bound[k].clone(),
        }
    };
    let control = equivalence(CONTROL);
    if !control.passed {
        bail!(
            "the two reference sessions disagree (max abs err {:e}): the model is not deterministic",
            control.max_abs_err
        );
    }

    let wait_for: Vec<usize> = (2..variants.len()).collect();
    let rounds = timing::run_rounds(&mut variants, &wait_for, opts, &WallClock::new())
        .map_err(|f| f.error.context(format!("timing {}", labels[slots[f.variant].0])))?;
    let seed = opts.seed;
    let result = |k: usize| -> ConfigResult {
        let (i, fell_back, nodes) = slots[k];
        ConfigResult {
            config: plan[i].clone(),
            latency: Latency::from_seconds(&rounds.times[k], seed ^ (2 * k as u64 + 11)),
            ratio: if k == UNFUSED {
                Estimate::exact(1.0)
            } else {
                ratio_estimate(&rounds.ratios(k, UNFUSED), seed ^ (2 * k as u64 + 12))
            },
            equivalence: if k == UNFUSED { control.clone() } else { equivalence(k) },
            nodes,
            cpu_fallback: fell_back,
        }
    };
    let aa_control = ratio_estimate(&rounds.ratios(UNFUSED, CONTROL), seed ^ 1);
    Ok(ConfigComparison {
        reference: result(UNFUSED),
        aa_ok: aa_ok_at(&aa_control, opts.target_rel_ci),
        aa_control,
        results: (2..slots.len()).map(result).collect(),
        failed,
        rounds: rounds.len(),
        iters_per_round: rounds.iters,
        budget_exhausted: rounds.budget_exhausted,
        wall_s: wall.elapsed().as_secs_f64(),
        seed,
        attempts: 1,
    })
}
