//! `graph.json`: the model graph for other tools. Nodes, the tensors between them as edges, every
//! tensor, and every pattern match as a group with its measurement (the calibration record whose
//! `instances` hold the group's node names), or `null` when it was not measured.

use serde::Serialize;

use crate::calibration::{CalibrationFile, FusionCalibration};
use crate::graph::{ModelGraph, Tensor};
use crate::patterns::Detection;

use super::Links;

#[derive(Clone, Debug, Serialize)]
pub struct GraphJson {
    pub model: String,
    /// In the model's node order.
    pub nodes: Vec<NodeJson>,
    pub edges: Vec<EdgeJson>,
    /// Every tensor by name: model inputs, initializers and node outputs.
    pub tensors: Vec<Tensor>,
    pub groups: Vec<GroupJson>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeJson {
    pub name: String,
    pub op: String,
    pub domain: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Ids of the groups this node belongs to (several when matches overlap).
    pub pattern_groups: Vec<usize>,
    /// ORT's transformers that consume this node in the whole model, with their in-context saving
    /// (calibration.json's `whole_model.attribution`); empty without the attribution.
    pub consumed_by: Vec<ConsumedJson>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConsumedJson {
    pub transformer: String,
    pub kind: String,
    pub saving_ms: Option<crate::estimate::Estimate>,
    pub verdict: String,
}

/// A tensor from the node that writes it to one that reads it. `from` is `null` for a model input,
/// `to` is `null` for a model output.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeJson {
    pub tensor: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub dtype: String,
    pub shape: Option<Vec<usize>>,
    pub bytes: Option<u64>,
    pub constant: bool,
}

/// One pattern match.
#[derive(Clone, Debug, Serialize)]
pub struct GroupJson {
    pub id: usize,
    pub pattern: String,
    pub form: String,
    pub nodes: Vec<String>,
    /// Part of the longest-match cover.
    pub longest: bool,
    /// Index of the measurement in calibration.json's `fusion_profiles`.
    pub profile: Option<usize>,
    pub measurement: Option<FusionCalibration>,
}

/// Build `graph.json`'s content.
pub fn graph_json(cal: &CalibrationFile, g: &ModelGraph, det: &Detection) -> GraphJson {
    let links = Links::new(cal);
    let consumed = super::consumed_by(cal);
    let longest: std::collections::HashSet<usize> = det.longest.iter().copied().collect();
    let mut groups = vec![];
    let mut member: std::collections::HashMap<petgraph::graph::NodeIndex, Vec<usize>> = Default::default();
    for (id, inst) in det.all.iter().enumerate() {
        let names = inst.node_names(g);
        let profile = links.index(&names);
        for &n in &inst.nodes {
            member.entry(n).or_default().push(id);
        }
        groups.push(GroupJson {
            id,
            pattern: inst.pattern.key().to_string(),
            form: inst.form.clone(),
            nodes: names,
            longest: longest.contains(&id),
            profile,
            measurement: profile.map(|i| cal.fusion_profiles[i].clone()),
        });
    }

    let mut ids: Vec<petgraph::graph::NodeIndex> = g.graph.node_indices().collect();
    ids.sort_by_key(|&n| g.node(n).index);
    let nodes = ids
        .iter()
        .map(|&id| {
            let n = g.node(id);
            NodeJson {
                name: n.name.clone(),
                op: n.op.clone(),
                domain: n.domain.clone(),
                inputs: n.inputs.clone(),
                outputs: n.outputs.clone(),
                pattern_groups: member.get(&id).cloned().unwrap_or_default(),
                consumed_by: consumed
                    .get(n.name.as_str())
                    .map(|ts| {
                        ts.iter()
                            .map(|t| ConsumedJson {
                                transformer: t.name.clone(),
                                kind: t.kind.name().into(),
                                saving_ms: t.saving_ms,
                                verdict: t.verdict.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();

    let edge = |tensor: &str, from: Option<String>, to: Option<String>| {
        let t = g.tensor(tensor);
        EdgeJson {
            tensor: tensor.to_string(),
            from,
            to,
            dtype: t.map(|t| t.dtype).unwrap_or("?").to_string(),
            shape: t.and_then(|t| t.shape.clone()),
            bytes: t.and_then(|t| t.bytes),
            constant: t.is_some_and(|t| t.constant),
        }
    };
    let mut edges = vec![];
    for input in &g.inputs {
        for c in g.consumers_of(input) {
            edges.push(edge(input, None, Some(g.node(c).name.clone())));
        }
    }
    for e in g.graph.edge_indices() {
        if let (Some((a, b)), Some(w)) = (g.graph.edge_endpoints(e), g.graph.edge_weight(e)) {
            edges.push(edge(&w.tensor, Some(g.node(a).name.clone()), Some(g.node(b).name.clone())));
        }
    }
    for output in &g.outputs {
        let from = g.producer_of(output).map(|p| g.node(p).name.clone());
        edges.push(edge(output, from, None));
    }

    GraphJson {
        model: cal.metadata.model.clone(),
        nodes,
        edges,
        tensors: g.tensors.values().cloned().collect(),
        groups,
    }
}
