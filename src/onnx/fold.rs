//! Shape arithmetic resolved: a model whose inputs are fixed to one shape, with every node whose outputs
//! that shape decides (`Shape`, and the `Gather`/`Unsqueeze`/`Concat`/... chains after it) replaced by
//! the values it computes, stored as initializers.
//!
//! ONNX Runtime's CUDA provider keeps such nodes on the CPU, and refuses to capture a session with any
//! node on the CPU in a CUDA graph; a whole model timed through CUDA graphs (`--cuda-graph`) is timed
//! folded, so that every level, `ORT_DISABLE_ALL` included, can be captured. What is folded is only what
//! the fixed input shapes decide (values fuseval's shape analysis found, `load::TensorInfo::value`), so the
//! folded model computes the same outputs for inputs of that shape.

use std::collections::{BTreeMap, HashSet};

use anyhow::Result;
use tract_onnx::pb;

/// What folding did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FoldReport {
    /// Nodes replaced by their values, per op.
    pub folded: BTreeMap<String, usize>,
    /// Initializers added (the folded values other nodes still read).
    pub initializers: usize,
}

impl FoldReport {
    pub fn nodes(&self) -> usize {
        self.folded.values().sum()
    }
}

/// A known integer value: ONNX element type, shape, elements.
pub type Known = (i32, Vec<usize>, Vec<i64>);

fn tensor(name: &str, (elem, shape, values): &Known) -> Option<pb::TensorProto> {
    let raw: Vec<u8> = match *elem {
        7 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        6 => values.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
        9 => values.iter().map(|&v| (v != 0) as u8).collect(),
        _ => return None,
    };
    if shape.iter().product::<usize>() != values.len() {
        return None;
    }
    Some(pb::TensorProto {
        name: name.into(),
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: *elem,
        raw_data: raw,
        ..Default::default()
    })
}

/// `model` with its graph inputs fixed to `inputs` (name → dims) and every top-level node whose outputs
/// are all in `known` replaced by initializers holding them (those still read). Nodes with a subgraph are
/// left as they are.
pub fn fold_shapes(
    model: &pb::ModelProto,
    inputs: &[(String, Vec<usize>)],
    known: &BTreeMap<String, Known>,
) -> Result<(pb::ModelProto, FoldReport)> {
    let mut m = model.clone();
    let mut report = FoldReport::default();
    let Some(g) = m.graph.as_mut() else { return Ok((m, report)) };
    for i in g.input.iter_mut() {
        let Some(dims) = inputs.iter().find(|(n, _)| *n == i.name).map(|(_, d)| d) else { continue };
        if let Some(pb::type_proto::Value::TensorType(t)) = i.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            t.shape = Some(pb::TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|&d| pb::tensor_shape_proto::Dimension {
                        value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d as i64)),
                        ..Default::default()
                    })
                    .collect(),
            });
        }
    }
    let graph_inputs: HashSet<String> = g.input.iter().map(|i| i.name.clone()).collect();
    let mut values: Vec<pb::TensorProto> = vec![];
    let nodes = std::mem::take(&mut g.node);
    for n in nodes {
        let outs: Vec<&String> = n.output.iter().filter(|o| !o.is_empty()).collect();
        let has_subgraph = n.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty());
        let foldable = !outs.is_empty()
            && !has_subgraph
            && n.op_type != "Constant"
            && outs.iter().all(|o| !graph_inputs.contains(*o) && known.contains_key(*o));
        let ts: Option<Vec<pb::TensorProto>> =
            if foldable { outs.iter().map(|o| tensor(o, &known[*o])).collect() } else { None };
        match ts {
            Some(ts) => {
                *report.folded.entry(n.op_type.clone()).or_default() += 1;
                values.extend(ts);
            }
            None => g.node.push(n),
        }
    }
    // keep the values something still reads
    let read: HashSet<&str> = g
        .node
        .iter()
        .flat_map(|n| n.input.iter())
        .chain(g.output.iter().map(|o| &o.name))
        .map(String::as_str)
        .collect();
    let kept: Vec<pb::TensorProto> = values.into_iter().filter(|t| read.contains(t.name.as_str())).collect();
    report.initializers = kept.len();
    g.initializer.extend(kept);
    Ok((m, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::value_info;

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> pb::NodeProto {
        pb::NodeProto {
            name: outputs[0].into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn shape_chains_become_initializers_and_inputs_get_fixed_dims() {
        // x [batch, 8] → Shape → Gather(0) → Unsqueeze → Concat(-1) → Reshape(x, ·) → y
        let m = pb::ModelProto {
            graph: Some(pb::GraphProto {
                node: vec![
                    node("Shape", &["x"], &["s"]),
                    node("Gather", &["s", "zero"], &["b"]),
                    node("Unsqueeze", &["b", "axes"], &["bu"]),
                    node("Concat", &["bu", "minus1"], &["shape"]),
                    node("Reshape", &["x", "shape"], &["y"]),
                ],
                input: vec![value_info("x", 1, None)],
                output: vec![value_info("y", 1, None)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let known: BTreeMap<String, Known> = [
            ("s", (7, vec![2], vec![4, 8])),
            ("b", (7, vec![], vec![4])),
            ("bu", (7, vec![1], vec![4])),
            ("shape", (7, vec![2], vec![4, -1])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let (m, r) = fold_shapes(&m, &[("x".into(), vec![4, 8])], &known).unwrap();
        let g = m.graph.unwrap();
        assert_eq!(g.node.iter().map(|n| n.op_type.as_str()).collect::<Vec<_>>(), ["Reshape"]);
        assert_eq!(r.nodes(), 4);
        // only the value Reshape reads is kept
        assert_eq!(r.initializers, 1);
        let t = &g.initializer[0];
        assert_eq!((t.name.as_str(), t.dims.as_slice(), t.data_type), ("shape", &[2i64][..], 7));
        let vals: Vec<i64> = t.raw_data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
        assert_eq!(vals, [4, -1]);
        let Some(pb::type_proto::Value::TensorType(tt)) = g.input[0].r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            panic!()
        };
        let dims: Vec<i64> = tt
            .shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => v,
                _ => -1,
            })
            .collect();
        assert_eq!(dims, [4, 8]);
    }
}
