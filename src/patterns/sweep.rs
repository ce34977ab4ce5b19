//! The size grids of the synthetic pattern models `calibrate` sweeps, per family, smallest work first.
//! `quick`: 3 sizes from overhead-dominated to medium, the same on every provider (each run under ~10 ms
//! on a 2-core CPU). Otherwise 6 or 7 sizes up to realistic large ones (the largest under ~0.3 s on a
//! 2-core CPU); on CUDA one larger size is added, but for the element-wise grids, which span 2^12..2^24
//! elements everywhere. Shapes (see each pattern's `build`): linear x `[M,K]`; conv x `[1,C,H,H]`, 3×3
//! convolutions C→C; attention 12 heads of 64 over S tokens; element-wise x `[1,64,H,W]`; rows
//! `[1,rows,768]`.

use crate::onnx::build::Size;

/// Attention heads and head size of the attention grids (BERT-base).
pub const HEADS: usize = 12;
pub const HEAD_DIM: usize = 64;
/// Hidden size of the Add_LayerNorm and MultiHead_Linear grids (BERT-base).
pub const HIDDEN: usize = 768;
/// Channels of the element-wise grids.
pub const ELEM_CHANNELS: usize = 64;

pub fn linear_size(m: usize, k: usize, n: usize) -> Size {
    Size::new(format!("M={m} K={k} N={n}"), &[("M", m), ("K", k), ("N", n)])
}

pub fn conv_size(c: usize, h: usize) -> Size {
    Size::new(format!("C={c} H=W={h}"), &[("C", c), ("H", h)])
}

pub fn attention_size(s: usize) -> Size {
    Size::new(format!("S={s} heads={HEADS} d={HEAD_DIM}"), &[("S", s), ("heads", HEADS), ("d", HEAD_DIM)])
}

pub fn elementwise_size(h: usize) -> Size {
    let c = ELEM_CHANNELS;
    Size::new(format!("N=1x{c}x{h}x{h}"), &[("C", c), ("H", h), ("W", h)])
}

pub fn rows_size(rows: usize) -> Size {
    Size::new(format!("N=1x{rows}x{HIDDEN}"), &[("rows", rows), ("D", HIDDEN)])
}

/// `v`, plus `extra` on CUDA.
fn more(mut v: Vec<Size>, cuda: bool, extra: Size) -> Vec<Size> {
    if cuda {
        v.push(extra);
    }
    v
}

/// Square linear layers, M = K = N.
pub fn linear(quick: bool, cuda: bool) -> Vec<Size> {
    let dims: &[usize] = if quick { &[64, 256, 512] } else { &[64, 128, 256, 512, 1024, 2048] };
    let v = dims.iter().map(|&d| linear_size(d, d, d)).collect();
    if quick {
        v
    } else {
        more(v, cuda, linear_size(4096, 4096, 4096))
    }
}

/// The transformer FFN: K → N = 4K → K.
pub fn mlp(quick: bool, cuda: bool) -> Vec<Size> {
    let mk: &[(usize, usize)] = if quick {
        &[(64, 64), (256, 256), (512, 256)]
    } else {
        &[(64, 64), (128, 128), (256, 256), (512, 512), (1024, 768), (2048, 768)]
    };
    let v = mk.iter().map(|&(m, k)| linear_size(m, k, 4 * k)).collect();
    if quick {
        v
    } else {
        more(v, cuda, linear_size(4096, 1024, 4096))
    }
}

pub fn conv(quick: bool, cuda: bool) -> Vec<Size> {
    let ch: &[(usize, usize)] = if quick {
        &[(16, 7), (32, 28), (64, 56)]
    } else {
        &[(16, 7), (32, 28), (16, 112), (64, 56), (512, 14), (256, 56)]
    };
    let v = ch.iter().map(|&(c, h)| conv_size(c, h)).collect();
    if quick {
        v
    } else {
        more(v, cuda, conv_size(256, 112))
    }
}

/// One attention head's sequence lengths.
pub fn attention(quick: bool, cuda: bool) -> Vec<Size> {
    let s: &[usize] = if quick { &[64, 128, 256] } else { &[64, 128, 256, 384, 512, 1024] };
    let v = s.iter().map(|&s| attention_size(s)).collect();
    if quick {
        v
    } else {
        more(v, cuda, attention_size(2048))
    }
}

/// The multi-head block: its four 768×768 projections make it the heaviest per token.
pub fn multihead(quick: bool, cuda: bool) -> Vec<Size> {
    let s: &[usize] = if quick { &[16, 32, 64] } else { &[32, 64, 128, 256, 512, 1024] };
    let v = s.iter().map(|&s| attention_size(s)).collect();
    if quick {
        v
    } else {
        more(v, cuda, attention_size(2048))
    }
}

/// 2^12 .. 2^24 elements, on every provider.
pub fn elementwise(quick: bool, _cuda: bool) -> Vec<Size> {
    let h: &[usize] = if quick { &[8, 32, 128] } else { &[8, 16, 32, 64, 128, 256, 512] };
    h.iter().map(|&h| elementwise_size(h)).collect()
}

/// Rows of the hidden size.
pub fn rows(quick: bool, cuda: bool) -> Vec<Size> {
    let r: &[usize] = if quick { &[16, 128, 1024] } else { &[16, 64, 256, 1024, 4096, 16384] };
    let v = r.iter().map(|&r| rows_size(r)).collect();
    if quick {
        v
    } else {
        more(v, cuda, rows_size(65536))
    }
}

/// FLOPs of a square 3×3 convolution C→C over H×H (2 per multiply-add), plus `tail` per output element.
pub fn conv_flops(s: &Size, tail: f64) -> anyhow::Result<f64> {
    let (c, h) = (s.get("C")? as f64, s.get("H")? as f64);
    let out = c * h * h;
    Ok(2.0 * 9.0 * c * out + tail * out)
}

/// FLOPs of x`[M,K]`·W`[K,N]` (2 per multiply-add), plus `tail` per output element.
pub fn linear_flops(s: &Size, tail: f64) -> anyhow::Result<f64> {
    let (m, k, n) = (s.get("M")? as f64, s.get("K")? as f64, s.get("N")? as f64);
    Ok(2.0 * m * k * n + tail * m * n)
}

/// Elements of an element-wise size.
pub fn elements(s: &Size) -> anyhow::Result<f64> {
    Ok((s.get("C")? * s.get("H")? * s.get("W")?) as f64)
}

/// (S, heads, d) of an attention size.
pub fn attention_dims(s: &Size) -> anyhow::Result<(usize, usize, usize)> {
    Ok((s.get("S")?, s.get("heads")?, s.get("d")?))
}
