//! `graph.dot`: the model for Graphviz. Every node (op and name), edges labelled with their shape, and
//! each measured pattern instance as a cluster coloured by its verdict: faster green, slower red, within
//! noise grey; skipped or untrustworthy clusters are dashed. Labels add the explicit-fused speedup and the
//! best variant. Overlapping matches nest when one holds the
//! other and are otherwise left out (Graphviz cannot draw a node in two clusters).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use petgraph::graph::NodeIndex;

use crate::calibration::attribution::TransformerAttribution;
use crate::calibration::{CalibrationFile, FusionCalibration, Status};
use crate::estimate::Verdict;
use crate::graph::ModelGraph;
use crate::load::dims_string;
use crate::patterns::Detection;

use super::{aa_off, fmt_aa, fmt_speedup, headline_speedup, verdict_word, Links};

/// Border and fill colours of a cluster.
pub const FASTER: (&str, &str) = ("#2e7d32", "#e8f5e9");
pub const SLOWER: (&str, &str) = ("#c62828", "#ffebee");
pub const NOISE: (&str, &str) = ("#757575", "#f5f5f5");

/// Build `graph.dot`.
pub fn graph_dot(cal: &CalibrationFile, g: &ModelGraph, det: &Detection) -> String {
    let links = Links::new(cal);
    let clusters = place_clusters(g, det, &links);
    let mut s = String::new();
    let _ = writeln!(s, "digraph {} {{", quote(&cal.metadata.model));
    let _ = writeln!(s, "  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=11, newrank=true];");
    let _ = writeln!(
        s,
        "  node [shape=box, style=\"rounded,filled\", fillcolor=\"white\", fontname=\"Helvetica\", fontsize=10];"
    );
    let _ = writeln!(s, "  edge [fontname=\"Helvetica\", fontsize=8, color=\"#555555\"];");

    // model inputs and outputs as ellipses
    for (k, name) in g.inputs.iter().enumerate() {
        let _ = writeln!(
            s,
            "  in{k} [shape=ellipse, style=filled, fillcolor=\"#e3f2fd\", label={}];",
            quote(&format!("{name}\n{}", shape_of(g, name)))
        );
    }
    for (k, name) in g.outputs.iter().enumerate() {
        let _ = writeln!(
            s,
            "  out{k} [shape=ellipse, style=filled, fillcolor=\"#e3f2fd\", label={}];",
            quote(&format!("{name}\n{}", shape_of(g, name)))
        );
    }

    // clusters, then the nodes outside any cluster
    let mut clustered: BTreeSet<NodeIndex> = BTreeSet::new();
    let mut counter = 0;
    let consumed = super::consumed_by(cal);
    let ctx = Ctx { profiles: &cal.fusion_profiles, consumed: &consumed };
    for c in &clusters {
        write_cluster(&mut s, g, c, &ctx, &mut counter, &mut clustered, 1);
    }
    let mut ids: Vec<NodeIndex> = g.graph.node_indices().collect();
    ids.sort_by_key(|&n| g.node(n).index);
    for id in ids.iter().filter(|id| !clustered.contains(id)) {
        let _ = writeln!(s, "  {}", node_stmt(g, *id, &consumed));
    }

    // edges
    for (k, name) in g.inputs.iter().enumerate() {
        for c in g.consumers_of(name) {
            let _ = writeln!(s, "  in{k} -> n{} [label={}];", g.node(c).index, quote(&shape_of(g, name)));
        }
    }
    for e in g.graph.edge_indices() {
        let (Some((a, b)), Some(w)) = (g.graph.edge_endpoints(e), g.graph.edge_weight(e)) else { continue };
        let constant = if g.is_constant(&w.tensor) { ", style=dashed, color=\"#aaaaaa\"" } else { "" };
        let _ = writeln!(
            s,
            "  n{} -> n{} [label={}{constant}];",
            g.node(a).index,
            g.node(b).index,
            quote(&shape_of(g, &w.tensor))
        );
    }
    for (k, name) in g.outputs.iter().enumerate() {
        if let Some(p) = g.producer_of(name) {
            let _ = writeln!(s, "  n{} -> out{k} [label={}];", g.node(p).index, quote(&shape_of(g, name)));
        }
    }

    let m = &cal.metadata;
    let title = format!(
        "fuseval: {}\n{} · ONNX Runtime {} · {} · headline level {}",
        m.model, m.hardware.cpu_model, m.ort_version, m.execution_provider, m.headline_level
    );
    // set last, so the clusters above do not inherit it
    let _ = writeln!(s, "  labelloc=t;");
    let _ = writeln!(s, "  label={};", quote(&title));
    let _ = writeln!(s, "}}");
    s
}

/// A measured instance and the clusters nested in it.
struct Cluster {
    profile: usize,
    nodes: Vec<NodeIndex>,
    children: Vec<Cluster>,
}

impl Cluster {
    fn set(&self) -> BTreeSet<NodeIndex> {
        self.nodes.iter().copied().collect()
    }
}

/// Clusters for every instance with a measurement: the longest-match cover first (disjoint), then the
/// rest, nested inside a cluster that holds all their nodes; a partial overlap is left out.
fn place_clusters(g: &ModelGraph, det: &Detection, links: &Links) -> Vec<Cluster> {
    let longest: BTreeSet<usize> = det.longest.iter().copied().collect();
    let mut candidates: Vec<(usize, usize)> =
        det.all.iter().enumerate().filter_map(|(i, inst)| Some((i, links.index(&inst.node_names(g))?))).collect();
    candidates.sort_by_key(|&(i, _)| (!longest.contains(&i), std::cmp::Reverse(det.all[i].nodes.len()), i));
    let mut roots: Vec<Cluster> = vec![];
    for (i, profile) in candidates {
        let nodes = det.all[i].nodes.clone();
        insert(&mut roots, Cluster { profile, nodes, children: vec![] });
    }
    roots
}

/// Put `c` into `level`: inside the cluster holding all its nodes, beside those it does not touch.
fn insert(level: &mut Vec<Cluster>, c: Cluster) {
    let set = c.set();
    if let Some(parent) = level.iter_mut().find(|p| {
        let ps = p.set();
        set.is_subset(&ps) && set != ps
    }) {
        insert(&mut parent.children, c);
        return;
    }
    if level.iter().all(|p| p.set().is_disjoint(&set)) {
        level.push(c);
    }
}

/// What every cluster and node statement reads.
struct Ctx<'a> {
    profiles: &'a [FusionCalibration],
    consumed: &'a HashMap<&'a str, Vec<&'a TransformerAttribution>>,
}

fn write_cluster(
    s: &mut String,
    g: &ModelGraph,
    c: &Cluster,
    ctx: &Ctx,
    counter: &mut usize,
    clustered: &mut BTreeSet<NodeIndex>,
    depth: usize,
) {
    let Some(p) = ctx.profiles.get(c.profile) else { return };
    let pad = "  ".repeat(depth);
    let (color, fill, dashed) = look(p);
    let _ = writeln!(s, "{pad}subgraph cluster_{} {{", *counter);
    *counter += 1;
    let style = if dashed { "rounded,filled,dashed" } else { "rounded,filled" };
    let _ = writeln!(
        s,
        "{pad}  style=\"{style}\"; color=\"{color}\"; fillcolor=\"{fill}\"; penwidth=2; label={};",
        quote(&cluster_label(p))
    );
    for child in &c.children {
        write_cluster(s, g, child, ctx, counter, clustered, depth + 1);
    }
    let inner: BTreeSet<NodeIndex> = c.children.iter().flat_map(|ch| ch.nodes.iter().copied()).collect();
    for &n in c.nodes.iter().filter(|n| !inner.contains(n)) {
        if clustered.insert(n) {
            let _ = writeln!(s, "{pad}  {}", node_stmt(g, n, ctx.consumed));
        }
    }
    let _ = writeln!(s, "{pad}}}");
}

/// Border colour, fill colour, and whether the cluster is dashed.
fn look(p: &FusionCalibration) -> (&'static str, &'static str, bool) {
    if p.status != Status::Measured || !p.equivalent {
        return (NOISE.0, NOISE.1, true);
    }
    let (color, fill) = match p.verdict {
        Some(Verdict::Faster) => FASTER,
        Some(Verdict::Slower) => SLOWER,
        _ => NOISE,
    };
    (color, fill, !p.trustworthy || aa_off(p))
}

fn cluster_label(p: &FusionCalibration) -> String {
    if p.status != Status::Measured {
        let reason = p.skip_reason.as_deref().unwrap_or("no reason given");
        return format!("{}: skipped\n{}", p.fusion_pattern, shorten(reason, 60));
    }
    if !p.equivalent {
        return format!("{}: outputs disagree\nspeedup not reported", p.fusion_pattern);
    }
    let mut label = format!(
        "{} {} {}",
        p.fusion_pattern,
        fmt_speedup(&headline_speedup(p)),
        p.verdict.map(verdict_word).unwrap_or("no verdict")
    );
    label.push_str(&format!("\n{}", explicit_label(p)));
    if aa_off(p) {
        let aa = p.aa_control.as_ref().map(fmt_aa).unwrap_or_else(|| "missing".into());
        label.push_str(&format!("\nuntrustworthy: A/A control {aa}"));
    }
    label
}

/// `explicit FusedConv 1.40× [1.37, 1.43]; best explicit`, or `explicit: none`.
fn explicit_label(p: &FusionCalibration) -> String {
    let x = match &p.explicit {
        None if p.explicit_unavailable.as_ref().is_some_and(|u| u.is_failed()) => "explicit: failed".to_string(),
        None => "explicit: none".to_string(),
        Some(x) => {
            let kernels: Vec<&str> = p.explicit_kernels.iter().map(|k| k.rsplit('.').next().unwrap_or(k)).collect();
            let speed = if x.equivalence.passed { fmt_speedup(&x.speedup) } else { "outputs disagree".into() };
            format!("explicit {} {speed}", kernels.join("+")).replace("  ", " ")
        }
    };
    format!("{x}; best {}", p.best_variant)
}

fn node_stmt(g: &ModelGraph, n: NodeIndex, consumed: &HashMap<&str, Vec<&TransformerAttribution>>) -> String {
    let node = g.node(n);
    let mut label = format!("{}\n{}", node.qualified_op(), node.name);
    for t in consumed.get(node.name.as_str()).into_iter().flatten() {
        let saving = t.saving_ms.map(|e| format!(" {:+.3} ms", e.point)).unwrap_or_default();
        label.push_str(&format!("\n⇢ {}{saving}", t.name));
    }
    format!("n{} [label={}];", node.index, quote(&label))
}

fn shape_of(g: &ModelGraph, tensor: &str) -> String {
    g.shape(tensor).map(dims_string).unwrap_or_else(|| "?".into())
}

/// At most `max` characters, with `...` when cut.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

/// A DOT double-quoted string. `\n` in `s` becomes a line break in the label; quotes and backslashes
/// are escaped; other control characters become spaces.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_names() {
        assert_eq!(quote("/layer1/Conv"), "\"/layer1/Conv\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("x\ny\tz"), "\"x\\ny z\"");
    }
}
