//! Building small ONNX models in code: the synthetic pattern models `calibrate` sweeps (each pattern's
//! descriptor builds its own with [`Model`]) and the ceiling probes.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tract_onnx::pb;

use super::{a_f, a_i, a_ints as ints, value_info, DType};

/// One point of a pattern's size grid. `label` is short and human, e.g. `M=256 K=256 N=256`;
/// `params` holds what [`build`] reads (`M`/`K`/`N`, `C`/`H`, `S`/`heads`/`d`, `C`/`H`/`W`, `rows`/`D`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Size {
    pub label: String,
    pub params: BTreeMap<String, usize>,
}

impl Size {
    pub fn new(label: String, params: &[(&str, usize)]) -> Size {
        Size { label, params: params.iter().map(|&(k, v)| (k.to_string(), v)).collect() }
    }

    /// A parameter, or an error naming the size.
    pub fn get(&self, key: &str) -> Result<usize> {
        match self.params.get(key) {
            Some(&v) if v > 0 => Ok(v),
            Some(_) => bail!("size `{}`: parameter {key} is 0", self.label),
            None => bail!("size `{}` has no parameter {key}", self.label),
        }
    }
}

/// A model being built: nodes in topological order, each writing one tensor named `<node>_out`; the last
/// node's output becomes the graph output `y`.
pub struct Model {
    rng: ChaCha8Rng,
    /// Element type of the graph inputs and output.
    pub elem: i32,
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
}

impl Model {
    pub fn new(seed: u64) -> Model {
        Model {
            rng: ChaCha8Rng::seed_from_u64(seed),
            elem: DType::F32.onnx_code(),
            nodes: vec![],
            inits: vec![],
            inputs: vec![],
        }
    }

    pub fn input(&mut self, name: &str, dims: &[usize]) -> String {
        self.inputs.push(value_info(name, self.elem, Some(dims)));
        name.to_string()
    }

    /// An f32 initializer uniform in `[lo, hi)`.
    pub fn uniform(&mut self, name: &str, dims: &[usize], lo: f32, hi: f32) -> String {
        let n: usize = dims.iter().product();
        let mut raw = Vec::with_capacity(4 * n);
        for _ in 0..n {
            raw.extend_from_slice(&self.rng.random_range(lo..hi).to_le_bytes());
        }
        self.tensor(name, dims, DType::F32, raw)
    }

    /// A weight uniform in ±1/√fan_in, as PyTorch initialises linear and conv layers.
    pub fn weight(&mut self, name: &str, dims: &[usize], fan_in: usize) -> String {
        let b = 1.0 / (fan_in as f32).sqrt();
        self.uniform(name, dims, -b, b)
    }

    pub fn scalar(&mut self, name: &str, v: f32) -> String {
        self.tensor(name, &[], DType::F32, v.to_le_bytes().to_vec())
    }

    pub fn ints(&mut self, name: &str, v: &[i64]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensor(name, &[v.len()], DType::I64, raw)
    }

    pub fn tensor(&mut self, name: &str, dims: &[usize], dtype: DType, raw_data: Vec<u8>) -> String {
        self.inits.push(pb::TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: dtype.onnx_code(),
            raw_data,
            ..Default::default()
        });
        name.to_string()
    }

    /// A default-domain node named `name`; its output tensor's name.
    pub fn op(&mut self, name: &str, op: &str, inputs: &[&str], attribute: Vec<pb::AttributeProto>) -> String {
        let out = format!("{name}_out");
        self.nodes.push(pb::NodeProto {
            name: name.into(),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute,
            ..Default::default()
        });
        out
    }

    /// `Add(bias[n], MatMul(x, W[k,n]))`, as PyTorch writes `nn.Linear` on a batched input.
    pub fn linear(&mut self, name: &str, x: &str, k: usize, n: usize) -> String {
        let w = self.weight(&format!("{name}.weight"), &[k, n], k);
        let b = self.weight(&format!("{name}.bias"), &[n], k);
        let y = self.op(&format!("{name}_matmul"), "MatMul", &[x, &w], vec![]);
        self.op(&format!("{name}_add"), "Add", &[&b, &y], vec![])
    }

    /// GELU, exact, as `x·0.5·(1 + erf(x/√2))` in the legacy exporter's node order.
    pub fn gelu_erf(&mut self, x: &str) {
        let sqrt2 = self.scalar("gelu.sqrt2", std::f32::consts::SQRT_2);
        let one = self.scalar("gelu.one", 1.0);
        let half = self.scalar("gelu.half", 0.5);
        let t = self.op("gelu_div", "Div", &[x, &sqrt2], vec![]);
        let t = self.op("gelu_erf", "Erf", &[&t], vec![]);
        let t = self.op("gelu_add", "Add", &[&t, &one], vec![]);
        let t = self.op("gelu_mul", "Mul", &[x, &t], vec![]);
        self.op("gelu_mul_half", "Mul", &[&t, &half], vec![]);
    }

    /// A 3×3 convolution C→C, stride 1, pad 1, with its own bias input when `bias`.
    pub fn conv(&mut self, name: &str, x: &str, c: usize, bias: bool) -> String {
        let fan_in = 9 * c;
        let w = self.weight(&format!("{name}.weight"), &[c, c, 3, 3], fan_in);
        let mut inputs = vec![x.to_string(), w];
        if bias {
            inputs.push(self.weight(&format!("{name}.bias"), &[c], fan_in));
        }
        let attrs = vec![
            ints("dilations", &[1, 1]),
            a_i("group", 1),
            ints("kernel_shape", &[3, 3]),
            ints("pads", &[1, 1, 1, 1]),
            ints("strides", &[1, 1]),
        ];
        let inputs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
        self.op(name, "Conv", &inputs, attrs)
    }

    /// Inference BatchNormalization over `c` channels: scale in [0.5, 1.5], bias and mean in ±0.1,
    /// variance in [0.5, 1.5].
    pub fn batchnorm(&mut self, name: &str, x: &str, c: usize) -> String {
        let scale = self.uniform(&format!("{name}.weight"), &[c], 0.5, 1.5);
        let bias = self.uniform(&format!("{name}.bias"), &[c], -0.1, 0.1);
        let mean = self.uniform(&format!("{name}.running_mean"), &[c], -0.1, 0.1);
        let var = self.uniform(&format!("{name}.running_var"), &[c], 0.5, 1.5);
        let attrs = vec![a_f("epsilon", 1e-5), a_f("momentum", 0.9)];
        self.op(name, "BatchNormalization", &[x, &scale, &bias, &mean, &var], attrs)
    }

    /// The attention scores: `Softmax(MatMul(q, kt) / √d + mask)` over the last axis.
    pub fn scores(&mut self, q: &str, kt: &str, mask: &str, d: usize) -> String {
        let sqrt_d = self.scalar("scale.sqrt_d", (d as f32).sqrt());
        let s = self.op("qk_matmul", "MatMul", &[q, kt], vec![]);
        let s = self.op("scale", "Div", &[&s, &sqrt_d], vec![]);
        let s = self.op("mask_add", "Add", &[&s, mask], vec![]);
        self.op("softmax", "Softmax", &[&s], vec![a_i("axis", -1)])
    }

    /// The serialized model, the last node's output renamed `y` and declared with `dims`.
    pub fn finish(mut self, dims: &[usize]) -> Result<Vec<u8>> {
        let last = self.nodes.last_mut().context("synthetic model without nodes")?;
        last.output[0] = "y".into();
        let output = value_info("y", self.elem, Some(dims));
        let model = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
            producer_name: "fuseval-synth".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            graph: Some(pb::GraphProto {
                name: "synth".into(),
                node: self.nodes,
                initializer: self.inits,
                input: self.inputs,
                output: vec![output],
                ..Default::default()
            }),
            ..Default::default()
        };
        Ok(model.encode_to_vec())
    }
}
