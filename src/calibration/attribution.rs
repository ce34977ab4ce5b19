//! What each of ONNX Runtime's transformers does inside the whole model, and the fastest configuration
//! verified: the results of `drivers::attribution`, and the arithmetic that turns its timings into them.
//!
//! Every saving here is a paired ratio from one set of rounds: the whole model with something switched off
//! against ORT's default, `r = t(off) / t(default)`, so a saving is `(r − 1) · t(default)` with the ratio's
//! CI. Positive: the transformer saves time; negative: it costs time.

use serde::{Deserialize, Serialize};

use super::FusionCalibration;
use crate::estimate::Estimate;
use crate::measure::configs::{ConfigComparison, ConfigResult};
use crate::measure::optimizers::{Effect, Kind};
use crate::measure::{Latency, Level, SessionConfig};

/// One whole-model configuration as measured: its latency and its ratio to the batch's reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    pub config: SessionConfig,
    pub latency: Latency,
    /// `t(this) / t(default)`, from the same rounds.
    pub ratio_to_default: Estimate,
    pub outputs_agree: bool,
    /// The A/A control of the rounds it was timed in passed.
    pub aa_ok: bool,
}

impl Timed {
    pub fn of(r: &ConfigResult, c: &ConfigComparison) -> Timed {
        Timed {
            config: r.config.clone(),
            latency: r.latency,
            ratio_to_default: r.ratio,
            outputs_agree: r.equivalence.passed,
            aa_ok: c.aa_ok,
        }
    }
}

/// What happens when a transformer is switched off, in context.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformerAttribution {
    pub name: String,
    pub kind: Kind,
    /// It changes this model's optimized graph.
    pub fires: bool,
    /// How many nodes it removes from the optimized graph (or, when more, how many of the model's own
    /// nodes `consumed` names).
    pub nodes_consumed: usize,
    pub consumed: Vec<String>,
    /// Op counts of the optimized graph that change: (without it, with it).
    pub ops_changed: std::collections::BTreeMap<String, (usize, usize)>,
    /// `t(default without it) − t(default)`, ms per inference, with its CI. Null when not timed.
    pub saving_ms: Option<Estimate>,
    /// The same as a fraction of the default's latency.
    pub saving_fraction: Option<Estimate>,
    /// Its share of the carved savings of the fuseval instances whose nodes it consumes (ms); null when no
    /// measured instance maps.
    pub carved_saving_ms: Option<f64>,
    /// in-context saving / carved saving.
    pub context_factor: Option<f64>,
    /// Signatures of the instances it touches.
    pub instances: Vec<String>,
    /// `helps`, `hurts`, `no measurable effect`, `outputs differ`, `untrustworthy` or `not timed`.
    pub verdict: String,
}

/// The whole model at the four reference points, each against ORT's default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub disable: Option<Timed>,
    /// The default level with every fusion transformer that acts switched off.
    pub fusion_off: Option<Timed>,
    pub extended: Option<Timed>,
    pub default: Timed,
}

/// The attribution of a whole model's optimization to ORT's transformers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// The level ORT's default is (`all`).
    pub level: Level,
    pub baseline: Baseline,
    /// The fusion transformers `fusion_off` switches off.
    pub fusion_transformers: Vec<String>,
    /// fusion-off → default.
    pub fusion_saving_ms: Option<Estimate>,
    /// Disable → fusion-off: constant folding, eliminations, layout.
    pub non_fusion_saving_ms: Option<Estimate>,
    /// Σ leave-one-out savings of the fusion transformers / the fusion saving.
    pub explained_fraction: Option<Estimate>,
    /// fusion saving − Σ leave-one-out savings: what the fusions do only together (or instead of each other).
    pub interaction_ms: Option<Estimate>,
    /// Σ carved savings of the measured instances at ORT's extended level (per inference, every instance).
    #[serde(default)]
    pub carved_saving_ms: Option<f64>,
    /// carved_saving_ms / the fusion saving: how much of fusion-off → default the carved patterns predict.
    #[serde(default)]
    pub carved_explained_fraction: Option<Estimate>,
    pub transformers: Vec<TransformerAttribution>,
    /// Names tried whose switching off did not change the optimized graph, and why they were tried.
    pub no_effect: Vec<(String, String)>,
    /// Configurations that could not be built or run, with ORT's message.
    pub failed: Vec<(String, String)>,
    /// Seconds spent, discovery and timing.
    pub wall_s: f64,
    /// Of which finding the transformers that act (building a session per candidate).
    #[serde(default)]
    pub discovery_s: f64,
    /// Notes for the reader (an A/A failure, a fraction that cannot be computed, ...).
    pub notes: Vec<String>,
}

/// The configuration fuseval recommends, verified against ORT's default and against Extended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecommendedConfig {
    pub level: Level,
    pub disabled_optimizers: Vec<String>,
    /// `t(default) / t(this)`: above 1, faster than ORT's default.
    pub speedup_vs_default: Estimate,
    pub speedup_vs_extended: Option<Estimate>,
    pub outputs_agree: bool,
    /// "ORT's default is the fastest measured here", or what the recommendation changes and by how much.
    pub verdict: String,
    pub threads: usize,
    pub execution_provider: String,
    pub ort_version: String,
    pub hardware: String,
}

impl RecommendedConfig {
    pub fn is_default(&self) -> bool {
        self.level == Level::All && self.disabled_optimizers.is_empty()
    }
}

/// The saving of switching something off: `(r − 1) · t_ref`, with the ratio's CI.
pub fn saving_ms(ratio: &Estimate, reference_ms: f64) -> Estimate {
    Estimate {
        point: (ratio.point - 1.0) * reference_ms,
        lo: (ratio.lo - 1.0) * reference_ms,
        hi: (ratio.hi - 1.0) * reference_ms,
    }
}

/// `a − b` for two savings from the same rounds, half-widths added in quadrature (each side kept).
pub fn difference(a: &Estimate, b: &Estimate) -> Estimate {
    let point = a.point - b.point;
    let lo = ((a.point - a.lo).powi(2) + (b.hi - b.point).powi(2)).sqrt();
    let hi = ((a.hi - a.point).powi(2) + (b.point - b.lo).powi(2)).sqrt();
    Estimate { point, lo: point - lo, hi: point + hi }
}

/// Σ of savings, half-widths in quadrature.
pub fn sum(es: &[Estimate]) -> Estimate {
    let point = es.iter().map(|e| e.point).sum::<f64>();
    let lo = es.iter().map(|e| (e.point - e.lo).powi(2)).sum::<f64>().sqrt();
    let hi = es.iter().map(|e| (e.hi - e.point).powi(2)).sum::<f64>().sqrt();
    Estimate { point, lo: point - lo, hi: point + hi }
}

/// `num / den` by interval arithmetic; `None` when the denominator's CI reaches zero (a fraction of
/// nothing measurable).
pub fn fraction(num: &Estimate, den: &Estimate) -> Option<Estimate> {
    if den.lo <= 0.0 {
        return None;
    }
    let corners = [num.lo / den.lo, num.lo / den.hi, num.hi / den.lo, num.hi / den.hi];
    let lo = corners.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = corners.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(Estimate { point: num.point / den.point, lo, hi })
}

/// The verdict on one transformer from its in-context saving: `hurts` needs the whole CI below zero,
/// `helps` the whole CI above it.
pub fn verdict(saving: &Estimate, outputs_agree: bool, aa_ok: bool) -> &'static str {
    if !outputs_agree {
        "outputs differ"
    } else if !aa_ok {
        "untrustworthy"
    } else if saving.hi < 0.0 {
        "hurts"
    } else if saving.lo > 0.0 {
        "helps"
    } else {
        "no measurable effect"
    }
}

/// Each transformer's share of the carved savings of the instances whose nodes it consumes: an instance's
/// saving (per instance, `unfused − fused`; at ORT's extended level for a fusion, at the full level for a
/// layout transformer) is split among the transformers that consume its nodes, in proportion to how many
/// each consumes. Returns (ms, signatures) per effect, in order.
pub fn carved_shares(effects: &[Effect], records: &[FusionCalibration]) -> Vec<(Option<f64>, Vec<String>)> {
    let mut out: Vec<(Option<f64>, Vec<String>)> = vec![(None, vec![]); effects.len()];
    for r in records.iter().filter(|r| r.counts()) {
        // a layout transformer is ORT's full level; the fusions are all in at extended, without the layout
        // reorders a carved pattern pays at its boundaries
        let saving = |e: &Effect| {
            let level = if e.kind == Kind::Layout { r.all.as_ref() } else { r.extended.as_ref() };
            level.filter(|l| l.equivalence.passed).map(|l| r.unfused_latency_ms - l.latency.median_ms)
        };
        for inst in &r.instances {
            let hits: Vec<usize> =
                effects.iter().map(|e| inst.iter().filter(|n| e.consumed.iter().any(|c| c == *n)).count()).collect();
            let total: usize = hits.iter().sum();
            if total == 0 {
                continue;
            }
            for (k, &h) in hits.iter().enumerate().filter(|(_, &h)| h > 0) {
                let Some(per_instance) = saving(&effects[k]) else { continue };
                let share = per_instance * h as f64 / total as f64;
                let slot = &mut out[k];
                slot.0 = Some(slot.0.unwrap_or(0.0) + share);
                if !slot.1.contains(&r.signature) {
                    slot.1.push(r.signature.clone());
                }
            }
        }
    }
    out
}

/// Pick the recommendation from verified candidates (each timed against the default in one set of rounds):
/// the fastest whose outputs agree, whose rounds' A/A control passed and whose speedup over the default
/// clears the noise band by the one decision rule (`calibration::decision`: the CI's low end above
/// 1 + NOISE). None: ORT's default stays.
pub fn pick(candidates: &[Timed]) -> Option<&Timed> {
    candidates
        .iter()
        .filter(|t| {
            t.outputs_agree && t.aa_ok && speedup_from_ratio(&t.ratio_to_default).lo > 1.0 + crate::estimate::NOISE
        })
        .min_by(|a, b| a.ratio_to_default.point.total_cmp(&b.ratio_to_default.point))
}

/// `t(default) / t(x)` from `x`'s ratio to the default.
pub fn speedup_from_ratio(r: &Estimate) -> Estimate {
    Estimate { point: 1.0 / r.point, lo: 1.0 / r.hi, hi: 1.0 / r.lo }
}

/// `t(b) / t(a)` for two configurations timed against the same reference in one set of rounds: the ratio
/// of their ratios, log half-widths in quadrature.
pub fn relative_speedup(a: &Estimate, b: &Estimate) -> Estimate {
    let point = b.point / a.point;
    let h = |e: &Estimate| ((e.hi / e.lo).ln() / 2.0).powi(2);
    let half = (h(a) + h(b)).sqrt();
    Estimate { point, lo: point * (-half).exp(), hi: point * half.exp() }
}

/// The lines to paste: Python, C/C++ and Rust (`ort`) session settings for `c`.
pub fn snippets(c: &RecommendedConfig) -> Vec<String> {
    let level = |py: bool| match (c.level, py) {
        (Level::Disable, true) => "ort.GraphOptimizationLevel.ORT_DISABLE_ALL",
        (Level::Extended, true) => "ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED",
        (Level::All, true) => "ort.GraphOptimizationLevel.ORT_ENABLE_ALL",
        (Level::Disable, false) => "GraphOptimizationLevel::ORT_DISABLE_ALL",
        (Level::Extended, false) => "GraphOptimizationLevel::ORT_ENABLE_EXTENDED",
        (Level::All, false) => "GraphOptimizationLevel::ORT_ENABLE_ALL",
    };
    let rust_level = match c.level {
        Level::Disable => "GraphOptimizationLevel::Disable",
        Level::Extended => "GraphOptimizationLevel::Level2",
        Level::All => "GraphOptimizationLevel::All",
    };
    let names = c.disabled_optimizers.join(";");
    let mut py = format!("so.graph_optimization_level = {}", level(true));
    let mut cpp = format!("session_options.SetGraphOptimizationLevel({});", level(false));
    let mut rs = format!(".with_optimization_level({rust_level})?");
    if !names.is_empty() {
        py += &format!("; so.add_session_config_entry(\"optimization.disable_specified_optimizers\", \"{names}\")");
        cpp += &format!(" session_options.AddConfigEntry(\"optimization.disable_specified_optimizers\", \"{names}\");");
        rs += &format!(".with_config_entry(\"optimization.disable_specified_optimizers\", \"{names}\")?");
    }
    vec![format!("Python:  {py}"), format!("C/C++:   {cpp}"), format!("Rust:    {rs}")]
}

/// Σ (unfused − fused at extended) × instances over the records that count and agree.
pub fn carved_total_ms(records: &[FusionCalibration]) -> Option<f64> {
    let mut total = None;
    for r in records.iter().filter(|r| r.counts()) {
        if let Some(l) = r.extended.as_ref().filter(|l| l.equivalence.passed) {
            *total.get_or_insert(0.0) += (r.unfused_latency_ms - l.latency.median_ms) * r.instances.len() as f64;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(point: f64, lo: f64, hi: f64) -> Estimate {
        Estimate { point, lo, hi }
    }

    #[test]
    fn savings_and_fractions() {
        let s = saving_ms(&e(1.10, 1.08, 1.12), 50.0);
        assert!((s.point - 5.0).abs() < 1e-9 && (s.lo - 4.0).abs() < 1e-9 && (s.hi - 6.0).abs() < 1e-9);
        let f = fraction(&e(4.0, 3.0, 5.0), &e(5.0, 4.0, 6.0)).unwrap();
        assert!((f.point - 0.8).abs() < 1e-9 && (f.lo - 0.5).abs() < 1e-9 && (f.hi - 1.25).abs() < 1e-9);
        assert!(fraction(&e(1.0, 0.5, 1.5), &e(0.5, -0.1, 1.1)).is_none());
        let t = sum(&[e(3.0, 2.0, 4.0), e(1.0, 0.0, 2.0)]);
        assert!((t.point - 4.0).abs() < 1e-9 && (t.hi - 4.0 - 2f64.sqrt()).abs() < 1e-9);
        let d = difference(&e(5.0, 4.0, 6.0), &e(3.0, 2.0, 4.0));
        assert!((d.point - 2.0).abs() < 1e-9 && (d.lo - (2.0 - 2f64.sqrt())).abs() < 1e-9);
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&e(-2.0, -3.0, -1.0), true, true), "hurts");
        assert_eq!(verdict(&e(2.0, 1.0, 3.0), true, true), "helps");
        assert_eq!(verdict(&e(0.5, -0.5, 1.5), true, true), "no measurable effect");
        assert_eq!(verdict(&e(2.0, 1.0, 3.0), false, true), "outputs differ");
        assert_eq!(verdict(&e(2.0, 1.0, 3.0), true, false), "untrustworthy");
    }

    #[test]
    fn snippet_lines_join_names_with_semicolons() {
        let c = RecommendedConfig {
            level: Level::All,
            disabled_optimizers: vec!["ConvActivationFusion".into(), "GeluFusion".into()],
            speedup_vs_default: Estimate::exact(1.05),
            speedup_vs_extended: None,
            outputs_agree: true,
            verdict: String::new(),
            threads: 2,
            execution_provider: "cpu".into(),
            ort_version: "1.31.1".into(),
            hardware: String::new(),
        };
        let s = snippets(&c).join("\n");
        assert!(s.contains("\"ConvActivationFusion;GeluFusion\""), "{s}");
        assert!(!s.contains("ConvActivationFusion,"), "{s}");
        assert!(
            s.contains("add_session_config_entry") && s.contains("AddConfigEntry") && s.contains("with_config_entry")
        );
    }
}
