//! Plan groups against the model: node names resolved, each group matched to a catalog instance
//! (same node set as a match in `Detection::all`), or else checked for fusion legality by hand.
//!
//! A group is legal to fuse when its nodes are connected, no path leaves it and comes back (fusing would
//! make a cycle), and it hands exactly one tensor to the rest of the model: every intermediate is read
//! inside the group alone and is not a model output. Otherwise the fused kernel would have to recompute
//! or spill the escaping intermediate.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use anyhow::Result;
use petgraph::graph::NodeIndex;

use crate::calibration::spelling::edit_distance;
use crate::error::user;
use crate::graph::ModelGraph;
use crate::patterns::{Detection, Pattern};

use super::format::Plan;

/// What a plan group is, against the model.
#[derive(Clone, Debug)]
pub enum Match {
    /// The node set of `detection.all[index]`.
    Catalog(usize),
    /// Legal to fuse, but no catalog pattern has this node set. `contains`: catalog matches inside it.
    Uncatalogued { contains: Vec<usize> },
    /// Not legal to fuse; `tensor` is the culprit where there is one.
    Illegal { reason: String, tensor: Option<String> },
}

/// A plan group resolved against the model.
#[derive(Clone, Debug)]
pub struct Group {
    /// Position in the plan, from 0 (printed from 1).
    pub index: usize,
    pub name: Option<String>,
    /// Node names in topological order.
    pub names: Vec<String>,
    pub nodes: Vec<NodeIndex>,
    /// The pattern the plan names, if it names one.
    pub declared: Option<Pattern>,
    pub matched: Match,
    /// Remarks, e.g. the plan's pattern differs from the one matched.
    pub notes: Vec<String>,
}

/// Resolve every group of `plan` (read from `plan_path`) against the model. Unknown node names, a node
/// in two groups (or twice in one), an empty group and an unknown pattern name are bad input.
pub fn resolve(plan: &Plan, plan_path: &Path, model: &Path, g: &ModelGraph, d: &Detection) -> Result<Vec<Group>> {
    let file = plan_path.display();
    let by_name: HashMap<&str, NodeIndex> = g.graph.node_indices().map(|n| (g.node(n).name.as_str(), n)).collect();
    let pos: HashMap<NodeIndex, usize> = g.order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut owner: HashMap<NodeIndex, usize> = HashMap::new();
    let mut out = vec![];
    for (index, pg) in plan.groups.iter().enumerate() {
        let label = pg.label(index);
        if pg.nodes.is_empty() {
            return Err(user(format!("--plan {file}: {label} is empty: a group needs at least one node name")));
        }
        let mut nodes = vec![];
        for name in &pg.nodes {
            let n = *by_name.get(name.as_str()).ok_or_else(|| {
                user(format!(
                    "--plan {file}: {label} names node `{name}`, which is not in {} (node names as `fuseval inspect` prints them{})",
                    model.display(),
                    suggestion(name, by_name.keys().copied()).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default()
                ))
            })?;
            if let Some(&other) = owner.get(&n) {
                let what = if other == index {
                    format!("lists node `{name}` twice")
                } else {
                    format!("lists node `{name}`, which {} already holds", plan.groups[other].label(other))
                };
                return Err(user(format!("--plan {file}: {label} {what}: a node can be fused into one group only")));
            }
            owner.insert(n, index);
            nodes.push(n);
        }
        let declared = match &pg.pattern {
            None => None,
            Some(s) => Some(
                crate::calibration::cost_model::resolve_pattern(s)
                    .map_err(|e| user(format!("--plan {file}: {label}: {e:#}")))?,
            ),
        };
        nodes.sort_by_key(|n| pos.get(n).copied().unwrap_or(usize::MAX));
        let set: BTreeSet<NodeIndex> = nodes.iter().copied().collect();
        let mut notes = vec![];
        let exact: Vec<usize> =
            (0..d.all.len()).filter(|&i| d.all[i].nodes.iter().copied().collect::<BTreeSet<_>>() == set).collect();
        let matched =
            match exact.iter().copied().find(|&i| Some(d.all[i].pattern) == declared).or(exact.first().copied()) {
                Some(i) => {
                    if let Some(p) = declared.filter(|&p| p != d.all[i].pattern) {
                        notes.push(format!("the plan says {p}, these nodes match {}", d.all[i].pattern));
                    }
                    Match::Catalog(i)
                }
                None => match legality(g, &nodes) {
                    Err((reason, tensor)) => Match::Illegal { reason, tensor },
                    Ok(()) => {
                        if let Some(p) = declared {
                            notes.push(format!("the plan says {p}, but these nodes are not a {p} match fuseval knows"));
                        }
                        let contains =
                            (0..d.all.len()).filter(|&i| d.all[i].nodes.iter().all(|n| set.contains(n))).collect();
                        Match::Uncatalogued { contains }
                    }
                },
            };
        out.push(Group {
            index,
            name: pg.name.clone(),
            names: nodes.iter().map(|&n| g.node(n).name.clone()).collect(),
            nodes,
            declared,
            matched,
            notes,
        });
    }
    Ok(out)
}

/// The model's node name closest to `name` when it is close (same name but case, or a small edit; names
/// whose lengths differ by more than 3 characters are not close).
fn suggestion<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    let len = lower.chars().count();
    names
        .filter(|n| n.chars().count().abs_diff(len) <= 3)
        .map(|n| (edit_distance(&lower, &n.to_ascii_lowercase(), 1), n))
        .filter(|(d, _)| *d <= 2.max(name.len() / 10))
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, n)| n)
}

/// Whether `nodes` (topological order) can be fused into one kernel: `Err((reason, culprit tensor))`.
pub fn legality(g: &ModelGraph, nodes: &[NodeIndex]) -> std::result::Result<(), (String, Option<String>)> {
    let set: HashSet<NodeIndex> = nodes.iter().copied().collect();
    let name = |n: NodeIndex| g.node(n).name.clone();

    // connected through tensors inside the group
    let mut comp: HashMap<NodeIndex, usize> = nodes.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let find = |comp: &HashMap<NodeIndex, usize>, mut n: NodeIndex| -> usize {
        loop {
            let c = comp[&n];
            if nodes[c] == n {
                return c;
            }
            n = nodes[c];
        }
    };
    for &n in nodes {
        for s in g.successors(n).into_iter().filter(|s| set.contains(s)) {
            let (a, b) = (find(&comp, n), find(&comp, s));
            if a != b {
                comp.insert(nodes[a.max(b)], a.min(b));
            }
        }
    }
    let roots: BTreeSet<usize> = nodes.iter().map(|&n| find(&comp, n)).collect();
    if roots.len() > 1 {
        let other = nodes.iter().find(|&&n| find(&comp, n) != find(&comp, nodes[0])).copied().unwrap_or(nodes[0]);
        return Err((
            format!(
                "not connected: `{}` and `{}` share no tensor inside the group, so they are {} separate kernels, not one",
                name(nodes[0]),
                name(other),
                roots.len()
            ),
            None,
        ));
    }

    // what leaves the group: read outside it, or a model output
    let last = *nodes.last().expect("groups are not empty");
    let mut exits: Vec<(String, NodeIndex, String)> = vec![];
    for &n in nodes {
        for o in g.node(n).outputs.iter().filter(|o| !o.is_empty()) {
            let outside: Vec<NodeIndex> = g.consumers_of(o).into_iter().filter(|c| !set.contains(c)).collect();
            let model_out = g.tensor(o).is_some_and(|t| t.graph_output);
            if let Some(&c) = outside.first() {
                exits.push((o.clone(), n, format!("read by `{}` outside the group", name(c))));
            } else if model_out {
                exits.push((o.clone(), n, "a model output".into()));
            }
        }
    }
    if exits.is_empty() {
        return Err((format!("nothing it computes is used: no tensor of `{}` leaves the group", name(last)), None));
    }
    if exits.len() > 1 {
        // the escaping intermediate: an exit that is not the last node's result
        let (t, n, why) = exits.iter().find(|(_, n, _)| *n != last).unwrap_or(&exits[0]).clone();
        let reason = if n == last {
            format!(
                "`{}` hands {} tensors to the rest of the model; a fused kernel has one output",
                name(n),
                exits.len()
            )
        } else {
            format!(
                "intermediate tensor `{t}` (output of `{}`) is {why}, so fusing the group would have to recompute or spill it",
                name(n)
            )
        };
        return Err((reason, Some(t)));
    }

    // no path may leave the group and come back into it
    let mut stack: Vec<NodeIndex> = nodes.iter().flat_map(|&n| g.successors(n)).filter(|s| !set.contains(s)).collect();
    let mut seen: HashSet<NodeIndex> = stack.iter().copied().collect();
    while let Some(n) = stack.pop() {
        for s in g.successors(n) {
            if set.contains(&s) {
                return Err((
                    format!("a path leaves the group and comes back into it at `{}` through `{}`, so fusing it would make a cycle", name(s), name(n)),
                    None,
                ));
            }
            if seen.insert(s) {
                stack.push(s);
            }
        }
    }
    Ok(())
}
