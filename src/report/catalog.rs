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
    /// What was measured on a GPU (results/h100, ONNX Runtime 1.31.1): whether ORT fuses it by itself
    /// on CUDA, and how the explicit kernel fared. Empty where nothing was measured.
    pub cuda_measured: String,
}

/// Measured on an H100 (results/h100/README.md), per pattern key.
const CUDA_MEASURED: &[(&str, &str)] = &[
    ("Linear_Bias", "ORT turns 3-D MatMul+Add into Reshape/Gemm/Reshape: 0.88× for BERT-base's 3072→768 at batch 1; pays only below 64³ in the sweep"),
    ("Linear_Bias_ReLU", "no FusedGemm on CUDA; what ORT does alone gives 0.97–1.03× in the sweep"),
    ("Linear_Bias_ReLU_Dropout", "no FusedGemm on CUDA; ORT drops the Dropout: pays at M=K=N=256 only in the sweep"),
    ("Linear_Bias_ReLU_Linear_Bias", "no FusedGemm on CUDA; 1.02–1.05× in the sweep"),
    ("Linear_Bias_GELU", "ORT fuses Gemm + Gelu (1.40×); the explicit BiasGelu is faster still (1.66×, BERT-base FFN)"),
    ("Conv2d_Bias", "bias folded into the Conv; within ±5% in the sweep"),
    ("Conv2d_BN", "BN folded into the Conv: 1.02–1.08× in ResNet-50"),
    ("Conv2d_BN_ReLU", "ORT keeps Conv and Relu apart on CUDA (only BN folded: 1.00–1.07×); FusedConv exists but runs 0.23–0.65× at batch 1, 0.45–1.3× under CUDA graphs"),
    ("Conv2d_ReLU", "ORT keeps Conv and Relu apart on CUDA; FusedConv is slower at batch 1"),
    ("Conv2d_BN_ReLU_MaxPool", "BN folded, ReLU and MaxPool separate; FusedConv + MaxPool 0.74× (ResNet-50 stem)"),
    ("QK_Softmax", "ORT fuses it into FusedMatMul + BiasSoftmax: 1.35× in the sweep"),
    ("Attention_Head", "1.27× in the sweep (ORT's FusedMatMul + BiasSoftmax)"),
    ("MultiHead_Linear", "ORT's own fusion 1.21×; the explicit Attention kernel 2.60× (BERT-base, 128 tokens)"),
    ("Add_ReLU", "no fused kernel on CUDA: 0.99–1.01×"),
    ("Add_LayerNorm", "SkipLayerNormalization 4.1× on CUDA (0.53× on a 2-core CPU)"),
    ("Mul_Add_ReLU", "no fused kernel on CUDA: 1.00×"),
    ("Sigmoid_Mul", "QuickGelu for SiLU: 1.23–1.28× in the sweep"),
    ("Softmax_V", "no fused kernel: 0.98–0.99×"),
];

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
            cuda_measured: CUDA_MEASURED
                .iter()
                .find(|(k, _)| *k == p.key())
                .map(|(_, m)| m.to_string())
                .unwrap_or_default(),
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
        if !e.cuda_measured.is_empty() {
            let _ = writeln!(s, "  measured on CUDA (H100): {}", e.cuda_measured);
        }
    }
    s
}
