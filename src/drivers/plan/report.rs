//! The validation report: JSON (`ValidationReport`) and the text table.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::assess::{Assessment, Basis, Verdict};

/// What `fuseval validate` found, as `--json` prints it and `-o` writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidationReport {
    pub model: String,
    pub plan: String,
    /// `measured` (here, in ONNX Runtime) or `estimated` (the cost model over `calibration`).
    pub basis: Basis,
    #[serde(default)]
    pub calibration: Option<String>,
    /// How it was measured; null for estimates.
    #[serde(default)]
    pub measurement: Option<MeasurementInfo>,
    pub threshold: f64,
    /// The relative noise band around 1.00 (`calibration::NOISE`).
    pub noise: f64,
    pub groups: Vec<GroupReport>,
    /// Longest-match instances that share no node with any plan group.
    pub missed: Vec<MissedReport>,
    pub summary: Summary,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MeasurementInfo {
    pub execution_provider: String,
    pub threads: usize,
    pub quick: bool,
    pub seed: u64,
    pub ort_version: String,
    #[serde(default)]
    pub replicates: usize,
    /// The ONNX Runtime library, the fuseval commit and the command line that made it.
    #[serde(flatten)]
    pub provenance: crate::runtime::Provenance,
}

/// How a plan group relates to the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// The node set of a catalog match.
    Catalog,
    /// Legal to fuse, but no catalog pattern has these nodes.
    Uncatalogued,
    /// Not legal to fuse.
    Illegal,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroupReport {
    /// Position in the plan, counting from 1.
    pub index: usize,
    #[serde(default)]
    pub name: Option<String>,
    /// In topological order.
    pub nodes: Vec<String>,
    pub kind: GroupKind,
    /// The catalog pattern matched.
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub form: Option<String>,
    /// The pattern the plan named, when it named one.
    #[serde(default)]
    pub declared_pattern: Option<String>,
    /// For an illegal group: the intermediate tensor that escapes it.
    #[serde(default)]
    pub escaping_tensor: Option<String>,
    /// For an uncatalogued group: the catalog matches inside it.
    #[serde(default)]
    pub contains: Vec<String>,
    #[serde(flatten)]
    pub assessment: Assessment,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MissedReport {
    pub pattern: String,
    pub form: String,
    pub nodes: Vec<String>,
    /// What fusing it would be worth, under the same rules.
    #[serde(flatten)]
    pub assessment: Assessment,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub groups: usize,
    pub keep: usize,
    pub marginal: usize,
    pub harmful: usize,
    pub unmeasured: usize,
    pub missed: usize,
    /// Missed patterns whose verdict would be `keep`.
    pub missed_keep: usize,
}

impl Summary {
    pub fn of(groups: &[GroupReport], missed: &[MissedReport]) -> Summary {
        let count = |v: Verdict| groups.iter().filter(|g| g.assessment.verdict == v).count();
        Summary {
            groups: groups.len(),
            keep: count(Verdict::Keep),
            marginal: count(Verdict::Marginal),
            harmful: count(Verdict::Harmful),
            unmeasured: count(Verdict::Unmeasured),
            missed: missed.len(),
            missed_keep: missed.iter().filter(|m| m.assessment.verdict == Verdict::Keep).count(),
        }
    }

    /// The one-line summary.
    pub fn line(&self) -> String {
        format!(
            "summary: {} group{}: {} keep, {} marginal, {} harmful, {} unmeasured; {} missed pattern{} ({} keep)",
            self.groups,
            if self.groups == 1 { "" } else { "s" },
            self.keep,
            self.marginal,
            self.harmful,
            self.unmeasured,
            self.missed,
            if self.missed == 1 { "" } else { "s" },
            self.missed_keep
        )
    }
}

/// `1.52× [1.48, 1.57]`, `~` in front of an estimate, or a word when there is no number.
pub fn speedup_cell(a: &Assessment) -> String {
    match (&a.speedup, a.basis) {
        (Some(s), Basis::Estimated) => format!("~{:.2}× [{:.2}, {:.2}]", s.point, s.lo, s.hi),
        (Some(s), _) => format!("{:.2}× [{:.2}, {:.2}]", s.point, s.lo, s.hi),
        (None, _) if a.equivalent == Some(false) => "not equivalent".into(),
        (None, Basis::None) if a.verdict == Verdict::Harmful => "illegal".into(),
        (None, _) => "-".into(),
    }
}

/// `first … last`, or the one node.
pub fn short_nodes(nodes: &[String]) -> String {
    match nodes {
        [] => String::new(),
        [one] => one.clone(),
        [first, .., last] => format!("{first} … {last}"),
    }
}

/// The text report: the table of groups with a reason under each, the missed patterns, the summary.
pub fn text(r: &ValidationReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Plan {} on {}", r.plan, r.model);
    match (&r.basis, &r.measurement) {
        (Basis::Estimated, _) => {
            let _ = writeln!(
                s,
                "Speedups are the cost model's estimates from {} (not measured here; source per group below)",
                r.calibration.as_deref().unwrap_or("?")
            );
        }
        (_, Some(m)) => {
            let _ = writeln!(
                s,
                "Speedups measured here: ONNX Runtime {}, {}, {} thread{}{}",
                m.ort_version,
                m.execution_provider,
                m.threads,
                if m.threads == 1 { "" } else { "s" },
                if m.quick { ", --quick" } else { "" }
            );
        }
        _ => {}
    }
    let _ = writeln!(
        s,
        "keep: ≥ {:.2}× and faster beyond ±{:.0}%; harmful: slower, not equivalent, or illegal\n",
        r.threshold,
        r.noise * 100.0
    );
    let label = |g: &GroupReport| g.name.clone().unwrap_or_else(|| "-".into());
    let wl = r.groups.iter().map(|g| label(g).chars().count()).max().unwrap_or(0).max(5);
    let wp = r
        .groups
        .iter()
        .map(|g| g.pattern.as_deref().unwrap_or("-").len())
        .chain(r.missed.iter().map(|m| m.pattern.len()))
        .max()
        .unwrap_or(0)
        .max(7);
    let _ = writeln!(
        s,
        "{:>3}  {:<wl$}  {:<wp$}  {:>5}  {:<22}  verdict",
        "#", "group", "pattern", "nodes", "speedup [95% CI]"
    );
    for g in &r.groups {
        let _ = writeln!(
            s,
            "{:>3}  {:<wl$}  {:<wp$}  {:>5}  {:<22}  {}",
            g.index,
            label(g),
            g.pattern.as_deref().unwrap_or("-"),
            g.nodes.len(),
            speedup_cell(&g.assessment),
            g.assessment.verdict
        );
        let _ = writeln!(s, "     {}", short_nodes(&g.nodes));
        let _ = writeln!(s, "     reason: {}", g.assessment.reason);
        for n in &g.assessment.notes {
            let _ = writeln!(s, "     note: {n}");
        }
    }
    if r.missed.is_empty() {
        let _ = writeln!(s, "\nMissed patterns: none (every longest match shares a node with the plan)");
    } else {
        let _ = writeln!(s, "\nMissed patterns: {} fusible instances share no node with the plan", r.missed.len());
        let _ =
            writeln!(s, "     {:<wp$}  {:>5}  {:<22}  {:<10}  nodes", "pattern", "nodes", "gain [95% CI]", "verdict");
        for m in &r.missed {
            let _ = writeln!(
                s,
                "     {:<wp$}  {:>5}  {:<22}  {:<10}  {}",
                m.pattern,
                m.nodes.len(),
                speedup_cell(&m.assessment),
                m.assessment.verdict,
                short_nodes(&m.nodes)
            );
        }
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    let _ = writeln!(s, "\n{}", r.summary.line());
    s
}
