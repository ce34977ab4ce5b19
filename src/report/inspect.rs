//! `fuseval inspect`: the model, its ops, and every fusible pattern instance with its shapes. No timing.
//!
//! Pattern counts come twice: each place once by its longest match (what `bench` measures), and every
//! match including the overlapping sub-matches (a Conv+BN+ReLU also holds a Conv+BN).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use serde::Serialize;

use crate::graph::ModelGraph;
use crate::load::{dims_string, Loaded};
use crate::onnx::elem_name;
use crate::patterns::{Detection, Pattern};

/// Everything `inspect` reports.
#[derive(Clone, Debug, Serialize)]
pub struct InspectReport {
    pub model: String,
    pub opset: i64,
    pub inputs: Vec<InputReport>,
    pub num_nodes: usize,
    /// Ops (with their domain when not the default one), most frequent first.
    pub op_histogram: Vec<(String, usize)>,
    /// Pattern key → instances, each place counted once by its longest match.
    pub patterns_longest: BTreeMap<String, usize>,
    /// Pattern key → instances, overlapping sub-matches included.
    pub patterns_all: BTreeMap<String, usize>,
    /// Every match, in model order.
    pub instances: Vec<InstanceReport>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct InputReport {
    pub name: String,
    pub dtype: String,
    pub dims: Vec<usize>,
}

/// A tensor entering or leaving an instance; `shape` is `None` when it could not be resolved.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TensorShape {
    pub name: String,
    pub dtype: String,
    pub shape: Option<Vec<usize>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct InstanceReport {
    pub pattern: String,
    pub form: String,
    pub nodes: Vec<String>,
    pub input_shapes: Vec<TensorShape>,
    pub output_shapes: Vec<TensorShape>,
    /// Kernel, strides, groups or weight shape, e.g. `3x3, stride 2` (empty when none apply).
    pub params: String,
    /// Part of the longest-match cover (what `bench` measures by default).
    pub longest: bool,
    /// Every tensor it touches has a resolved shape, so it can be carved and measured.
    pub measurable: bool,
    /// Instances with the same `distinct` number are identical (pattern, shapes, attributes): `bench`
    /// measures them once.
    pub distinct: usize,
}

/// Build the report of a loaded model and its detected patterns.
pub fn inspect_report(loaded: &Loaded, g: &ModelGraph, det: &Detection) -> InspectReport {
    let shape = |t: &String| TensorShape {
        name: t.clone(),
        dtype: g.tensor(t).map(|t| t.dtype).unwrap_or("?").to_string(),
        shape: g.shape(t).map(|s| s.to_vec()),
    };
    let longest: std::collections::HashSet<usize> = det.longest.iter().copied().collect();
    let mut signatures: HashMap<String, usize> = HashMap::new();
    let mut instances = vec![];
    for (i, inst) in det.all.iter().enumerate() {
        let next = signatures.len();
        let distinct = *signatures.entry(inst.signature(g)).or_insert(next);
        instances.push(InstanceReport {
            pattern: inst.pattern.key().to_string(),
            form: inst.form.clone(),
            nodes: inst.node_names(g),
            input_shapes: inst.inputs.iter().map(shape).collect(),
            output_shapes: inst.outputs.iter().map(shape).collect(),
            params: super::params_list(&crate::calibration::extra_params(g, inst)).join(", "),
            longest: longest.contains(&i),
            measurable: inst.resolved(g),
            distinct,
        });
    }
    let keys = |m: BTreeMap<Pattern, usize>| m.into_iter().map(|(k, v)| (k.key().to_string(), v)).collect();
    InspectReport {
        model: loaded.path.display().to_string(),
        opset: loaded.opset,
        inputs: loaded
            .inputs
            .iter()
            .map(|i| InputReport { name: i.name.clone(), dtype: elem_name(i.elem_type).into(), dims: i.dims.clone() })
            .collect(),
        num_nodes: g.graph.node_count(),
        op_histogram: g.op_histogram(),
        patterns_longest: keys(det.counts(true)),
        patterns_all: keys(det.counts(false)),
        instances,
        warnings: loaded.warnings.clone(),
    }
}

/// Node lists longer than this are shown as their first and last names.
const MAX_NODES_SHOWN: usize = 4;
/// Instances listed per distinct shape group before `... and N more`.
const MAX_INSTANCES_SHOWN: usize = 3;

/// The report as text for a terminal.
pub fn inspect_text(r: &InspectReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Model: {} (opset {}, {} nodes)", r.model, r.opset, r.num_nodes);
    let _ = writeln!(s, "Inputs:");
    if r.inputs.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for i in &r.inputs {
        let _ = writeln!(s, "  {}  {}  {}", i.name, i.dtype, dims_string(&i.dims));
    }
    let _ = writeln!(s, "Ops:");
    for line in wrap(&r.op_histogram.iter().map(|(op, n)| format!("{op} {n}")).collect::<Vec<_>>(), 76) {
        let _ = writeln!(s, "  {line}");
    }

    let _ = writeln!(s);
    if r.instances.is_empty() {
        let _ = writeln!(s, "No fusible patterns found.");
    } else {
        let _ = writeln!(s, "Patterns (longest match / all matches, overlapping sub-matches included):");
    }
    // patterns in their fixed order; keys fuseval does not know (none today) at the end
    let mut order: Vec<String> = Pattern::ALL.iter().map(|p| p.key().to_string()).collect();
    for k in r.patterns_all.keys().chain(r.patterns_longest.keys()) {
        if !order.contains(k) {
            order.push(k.clone());
        }
    }
    for key in order {
        let mine: Vec<&InstanceReport> = r.instances.iter().filter(|i| i.pattern == key).collect();
        if mine.is_empty() {
            continue;
        }
        let longest = r.patterns_longest.get(&key).copied().unwrap_or(0);
        let all = r.patterns_all.get(&key).copied().unwrap_or(mine.len());
        let title = Pattern::from_key(&key).map(|p| p.title()).unwrap_or_else(|| key.clone());
        // the longest matches by distinct shape group, in model order; sub-matches in one line
        let mut groups: Vec<(usize, Vec<&InstanceReport>)> = vec![];
        for i in mine.iter().filter(|i| i.longest) {
            match groups.iter_mut().find(|(d, _)| *d == i.distinct) {
                Some((_, v)) => v.push(i),
                None => groups.push((i.distinct, vec![i])),
            }
        }
        let _ =
            writeln!(s, "  {title} ({key}): {longest} longest-match / {all} all matches, {} distinct", groups.len());
        for (_, group) in &groups {
            let first = group[0];
            let note = if first.measurable { "" } else { "  [shapes unresolved: cannot be measured]" };
            let _ = writeln!(
                s,
                "    ×{} {} → {}  ({}{}){note}",
                group.len(),
                shapes(&first.input_shapes),
                shapes(&first.output_shapes),
                if first.params.is_empty() { String::new() } else { format!("{}, ", first.params) },
                first.form
            );
            for i in group.iter().take(MAX_INSTANCES_SHOWN) {
                let _ = writeln!(s, "      {}", abbreviate(&i.nodes));
            }
            if group.len() > MAX_INSTANCES_SHOWN {
                let _ = writeln!(s, "      ... and {} more", group.len() - MAX_INSTANCES_SHOWN);
            }
        }
        let subs: Vec<&&InstanceReport> = mine.iter().filter(|i| !i.longest).collect();
        if !subs.is_empty() {
            let distinct: std::collections::HashSet<usize> = subs.iter().map(|i| i.distinct).collect();
            let _ = writeln!(
                s,
                "    + {} inside longer matches ({} distinct; measured only with --all-patterns), first: {}",
                subs.len(),
                distinct.len(),
                abbreviate(&subs[0].nodes)
            );
        }
    }
    let total_longest: usize = r.patterns_longest.values().sum();
    let total_all: usize = r.patterns_all.values().sum();
    let distinct_longest: std::collections::HashSet<usize> =
        r.instances.iter().filter(|i| i.longest).map(|i| i.distinct).collect();
    if !r.instances.is_empty() {
        let _ = writeln!(
            s,
            "Total: {total_longest} longest-match instances ({} distinct, what `fuseval bench` measures) / {total_all} all matches",
            distinct_longest.len()
        );
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(s);
        for w in &r.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
    }
    s
}

/// `1x64x56x56`, or several joined by `, `; `?` for an unresolved shape.
fn shapes(ts: &[TensorShape]) -> String {
    if ts.is_empty() {
        return "-".into();
    }
    ts.iter().map(|t| t.shape.as_deref().map(dims_string).unwrap_or_else(|| "?".into())).collect::<Vec<_>>().join(", ")
}

/// `a, b, c` for short lists; `a, ... (+8), z` for long ones.
pub(crate) fn abbreviate(names: &[String]) -> String {
    if names.len() <= MAX_NODES_SHOWN {
        return names.join(", ");
    }
    format!("{}, ... (+{}), {}", names[0], names.len() - 2, names[names.len() - 1])
}

/// Join items with `, ` into lines of at most about `width` characters.
fn wrap(items: &[String], width: usize) -> Vec<String> {
    let mut lines = vec![];
    let mut line = String::new();
    for it in items {
        if !line.is_empty() && line.len() + 2 + it.len() > width {
            lines.push(std::mem::take(&mut line) + ",");
        }
        if !line.is_empty() {
            line.push_str(", ");
        }
        line.push_str(it);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abbreviates_long_node_lists() {
        let v: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        assert_eq!(abbreviate(&v[..3]), "n0, n1, n2");
        assert_eq!(abbreviate(&v[..4]), "n0, n1, n2, n3");
        assert_eq!(abbreviate(&v), "n0, ... (+8), n9");
    }

    #[test]
    fn wraps() {
        let items: Vec<String> = (0..30).map(|i| format!("Op{i} {i}")).collect();
        let lines = wrap(&items, 40);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= 42));
        assert_eq!(lines.join(" ").matches("Op").count(), 30);
    }
}
