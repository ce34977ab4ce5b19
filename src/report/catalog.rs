//! `fuseval inspect --patterns`: the pattern catalog. Each pattern's key, title, the ONNX forms it accepts
//! (from the doc headers of `src/patterns/*.rs`, kept here as text) and the fused kernel fuseval's explicit
//! rewrite maps it to on CPU and on CUDA (`crate::fuse::kernel_for`).

use std::fmt::Write;

use serde::Serialize;

use crate::patterns::Pattern;
use crate::runtime::Ep;

/// One pattern of the catalog.
#[derive(Clone, Debug, Serialize)]
pub struct CatalogEntry {
    pub key: String,
    pub title: String,
    pub operators: Vec<String>,
    pub forms: Vec<String>,
    /// The fused kernel on each provider; `none` when ORT has none there.
    pub kernel_cpu: String,
    pub kernel_cuda: String,
}

/// Forms accepted per pattern key, as the doc headers of `src/patterns/*.rs` state them.
const FORMS: &[(&str, &[&str])] = &[
    (
        "Linear_Bias",
        &[
            "MatMul with a constant 2-D weight (either operand) + Add of a per-feature constant bias (either order)",
            "Gemm with constant B and C, or without C + such an Add",
            "weight-only quantized weight (DequantizeLinear, or Cast → Mul by a scale): `(quantized weight)`",
        ],
    ),
    ("Linear_Bias_ReLU", &["Linear+Bias (any of its forms) + Relu, or ReLU6 as Clip with constant bounds"]),
    (
        "Linear_Bias_ReLU_Dropout",
        &["Linear+Bias+ReLU + inference Dropout (constant or no ratio, mask unread): a no-op ORT removes"],
    ),
    (
        "Linear_Bias_GELU",
        &["Linear+Bias (any of its forms) + GELU: the Gelu op, the exact Erf form, or the tanh approximation"],
    ),
    (
        "Linear_Bias_ReLU_Linear_Bias",
        &["two Linear+Bias layers with Relu (or ReLU6 as Clip) between, optionally + inference Dropout"],
    ),
    ("Conv2d_Bias", &["2-D Conv (constant weight) + Add of a per-channel constant ([C,1,1] or [1,C,1,1]), either order"]),
    ("Conv2d_BN", &["2-D Conv + inference BatchNormalization (one output, constant statistics)"]),
    ("Conv2d_BN_ReLU", &["Conv + BatchNormalization + Relu, or ReLU6 as Clip with constant bounds"]),
    ("Conv2d_ReLU", &["2-D Conv, with or without its own bias, + Relu, or ReLU6 as Clip with constant bounds"]),
    (
        "Conv2d_BN_ReLU_MaxPool",
        &["Conv + BatchNormalization + Relu (or ReLU6 as Clip) + MaxPool with a single output (VGG, ResNet stem)"],
    ),
    (
        "QK_Softmax",
        &[
            "MatMul(Q, Kᵀ) of non-constant tensors + Softmax over the last axis",
            "scale by a constant scalar: Mul or Div after the MatMul, Mul of Q and/or Kᵀ before it (sdpa), or folded in",
            "optional mask Add; sdpa's IsNaN/Where after the Softmax",
        ],
    ),
    ("Softmax_V", &["Softmax over the last axis (optionally + sdpa's IsNaN/Where) + MatMul(probs, V), V non-constant"]),
    (
        "Attention_Head",
        &[
            "Q@Kᵀ + Softmax (any QK_Softmax form: scale before, after or folded; mask or none) + MatMul with V",
            "PyTorch sdpa export: scaled Q and Kᵀ, IsNaN/Where after Softmax",
        ],
    ),
    (
        "MultiHead_Linear",
        &[
            "Q/K/V linear projections of one hidden state + Reshape/Transpose head split + an attention head \
             + head merge + output linear",
            "with the exporter's Shape/Gather/Concat shape computation inside the block",
        ],
    ),
    (
        "Add_ReLU",
        &["Add, or Sum of two or more tensors, all non-constant, + Relu or ReLU6 as Clip (the residual)"],
    ),
    (
        "Add_LayerNorm",
        &[
            "Add + LayerNormalization over the last axis (opset 17+)",
            "Add + decomposed ReduceMean → Sub → Pow(2) → ReduceMean → Add(eps) → Sqrt → Div (→ Mul → Add)",
        ],
    ),
    (
        "Mul_Add_ReLU",
        &["Mul by a constant + Add of a constant (scalar or per-channel) + Relu or ReLU6 as Clip (a BN as Mul and Add)"],
    ),
    (
        "Sigmoid_Mul",
        &[
            "SiLU x·σ(x); gated x·σ(g); SwiGLU x·SiLU(g); QuickGELU x·σ(αx)",
            "HardSigmoid + Mul: hard-swish x·hσ(x), gated x·hσ(g)",
        ],
    ),
];

/// The forms of a pattern, by key (empty for an unknown key).
pub fn forms(key: &str) -> &'static [&'static str] {
    FORMS.iter().find(|(k, _)| *k == key).map(|(_, f)| *f).unwrap_or(&[])
}

/// Every pattern, in `Pattern::ALL` order.
pub fn catalog() -> Vec<CatalogEntry> {
    Pattern::ALL
        .iter()
        .map(|&p| CatalogEntry {
            key: p.key().into(),
            title: p.title(),
            operators: p.operators().iter().map(|s| s.to_string()).collect(),
            forms: forms(p.key()).iter().map(|s| s.to_string()).collect(),
            kernel_cpu: kernel_name(p, Ep::Cpu),
            kernel_cuda: kernel_name(p, Ep::Cuda { device_id: 0 }),
        })
        .collect()
}

fn kernel_name(p: Pattern, ep: Ep) -> String {
    let k = crate::fuse::kernel_for(p, ep);
    if k.is_empty() {
        "none".into()
    } else {
        k.into()
    }
}

/// The catalog as text: one block per pattern.
pub fn catalog_text(entries: &[CatalogEntry]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Pattern catalog: {} patterns", entries.len());
    for e in entries {
        let _ = writeln!(s);
        let _ = writeln!(s, "{} ({})", e.key, e.title);
        for f in &e.forms {
            let _ = writeln!(s, "  form: {f}");
        }
        let _ = writeln!(s, "  kernel: CPU {}; CUDA {}", e.kernel_cpu, e.kernel_cuda);
    }
    s
}
