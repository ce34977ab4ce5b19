//! The report's annotated graph: the model from `graph.json`, each measured instance of the longest-match
//! cover a cluster coloured by its speedup (a diverging scale, grey within noise) and linked to its table
//! row, laid out by Graphviz's `dot` into SVG. A large model is collapsed: the instances and their
//! neighbours are kept, every other connected stretch of nodes is folded into one box that counts its ops.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;
use std::io::Write as _;
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::calibration::{FusionCalibration, Status};
use crate::estimate::Verdict;

use super::speedup_colour;
use crate::report::{fmt_speedup, headline_speedup};

/// Nodes above which the graph is collapsed around the instances.
pub const COLLAPSE_ABOVE: usize = 250;

/// The parts of `graph.json` the report draws.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ReportGraph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub groups: Vec<Group>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Node {
    pub name: String,
    pub op: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Edge {
    pub from: Option<String>,
    pub to: Option<String>,
    #[serde(default)]
    pub shape: Option<Vec<usize>>,
    #[serde(default)]
    pub constant: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Group {
    pub pattern: String,
    pub nodes: Vec<String>,
    pub longest: bool,
    /// Index into calibration.json's `fusion_profiles`.
    pub profile: Option<usize>,
}

impl ReportGraph {
    /// From `graph.json`'s content (a file, or the value a bench run is about to write).
    pub fn from_value(v: serde_json::Value) -> anyhow::Result<ReportGraph> {
        Ok(serde_json::from_value(v)?)
    }
}

/// One instance drawn as a cluster: which record, and its id in the page (`inst-<record>-<k>`).
pub struct Drawn {
    pub record: usize,
    pub id: String,
}

/// How a record's clusters look: fill colour, label, tooltip.
pub struct Style {
    /// Measured: a coloured instance (`inst-…`); otherwise only outlined (`other-…`).
    pub measured: bool,
    pub fill: String,
    pub label: String,
    pub tooltip: String,
}

/// The DOT source of the report's graph, the instances it draws, and whether it is collapsed.
/// `style(record)` styles the clusters of record `record` (of `records`).
pub fn dot_source(g: &ReportGraph, records: usize, style: &dyn Fn(usize) -> Style) -> (String, Vec<Drawn>, bool) {
    let index: HashMap<&str, usize> = g.nodes.iter().enumerate().map(|(i, n)| (n.name.as_str(), i)).collect();
    // the longest-match cover's measured instances are disjoint: one cluster each
    let mut cluster_of: HashMap<usize, usize> = HashMap::new();
    let mut clusters: Vec<(usize, Vec<usize>)> = vec![];
    for grp in g.groups.iter().filter(|x| x.longest) {
        let Some(rec) = grp.profile.filter(|&r| r < records) else { continue };
        let members: Vec<usize> = grp.nodes.iter().filter_map(|n| index.get(n.as_str()).copied()).collect();
        if members.is_empty() || members.iter().any(|m| cluster_of.contains_key(m)) {
            continue;
        }
        for &m in &members {
            cluster_of.insert(m, clusters.len());
        }
        clusters.push((rec, members));
    }

    // neighbours of every node over the non-constant edges
    let mut adj: Vec<Vec<usize>> = vec![vec![]; g.nodes.len()];
    let mut links: Vec<(usize, usize, String)> = vec![];
    for e in g.edges.iter().filter(|e| !e.constant) {
        if let (Some(a), Some(b)) =
            (e.from.as_deref().and_then(|n| index.get(n)), e.to.as_deref().and_then(|n| index.get(n)))
        {
            adj[*a].push(*b);
            adj[*b].push(*a);
            let shape = e.shape.as_ref().map(|s| s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"));
            links.push((*a, *b, shape.unwrap_or_default()));
        }
    }
    let collapsed = g.nodes.len() > COLLAPSE_ABOVE;
    // what is drawn as itself: everything, or the instances and their neighbours
    let kept: Vec<bool> = if collapsed {
        let mut k = vec![false; g.nodes.len()];
        for (_, members) in &clusters {
            for &m in members {
                k[m] = true;
                for &n in &adj[m] {
                    k[n] = true;
                }
            }
        }
        k
    } else {
        vec![true; g.nodes.len()]
    };
    // the rest folded: connected stretches of dropped nodes, one box each
    let mut fold: Vec<Option<usize>> = vec![None; g.nodes.len()];
    let mut folds: Vec<Vec<usize>> = vec![];
    for start in 0..g.nodes.len() {
        if kept[start] || fold[start].is_some() {
            continue;
        }
        let id = folds.len();
        let mut stack = vec![start];
        let mut members = vec![];
        fold[start] = Some(id);
        while let Some(x) = stack.pop() {
            members.push(x);
            for &y in &adj[x] {
                if !kept[y] && fold[y].is_none() {
                    fold[y] = Some(id);
                    stack.push(y);
                }
            }
        }
        folds.push(members);
    }
    let vertex = |i: usize| -> String {
        match fold[i] {
            Some(f) => format!("f{f}"),
            None => format!("n{i}"),
        }
    };

    let mut s = String::new();
    let _ = writeln!(s, "digraph model {{");
    let _ = writeln!(s, "  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=10, nodesep=0.15, ranksep=0.25];");
    let _ = writeln!(
        s,
        "  node [shape=box, style=\"rounded,filled\", fillcolor=\"white\", fontname=\"Helvetica\", fontsize=9, height=0.25, margin=\"0.06,0.02\"];"
    );
    let _ = writeln!(
        s,
        "  edge [color=\"#888888\", arrowsize=0.5, fontname=\"Helvetica\", fontsize=7, fontcolor=\"#777777\"];"
    );
    let mut drawn = vec![];
    let mut per_record: BTreeMap<usize, usize> = BTreeMap::new();
    for (c, (rec, members)) in clusters.iter().enumerate() {
        let st = style(*rec);
        let k = per_record.entry(*rec).or_insert(0);
        let id = format!("{}-{rec}-{k}", if st.measured { "inst" } else { "other" });
        *k += 1;
        let _ = writeln!(s, "  subgraph cluster_{c} {{");
        let _ = writeln!(
            s,
            "    id=\"{id}\"; class=\"instance\"; URL=\"#row-{rec}\"; target=\"_self\"; style=\"rounded,filled\"; fillcolor=\"{}\"; color=\"#555555\"; penwidth=1;",
            st.fill
        );
        let _ = writeln!(
            s,
            "    label=\"{}\"; tooltip=\"{}\"; fontsize=9;",
            dot_escape(&st.label),
            dot_escape(&st.tooltip)
        );
        for &m in members {
            let _ = writeln!(s, "    {};", node_stmt(g, m));
        }
        let _ = writeln!(s, "  }}");
        drawn.push(Drawn { record: *rec, id });
    }
    for i in (0..g.nodes.len()).filter(|&i| kept[i] && !cluster_of.contains_key(&i)) {
        let _ = writeln!(s, "  {};", node_stmt(g, i));
    }
    for (f, members) in folds.iter().enumerate() {
        let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
        for &m in members {
            *ops.entry(g.nodes[m].op.as_str()).or_default() += 1;
        }
        let mut by_count: Vec<(&str, usize)> = ops.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let top: Vec<String> = by_count.iter().take(4).map(|(o, n)| format!("{n} {o}")).collect();
        let more = if by_count.len() > 4 { ", …" } else { "" };
        let _ = writeln!(
            s,
            "  f{f} [label=\"{} nodes folded\\n{}{more}\", shape=box, style=\"dashed,rounded\", fontcolor=\"#666666\", color=\"#999999\"];",
            members.len(),
            dot_escape(&top.join(", "))
        );
    }
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for (a, b, shape) in &links {
        let (va, vb) = (vertex(*a), vertex(*b));
        if va == vb || !seen.insert((va.clone(), vb.clone())) {
            continue;
        }
        if fold[*a].is_some() || fold[*b].is_some() || shape.is_empty() {
            let _ = writeln!(s, "  {va} -> {vb};");
        } else {
            let _ = writeln!(s, "  {va} -> {vb} [label=\"{shape}\"];");
        }
    }
    let _ = writeln!(s, "}}");
    (s, drawn, collapsed)
}

fn node_stmt(g: &ReportGraph, i: usize) -> String {
    let n = &g.nodes[i];
    format!("n{i} [label=\"{}\", tooltip=\"{}\"]", dot_escape(&n.op), dot_escape(&n.name))
}

/// A record's clusters: filled by the headline speedup, grey within noise, untrustworthy or not measured.
pub fn record_style(p: &FusionCalibration) -> Style {
    let tooltip = format!("{}: {} (click for its row)", p.fusion_pattern, crate::report::result_line(p));
    if p.status != Status::Measured || !p.equivalent {
        let measured = p.status == Status::Measured;
        return Style { measured, fill: "#f5f5f5".into(), label: format!("{}: no speedup", p.fusion_pattern), tooltip };
    }
    let e = headline_speedup(p);
    let fill = if !p.trustworthy || p.verdict == Some(Verdict::WithinNoise) || p.verdict.is_none() {
        super::GREY.to_string()
    } else {
        speedup_colour(e.point)
    };
    Style { measured: true, fill, label: format!("{} {}", p.fusion_pattern, fmt_speedup(&e)), tooltip }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Lay out `dot_src` with Graphviz's `dot` (`FUSEVAL_DOT` names another binary). `Err` says why not,
/// in words for the page.
pub fn render(dot_src: &str) -> Result<String, String> {
    let bin = std::env::var("FUSEVAL_DOT").unwrap_or_else(|_| "dot".into());
    let child =
        Command::new(&bin).arg("-Tsvg").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Err(format!(
            "Graphviz's `{bin}` could not be run ({e}): install Graphviz (Debian/Ubuntu: `apt-get install graphviz`, \
                 macOS: `brew install graphviz`) and rebuild this page with `fuseval report`"
        ))
        }
    };
    let src = dot_src.as_bytes().to_vec();
    let stdin = child.stdin.take();
    // write from a thread: dot may fill its stdout pipe before reading all of stdin
    let writer = std::thread::spawn(move || {
        if let Some(mut w) = stdin {
            let _ = w.write_all(&src);
        }
    });
    let out = child.wait_with_output().map_err(|e| format!("`{bin}` failed: {e}"))?;
    let _ = writer.join();
    if !out.status.success() {
        return Err(format!("`{bin} -Tsvg` failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let svg = String::from_utf8_lossy(&out.stdout).into_owned();
    // drop the XML prologue and DOCTYPE: the SVG goes inline into the page
    let start = svg.find("<svg").ok_or_else(|| format!("`{bin}` wrote no SVG"))?;
    Ok(svg[start..].replace("<svg ", "<svg id=\"graph-svg\" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(n: usize) -> ReportGraph {
        let nodes = (0..n)
            .map(|i| Node { name: format!("n{i}"), op: if i % 2 == 0 { "Conv".into() } else { "Relu".into() } })
            .collect();
        let edges = (1..n)
            .map(|i| Edge {
                from: Some(format!("n{}", i - 1)),
                to: Some(format!("n{i}")),
                shape: Some(vec![1, 8]),
                constant: false,
            })
            .collect();
        ReportGraph { nodes, edges, groups: vec![] }
    }

    #[test]
    fn a_large_graph_folds_what_is_far_from_the_instances() {
        let mut g = graph(COLLAPSE_ABOVE + 50);
        g.groups.push(Group {
            pattern: "Conv_ReLU".into(),
            nodes: vec!["n100".into(), "n101".into()],
            longest: true,
            profile: Some(0),
        });
        let style = |_| Style {
            measured: true,
            fill: "#00ff00".into(),
            label: "Conv_ReLU 1.10×".into(),
            tooltip: String::new(),
        };
        let (src, drawn, collapsed) = dot_source(&g, 1, &style);
        assert!(collapsed);
        assert_eq!(drawn.len(), 1);
        assert_eq!(drawn[0].id, "inst-0-0");
        // the instance, its two neighbours, and two folded stretches (before and after)
        assert!(src.contains("n99 ") && src.contains("n102 ") && !src.contains("n98 "), "{src}");
        assert_eq!(src.matches("nodes folded").count(), 2, "{src}");
        assert!(src.contains("99 nodes folded"), "{src}");
    }

    #[test]
    fn a_small_graph_is_drawn_whole() {
        let g = graph(10);
        let style = |_| Style { measured: true, fill: String::new(), label: String::new(), tooltip: String::new() };
        let (src, drawn, collapsed) = dot_source(&g, 0, &style);
        assert!(!collapsed && drawn.is_empty());
        assert_eq!(src.matches("[label=\"Conv\"").count() + src.matches("[label=\"Relu\"").count(), 10);
        assert!(!src.contains("folded"));
    }
}
