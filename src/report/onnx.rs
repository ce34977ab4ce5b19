//! `annotated.onnx`: the input model with its results written in. Each node of a measured (or skipped)
//! pattern instance gets a `fuseval: ...` line in its `doc_string`, and the model gets `fuseval.*`
//! `metadata_props`. Netron and other viewers show both.
//!
//! Nothing else changes. When the model file is self-contained, its bytes are copied field by field and
//! only those two fields are rewritten, so fields tract's protobuf types do not know (node
//! `metadata_props`, newer ONNX additions) survive. Otherwise (external data, or a file that no longer
//! matches) the loaded model is re-encoded with prost: external data is then inlined, and fields prost
//! does not know are dropped.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use tract_onnx::pb;

use crate::calibration::{CalibrationFile, FusionCalibration, Status};
use crate::graph::ModelGraph;
use crate::load::Loaded;

use super::{fmt_ms, fmt_speedup, level_name, levels, result_line, shapes_text};

/// Protobuf cannot encode or parse a message of 2 GiB or more.
const PROTOBUF_LIMIT: usize = i32::MAX as usize;
/// Lines of an existing doc_string that start with this are fuseval's own, from an earlier run.
const DOC_PREFIX: &str = "fuseval:";
/// Prefix of the metadata keys fuseval writes (earlier ones are replaced).
const META_PREFIX: &str = "fuseval.";

/// The annotated model, encoded.
pub fn annotated_model(cal: &CalibrationFile, loaded: &Loaded, g: &ModelGraph) -> Result<Vec<u8>> {
    let docs = node_docs(cal, loaded, g);
    let meta = metadata_entries(cal);
    let nodes = loaded.proto.graph.as_ref().map(|gr| gr.node.len()).unwrap_or(0);
    // copy the file's own bytes when possible; fall back to re-encoding what was loaded
    let spliced =
        std::fs::read(&loaded.path).ok().and_then(|original| splice_model(&original, &docs, &meta, nodes).ok());
    let bytes = match spliced {
        Some(b) => b,
        None => reencode(loaded, &docs, &meta)?,
    };
    if bytes.len() > PROTOBUF_LIMIT {
        bail!(too_big(bytes.len()));
    }
    Ok(bytes)
}

/// The annotated model without weight bytes: every initializer stored inline in the model file becomes
/// ONNX external data pointing at its bytes in that file (`location` = the model's file name, `offset`,
/// `length`), so annotated.onnx is the graph's size, opens in Netron as is, and loads in ONNX Runtime
/// when placed beside the original model file.
pub fn annotated_model_slim(cal: &CalibrationFile, loaded: &Loaded, g: &ModelGraph) -> Result<Vec<u8>> {
    use crate::load::weights::Bytes;
    let docs = node_docs(cal, loaded, g);
    let meta = metadata_entries(cal);
    let mut proto = loaded.proto.clone();
    let model_file = loaded.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let entry = |k: &str, v: String| pb::StringStringEntryProto { key: k.into(), value: v };
    if let Some(graph) = proto.graph.as_mut() {
        for (ix, t) in graph.initializer.iter_mut().enumerate() {
            let (file, offset, length) = match loaded.weights.bytes.get(ix) {
                Some(Bytes::Mapped(r)) => (model_file.clone(), r.start as u64, r.len() as u64),
                Some(Bytes::External { file, offset, length }) => {
                    (file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(), *offset, *length)
                }
                _ => continue,
            };
            t.raw_data.clear();
            t.data_location = Some(1); // EXTERNAL
            t.external_data =
                vec![entry("location", file), entry("offset", offset.to_string()), entry("length", length.to_string())];
        }
        for (&i, doc) in &docs {
            if let Some(n) = graph.node.get_mut(i) {
                n.doc_string = doc.clone();
            }
        }
    }
    proto.metadata_props.retain(|e| !e.key.starts_with(META_PREFIX));
    proto.metadata_props.extend(meta.iter().map(|(k, v)| entry(k, v.clone())));
    proto.metadata_props.push(entry(
        "fuseval.weights",
        format!("external: the initializers' bytes are read from {model_file} (put this file beside it to run it)"),
    ));
    Ok(proto.encode_to_vec())
}

fn too_big(len: usize) -> String {
    format!(
        "annotated.onnx would be {:.2} GB, over protobuf's 2 GB limit for one file (fuseval does not write \
         external data); the results are in calibration.json and graph.json",
        len as f64 / 1e9
    )
}

/// The new `doc_string` of every annotated node, by position in the model's node list: the node's own
/// doc_string (less earlier `fuseval:` lines), then one `fuseval: ...` line per record it belongs to.
pub fn node_docs(cal: &CalibrationFile, loaded: &Loaded, g: &ModelGraph) -> BTreeMap<usize, String> {
    let by_name: std::collections::HashMap<&str, usize> =
        g.graph.node_weights().map(|n| (n.name.as_str(), n.index)).collect();
    let mut lines: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for p in &cal.fusion_profiles {
        let line = doc_line(p);
        for names in &p.instances {
            for name in names {
                if let Some(&i) = by_name.get(name.as_str()) {
                    let v = lines.entry(i).or_default();
                    if !v.contains(&line) {
                        v.push(line.clone());
                    }
                }
            }
        }
    }
    for (name, ts) in super::consumed_by(cal) {
        if let Some(&i) = by_name.get(name) {
            let v = lines.entry(i).or_default();
            for t in ts {
                v.push(format!("{DOC_PREFIX} consumed by {}", super::consumed_line(t)));
            }
        }
    }
    let nodes = loaded.proto.graph.as_ref().map(|gr| gr.node.as_slice()).unwrap_or(&[]);
    lines
        .into_iter()
        .filter(|(i, _)| *i < nodes.len())
        .map(|(i, ours)| {
            let mut kept: Vec<&str> =
                nodes[i].doc_string.lines().filter(|l| !l.trim_start().starts_with(DOC_PREFIX)).collect();
            while kept.last().is_some_and(|l| l.trim().is_empty()) {
                kept.pop();
            }
            let mut doc = kept.join("\n");
            if !doc.is_empty() {
                doc.push('\n');
            }
            doc.push_str(&ours.join("\n"));
            (i, doc)
        })
        .collect()
}

/// `fuseval: Conv2d_BN_ReLU 2.63× [2.58, 2.69] faster; ORT extended → com.microsoft.FusedConv; unfused
/// 2.34 ms, fused 0.89 ms; explicit com.microsoft.FusedConv 2.70× [2.61, 2.78], 0.87 ms; best explicit; A/A 1.00`.
pub fn doc_line(p: &FusionCalibration) -> String {
    if p.status != Status::Measured {
        return format!(
            "{DOC_PREFIX} {} skipped: {}",
            p.fusion_pattern,
            p.skip_reason.as_deref().unwrap_or("no reason given")
        );
    }
    let mut parts = vec![format!("{DOC_PREFIX} {} {}", p.fusion_pattern, result_line(p))];
    let ops = if p.ort_fused_into.is_empty() { "(no ops)".to_string() } else { p.ort_fused_into.join(", ") };
    parts.push(format!("ORT {} → {ops}", level_name(&p.headline_level)));
    parts.push(format!("unfused {}, fused {}", fmt_ms(p.unfused_latency_ms), fmt_ms(p.fused_latency_ms)));
    if let (_, Some((name, other))) = levels(p) {
        if other.equivalence.passed {
            parts.push(format!("{} level {}", level_name(name), fmt_speedup(&other.speedup)));
        }
    }
    match (&p.explicit, &p.explicit_unavailable) {
        (Some(x), _) => {
            let kernels = if p.explicit_kernels.is_empty() { &x.ort_ops } else { &p.explicit_kernels };
            let speed = if x.equivalence.passed { fmt_speedup(&x.speedup) } else { "outputs disagree".into() };
            parts.push(format!("explicit {} {speed}, {}", kernels.join(", "), fmt_ms(x.latency.median_ms)));
        }
        (None, Some(why)) => parts.push(format!("explicit: none ({why})")),
        (None, None) => {}
    }
    parts.push(format!("best {}", p.best_variant));
    if let Some(aa) = &p.aa_control {
        parts.push(format!("A/A {}", super::fmt_ratio(aa.point)));
    }
    parts.join("; ")
}

/// The `fuseval.*` metadata entries.
pub fn metadata_entries(cal: &CalibrationFile) -> Vec<(String, String)> {
    let m = &cal.metadata;
    let h = &m.hardware;
    let hardware = format!(
        "{}, {} logical cores, {:.1} GiB, {}",
        h.cpu_model,
        h.logical_cores,
        h.memory_bytes as f64 / (1u64 << 30) as f64,
        h.os
    );
    let mut summary: Vec<String> = cal
        .fusion_profiles
        .iter()
        .map(|p| format!("{} ×{} ({}): {}", p.fusion_pattern, p.instances.len(), shapes_text(p), result_line(p)))
        .collect();
    if let Some(w) = &cal.whole_model {
        summary.push(format!(
            "whole model: disabled {}, extended {}, full {}; sum of pattern savings {}",
            fmt_ms(w.measurement.disabled.median_ms),
            fmt_ms(w.measurement.extended.median_ms),
            fmt_ms(w.measurement.all.median_ms),
            fmt_ms(w.sum_pattern_saving_ms)
        ));
    }
    let kv = |k: &str, v: String| (format!("{META_PREFIX}{k}"), v);
    vec![
        kv("summary", summary.join("\n")),
        kv("version", m.fuseval_version.clone()),
        kv("schema_version", cal.schema_version.to_string()),
        kv("date", m.date.clone()),
        kv("hardware", hardware),
        kv("ort_version", m.ort_version.clone()),
        kv("execution_provider", m.execution_provider.clone()),
        kv("threads", m.threads.to_string()),
        kv("headline_level", m.headline_level.clone()),
        kv("quick", m.quick.to_string()),
    ]
}

/// Re-encode `loaded.proto` with the annotations (external data inlined, unknown fields lost).
fn reencode(loaded: &Loaded, docs: &BTreeMap<usize, String>, meta: &[(String, String)]) -> Result<Vec<u8>> {
    // `loaded.proto` holds no initializer bytes: take the full model
    let mut proto = loaded.full_proto().context("reading the model's weights for annotated.onnx")?;
    if let Some(graph) = proto.graph.as_mut() {
        for (&i, doc) in docs {
            if let Some(n) = graph.node.get_mut(i) {
                n.doc_string = doc.clone();
            }
        }
    }
    proto.metadata_props.retain(|e| !e.key.starts_with(META_PREFIX));
    proto
        .metadata_props
        .extend(meta.iter().map(|(k, v)| pb::StringStringEntryProto { key: k.clone(), value: v.clone() }));
    let len = proto.encoded_len();
    if len > PROTOBUF_LIMIT {
        bail!(too_big(len));
    }
    Ok(proto.encode_to_vec())
}

// Field numbers in onnx.proto.
const MODEL_GRAPH: u32 = 7;
const MODEL_METADATA_PROPS: u32 = 14;
const GRAPH_NODE: u32 = 1;
const GRAPH_INITIALIZER: u32 = 5;
const NODE_DOC_STRING: u32 = 6;
const TENSOR_DATA_LOCATION: u32 = 14;

/// Rewrite a serialized model: set the `doc_string` of the nodes in `docs` (by position), replace the
/// `fuseval.*` metadata by `meta`, and copy every other byte as it is. Fails on malformed protobuf, on
/// external data (whose relative paths would not resolve from the output directory) and when the file
/// does not hold `expect_nodes` nodes.
pub fn splice_model(
    original: &[u8],
    docs: &BTreeMap<usize, String>,
    meta: &[(String, String)],
    expect_nodes: usize,
) -> Result<Vec<u8>> {
    let extra: usize = docs.values().map(|d| d.len() + 16).sum::<usize>()
        + meta.iter().map(|(k, v)| k.len() + v.len() + 16).sum::<usize>();
    let mut out = Vec::with_capacity(original.len() + extra);
    let mut node = 0usize;
    for f in fields(original) {
        let f = f.context("reading the model's protobuf")?;
        match (f.number, f.wire) {
            (MODEL_GRAPH, WireType::LengthDelimited) => {
                let graph = splice_graph(f.payload, docs, &mut node)?;
                encode_key(MODEL_GRAPH, WireType::LengthDelimited, &mut out);
                encode_varint(graph.len() as u64, &mut out);
                out.extend_from_slice(&graph);
            }
            (MODEL_METADATA_PROPS, WireType::LengthDelimited) => {
                let e = pb::StringStringEntryProto::decode(f.payload).context("reading metadata_props")?;
                if !e.key.starts_with(META_PREFIX) {
                    out.extend_from_slice(f.raw);
                }
            }
            _ => out.extend_from_slice(f.raw),
        }
    }
    if node != expect_nodes {
        bail!("the model file holds {node} nodes, not the {expect_nodes} loaded");
    }
    for (k, v) in meta {
        let e = pb::StringStringEntryProto { key: k.clone(), value: v.clone() };
        prost::encoding::message::encode(MODEL_METADATA_PROPS, &e, &mut out);
    }
    Ok(out)
}

fn splice_graph(graph: &[u8], docs: &BTreeMap<usize, String>, node: &mut usize) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(graph.len());
    for f in fields(graph) {
        let f = f.context("reading the graph's protobuf")?;
        match (f.number, f.wire) {
            (GRAPH_NODE, WireType::LengthDelimited) => {
                match docs.get(node) {
                    Some(doc) => {
                        let mut n = Vec::with_capacity(f.payload.len() + doc.len() + 8);
                        for nf in fields(f.payload) {
                            let nf = nf.context("reading a node's protobuf")?;
                            if !(nf.number == NODE_DOC_STRING && nf.wire == WireType::LengthDelimited) {
                                n.extend_from_slice(nf.raw);
                            }
                        }
                        prost::encoding::string::encode(NODE_DOC_STRING, doc, &mut n);
                        encode_key(GRAPH_NODE, WireType::LengthDelimited, &mut out);
                        encode_varint(n.len() as u64, &mut out);
                        out.extend_from_slice(&n);
                    }
                    None => out.extend_from_slice(f.raw),
                }
                *node += 1;
            }
            (GRAPH_INITIALIZER, WireType::LengthDelimited) => {
                for tf in fields(f.payload) {
                    let tf = tf.context("reading an initializer's protobuf")?;
                    if tf.number == TENSOR_DATA_LOCATION && tf.wire == WireType::Varint && tf.value == 1 {
                        bail!("the model keeps weights in external data");
                    }
                }
                out.extend_from_slice(f.raw);
            }
            _ => out.extend_from_slice(f.raw),
        }
    }
    Ok(out)
}

/// One protobuf field: its number and wire type, its bytes with the key (`raw`), the payload of a
/// length-delimited field, and the value of a varint.
struct Field<'a> {
    number: u32,
    wire: WireType,
    raw: &'a [u8],
    payload: &'a [u8],
    value: u64,
}

/// The fields of a serialized message, in order; an error (then the end) on malformed input.
fn fields(buf: &[u8]) -> impl Iterator<Item = Result<Field<'_>>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= buf.len() {
            return None;
        }
        let r = next_field(buf, &mut pos);
        failed = r.is_err();
        Some(r)
    })
}

fn next_field<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Field<'a>> {
    let start = *pos;
    let key = varint(buf, pos)?;
    let number = u32::try_from(key >> 3).ok().filter(|&n| n > 0).context("bad field number")?;
    let (wire, payload, value) = match key & 7 {
        0 => (WireType::Varint, &buf[*pos..*pos], varint(buf, pos)?),
        1 => (WireType::SixtyFourBit, take(buf, pos, 8)?, 0),
        2 => {
            let len = usize::try_from(varint(buf, pos)?).context("length overflows")?;
            (WireType::LengthDelimited, take(buf, pos, len)?, 0)
        }
        5 => (WireType::ThirtyTwoBit, take(buf, pos, 4)?, 0),
        w => bail!("unsupported wire type {w} at byte {start}"),
    };
    Ok(Field { number, wire, raw: &buf[start..*pos], payload, value })
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8]> {
    let end = pos.checked_add(n).filter(|&e| e <= buf.len()).context("truncated field")?;
    let s = &buf[*pos..end];
    *pos = end;
    Ok(s)
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).context("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    bail!("varint longer than 10 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(nodes: usize) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: 8,
            graph: Some(pb::GraphProto {
                node: (0..nodes)
                    .map(|i| pb::NodeProto {
                        name: format!("n{i}"),
                        op_type: "Relu".into(),
                        doc_string: if i == 0 { "theirs".into() } else { String::new() },
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            metadata_props: vec![
                pb::StringStringEntryProto { key: "author".into(), value: "me".into() },
                pb::StringStringEntryProto { key: "fuseval.version".into(), value: "old".into() },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn splice_sets_docs_and_metadata_and_keeps_unknown_fields() {
        let mut bytes = model(3).encode_to_vec();
        // an unknown model field that prost would drop
        let mut unknown = vec![];
        encode_key(11, WireType::LengthDelimited, &mut unknown);
        encode_varint(4, &mut unknown);
        unknown.extend_from_slice(b"keep");
        bytes.extend_from_slice(&unknown);
        let docs: BTreeMap<usize, String> = [(1, "fuseval: x".to_string())].into_iter().collect();
        let meta = vec![("fuseval.version".to_string(), "new".to_string())];
        let out = splice_model(&bytes, &docs, &meta, 3).unwrap();
        let m = pb::ModelProto::decode(out.as_slice()).unwrap();
        let g = m.graph.unwrap();
        assert_eq!(g.node.len(), 3);
        assert_eq!(g.node[0].doc_string, "theirs");
        assert_eq!(g.node[1].doc_string, "fuseval: x");
        let keys: Vec<(&str, &str)> = m.metadata_props.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect();
        assert_eq!(keys, vec![("author", "me"), ("fuseval.version", "new")]);
        assert!(out.windows(unknown.len()).any(|w| w == unknown), "unknown field kept");
    }

    #[test]
    fn splice_refuses_bad_input() {
        let bytes = model(2).encode_to_vec();
        assert!(splice_model(&bytes, &BTreeMap::new(), &[], 3).is_err());
        assert!(splice_model(&bytes[..bytes.len() - 1], &BTreeMap::new(), &[], 2).is_err());
        assert!(splice_model(&[0xff; 12], &BTreeMap::new(), &[], 0).is_err());
        let mut ext = model(1);
        ext.graph.as_mut().unwrap().initializer.push(pb::TensorProto {
            name: "w".into(),
            data_location: Some(pb::tensor_proto::DataLocation::External as i32),
            ..Default::default()
        });
        assert!(splice_model(&ext.encode_to_vec(), &BTreeMap::new(), &[], 1).is_err());
    }
}
