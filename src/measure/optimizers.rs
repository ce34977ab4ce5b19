//! ONNX Runtime's graph optimizer, one transformer at a time: which graph transformers and rewrite rules
//! change this model, what each one does to it, and the configurations that switch them off.
//!
//! ORT switches optimizers off by name through the session config entry
//! `optimization.disable_specified_optimizers`: names separated by `;`. A name ORT does not know, or a
//! comma-separated list, is silently ignored, so every effect is checked here in the optimized graph ORT
//! saves, never assumed from the name.
//!
//! Finding what acts takes one session with ORT's verbose log: its graph transformer manager reports
//! `GraphTransformer <name> modified: 1` for each transformer that changed the graph. Rewrite rules run
//! inside `Level1_RuleBasedTransformer` and are not reported one by one, so each rule whose operators are
//! in the model is tried: switched off alone, does the optimized graph change?

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::session::{self, model_nodes};
use super::{Level, MeasureOptions, ModelSource, SessionConfig};
use crate::runtime::TempDir;

/// What a transformer does, as the attribution reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Several nodes into one kernel (Conv+activation, Gemm+activation, LayerNorm, attention, ...).
    Fusion,
    /// A change of data layout (NCHWc, NHWC, transposes moved or cancelled).
    Layout,
    /// Nodes whose inputs are all constant computed once, at session creation.
    ConstantFolding,
    /// Nodes removed without a new kernel (identities, no-op arithmetic, duplicated subexpressions,
    /// shape arithmetic made constant).
    Elimination,
    Other,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fusion => "fusion",
            Kind::Layout => "layout",
            Kind::ConstantFolding => "constant_folding",
            Kind::Elimination => "elimination",
            Kind::Other => "other",
        }
    }
}

/// One of ORT's optimizers, by the name `disable_specified_optimizers` takes.
#[derive(Clone, Copy, Debug)]
pub struct Known {
    pub name: &'static str,
    pub kind: Kind,
    /// A rewrite rule of `Level1_RuleBasedTransformer` (not reported by the verbose log on its own).
    pub rule: bool,
    /// Rules only: the model must have one of these operators for the rule to be tried.
    pub any_of: &'static [&'static str],
}

const fn t(name: &'static str, kind: Kind) -> Known {
    Known { name, kind, rule: false, any_of: &[] }
}

const fn r(name: &'static str, kind: Kind, any_of: &'static [&'static str]) -> Known {
    Known { name, kind, rule: true, any_of }
}

/// ONNX Runtime 1.31's graph transformers and level-1 rewrite rules (`graph_transformer_utils.cc`),
/// with their kind. A name reported by the log and missing here is still measured, as `other`.
pub const KNOWN: &[Known] = &[
    // level 1 rewrite rules
    r("EliminateIdentity", Kind::Elimination, &["Identity"]),
    r("EliminateSlice", Kind::Elimination, &["Slice"]),
    r("UnsqueezeElimination", Kind::Elimination, &["Unsqueeze"]),
    r("EliminateDropout", Kind::Elimination, &["Dropout"]),
    r("ExpandElimination", Kind::Elimination, &["Expand"]),
    r("CastElimination", Kind::Elimination, &["Cast"]),
    r("NoopElimination", Kind::Elimination, &["Add", "Sub", "Mul", "Div"]),
    r("DivMulFusion", Kind::Fusion, &["Div"]),
    r("FuseReluClip", Kind::Fusion, &["Clip"]),
    r("GemmSumFusion", Kind::Fusion, &["Gemm"]),
    r("GemmTransposeFusion", Kind::Fusion, &["Gemm"]),
    r("NotWhereFusion", Kind::Fusion, &["Not"]),
    r("ConvAddFusion", Kind::Fusion, &["Conv"]),
    r("ConvMulFusion", Kind::Fusion, &["Conv"]),
    r("ConvBNFusion", Kind::Fusion, &["BatchNormalization"]),
    r("ClipQuantFusion", Kind::Fusion, &["QuantizeLinear"]),
    r("ReluQuantFusion", Kind::Fusion, &["QuantizeLinear"]),
    // level 1 transformers
    t("ConstantSharing", Kind::Elimination),
    t("CommonSubexpressionElimination", Kind::Elimination),
    t("ConstantFolding", Kind::ConstantFolding),
    t("MatMulAddFusion", Kind::Fusion),
    // Shape→Gather→Concat feeding a Reshape made a constant: no kernel fused
    t("ReshapeFusion", Kind::Elimination),
    t("FreeDimensionOverrideTransformer", Kind::Other),
    t("QDQPropagationTransformer", Kind::Layout),
    t("TransposeOptimizer", Kind::Layout),
    // level 2
    t("QDQS8ToU8Transformer", Kind::Other),
    t("QDQSelectorActionTransformer", Kind::Fusion),
    t("GemmActivationFusion", Kind::Fusion),
    t("MatMulIntegerToFloatFusion", Kind::Fusion),
    t("DynamicQuantizeMatMulFusion", Kind::Fusion),
    t("ConvActivationFusion", Kind::Fusion),
    t("GeluFusion", Kind::Fusion),
    t("LayerNormFusion", Kind::Fusion),
    t("SimplifiedLayerNormFusion", Kind::Fusion),
    t("AttentionFusion", Kind::Fusion),
    t("EmbedLayerNormFusion", Kind::Fusion),
    t("MatmulTransposeFusion", Kind::Fusion),
    t("BiasGeluFusion", Kind::Fusion),
    t("BiasSoftmaxFusion", Kind::Fusion),
    t("BiasDropoutFusion", Kind::Fusion),
    t("SkipLayerNormFusion", Kind::Fusion),
    t("FastGeluFusion", Kind::Fusion),
    t("MatMulScaleFusion", Kind::Fusion),
    t("GeluApproximation", Kind::Other),
    t("Avx2WeightS8ToU8Transformer", Kind::Other),
    t("QDQFinalCleanupTransformer", Kind::Elimination),
    // level 3 (ORT_ENABLE_ALL)
    t("NchwcTransformer", Kind::Layout),
    t("NhwcTransformer", Kind::Layout),
    t("ConvAddActivationFusion", Kind::Fusion),
];

/// The kind of an optimizer name: from [`KNOWN`] (ORT 1.31 also runs some at two levels, as
/// `GeluFusionL1`/`GeluFusionL2`), else from the name (`…Fusion`, `…Elimination`), else `other`.
pub fn kind_of(name: &str) -> Kind {
    let base = name.strip_suffix("L1").or_else(|| name.strip_suffix("L2")).unwrap_or(name);
    if let Some(k) = KNOWN.iter().find(|k| k.name == name || k.name == base) {
        return k.kind;
    }
    if base.ends_with("Fusion") {
        Kind::Fusion
    } else if base.contains("Elimination") {
        Kind::Elimination
    } else {
        Kind::Other
    }
}

/// The rule-based transformers that carry the rewrite rules: reported by the log, never switched off as a
/// whole (their rules are, one by one).
fn is_rule_container(name: &str) -> bool {
    name.ends_with("_RuleBasedTransformer")
}

/// A session's nodes after ORT's optimizer, from the graph it saved. ORT does not save the nodes in the
/// same order from one session to the next, so they are kept sorted: two graphs are equal when they hold
/// the same nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptimizedGraph {
    /// (node name, op type with its domain when not the default), sorted
    pub nodes: Vec<(String, String)>,
}

impl From<Vec<(String, String)>> for OptimizedGraph {
    fn from(mut nodes: Vec<(String, String)>) -> Self {
        nodes.sort();
        OptimizedGraph { nodes }
    }
}

impl OptimizedGraph {
    pub fn op_histogram(&self) -> BTreeMap<String, usize> {
        let mut h = BTreeMap::new();
        for (_, op) in &self.nodes {
            *h.entry(op.clone()).or_insert(0) += 1;
        }
        h
    }
}

/// Whether an original node is still in an optimized graph: by its own name, or by a node ORT derived from
/// it (ORT names a rewritten node after the original or its output: `/bn1/BatchNormalization` becomes
/// `/bn1/BatchNormalization_output_0_nchwc`). `Conv` does not claim `Conv_1`: a `_` must not start a number.
fn present(name: &str, g: &OptimizedGraph) -> bool {
    g.nodes.iter().any(|(n, _)| {
        n == name
            || n.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('_'))
                .is_some_and(|r| r.chars().next().is_some_and(|c| !c.is_ascii_digit()))
    })
}

/// What ORT made of the model under one configuration.
#[derive(Clone, Debug, Default)]
pub struct Optimized {
    pub graph: OptimizedGraph,
    /// Transformers the verbose log reported as having modified the graph, in the order they ran.
    pub modified: Vec<String>,
}

/// Build a session of `model` under `config` (never timed), keeping the optimized graph ORT saves and, with
/// `log`, ORT's verbose log of which transformers modified the graph.
pub fn optimize(model: ModelSource<'_>, config: &SessionConfig, opts: &MeasureOptions, log: bool) -> Result<Optimized> {
    let tmp = TempDir::new().context("creating a temporary directory for the optimized graph")?;
    let path = tmp.0.join("optimized.onnx");
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = log.then(|| {
        let lines = lines.clone();
        let f: ort::logging::LoggerFunction = Arc::new(move |_level, _category, _id, _location, message: &str| {
            if message.starts_with("GraphTransformer ") {
                if let Ok(mut l) = lines.lock() {
                    l.push(message.to_string());
                }
            }
        });
        f
    });
    let label = format!("optimizer probe ({config})");
    let s = session::build_session_logged(model, config, opts, Some(&path), &label, sink)?;
    drop(s);
    let graph = read_optimized(&path)?;
    let modified = lines.lock().map(|l| parse_modified(&l)).unwrap_or_default();
    Ok(Optimized { graph, modified })
}

fn read_optimized(path: &Path) -> Result<OptimizedGraph> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the optimized graph ORT saved at {}", path.display()))?;
    Ok(model_nodes(&bytes).context("listing the optimized graph's nodes")?.into())
}

/// Names from `GraphTransformer <name> modified: 1` lines, first report first, each once.
pub fn parse_modified(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for l in lines {
        let mut words = l.split_whitespace();
        let (Some("GraphTransformer"), Some(name), Some("modified:"), Some(flag)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        if flag.trim_end_matches(|c: char| !c.is_ascii_digit()) == "1" && !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// What switching one optimizer off does to the model's optimized graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub name: String,
    pub kind: Kind,
    /// A rewrite rule (tried because its operators are in the model) rather than a reported transformer.
    pub rule: bool,
    /// Nodes of the optimized graph with it switched off, and with everything on.
    pub nodes_without: usize,
    pub nodes_with: usize,
    /// Op histograms of the two graphs, only the ops whose counts differ: (without, with).
    pub ops_changed: BTreeMap<String, (usize, usize)>,
    /// Nodes of the original model it consumes: present when it is off, gone when it is on.
    pub consumed: Vec<String>,
}

/// Every optimizer that changes the model at `level`, and those tried that do not.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Discovery {
    pub level: Option<Level>,
    /// Nodes of the model as written, and of ORT's optimized graph at `level`.
    pub nodes_original: usize,
    pub nodes_optimized: usize,
    pub acting: Vec<Effect>,
    /// Tried, and the optimized graph did not change (name, why it was tried).
    pub no_effect: Vec<(String, String)>,
    /// Switched off, the session could not be built (name, ORT's message).
    pub failed: Vec<(String, String)>,
}

/// Find what acts on `model` at `level` under `opts` (EP, threads): one logged session at `level`, then one
/// session per candidate with that candidate switched off. `original` is the model's own nodes (names, ops).
pub fn discover(
    model: ModelSource<'_>,
    original: &[(String, String)],
    level: Level,
    opts: &MeasureOptions,
) -> Result<Discovery> {
    let reference = optimize(model, &SessionConfig::level(level), opts, true)
        .with_context(|| format!("optimizing the model at level {level} with ORT's verbose log"))?;
    let ops: BTreeSet<&str> = original.iter().map(|(_, op)| op.as_str()).collect();
    let mut candidates: Vec<(String, String)> = reference
        .modified
        .iter()
        .filter(|n| !is_rule_container(n))
        .map(|n| (n.clone(), "ORT's log reports it modified the graph".to_string()))
        .collect();
    if reference.modified.iter().any(|n| is_rule_container(n)) {
        for k in KNOWN.iter().filter(|k| k.rule && k.any_of.iter().any(|op| ops.contains(op))) {
            candidates.push((k.name.to_string(), format!("a rewrite rule for {}", k.any_of.join("/"))));
        }
    }
    let original_names: BTreeSet<&str> = original.iter().map(|(n, _)| n.as_str()).collect();
    let hist_with = reference.graph.op_histogram();
    let mut d = Discovery {
        level: Some(level),
        nodes_original: original.len(),
        nodes_optimized: reference.graph.nodes.len(),
        ..Default::default()
    };
    for (name, why) in candidates {
        let config = SessionConfig { level, disabled: vec![name.clone()] };
        let without = match optimize(model, &config, opts, false) {
            Ok(o) => o.graph,
            Err(e) => {
                d.failed.push((name, format!("{e:#}")));
                continue;
            }
        };
        if without == reference.graph {
            d.no_effect.push((name, why));
            continue;
        }
        let hist_without = without.op_histogram();
        let mut ops_changed = BTreeMap::new();
        for op in hist_with.keys().chain(hist_without.keys()) {
            let (a, b) = (hist_without.get(op).copied().unwrap_or(0), hist_with.get(op).copied().unwrap_or(0));
            if a != b {
                ops_changed.insert(op.clone(), (a, b));
            }
        }
        let consumed = original_names
            .iter()
            .filter(|n| present(n, &without) && !present(n, &reference.graph))
            .map(|n| n.to_string())
            .collect();
        let known = KNOWN.iter().find(|k| k.name == name);
        d.acting.push(Effect {
            kind: kind_of(&name),
            rule: known.is_some_and(|k| k.rule),
            nodes_without: without.nodes.len(),
            nodes_with: reference.graph.nodes.len(),
            ops_changed,
            consumed,
            name,
        });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modified_lines() {
        let lines: Vec<String> = [
            "GraphTransformer Level1_RuleBasedTransformer modified: 1 with status: OK",
            "GraphTransformer ConstantFolding modified: 0 with status: OK",
            "GraphTransformer ConvActivationFusion modified: 1 with status: OK",
            "something else",
            "GraphTransformer ConvActivationFusion modified: 1 with status: OK",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(parse_modified(&lines), ["Level1_RuleBasedTransformer", "ConvActivationFusion"]);
    }

    #[test]
    fn kinds() {
        assert_eq!(kind_of("NchwcTransformer"), Kind::Layout);
        assert_eq!(kind_of("ConvActivationFusion"), Kind::Fusion);
        assert_eq!(kind_of("ConstantFolding"), Kind::ConstantFolding);
        assert_eq!(kind_of("EliminateIdentity"), Kind::Elimination);
        assert_eq!(kind_of("SomethingNew"), Kind::Other);
        // ORT 1.31's per-level names, and names it may add later
        assert_eq!(kind_of("LayerNormFusionL2"), Kind::Fusion);
        assert_eq!(kind_of("GeluFusionL1"), Kind::Fusion);
        assert_eq!(kind_of("ConstantSharing"), Kind::Elimination);
        assert_eq!(kind_of("SomeNewFusion"), Kind::Fusion);
        // every name once
        let names: BTreeSet<&str> = KNOWN.iter().map(|k| k.name).collect();
        assert_eq!(names.len(), KNOWN.len());
    }
}
