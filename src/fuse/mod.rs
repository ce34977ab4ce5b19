//! Explicit fusion: rewrite a carved pattern instance into the fused kernel(s) ONNX Runtime provides, to
//! be run with optimizations disabled, so that a measurement times the kernel and not the optimizer.
//!
//! [`explicit_fused`] dispatches on the rewrite the pattern's descriptor names. Where ORT has no fused kernel for the pattern on the
//! provider, or the carved nodes are a form not handled here, it answers [`Availability::NoKernel`] with
//! the reason: never a rewrite that might be wrong. [`kernel_for`] is the catalog shown by
//! `fuseval inspect --patterns`.
//!
//! The rewritten model keeps the carved model's inputs, outputs (names, shapes, dtypes) and opset
//! imports, adds `com.microsoft` version 1, and keeps verbatim any node of the carved model that only
//! computes a constant (a weight dequantization, say) when the fused kernels still read its result.
//! One file per family: `conv`, `linear`, `elementwise`, `layernorm` (and `attention`, written apart).

use std::collections::{HashMap, HashSet};

use anyhow::{anyhow, bail, Context, Result};
use prost::Message;
use tract_onnx::pb;

use crate::carve::Carved;
use crate::patterns::{self, Pattern, Role};
use crate::runtime::Ep;

pub mod attention;
mod conv;
mod elementwise;
mod layernorm;
mod linear;

/// A carved instance rewritten into ORT's fused kernel(s).
#[derive(Clone, Debug)]
pub struct Explicit {
    pub model: pb::ModelProto,
    pub bytes: Vec<u8>,
    /// Ops of the rewritten model in graph order, qualified like `com.microsoft.FusedConv`.
    pub kernels: Vec<String>,
    /// What the rewrite did, e.g. "BN folded into the conv weights; ReLU as FusedConv activation".
    pub note: String,
}

/// Whether ORT has a fused kernel for an instance on a provider.
#[derive(Clone, Debug)]
pub enum Availability {
    Fused(Box<Explicit>),
    /// Why not, e.g. "ORT has no fused Add+ReLU kernel on CPU".
    NoKernel(String),
}

/// Rewrite `c` into the fused kernel ORT provides for its pattern on `ep`, or say why there is none. The
/// pattern's descriptor names the rewrite.
pub fn explicit_fused(c: &Carved, ep: Ep) -> Result<Availability> {
    let what = || format!("explicit fusion of {} ({})", c.pattern, c.form);
    use patterns::Rewrite as R;
    let r = match c.pattern.descriptor().rewrite {
        R::Conv => conv::rewrite(c, ep),
        R::Linear => linear::rewrite(c, ep),
        R::LayerNorm => layernorm::rewrite(c, ep),
        R::Elementwise => elementwise::rewrite(c, ep),
        R::QkSoftmax => attention::qk_softmax(c),
        R::SoftmaxV => attention::softmax_v(c),
        R::AttentionHead => attention::attention_head(c),
        R::MultiHeadLinear => attention::multihead_linear(c),
    };
    r.with_context(what)
}

/// Fused kernels ORT's CUDA provider registers for float32 only (no float16 kernel): an explicit rewrite into
/// one has nothing to run in fp16.
pub const CUDA_FLOAT32_ONLY: &[&str] = &["com.microsoft.FusedConv"];

/// Why `kernels` cannot run in `precision` on `ep`, when one of them cannot.
pub fn precision_unsupported(kernels: &[String], ep: Ep, precision: crate::runtime::Precision) -> Option<String> {
    if precision != crate::runtime::Precision::Fp16 || !matches!(ep, Ep::Cuda { .. }) {
        return None;
    }
    kernels
        .iter()
        .find(|k| CUDA_FLOAT32_ONLY.contains(&k.as_str()))
        .map(|k| format!("ORT's CUDA provider has no float16 {k} kernel (float32 only)"))
}

/// The fused kernel(s) ORT provides for a pattern on a provider (its descriptor's), or `none`.
pub fn kernel_for(p: Pattern, ep: Ep) -> &'static str {
    let d = p.descriptor();
    match ep {
        Ep::Cpu => d.kernel_cpu,
        Ep::Cuda { .. } => d.kernel_cuda,
    }
}

// ---------------------------------------------------------------------------------------------------
// Reading the carved model

/// A carved model with its initializers at hand, the nodes that only compute constants (kept verbatim by
/// the rewrites), and every node's role from detection.
pub(crate) struct View<'a> {
    pub c: &'a Carved,
    pub graph: &'a pb::GraphProto,
    pub inits: HashMap<&'a str, &'a pb::TensorProto>,
    /// Nodes that read only initializers and other prefix nodes' outputs.
    pub prefix: Vec<&'a pb::NodeProto>,
    /// Every node of the carved graph with its role from detection.
    pub roles: Vec<(Role, &'a pb::NodeProto)>,
}

impl<'a> View<'a> {
    pub fn new(c: &'a Carved) -> Result<View<'a>> {
        let graph = c.model.graph.as_ref().context("the carved model has no graph")?;
        let inits: HashMap<&str, &pb::TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut consts: HashSet<&str> = inits.keys().copied().collect();
        let mut prefix = vec![];
        for n in &graph.node {
            let constant = n.input.iter().filter(|i| !i.is_empty()).all(|i| consts.contains(i.as_str()));
            if constant {
                consts.extend(n.output.iter().map(|o| o.as_str()));
                prefix.push(n);
            }
        }
        if c.roles.len() != graph.node.len() {
            bail!("the carved model has {} nodes but {} roles", graph.node.len(), c.roles.len());
        }
        let roles = c.roles.iter().copied().zip(&graph.node).collect();
        Ok(View { c, graph, inits, prefix, roles })
    }

    /// The node that plays `role`, if one does (the first, in graph order).
    pub fn node(&self, role: Role) -> Option<&'a pb::NodeProto> {
        self.roles.iter().find(|(r, _)| *r == role).map(|(_, n)| *n)
    }

    /// The node that plays `role`; an error when none does.
    pub fn the(&self, role: Role) -> Result<&'a pb::NodeProto> {
        self.node(role).ok_or_else(|| anyhow!("the {} match has no {role:?} node", self.c.pattern))
    }

    /// Every node that plays `role`, in graph order.
    pub fn nodes(&self, role: Role) -> Vec<&'a pb::NodeProto> {
        self.roles.iter().filter(|(r, _)| *r == role).map(|(_, n)| *n).collect()
    }

    /// Whether `name` is a constant: an initializer or computed from initializers only.
    pub fn is_const(&self, name: &str) -> bool {
        self.inits.contains_key(name) || self.prefix.iter().any(|n| n.output.iter().any(|o| o == name))
    }

    /// Dims of a graph input or initializer (constants computed in-graph: evaluated).
    pub fn dims(&self, name: &str) -> Result<Vec<i64>> {
        if let Some((_, _, d)) = self.c.inputs.iter().find(|(n, _, _)| n == name) {
            return Ok(d.iter().map(|&x| x as i64).collect());
        }
        if let Some(t) = self.inits.get(name) {
            return Ok(t.dims.clone());
        }
        Ok(self.value(name)?.0)
    }

    /// ONNX element type of a graph input or initializer (in-graph constants: float assumed).
    pub fn elem_type(&self, name: &str) -> i32 {
        if let Some((_, e, _)) = self.c.inputs.iter().find(|(n, _, _)| n == name) {
            return *e;
        }
        self.inits.get(name).map(|t| t.data_type).unwrap_or(1)
    }

    /// The value of a float constant as f32: an initializer, or evaluated with ORT when the carved
    /// model computes it (a dequantized weight, say).
    pub fn value(&self, name: &str) -> Result<(Vec<i64>, Vec<f32>)> {
        if let Some(t) = self.inits.get(name) {
            return Ok((t.dims.clone(), read_f32(t).with_context(|| format!("reading constant `{name}`"))?));
        }
        if !self.is_const(name) {
            bail!("`{name}` is not a constant");
        }
        eval_const(self, name).with_context(|| format!("evaluating constant `{name}`"))
    }

    /// A scalar float constant.
    pub fn scalar(&self, name: &str) -> Result<f32> {
        let (_, v) = self.value(name)?;
        match v.as_slice() {
            [x] => Ok(*x),
            _ => bail!("`{name}` holds {} values where one scalar was expected", v.len()),
        }
    }

    /// For a two-input node that reads `this`, its other input (either operand order).
    pub fn other_input<'n>(&self, n: &'n pb::NodeProto, this: &str) -> Option<&'n str> {
        let ins: Vec<&str> = n.input.iter().map(|s| s.as_str()).filter(|s| !s.is_empty()).collect();
        match ins.as_slice() {
            [a, b] if *a == this && *b != this => Some(b),
            [a, b] if *b == this && *a != this => Some(a),
            _ => None,
        }
    }

    /// The carved model's one output.
    pub fn output(&self) -> Result<&'a str> {
        match self.graph.output.as_slice() {
            [o] => Ok(o.name.as_str()),
            _ => bail!("the carved model has {} outputs, expected one", self.graph.output.len()),
        }
    }
}

/// Whether `n` is the default-domain op `op`.
pub(crate) fn is(n: &pb::NodeProto, op: &str) -> bool {
    n.op_type == op && (n.domain.is_empty() || n.domain == "ai.onnx")
}

/// Read a float tensor (f32, f64 or f16; raw_data little-endian or the typed fields) as f32.
pub(crate) fn read_f32(t: &pb::TensorProto) -> Result<Vec<f32>> {
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        bail!("tensor `{}` has external data", t.name);
    }
    let numel: i64 = t.dims.iter().product();
    let v: Vec<f32> = match t.data_type {
        1 if !t.raw_data.is_empty() => {
            t.raw_data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        }
        1 => t.float_data.clone(),
        11 if !t.raw_data.is_empty() => {
            t.raw_data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32).collect()
        }
        11 => t.double_data.iter().map(|&x| x as f32).collect(),
        10 if !t.raw_data.is_empty() => {
            t.raw_data.chunks_exact(2).map(|b| crate::onnx::f16_to_f32(u16::from_le_bytes([b[0], b[1]]))).collect()
        }
        10 => t.int32_data.iter().map(|&x| crate::onnx::f16_to_f32(x as u16)).collect(),
        other => bail!("tensor `{}` has element type {other}, not a float", t.name),
    };
    if v.len() as i64 != numel {
        bail!("tensor `{}` holds {} values for dims {:?}", t.name, v.len(), t.dims);
    }
    Ok(v)
}

/// Evaluate a constant the carved model computes from its initializers, with ORT, on the CPU.
fn eval_const(v: &View, name: &str) -> Result<(Vec<i64>, Vec<f32>)> {
    use ort::session::{builder::GraphOptimizationLevel, Session};
    let graph = pb::GraphProto {
        name: "fuseval_const".into(),
        node: v.prefix.iter().map(|n| (*n).clone()).collect(),
        initializer: v.graph.initializer.clone(),
        output: vec![crate::onnx::value_info(name, 1, None)],
        ..Default::default()
    };
    let model = pb::ModelProto { graph: Some(graph), ..header(v.c, None) };
    let bytes = model.encode_to_vec();
    let env = crate::runtime::environment()?;
    let run = || -> ort::Result<(Vec<i64>, Vec<f32>)> {
        let mut s = Session::builder(env)?
            .with_optimization_level(GraphOptimizationLevel::Disable)?
            .with_intra_threads(1)?
            .commit_from_memory(&bytes)?;
        let none: Vec<(std::borrow::Cow<'_, str>, ort::session::SessionInputValue<'_>)> = vec![];
        let out = s.run(none)?;
        let (shape, data) = out[name].try_extract_tensor::<f32>()?;
        Ok((shape.iter().copied().collect(), data.to_vec()))
    };
    run().map_err(|e| anyhow!("ONNX Runtime: {e}"))
}

// ---------------------------------------------------------------------------------------------------
// Writing the rewritten model

/// Nodes and new initializers of a rewrite in progress.
#[derive(Default)]
pub(crate) struct Rewrite {
    pub nodes: Vec<pb::NodeProto>,
    pub inits: Vec<pb::TensorProto>,
    /// Lowest default-domain opset the new nodes need (e.g. 14 for HardSwish).
    pub min_opset: Option<i64>,
    next: usize,
}

impl Rewrite {
    /// A fresh tensor name.
    pub fn fresh(&mut self, what: &str) -> String {
        self.next += 1;
        format!("fuseval_{what}_{}", self.next)
    }

    /// Add a node; `domain` "" is the default domain.
    pub fn node(&mut self, op: &str, domain: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>) {
        let name = format!("fuseval_{}_{}", op, self.nodes.len());
        self.nodes.push(pb::NodeProto {
            name,
            op_type: op.into(),
            domain: domain.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute: attrs,
            ..Default::default()
        });
    }

    /// Add an f32 initializer under a fresh name; returns the name.
    pub fn f32_const(&mut self, what: &str, dims: &[i64], data: &[f32]) -> String {
        let name = self.fresh(what);
        self.inits.push(pb::TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: 1,
            raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Add an i64 initializer (a Reshape shape) under a fresh name; returns the name.
    pub fn i64_const(&mut self, what: &str, data: &[i64]) -> String {
        let name = self.fresh(what);
        self.inits.push(pb::TensorProto {
            name: name.clone(),
            dims: vec![data.len() as i64],
            data_type: 7,
            raw_data: data.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// An existing tensor viewed with other dims (same data), e.g. a `[1,1,N]` bias as `[N]`.
    pub fn redim(&mut self, v: &View, name: &str, dims: &[i64]) -> Result<String> {
        let t = v.inits.get(name).ok_or_else(|| anyhow!("`{name}` is not an initializer"))?;
        if t.dims == dims {
            return Ok(name.to_string());
        }
        let numel: i64 = t.dims.iter().product();
        if numel != dims.iter().product::<i64>() {
            bail!("cannot view `{name}` {:?} as {dims:?}", t.dims);
        }
        let new = self.fresh("view");
        self.inits.push(pb::TensorProto { name: new.clone(), dims: dims.to_vec(), ..(*t).clone() });
        Ok(new)
    }

    /// Assemble the model: the carved inputs and outputs, the constant-computing nodes still read, the
    /// new nodes, and the initializers in use.
    pub fn finish(self, v: &View, note: impl Into<String>) -> Result<Availability> {
        // prefix nodes still needed, found backwards from what the new nodes read
        let mut needed: HashSet<String> = self.nodes.iter().flat_map(|n| n.input.iter().cloned()).collect();
        let mut keep = vec![false; v.prefix.len()];
        for (i, n) in v.prefix.iter().enumerate().rev() {
            if n.output.iter().any(|o| needed.contains(o)) {
                keep[i] = true;
                needed.extend(n.input.iter().cloned());
            }
        }
        let mut nodes: Vec<pb::NodeProto> =
            v.prefix.iter().zip(&keep).filter(|(_, k)| **k).map(|(n, _)| (*n).clone()).collect();
        nodes.extend(self.nodes);
        let mut initializer: Vec<pb::TensorProto> =
            v.graph.initializer.iter().filter(|t| needed.contains(&t.name)).cloned().collect();
        initializer.extend(self.inits.into_iter().filter(|t| needed.contains(&t.name)));
        let graph = pb::GraphProto {
            name: format!("{}_explicit", v.graph.name),
            node: nodes,
            input: v.graph.input.clone(),
            output: v.graph.output.clone(),
            initializer,
            ..Default::default()
        };
        let model = pb::ModelProto { graph: Some(graph), ..header(v.c, self.min_opset) };
        let kernels = model.graph.as_ref().map(|g| g.node.iter().map(qualified).collect()).unwrap_or_default();
        let bytes = model.encode_to_vec();
        Ok(Availability::Fused(Box::new(Explicit { model, bytes, kernels, note: note.into() })))
    }
}

/// `com.microsoft.FusedConv`, or `Conv` for the default domain.
fn qualified(n: &pb::NodeProto) -> String {
    if n.domain.is_empty() || n.domain == "ai.onnx" {
        n.op_type.clone()
    } else {
        format!("{}.{}", n.domain, n.op_type)
    }
}

/// The carved model's header, with `com.microsoft` version 1 and at least `min_opset` for the
/// default domain.
fn header(c: &Carved, min_opset: Option<i64>) -> pb::ModelProto {
    let mut opset_import = c.model.opset_import.clone();
    if let Some(min) = min_opset {
        for o in opset_import.iter_mut().filter(|o| o.domain.is_empty() || o.domain == "ai.onnx") {
            o.version = o.version.max(min);
        }
    }
    if !opset_import.iter().any(|o| o.domain == "com.microsoft") {
        opset_import.push(pb::OperatorSetIdProto { domain: "com.microsoft".into(), version: 1 });
    }
    pb::ModelProto {
        ir_version: c.model.ir_version.max(4),
        opset_import,
        producer_name: "fuseval".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------------
// Attributes

pub(crate) fn attr<'n>(n: &'n pb::NodeProto, name: &str) -> Option<&'n pb::AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

pub(crate) fn attr_i(n: &pb::NodeProto, name: &str) -> Option<i64> {
    attr(n, name).map(|a| a.i)
}

pub(crate) fn attr_f(n: &pb::NodeProto, name: &str) -> Option<f32> {
    attr(n, name).map(|a| a.f)
}

pub(crate) fn attr_s(n: &pb::NodeProto, name: &str) -> Option<String> {
    attr(n, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Precision;

    #[test]
    fn fused_conv_has_no_fp16_kernel_on_cuda() {
        let cuda = Ep::Cuda { device_id: 0 };
        let conv = vec!["com.microsoft.FusedConv".to_string()];
        assert!(precision_unsupported(&conv, cuda, Precision::Fp16).is_some_and(|w| w.contains("float16")));
        assert_eq!(precision_unsupported(&conv, cuda, Precision::Tf32), None);
        assert_eq!(precision_unsupported(&conv, Ep::Cpu, Precision::Fp32), None);
        let gelu = vec!["com.microsoft.BiasGelu".to_string()];
        assert_eq!(precision_unsupported(&gelu, cuda, Precision::Fp16), None);
    }
}
