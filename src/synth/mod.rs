//! Synthetic models for `fuseval calibrate`: every catalog pattern built as a standalone ONNX model at
//! each size of a grid, so it can be measured without a real model.
//!
//! A model (opset 17, IR 8, batch 1, static shapes) holds exactly one instance of its pattern and no other
//! node: activations are graph inputs, weights are initializers of seeded random values. The forms are
//! those PyTorch's exporter writes and `crate::patterns` accepts:
//!
//! - Linear family, x `[M,K]`: Linear_Bias is `MatMul(x, W[K,N])` then `Add(bias[N], ·)`; Linear_Bias_ReLU
//!   adds `Relu`; Linear_Bias_ReLU_Dropout adds `Relu` and an inference `Dropout` (constant ratio 0.1, no
//!   mask output); Linear_Bias_GELU adds GELU in the Erf form (`Div` by √2, `Erf`, `Add` 1, `Mul` by x,
//!   `Mul` by 0.5). The MLP is `Linear(K→N)`, `Relu`, `Linear(N→K)`; its grid uses the transformer FFN's
//!   hidden size N = 4K.
//! - Conv family, x `[1,C,H,W]` (H = W), 3×3 convolutions C→C, stride 1, pad 1, without bias: Conv2d_Bias
//!   is `Conv` then `Add` of a `[1,C,1,1]` bias; Conv2d_BN adds `BatchNormalization`; Conv2d_BN_ReLU adds
//!   BN and `Relu`; Conv2d_BN_ReLU_MaxPool adds BN, `Relu` and `MaxPool` 3×3 stride 2 pad 1 (ResNet's
//!   stem pool). Conv2d_ReLU is `Conv` with its own bias, then `Relu`.
//! - Attention, 12 heads of 64, additive mask `[1,1,1,S]`: QK_Softmax is `MatMul(Q[1,12,S,64],
//!   Kᵀ[1,12,64,S])`, `Div` by √64, `Add` mask, `Softmax` (axis -1), as BERT's eager attention; Softmax_V
//!   is `Softmax(scores[1,12,S,S])` then `MatMul` by V; Attention_Head is the two together. Kᵀ enters
//!   already transposed: the transpose is plumbing outside these patterns. MultiHead_Linear is BERT's
//!   self-attention block on x `[1,S,768]`: Q, K, V `MatMul`+`Add`, `Reshape` to `[1,S,12,64]`,
//!   `Transpose` (perm 0,2,1,3; 0,2,3,1 for Kᵀ), the head, `Transpose` and `Reshape` back, the output
//!   `MatMul`+`Add` (21 nodes; the Reshape targets are constant initializers).
//! - Element-wise, x `[1,64,H,W]`: Add_ReLU is `Relu(a + b)`; Mul_Add_ReLU is
//!   `Relu(x·scale[64,1,1] + shift[64,1,1])`; Sigmoid_Mul is SiLU, `Mul(x, Sigmoid(x))`. Add_LayerNorm on
//!   `[1,rows,768]` is `Add` of two inputs then `LayerNormalization` (axis -1, eps 1e-5).
//!
//! `gemm_model` and `add_model` are the peak-compute and bandwidth probes.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tract_onnx::pb;

use crate::onnx::value_info;
use crate::onnx::DType;
use crate::onnx::{a_f, a_i, a_ints as ints};
use crate::patterns::Pattern;
use crate::runtime::Ep;

/// One point of a pattern's size grid. `label` is short and human, e.g. `M=256 K=256 N=256`;
/// `params` holds what [`build`] reads (`M`/`K`/`N`, `C`/`H`, `S`/`heads`/`d`, `C`/`H`/`W`, `rows`/`D`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Size {
    pub label: String,
    pub params: BTreeMap<String, usize>,
}

impl Size {
    fn new(label: String, params: &[(&str, usize)]) -> Size {
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

/// Attention heads and head size of the attention grids (BERT-base).
pub const HEADS: usize = 12;
pub const HEAD_DIM: usize = 64;
/// Hidden size of the Add_LayerNorm and MultiHead_Linear grids (BERT-base).
pub const HIDDEN: usize = 768;
/// Channels of the element-wise grids.
pub const ELEM_CHANNELS: usize = 64;

fn linear_size(m: usize, k: usize, n: usize) -> Size {
    Size::new(format!("M={m} K={k} N={n}"), &[("M", m), ("K", k), ("N", n)])
}

fn conv_size(c: usize, h: usize) -> Size {
    Size::new(format!("C={c} H=W={h}"), &[("C", c), ("H", h)])
}

fn attention_size(s: usize) -> Size {
    Size::new(format!("S={s} heads={HEADS} d={HEAD_DIM}"), &[("S", s), ("heads", HEADS), ("d", HEAD_DIM)])
}

fn elementwise_size(h: usize) -> Size {
    let c = ELEM_CHANNELS;
    Size::new(format!("N=1x{c}x{h}x{h}"), &[("C", c), ("H", h), ("W", h)])
}

fn rows_size(rows: usize) -> Size {
    Size::new(format!("N=1x{rows}x{HIDDEN}"), &[("rows", rows), ("D", HIDDEN)])
}

/// The sizes to sweep for a pattern, smallest work first. `quick`: 3 sizes from overhead-dominated to
/// medium, the same on every provider (each run under ~10 ms on a 2-core CPU). Otherwise 6 or 7 sizes up
/// to realistic large ones (the largest under ~0.3 s on a 2-core CPU); on CUDA one larger size is added,
/// but for the element-wise grids, which span 2^12..2^24 elements everywhere.
pub fn grid(pattern: Pattern, quick: bool, ep: Ep) -> Vec<Size> {
    use Pattern::*;
    let cuda = ep != Ep::Cpu;
    let more = |mut v: Vec<Size>, extra: Size| {
        if cuda {
            v.push(extra);
        }
        v
    };
    match pattern {
        LinearBias | LinearBiasRelu | LinearBiasReluDropout | LinearBiasGelu => {
            let dims: &[usize] = if quick { &[64, 256, 512] } else { &[64, 128, 256, 512, 1024, 2048] };
            let v = dims.iter().map(|&d| linear_size(d, d, d)).collect();
            if quick {
                v
            } else {
                more(v, linear_size(4096, 4096, 4096))
            }
        }
        Mlp => {
            let mk: &[(usize, usize)] = if quick {
                &[(64, 64), (256, 256), (512, 256)]
            } else {
                &[(64, 64), (128, 128), (256, 256), (512, 512), (1024, 768), (2048, 768)]
            };
            let v = mk.iter().map(|&(m, k)| linear_size(m, k, 4 * k)).collect();
            if quick {
                v
            } else {
                more(v, linear_size(4096, 1024, 4096))
            }
        }
        ConvBias | ConvBn | ConvBnRelu | ConvRelu | ConvBnReluMaxPool => {
            let ch: &[(usize, usize)] = if quick {
                &[(16, 7), (32, 28), (64, 56)]
            } else {
                &[(16, 7), (32, 28), (16, 112), (64, 56), (512, 14), (256, 56)]
            };
            let v = ch.iter().map(|&(c, h)| conv_size(c, h)).collect();
            if quick {
                v
            } else {
                more(v, conv_size(256, 112))
            }
        }
        QkSoftmax | SoftmaxV | AttentionHead | MultiHeadLinear => {
            let s: &[usize] = match (quick, pattern) {
                // the block's four 768×768 projections make it the heaviest per token
                (true, MultiHeadLinear) => &[16, 32, 64],
                (true, _) => &[64, 128, 256],
                (false, MultiHeadLinear) => &[32, 64, 128, 256, 512, 1024],
                (false, _) => &[64, 128, 256, 384, 512, 1024],
            };
            let v = s.iter().map(|&s| attention_size(s)).collect();
            if quick {
                v
            } else {
                more(v, attention_size(2048))
            }
        }
        AddRelu | MulAddRelu | SigmoidMul => {
            // 2^12 .. 2^24 elements
            let h: &[usize] = if quick { &[8, 32, 128] } else { &[8, 16, 32, 64, 128, 256, 512] };
            h.iter().map(|&h| elementwise_size(h)).collect()
        }
        AddLayerNorm => {
            let r: &[usize] = if quick { &[16, 128, 1024] } else { &[16, 64, 256, 1024, 4096, 16384] };
            let v = r.iter().map(|&r| rows_size(r)).collect();
            if quick {
                v
            } else {
                more(v, rows_size(65536))
            }
        }
    }
}

/// Floating-point operations of `pattern` at `size`, as built: 2 per multiply-add, 1 per element of each
/// element-wise node (a rough count, to order sizes and compare with a roofline).
pub fn flops(pattern: Pattern, size: &Size) -> Result<f64> {
    use Pattern::*;
    let f = |k: &str| size.get(k).map(|v| v as f64);
    Ok(match pattern {
        LinearBias | LinearBiasRelu | LinearBiasReluDropout | LinearBiasGelu => {
            let (m, k, n) = (f("M")?, f("K")?, f("N")?);
            let tail = match pattern {
                LinearBias => 1.0,
                LinearBiasRelu => 2.0,
                LinearBiasReluDropout => 3.0,
                _ => 6.0,
            };
            2.0 * m * k * n + tail * m * n
        }
        Mlp => {
            let (m, k, n) = (f("M")?, f("K")?, f("N")?);
            4.0 * m * k * n + 2.0 * m * n + m * k
        }
        ConvBias | ConvBn | ConvBnRelu | ConvRelu | ConvBnReluMaxPool => {
            let (c, h) = (f("C")?, f("H")?);
            let out = c * h * h;
            let tail = match pattern {
                ConvBias | ConvBn => 1.0,
                ConvRelu | ConvBnRelu => 2.0,
                _ => 2.0 + 9.0 / 4.0,
            };
            2.0 * 9.0 * c * out + tail * out
        }
        QkSoftmax | SoftmaxV | AttentionHead | MultiHeadLinear => {
            let (s, heads, d) = (f("S")?, f("heads")?, f("d")?);
            let scores = heads * s * s;
            let matmul = 2.0 * scores * d;
            match pattern {
                QkSoftmax => matmul + 7.0 * scores,
                SoftmaxV => matmul + 5.0 * scores,
                AttentionHead => 2.0 * matmul + 7.0 * scores,
                _ => {
                    let hidden = heads * d;
                    8.0 * s * hidden * hidden + 4.0 * s * hidden + 2.0 * matmul + 7.0 * scores
                }
            }
        }
        AddRelu | MulAddRelu | SigmoidMul => {
            let n = f("C")? * f("H")? * f("W")?;
            match pattern {
                AddRelu => 2.0 * n,
                MulAddRelu => 3.0 * n,
                _ => 5.0 * n,
            }
        }
        AddLayerNorm => 9.0 * f("rows")? * f("D")?,
    })
}

/// A standalone ONNX model holding exactly one instance of `pattern` at `size` (see the module docs for
/// the forms), weights drawn from a ChaCha8 generator seeded with `seed`.
pub fn build(pattern: Pattern, size: &Size, seed: u64) -> Result<Vec<u8>> {
    use Pattern::*;
    let mut m = Model::new(seed);
    let out: Vec<usize> = match pattern {
        LinearBias | LinearBiasRelu | LinearBiasReluDropout | LinearBiasGelu | Mlp => {
            let (rows, k, n) = (size.get("M")?, size.get("K")?, size.get("N")?);
            let x = m.input("x", &[rows, k]);
            let name = if pattern == Mlp { "fc1" } else { "fc" };
            let y = m.linear(name, &x, k, n);
            match pattern {
                LinearBias => {}
                LinearBiasRelu => {
                    m.op("relu", "Relu", &[&y], vec![]);
                }
                LinearBiasReluDropout => {
                    let r = m.op("relu", "Relu", &[&y], vec![]);
                    let ratio = m.scalar("dropout.ratio", 0.1);
                    m.op("dropout", "Dropout", &[&r, &ratio], vec![]);
                }
                LinearBiasGelu => m.gelu_erf(&y),
                _ => {
                    let r = m.op("relu", "Relu", &[&y], vec![]);
                    m.linear("fc2", &r, n, k);
                    return m.finish(&[rows, k]);
                }
            }
            vec![rows, n]
        }
        ConvBias | ConvBn | ConvBnRelu | ConvRelu | ConvBnReluMaxPool => {
            let (c, h) = (size.get("C")?, size.get("H")?);
            let x = m.input("x", &[1, c, h, h]);
            let own_bias = pattern == ConvRelu;
            let y = m.conv("conv", &x, c, own_bias);
            match pattern {
                ConvBias => {
                    let b = m.uniform("conv.bias", &[1, c, 1, 1], -0.1, 0.1);
                    m.op("bias_add", "Add", &[&y, &b], vec![]);
                }
                ConvRelu => {
                    m.op("relu", "Relu", &[&y], vec![]);
                }
                _ => {
                    let y = m.batchnorm("bn", &y, c);
                    if pattern != ConvBn {
                        let y = m.op("relu", "Relu", &[&y], vec![]);
                        if pattern == ConvBnReluMaxPool {
                            let attrs = vec![
                                ints("kernel_shape", &[3, 3]),
                                ints("pads", &[1, 1, 1, 1]),
                                ints("strides", &[2, 2]),
                            ];
                            m.op("maxpool", "MaxPool", &[&y], attrs);
                            let p = (h - 1) / 2 + 1;
                            return m.finish(&[1, c, p, p]);
                        }
                    }
                }
            }
            vec![1, c, h, h]
        }
        QkSoftmax | SoftmaxV | AttentionHead => {
            let (s, heads, d) = (size.get("S")?, size.get("heads")?, size.get("d")?);
            if pattern == SoftmaxV {
                let scores = m.input("scores", &[1, heads, s, s]);
                let v = m.input("v", &[1, heads, s, d]);
                let p = m.op("softmax", "Softmax", &[&scores], vec![a_i("axis", -1)]);
                m.op("pv_matmul", "MatMul", &[&p, &v], vec![]);
                return m.finish(&[1, heads, s, d]);
            }
            let q = m.input("q", &[1, heads, s, d]);
            let kt = m.input("k_t", &[1, heads, d, s]);
            let v = (pattern == AttentionHead).then(|| m.input("v", &[1, heads, s, d]));
            let mask = m.input("mask", &[1, 1, 1, s]);
            let p = m.scores(&q, &kt, &mask, d);
            match v {
                Some(v) => {
                    m.op("pv_matmul", "MatMul", &[&p, &v], vec![]);
                    vec![1, heads, s, d]
                }
                None => vec![1, heads, s, s],
            }
        }
        MultiHeadLinear => {
            let (s, heads, d) = (size.get("S")?, size.get("heads")?, size.get("d")?);
            let hidden = heads * d;
            let x = m.input("x", &[1, s, hidden]);
            let mask = m.input("mask", &[1, 1, 1, s]);
            let split = m.ints("heads_shape", &[1, s as i64, heads as i64, d as i64]);
            let merge = m.ints("hidden_shape", &[1, s as i64, hidden as i64]);
            let heads_of = |m: &mut Model, name: &str, perm: &[i64]| {
                let y = m.linear(name, &x, hidden, hidden);
                let y = m.op(&format!("{name}_reshape"), "Reshape", &[&y, &split], vec![]);
                m.op(&format!("{name}_transpose"), "Transpose", &[&y], vec![ints("perm", perm)])
            };
            let q = heads_of(&mut m, "q", &[0, 2, 1, 3]);
            let kt = heads_of(&mut m, "k", &[0, 2, 3, 1]);
            let v = heads_of(&mut m, "v", &[0, 2, 1, 3]);
            let p = m.scores(&q, &kt, &mask, d);
            let c = m.op("pv_matmul", "MatMul", &[&p, &v], vec![]);
            let c = m.op("merge_transpose", "Transpose", &[&c], vec![ints("perm", &[0, 2, 1, 3])]);
            let c = m.op("merge_reshape", "Reshape", &[&c, &merge], vec![]);
            m.linear("o", &c, hidden, hidden);
            vec![1, s, hidden]
        }
        AddRelu | MulAddRelu | SigmoidMul => {
            let dims = [1, size.get("C")?, size.get("H")?, size.get("W")?];
            let c = dims[1];
            let x = m.input("x", &dims);
            match pattern {
                AddRelu => {
                    let r = m.input("residual", &dims);
                    let y = m.op("add", "Add", &[&x, &r], vec![]);
                    m.op("relu", "Relu", &[&y], vec![]);
                }
                MulAddRelu => {
                    let scale = m.uniform("scale", &[c, 1, 1], 0.5, 1.5);
                    let shift = m.uniform("shift", &[c, 1, 1], -0.5, 0.5);
                    let y = m.op("mul", "Mul", &[&x, &scale], vec![]);
                    let y = m.op("add", "Add", &[&y, &shift], vec![]);
                    m.op("relu", "Relu", &[&y], vec![]);
                }
                _ => {
                    let sig = m.op("sigmoid", "Sigmoid", &[&x], vec![]);
                    m.op("mul", "Mul", &[&x, &sig], vec![]);
                }
            }
            dims.to_vec()
        }
        AddLayerNorm => {
            let dims = [1, size.get("rows")?, size.get("D")?];
            let x = m.input("x", &dims);
            let r = m.input("residual", &dims);
            let gamma = m.uniform("ln.weight", &dims[2..], 0.5, 1.5);
            let beta = m.uniform("ln.bias", &dims[2..], -0.1, 0.1);
            let y = m.op("add", "Add", &[&x, &r], vec![]);
            let attrs = vec![a_i("axis", -1), a_f("epsilon", 1e-5)];
            m.op("layernorm", "LayerNormalization", &[&y, &gamma, &beta], attrs);
            dims.to_vec()
        }
    };
    m.finish(&out)
}

/// Peak-compute probe: `Y = MatMul(A, B)`, A and B graph inputs `[n, n]` of `dtype` (F32 or F16).
pub fn gemm_model(n: usize, dtype: DType) -> Result<Vec<u8>> {
    if !matches!(dtype, DType::F32 | DType::F16) {
        bail!("gemm_model: dtype {dtype:?} is not supported (F32 or F16)");
    }
    if n == 0 {
        bail!("gemm_model: n is 0");
    }
    let mut m = Model::new(0);
    m.elem = dtype.onnx_code();
    let a = m.input("A", &[n, n]);
    let b = m.input("B", &[n, n]);
    m.op("matmul", "MatMul", &[&a, &b], vec![]);
    m.finish(&[n, n])
}

/// Bandwidth probe: `Y = Add(A, B)`, A and B graph inputs `[numel]` f32 (bytes moved: 3·4·numel).
pub fn add_model(numel: usize) -> Result<Vec<u8>> {
    if numel == 0 {
        bail!("add_model: numel is 0");
    }
    let mut m = Model::new(0);
    let a = m.input("A", &[numel]);
    let b = m.input("B", &[numel]);
    m.op("add", "Add", &[&a, &b], vec![]);
    m.finish(&[numel])
}

/// A model being built: nodes in topological order, each writing one tensor named `<node>_out`; the last
/// node's output becomes the graph output `y`.
struct Model {
    rng: ChaCha8Rng,
    /// Element type of the graph inputs and output.
    elem: i32,
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
    inputs: Vec<pb::ValueInfoProto>,
}

impl Model {
    fn new(seed: u64) -> Model {
        Model {
            rng: ChaCha8Rng::seed_from_u64(seed),
            elem: DType::F32.onnx_code(),
            nodes: vec![],
            inits: vec![],
            inputs: vec![],
        }
    }

    fn input(&mut self, name: &str, dims: &[usize]) -> String {
        self.inputs.push(value_info(name, self.elem, Some(dims)));
        name.to_string()
    }

    /// An f32 initializer uniform in `[lo, hi)`.
    fn uniform(&mut self, name: &str, dims: &[usize], lo: f32, hi: f32) -> String {
        let n: usize = dims.iter().product();
        let mut raw = Vec::with_capacity(4 * n);
        for _ in 0..n {
            raw.extend_from_slice(&self.rng.random_range(lo..hi).to_le_bytes());
        }
        self.tensor(name, dims, DType::F32, raw)
    }

    /// A weight uniform in ±1/√fan_in, as PyTorch initialises linear and conv layers.
    fn weight(&mut self, name: &str, dims: &[usize], fan_in: usize) -> String {
        let b = 1.0 / (fan_in as f32).sqrt();
        self.uniform(name, dims, -b, b)
    }

    fn scalar(&mut self, name: &str, v: f32) -> String {
        self.tensor(name, &[], DType::F32, v.to_le_bytes().to_vec())
    }

    fn ints(&mut self, name: &str, v: &[i64]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensor(name, &[v.len()], DType::I64, raw)
    }

    fn tensor(&mut self, name: &str, dims: &[usize], dtype: DType, raw_data: Vec<u8>) -> String {
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
    fn op(&mut self, name: &str, op: &str, inputs: &[&str], attribute: Vec<pb::AttributeProto>) -> String {
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
    fn linear(&mut self, name: &str, x: &str, k: usize, n: usize) -> String {
        let w = self.weight(&format!("{name}.weight"), &[k, n], k);
        let b = self.weight(&format!("{name}.bias"), &[n], k);
        let y = self.op(&format!("{name}_matmul"), "MatMul", &[x, &w], vec![]);
        self.op(&format!("{name}_add"), "Add", &[&b, &y], vec![])
    }

    /// GELU, exact, as `x·0.5·(1 + erf(x/√2))` in the legacy exporter's node order.
    fn gelu_erf(&mut self, x: &str) {
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
    fn conv(&mut self, name: &str, x: &str, c: usize, bias: bool) -> String {
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
    fn batchnorm(&mut self, name: &str, x: &str, c: usize) -> String {
        let scale = self.uniform(&format!("{name}.weight"), &[c], 0.5, 1.5);
        let bias = self.uniform(&format!("{name}.bias"), &[c], -0.1, 0.1);
        let mean = self.uniform(&format!("{name}.running_mean"), &[c], -0.1, 0.1);
        let var = self.uniform(&format!("{name}.running_var"), &[c], 0.5, 1.5);
        let attrs = vec![a_f("epsilon", 1e-5), a_f("momentum", 0.9)];
        self.op(name, "BatchNormalization", &[x, &scale, &bias, &mean, &var], attrs)
    }

    /// The attention scores: `Softmax(MatMul(q, kt) / √d + mask)` over the last axis.
    fn scores(&mut self, q: &str, kt: &str, mask: &str, d: usize) -> String {
        let sqrt_d = self.scalar("scale.sqrt_d", (d as f32).sqrt());
        let s = self.op("qk_matmul", "MatMul", &[q, kt], vec![]);
        let s = self.op("scale", "Div", &[&s, &sqrt_d], vec![]);
        let s = self.op("mask_add", "Add", &[&s, mask], vec![]);
        self.op("softmax", "Softmax", &[&s], vec![a_i("axis", -1)])
    }

    /// The serialized model, the last node's output renamed `y` and declared with `dims`.
    fn finish(mut self, dims: &[usize]) -> Result<Vec<u8>> {
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
