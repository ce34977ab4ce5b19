//! `fuseval plan`: a greedy partition. Candidates are every catalog match (`Detection::all`,
//! overlapping sub-matches included), each legal to fuse by construction. A candidate is eligible when
//! its verdict is `keep` (`crate::calibration::decision::decide`: equivalent, trustworthy, and the whole
//! CI clears the threshold and the noise band), measured or estimated alike.
//!
//! Eligible candidates are taken in order of benefit, each only if it shares no node with one taken
//! before: measured, identical instances together, by the time they save in all (unfused − fused ms,
//! times how many there are); estimated, by the estimated speedup. Ties go to the longer match, then
//! to model order.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use petgraph::graph::NodeIndex;

use crate::calibration::FusionCalibration;
use crate::patterns::Instance;
use crate::pipeline::{distinct_groups, Prepared};

use super::assess::{from_record, Assessment, Verdict};
use super::estimated::Estimator;
use super::format::{Plan, PlanGroup};

/// A proposed plan, what it is expected to save, and a text summary.
pub struct Proposal {
    pub plan: Plan,
    /// Expected time saved per inference, ms (measured only).
    pub saving_ms: Option<f64>,
    pub text: String,
}

struct Candidate<'a> {
    inst: &'a Instance,
    eligible: bool,
    why: String,
    a: Assessment,
}

impl Candidate<'_> {
    /// Time one instance saves, ms (measured only).
    fn saved(&self) -> Option<f64> {
        self.a.saved_ms()
    }
}

/// Take candidates in the given order when eligible and disjoint from those taken; the plan in model order.
fn take(p: &Prepared, ordered: Vec<Candidate>, basis: &str) -> (Plan, Option<f64>, String) {
    let g = &p.graph;
    let pos: HashMap<NodeIndex, usize> = g.order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut used: HashSet<NodeIndex> = HashSet::new();
    let mut taken: Vec<&Candidate> = vec![];
    let (mut ineligible, mut overlapping) = (0, 0);
    for c in &ordered {
        if !c.eligible {
            ineligible += 1;
        } else if c.inst.nodes.iter().any(|n| used.contains(n)) {
            overlapping += 1;
        } else {
            used.extend(c.inst.nodes.iter().copied());
            taken.push(c);
        }
    }
    taken.sort_by_key(|c| pos.get(&c.inst.nodes[0]).copied().unwrap_or(usize::MAX));
    let saving: Option<f64> = taken.iter().map(|c| c.saved()).sum();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Proposed {} group{} from {} candidates ({} not worth fusing, {} overlapping a better one), {basis}:",
        taken.len(),
        if taken.len() == 1 { "" } else { "s" },
        ordered.len(),
        ineligible,
        overlapping
    );
    let groups = taken
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let names = c.inst.node_names(g);
            let s = c.a.speedup.unwrap_or(crate::estimate::Estimate::exact(1.0));
            let _ = writeln!(
                text,
                "  {:>3}  {:<28} {:>3} nodes  {:.2}× [{:.2}, {:.2}]  {}  ({})",
                k + 1,
                c.inst.pattern.key(),
                names.len(),
                s.point,
                s.lo,
                s.hi,
                names.first().cloned().unwrap_or_default(),
                c.why
            );
            PlanGroup {
                name: Some(format!("{}_{}", c.inst.pattern.key(), k + 1)),
                nodes: names,
                pattern: Some(c.inst.pattern.key().into()),
                expected_speedup: c.a.speedup,
                basis: Some(c.a.source.clone().unwrap_or_else(|| "measured".into())),
            }
        })
        .collect();
    (Plan { model: None, groups, proposed_by: None }, saving, text)
}

/// Propose from the cost model's estimates.
pub fn from_estimates(p: &Prepared, e: &Estimator, threshold: f64) -> Proposal {
    let g = &p.graph;
    let mut cands: Vec<(usize, Candidate)> = p
        .detection
        .all
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let a = e
                .assess(g, inst, threshold)
                .unwrap_or_else(|err| Assessment::none(Verdict::Unmeasured, format!("no estimate: {err:#}")));
            let why = match e.benefit(g, inst) {
                Ok(b) => b.source.describe(),
                Err(err) => format!("{err:#}"),
            };
            let eligible = a.verdict == Verdict::Keep;
            (i, Candidate { inst, eligible, why, a })
        })
        .collect();
    let point = |c: &Candidate| c.a.speedup.map(|s| s.point).unwrap_or(0.0);
    cands.sort_by(|(i, a), (j, b)| {
        point(b).total_cmp(&point(a)).then(b.inst.nodes.len().cmp(&a.inst.nodes.len())).then(i.cmp(j))
    });
    let ordered: Vec<Candidate> = cands.into_iter().map(|(_, c)| c).collect();
    let basis = format!("estimated by the cost model from {}", e.path.display());
    let (plan, _, text) = take(p, ordered, &basis);
    Proposal { plan, saving_ms: None, text }
}

/// Propose from measurements (records by signature, as `assess::measure_instances` returns them).
pub fn from_measurements(p: &Prepared, records: &HashMap<String, FusionCalibration>, threshold: f64) -> Proposal {
    let g = &p.graph;
    let all: Vec<&Instance> = p.detection.all.iter().collect();
    // identical instances together, by the time they save in all
    let mut groups: Vec<(f64, usize, usize, Vec<Candidate>)> = distinct_groups(g, &all)
        .into_iter()
        .enumerate()
        .map(|(k, (sig, insts))| {
            let a = records
                .get(&sig)
                .map(|r| from_record(r, threshold, None))
                .unwrap_or_else(|| Assessment::none(Verdict::Unmeasured, "not measured"));
            let saved = a.saved_ms().unwrap_or(0.0) * insts.len() as f64;
            let len = insts[0].nodes.len();
            let cands = insts
                .into_iter()
                .map(|inst| Candidate {
                    inst,
                    eligible: a.verdict == Verdict::Keep,
                    why: format!("saves {:.4} ms each; {}", a.saved_ms().unwrap_or(0.0), a.verdict),
                    a: a.clone(),
                })
                .collect();
            (saved, len, k, cands)
        })
        .collect();
    groups.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    let ordered: Vec<Candidate> = groups.into_iter().flat_map(|(_, _, _, c)| c).collect();
    let (plan, saving, text) = take(p, ordered, "measured here");
    Proposal { plan, saving_ms: saving, text }
}
