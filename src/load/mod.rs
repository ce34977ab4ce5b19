//! Load: read an ONNX file (initializers, `Constant` nodes, external data), fix the dynamic input
//! dimensions, and resolve every tensor's dtype and shape with tract.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::error::user;
use crate::onnx::{elem_name, elem_size, value_info};

pub mod weights;
use weights::Weights;

/// The ai.onnx opset versions ONNX defines.
pub const ONNX_OPSETS: std::ops::RangeInclusive<i64> = 1..=24;
/// More elements than this in one tensor is a corrupt dimension, not a model (a TiB of bytes).
pub const MAX_ELEMENTS: u128 = 1 << 40;
/// Prefix given to the op type of a node tract cannot build, so it parses as an unknown op.
const UNSUPPORTED_PREFIX: &str = "fuseval.unsupported.";

/// Default size of a dynamic batch (axis 0) dimension.
pub const DEFAULT_BATCH: usize = 1;
/// Default size of any other dynamic dimension (a sequence length, in practice).
pub const DEFAULT_SEQUENCE: usize = 128;

/// `--input NAME=DIMS`, e.g. `input_ids=1x128`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputOverride {
    pub name: String,
    pub dims: Vec<usize>,
}

impl InputOverride {
    /// Every `--input NAME=DIMS` given.
    pub fn parse_all(v: &[String]) -> Result<Vec<InputOverride>> {
        v.iter().map(|s| s.parse()).collect()
    }
}

impl FromStr for InputOverride {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            user(format!(
                "malformed --input `{s}`: expected NAME=DIMS with DIMS like 1x3x224x224 (positive integers joined by `x`)"
            ))
        };
        let (name, dims) = s.split_once('=').ok_or_else(bad)?;
        if name.is_empty() || dims.is_empty() {
            return Err(bad());
        }
        let dims = dims
            .split(['x', 'X', ','])
            .map(|d| d.trim().parse::<usize>().ok().filter(|&d| d > 0))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        Ok(InputOverride { name: name.to_string(), dims })
    }
}

impl fmt::Display for InputOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, dims_string(&self.dims))
    }
}

/// `[1, 3, 224, 224]` as `1x3x224x224`.
pub fn dims_string(dims: &[usize]) -> String {
    if dims.is_empty() {
        return "scalar".into();
    }
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x")
}

/// A tensor's element type (ONNX code), when resolved its concrete shape, and for small integer
/// tensors whose value the fixed input shapes decide (`Shape` → `Gather` → `Concat` ...) that value.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TensorInfo {
    pub elem_type: i32,
    pub shape: Option<Vec<usize>>,
    pub value: Option<Vec<i64>>,
}

/// Integer tensors up to this many elements keep the value tract found for them.
const KNOWN_VALUE_MAX: usize = 64;

/// A model input with its dimensions fixed.
#[derive(Clone, Debug)]
pub struct ResolvedInput {
    pub name: String,
    pub elem_type: i32,
    pub dims: Vec<usize>,
}

/// A loaded model: the protobuf (external data inlined) and every tensor's type and shape.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub path: PathBuf,
    pub proto: pb::ModelProto,
    pub opset: i64,
    pub inputs: Vec<ResolvedInput>,
    pub tensors: BTreeMap<String, TensorInfo>,
    pub warnings: Vec<String>,
    /// Ops the shape analysis does not know (qualified with their domain), sorted: their outputs' shapes
    /// come from the model's annotations only. They do not stop `inspect` or `bench`.
    pub unsupported_ops: Vec<String>,
    /// Initializer bytes, read on demand.
    pub weights: Arc<Weights>,
}

impl Loaded {
    /// Initializer `ix` of the graph, with its bytes.
    pub fn initializer(&self, ix: usize) -> Result<pb::TensorProto> {
        let t = &self.proto.graph.as_ref().expect("loaded models have a graph").initializer[ix];
        self.weights
            .full(ix, t)
            .with_context(|| format!("reading the data of initializer `{}` of {}", t.name, self.path.display()))
    }

    /// The whole model with every initializer's bytes inline.
    pub fn full_proto(&self) -> Result<pb::ModelProto> {
        let mut p = self.proto.clone();
        let g = p.graph.as_mut().expect("loaded models have a graph");
        for ix in 0..g.initializer.len() {
            g.initializer[ix] = self.initializer(ix)?;
        }
        Ok(p)
    }

    /// Each input's name and fixed dims.
    pub fn input_dims(&self) -> Vec<(String, Vec<usize>)> {
        self.inputs.iter().map(|i| (i.name.clone(), i.dims.clone())).collect()
    }

    /// The whole model (weights inline) with its inputs fixed and its shape arithmetic folded
    /// ([`crate::onnx::fold`]) from the values the shape analysis found.
    pub fn folded_shapes(&self) -> Result<(pb::ModelProto, crate::onnx::fold::FoldReport)> {
        let known: BTreeMap<String, crate::onnx::fold::Known> = self
            .tensors
            .iter()
            .filter_map(|(n, t)| Some((n.clone(), (t.elem_type, t.shape.clone()?, t.value.clone()?))))
            .collect();
        crate::onnx::fold::fold_shapes(&self.full_proto()?, &self.input_dims(), &known)
    }
}

/// Read and decode an ONNX file; initializer bytes stay in the file until needed. No shape work.
pub fn read_proto(path: &Path) -> Result<(pb::ModelProto, Arc<Weights>)> {
    let meta = std::fs::metadata(path).map_err(|e| user(format!("cannot read model file {}: {e}", path.display())))?;
    if meta.is_dir() {
        return Err(user(format!("{} is a directory, not an ONNX model file", path.display())));
    }
    if meta.len() == 0 {
        return Err(user(format!("{} is empty: it is not an ONNX model", path.display())));
    }
    let (proto, mut weights) = weights::decode(path).map_err(|e| {
        user(format!(
            "{} is not a valid ONNX model: the protobuf does not decode ({e:#}). Is the file truncated, or another format?",
            path.display()
        ))
    })?;
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| user(format!("{} is not an ONNX model: it has no graph", path.display())))?;
    if graph.node.is_empty() {
        return Err(user(format!("{} has a graph with no nodes", path.display())));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    for (ix, t) in graph.initializer.iter().enumerate() {
        if let Some(ext) = external(t, dir, path)? {
            weights.bytes[ix] = ext;
        }
    }
    validate(path, &proto, &weights)?;
    Ok((proto, Arc::new(weights)))
}

/// A node's name for messages: its own, or `<op>_<index>` as in the graph.
fn node_label(n: &pb::NodeProto, ix: usize) -> String {
    if n.name.is_empty() {
        format!("{}_{ix}", n.op_type)
    } else {
        n.name.clone()
    }
}

/// Check what the protobuf decoder cannot: opsets and domains, dimensions, and that every tensor's data
/// is as long as its shape and type say.
fn validate(path: &Path, proto: &pb::ModelProto, weights: &weights::Weights) -> Result<()> {
    let file = path.display();
    let g = proto.graph.as_ref().expect("checked in read_proto");
    let domain = |d: &str| if d == "ai.onnx" { String::new() } else { d.to_string() };
    let mut imported = HashMap::new();
    for o in &proto.opset_import {
        let d = domain(&o.domain);
        if d.is_empty() && !ONNX_OPSETS.contains(&o.version) {
            return Err(user(format!(
                "{file} imports ai.onnx opset {}, which ONNX does not define (it defines {} to {})",
                o.version,
                ONNX_OPSETS.start(),
                ONNX_OPSETS.end()
            )));
        }
        if o.version < 1 {
            return Err(user(format!(
                "{file} imports opset {} of domain `{}`: opset versions start at 1",
                o.version, o.domain
            )));
        }
        imported.insert(d, o.version);
    }
    for (ix, n) in g.node.iter().enumerate() {
        let d = domain(&n.domain);
        if !imported.contains_key(&d) {
            let known: Vec<String> =
                imported.keys().map(|k| if k.is_empty() { "ai.onnx".to_string() } else { k.clone() }).collect();
            return Err(user(format!(
                "{file}: node `{}` ({}) is in domain `{}`, but the model imports no opset of that domain (it imports: {})",
                node_label(n, ix),
                n.op_type,
                if d.is_empty() { "ai.onnx" } else { &d },
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        }
    }
    for (ix, t) in g.initializer.iter().enumerate() {
        let what = format!("initializer `{}`", t.name);
        let held = match weights.bytes.get(ix) {
            Some(weights::Bytes::Mapped(r)) => Some(r.len() as u64),
            Some(weights::Bytes::External { length, .. }) => Some(*length),
            _ => None,
        };
        check_tensor(path, &what, t, held)?;
    }
    for (ix, n) in g.node.iter().enumerate().filter(|(_, n)| n.op_type == "Constant") {
        for a in &n.attribute {
            if let Some(t) = a.t.as_ref() {
                let what = format!(
                    "the value of Constant node `{}` (tensor `{}`)",
                    node_label(n, ix),
                    n.output.first().map(String::as_str).unwrap_or("")
                );
                check_tensor(path, &what, t, None)?;
            }
        }
    }
    for vi in g.input.iter().chain(&g.value_info).chain(&g.output) {
        let Some(pb::type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            continue;
        };
        let Some(shape) = t.shape.as_ref() else { continue };
        let mut numel: u128 = 1;
        for d in &shape.dim {
            if let Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) = d.value {
                // -1 is a common spelling of "dynamic"
                if v < -1 {
                    return Err(user(format!("{file}: tensor `{}` declares a negative dimension {v}", vi.name)));
                }
                numel = numel.saturating_mul(v.max(1) as u128);
            }
        }
        if numel > MAX_ELEMENTS {
            return Err(user(format!(
                "{file}: tensor `{}` declares a shape of {numel} elements, more than 2^40: its dimensions are corrupt",
                vi.name
            )));
        }
    }
    Ok(())
}

/// Check a tensor's dims, and that its data (`held` bytes where they stay in a file, else the proto's
/// own fields) matches them.
fn check_tensor(path: &Path, what: &str, t: &pb::TensorProto, held: Option<u64>) -> Result<()> {
    let file = path.display();
    if let Some(d) = t.dims.iter().find(|&&d| d < 0) {
        return Err(user(format!("{file}: {what} has a negative dimension {d} (dims {:?})", t.dims)));
    }
    let numel = t.dims.iter().fold(1u128, |n, &d| n.saturating_mul(d as u128));
    if numel > MAX_ELEMENTS {
        return Err(user(format!(
            "{file}: {what} has dims {:?}, {numel} elements, more than 2^40: its dimensions are corrupt",
            t.dims
        )));
    }
    let size = elem_size(t.data_type) as u128;
    if size == 0 {
        // strings, sub-byte and unknown types: no fixed size to check against
        return Ok(());
    }
    let raw = held.map(|h| h as u128).unwrap_or(t.raw_data.len() as u128);
    let typed =
        (t.float_data.len() + t.int32_data.len() + t.int64_data.len() + t.double_data.len() + t.uint64_data.len())
            as u128;
    let ok = if raw > 0 { raw == numel * size } else { typed == numel };
    if !ok {
        let has = if raw > 0 { format!("{raw} bytes of raw data") } else { format!("{typed} values") };
        return Err(user(format!(
            "{file}: {what} has dims {:?} of {} ({numel} elements, {} bytes), but holds {has}",
            t.dims,
            elem_name(t.data_type),
            numel * size
        )));
    }
    Ok(())
}

/// Where an initializer's external data is, checked to exist and be long enough.
fn external(t: &pb::TensorProto, dir: &Path, model: &Path) -> Result<Option<weights::Bytes>> {
    if t.data_location != Some(pb::tensor_proto::DataLocation::External as i32) {
        return Ok(None);
    }
    let get = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.clone());
    let location = get("location").ok_or_else(|| {
        user(format!("{}: initializer `{}` says its data is external but names no location", model.display(), t.name))
    })?;
    let offset: u64 = get("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    let file = dir.join(&location);
    let size = std::fs::metadata(&file)
        .map_err(|e| {
            user(format!(
                "{}: the external data file {} of initializer `{}` cannot be read ({e}). Keep it beside the model.",
                model.display(),
                file.display(),
                t.name
            ))
        })?
        .len();
    let length: u64 = get("length").and_then(|v| v.parse().ok()).unwrap_or(size.saturating_sub(offset));
    if offset.checked_add(length).is_none_or(|e| e > size) {
        return Err(user(format!(
            "{}: initializer `{}` reads bytes {offset}..{} of {}, which has only {size} bytes",
            model.display(),
            t.name,
            offset.saturating_add(length),
            file.display()
        )));
    }
    Ok(Some(weights::Bytes::External { file, offset, length }))
}

/// Load a model and resolve every tensor's shape, with `overrides` fixing dynamic input dimensions.
pub fn load(path: &Path, overrides: &[InputOverride]) -> Result<Loaded> {
    let (proto, weights) = read_proto(path)?;
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .unwrap_or(0);
    let graph = proto.graph.as_ref().expect("checked in read_proto");
    let mut warnings = vec![];
    let inputs = resolve_inputs(path, graph, overrides, &mut warnings)?;
    let mut tensors = BTreeMap::new();
    let mut unsupported = unregistered_ops(graph);
    match analyse_guarded(path, &proto, &weights, &inputs) {
        Ok((t, failed)) => {
            tensors = t;
            unsupported.extend(failed);
        }
        Err(e) => warnings.push(format!(
            "tract could not analyse the model ({e:#}); shapes come from the model's own annotations only"
        )),
    }
    let mut unsupported_ops: Vec<String> = vec![];
    if !unsupported.is_empty() {
        unsupported.sort();
        unsupported.dedup();
        let mut by_op: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for &ix in &unsupported {
            let n = &graph.node[ix];
            let op = if n.domain.is_empty() || n.domain == "ai.onnx" {
                n.op_type.clone()
            } else {
                format!("{}.{}", n.domain, n.op_type)
            };
            by_op.entry(op).or_default().push(node_label(n, ix));
        }
        let list: Vec<String> = by_op
            .iter()
            .map(|(op, nodes)| {
                format!("{op} ({} node{}, first `{}`)", nodes.len(), if nodes.len() == 1 { "" } else { "s" }, nodes[0])
            })
            .collect();
        warnings.push(format!(
            "op(s) the shape analysis does not support (unknown ops, or ops invalid where they are): {}; their outputs' shapes come from the model's annotations only, and patterns touching them cannot be measured",
            list.join(", ")
        ));
        unsupported_ops = by_op.into_keys().collect();
    }
    fill_from_annotations(graph, &inputs, &mut tensors);
    let unresolved: Vec<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.output.iter())
        .filter(|o| !o.is_empty() && tensors.get(*o).and_then(|t| t.shape.as_ref()).is_none())
        .map(|s| s.as_str())
        .collect();
    if !unresolved.is_empty() {
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        warnings.push(format!(
            "{} tensor(s) have no resolved shape (first: `{}`); patterns touching them are listed but cannot be measured. \
             If a dynamic dimension is the cause, fix it with --input NAME=DIMS (inputs: {})",
            unresolved.len(),
            unresolved[0],
            names.join(", ")
        ));
    }
    Ok(Loaded { path: path.to_path_buf(), proto, opset, inputs, tensors, warnings, unsupported_ops, weights })
}

/// Fix every model input's dimensions: `--input` first, then same-named symbols, then defaults.
fn resolve_inputs(
    path: &Path,
    graph: &pb::GraphProto,
    overrides: &[InputOverride],
    warnings: &mut Vec<String>,
) -> Result<Vec<ResolvedInput>> {
    let inits: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let real: Vec<&pb::ValueInfoProto> = graph.input.iter().filter(|i| !inits.contains(i.name.as_str())).collect();
    for o in overrides {
        if !real.iter().any(|i| i.name == o.name) {
            let names: Vec<&str> = real.iter().map(|i| i.name.as_str()).collect();
            return Err(user(format!(
                "--input {o}: {} has no input named `{}`; its inputs are: {}",
                path.display(),
                o.name,
                names.join(", ")
            )));
        }
    }
    // symbol values fixed by overrides apply to every input that shares the symbol
    let mut symbols: HashMap<String, usize> = HashMap::new();
    for o in overrides {
        let vi = real.iter().find(|i| i.name == o.name).unwrap();
        let (_, dims) = value_info_dims(vi);
        if !shapeless(vi) && dims.len() != o.dims.len() {
            return Err(user(format!(
                "--input {o}: input `{}` of {} has rank {}, not {}",
                o.name,
                path.display(),
                dims.len(),
                o.dims.len()
            )));
        }
        for (d, &v) in dims.iter().zip(&o.dims) {
            match d {
                Dim::Fixed(f) if *f != v => {
                    return Err(user(format!(
                        "--input {o}: input `{}` of {} has a fixed dimension {f} where {v} was given",
                        o.name,
                        path.display()
                    )))
                }
                Dim::Symbol(s) => {
                    symbols.insert(s.clone(), v);
                }
                _ => {}
            }
        }
    }
    let mut out = vec![];
    for vi in real {
        let (elem_type, dims) = value_info_dims(vi);
        let given = overrides.iter().find(|o| o.name == vi.name);
        // no shape at all (not even a rank): nothing to default, the user must say it
        let shapeless = shapeless(vi);
        let dims = match given {
            Some(o) if shapeless => vec![Dim::Unknown; o.dims.len()],
            None if shapeless => {
                return Err(user(format!(
                    "{}: input `{}` declares no shape, not even its rank, so its dimensions cannot be resolved; \
                     give them with --input {}=DIMS (e.g. --input {}=1x3x224x224)",
                    path.display(),
                    vi.name,
                    vi.name,
                    vi.name
                )))
            }
            _ => dims,
        };
        let mut resolved = vec![];
        for (axis, d) in dims.iter().enumerate() {
            let v = match (given, d) {
                (Some(o), _) => o.dims[axis],
                (None, Dim::Fixed(f)) => *f,
                (None, Dim::Symbol(s)) if symbols.contains_key(s) => symbols[s],
                (None, d) => {
                    let v = if axis == 0 { DEFAULT_BATCH } else { DEFAULT_SEQUENCE };
                    let what = match d {
                        Dim::Symbol(s) => format!("`{s}`"),
                        _ => "unnamed".into(),
                    };
                    warnings.push(format!(
                        "input `{}` axis {axis} ({what}) is dynamic: using {v}; set it with --input {}=...",
                        vi.name, vi.name
                    ));
                    if let Dim::Symbol(s) = d {
                        symbols.insert(s.clone(), v);
                    }
                    v
                }
            };
            resolved.push(v);
        }
        let numel = resolved.iter().fold(1u128, |n, &d| n.saturating_mul(d as u128));
        if numel > MAX_ELEMENTS {
            return Err(user(format!(
                "{}: input `{}` would be {} ({numel} elements), more than 2^40; give it smaller dimensions with --input {}=DIMS",
                path.display(),
                vi.name,
                dims_string(&resolved),
                vi.name
            )));
        }
        if elem_type == 0 {
            return Err(user(format!("{}: input `{}` has no element type", path.display(), vi.name)));
        }
        out.push(ResolvedInput { name: vi.name.clone(), elem_type, dims: resolved });
    }
    Ok(out)
}

/// An input that declares its element type but no shape, not even a rank.
fn shapeless(vi: &pb::ValueInfoProto) -> bool {
    matches!(
        vi.r#type.as_ref().and_then(|t| t.value.as_ref()),
        Some(pb::type_proto::Value::TensorType(t)) if t.shape.is_none()
    )
}

#[derive(Clone, Debug)]
enum Dim {
    Fixed(usize),
    Symbol(String),
    Unknown,
}

fn value_info_dims(vi: &pb::ValueInfoProto) -> (i32, Vec<Dim>) {
    let Some(pb::type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return (0, vec![]);
    };
    let dims = t
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if *v > 0 => Dim::Fixed(*v as usize),
                    Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => {
                        Dim::Symbol(p.clone())
                    }
                    _ => Dim::Unknown,
                })
                .collect()
        })
        .unwrap_or_default();
    (t.elem_type, dims)
}

/// Indices of the nodes whose op tract does not know at all.
fn unregistered_ops(graph: &pb::GraphProto) -> Vec<usize> {
    let onnx = tract_onnx::onnx();
    graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| !onnx.op_register.0.contains_key(&n.op_type))
        .map(|(ix, _)| ix)
        .collect()
}

thread_local! {
    /// Whether this thread is inside tract's analysis, where a panic is caught and reported as an error.
    static IN_TRACT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Install, once, a panic hook that stays silent inside tract's analysis and otherwise defers to the
/// hook it replaced.
fn quiet_panics_in_tract() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_TRACT.with(|f| f.get()) {
                prev(info)
            }
        }));
    });
}

/// [`tract_shapes`], with a panic inside tract turned into an error: odd models must never crash.
fn analyse_guarded(
    path: &Path,
    proto: &pb::ModelProto,
    weights: &Weights,
    inputs: &[ResolvedInput],
) -> Result<(BTreeMap<String, TensorInfo>, Vec<usize>)> {
    // a panic inside tract becomes this error, not a message on stderr
    quiet_panics_in_tract();
    IN_TRACT.with(|f| f.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tract_shapes(path, proto, weights, inputs)));
    IN_TRACT.with(|f| f.set(false));
    r.unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(anyhow::anyhow!("tract panicked: {msg}"))
    })
}

/// Shapes and dtypes of every named tensor, from tract's analysis with the inputs fixed, and the nodes
/// tract knows but could not build (their outputs stay unresolved).
fn tract_shapes(
    path: &Path,
    proto: &pb::ModelProto,
    weights: &Weights,
    inputs: &[ResolvedInput],
) -> Result<(BTreeMap<String, TensorInfo>, Vec<usize>)> {
    let dir = path.parent().and_then(|p| p.to_str());
    // value_info may carry symbolic dims (`batch`) that clash with the fixed inputs: tract infers them anew
    let mut slim = slim_for_shapes(proto, weights)?;
    let nodes = &mut slim.graph.as_mut().expect("slim models have a graph").node;
    // distinct names, so that a node tract fails to build can be found from its error
    for (ix, n) in nodes.iter_mut().enumerate() {
        n.name = format!("fuseval_{ix}");
    }
    let onnx = tract_onnx::onnx().with_ignore_value_info(true);
    let mut failed = too_low_rank(&slim, inputs);
    let nodes = &mut slim.graph.as_mut().expect("slim models have a graph").node;
    for &ix in &failed {
        nodes[ix].op_type = format!("{UNSUPPORTED_PREFIX}{}", nodes[ix].op_type);
    }
    let mut parsed = loop {
        match onnx.parse(&slim, dir) {
            Ok(p) => break p,
            Err(e) => {
                // a node tract knows but cannot build becomes an unknown op, and parsing goes on
                let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
                let nodes = &mut slim.graph.as_mut().expect("slim models have a graph").node;
                let culprit = nodes.iter().position(|n| {
                    !n.op_type.starts_with(UNSUPPORTED_PREFIX)
                        && chain.iter().any(|c| *c == format!("Building node {} ({})", n.name, n.op_type))
                });
                match culprit {
                    Some(ix) => {
                        nodes[ix].op_type = format!("{UNSUPPORTED_PREFIX}{}", nodes[ix].op_type);
                        failed.push(ix);
                    }
                    None => return Err(e).context("tract parse"),
                }
            }
        }
    };
    for i in inputs {
        let outlet = *parsed.outlets_by_name.get(&i.name).with_context(|| format!("tract lost input `{}`", i.name))?;
        let dt = datum_type(i.elem_type)
            .with_context(|| format!("input `{}` has unsupported element type {}", i.name, i.elem_type))?;
        let fact = InferenceFact::dt_shape(dt, i.dims.iter().map(|&d| d as i64).collect::<Vec<_>>());
        parsed.model.set_outlet_fact(outlet, fact)?;
    }
    // obstinate: carry on past ops tract cannot analyse; what stays unknown stays unresolved
    let _ = parsed.model.analyse(true);
    let mut out = BTreeMap::new();
    for (name, outlet) in &parsed.outlets_by_name {
        let Ok(fact) = parsed.model.outlet_fact(*outlet) else { continue };
        let elem_type = fact.datum_type.concretize().map(onnx_elem_type).unwrap_or(0);
        let shape = fact
            .shape
            .concretize()
            .and_then(|dims| dims.iter().map(|d| d.to_i64().ok().filter(|&v| v >= 0).map(|v| v as usize)).collect());
        let value =
            if matches!(elem_type, 6 | 7) { fact.value.concretize().and_then(|t| int_values(&t)) } else { None };
        out.insert(name.clone(), TensorInfo { elem_type, shape, value });
    }
    Ok((out, failed))
}

/// Nodes tract would crash or hang on, which never reach it (they are left unresolved): a data input of
/// known rank below what the op needs (tract indexes its shape without a bounds check: an abort, not a
/// panic), and a LayerNormalization axis below minus the rank.
fn too_low_rank(model: &pb::ModelProto, inputs: &[ResolvedInput]) -> Vec<usize> {
    let g = model.graph.as_ref().expect("slim models have a graph");
    let mut rank: HashMap<&str, usize> = HashMap::new();
    for t in &g.initializer {
        rank.insert(&t.name, t.dims.len());
    }
    for vi in g.input.iter().chain(&g.value_info).chain(&g.output) {
        if let Some(pb::type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            if let Some(s) = &t.shape {
                rank.insert(&vi.name, s.dim.len());
            }
        }
    }
    for i in inputs {
        rank.insert(&i.name, i.dims.len());
    }
    for n in g.node.iter().filter(|n| n.op_type == "Constant") {
        if let (Some(o), Some(t)) = (n.output.first(), n.attribute.iter().find_map(|a| a.t.as_ref())) {
            rank.insert(o, t.dims.len());
        }
    }
    g.node
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            let known = n.input.first().and_then(|x| rank.get(x.as_str())).copied();
            if n.op_type == "LayerNormalization" {
                // tract loops up to `axis + rank` as usize: an axis below -rank never ends
                let axis = n.attribute.iter().find(|a| a.name == "axis").map(|a| a.i).unwrap_or(-1);
                return axis < 0 && known.map_or(axis < -1, |r| -axis > r as i64);
            }
            let need = match n.op_type.as_str() {
                "Conv" | "ConvInteger" | "QLinearConv" | "ConvTranspose" | "MaxPool" | "AveragePool" | "LpPool"
                | "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => 3,
                "BatchNormalization" | "InstanceNormalization" | "LRN" => 2,
                _ => return false,
            };
            known.is_some_and(|r| r < need)
        })
        .map(|(ix, _)| ix)
        .collect()
}

fn int_values(t: &Tensor) -> Option<Vec<i64>> {
    if t.len() > KNOWN_VALUE_MAX {
        return None;
    }
    let t = t.cast_to::<i64>().ok()?;
    t.to_plain_array_view::<i64>().ok().map(|a| a.iter().copied().collect())
}

/// Initializers above this many elements reach tract as typed inputs, not values: shapes never depend
/// on a weight's values, and copying hundreds of megabytes of weights would dominate `inspect`.
const SLIM_ABOVE: i64 = 1024;

/// A copy of the model for shape analysis, with its large weights replaced by typed inputs.
fn slim_for_shapes(proto: &pb::ModelProto, weights: &Weights) -> Result<pb::ModelProto> {
    let g = proto.graph.as_ref().expect("checked in read_proto");
    let big = |t: &pb::TensorProto| t.dims.iter().product::<i64>() > SLIM_ABOVE;
    let mut graph = pb::GraphProto {
        node: g.node.clone(),
        name: g.name.clone(),
        input: g.input.clone(),
        output: g.output.clone(),
        initializer: g
            .initializer
            .iter()
            .enumerate()
            .filter(|(_, t)| !big(t))
            .map(|(ix, t)| weights.full(ix, t))
            .collect::<Result<_>>()?,
        ..Default::default()
    };
    // IR < 4 lists initializers among the inputs too; keep one entry per name
    graph.input.retain(|i| !g.initializer.iter().any(|t| t.name == i.name && big(t)));
    for t in g.initializer.iter().filter(|t| big(t)) {
        let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
        graph.input.push(value_info(&t.name, t.data_type, Some(&dims)));
    }
    Ok(pb::ModelProto {
        graph: Some(graph),
        opset_import: proto.opset_import.clone(),
        ir_version: proto.ir_version,
        ..Default::default()
    })
}

/// Fill what tract left unknown from initializers, inputs, value_info and declared outputs.
fn fill_from_annotations(graph: &pb::GraphProto, inputs: &[ResolvedInput], tensors: &mut BTreeMap<String, TensorInfo>) {
    for t in &graph.initializer {
        let shape = t.dims.iter().map(|&d| usize::try_from(d).ok()).collect();
        tensors.insert(t.name.clone(), TensorInfo { elem_type: t.data_type, shape, value: None });
    }
    for i in inputs {
        tensors.insert(i.name.clone(), TensorInfo { elem_type: i.elem_type, shape: Some(i.dims.clone()), value: None });
    }
    for vi in graph.value_info.iter().chain(&graph.output) {
        let (elem_type, dims) = value_info_dims(vi);
        let entry = tensors.entry(vi.name.clone()).or_default();
        if entry.elem_type == 0 {
            entry.elem_type = elem_type;
        }
        if entry.shape.is_none() && !dims.is_empty() {
            entry.shape = dims
                .iter()
                .map(|d| match d {
                    Dim::Fixed(v) => Some(*v),
                    _ => None,
                })
                .collect();
        }
    }
}

fn datum_type(elem_type: i32) -> Option<DatumType> {
    Some(match elem_type {
        1 => f32::datum_type(),
        2 => u8::datum_type(),
        3 => i8::datum_type(),
        4 => u16::datum_type(),
        5 => i16::datum_type(),
        6 => i32::datum_type(),
        7 => i64::datum_type(),
        9 => bool::datum_type(),
        10 => f16::datum_type(),
        11 => f64::datum_type(),
        12 => u32::datum_type(),
        13 => u64::datum_type(),
        _ => return None,
    })
}

fn onnx_elem_type(dt: DatumType) -> i32 {
    match dt {
        DatumType::F32 => 1,
        DatumType::U8 => 2,
        DatumType::I8 => 3,
        DatumType::U16 => 4,
        DatumType::I16 => 5,
        DatumType::I32 => 6,
        DatumType::I64 | DatumType::TDim => 7,
        DatumType::String => 8,
        DatumType::Bool => 9,
        DatumType::F16 => 10,
        DatumType::F64 => 11,
        DatumType::U32 => 12,
        DatumType::U64 => 13,
        _ => 0,
    }
}
