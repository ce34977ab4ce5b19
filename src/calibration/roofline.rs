//! Roofline: why a fusion did or did not pay.
//!
//! FLOPs and bytes are counted from shapes (`crate::calibration::{flops, memory_bytes}`): unfused, every
//! node reads its inputs and writes its outputs; fused, the pattern's inputs and weights are read once and
//! its outputs written once. Against the hardware's measured ceilings (peak GFLOP/s of a large MatMul,
//! bandwidth of a large Add, both through the same runtime) each side gets an arithmetic intensity, a
//! bottleneck, a roofline time bound, and the fraction of the ceilings it achieved.

use serde::{Deserialize, Serialize};

/// The hardware's ceilings, as measured (or given).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    /// Peak matrix-multiply throughput, GFLOP/s.
    pub peak_gflops: f64,
    /// Memory bandwidth, GB/s (bytes read + written).
    pub bandwidth_gbs: f64,
    /// Where they come from, e.g. `measured by fuseval calibrate (MatMul 1024^3 f32, Add 2^24 f32)`.
    pub source: String,
    /// The precision the peak was measured in (fp16: an f16 MatMul on the tensor cores; fp32: TF32
    /// off); absent in older files, whose peak is the provider's default (TF32 on CUDA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<crate::runtime::Precision>,
}

impl Ceilings {
    /// The arithmetic intensity (FLOP/byte) where the roofline turns from memory- to compute-bound.
    pub fn ridge(&self) -> f64 {
        if self.bandwidth_gbs > 0.0 {
            self.peak_gflops / self.bandwidth_gbs
        } else {
            f64::INFINITY
        }
    }

    /// The roofline's lower bound on the time of `flops` and `bytes`, in ms.
    pub fn bound_ms(&self, flops: u64, bytes: u64) -> f64 {
        let compute = if self.peak_gflops > 0.0 { flops as f64 / (self.peak_gflops * 1e9) } else { 0.0 };
        let memory = if self.bandwidth_gbs > 0.0 { bytes as f64 / (self.bandwidth_gbs * 1e9) } else { 0.0 };
        compute.max(memory) * 1e3
    }
}

/// The design's `BottleneckType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BottleneckType {
    ComputeBound,
    MemoryBound,
    /// Within a factor of [`BALANCED_BAND`] of the ridge point.
    Balanced,
}

impl std::fmt::Display for BottleneckType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BottleneckType::ComputeBound => "compute-bound",
            BottleneckType::MemoryBound => "memory-bound",
            BottleneckType::Balanced => "balanced",
        })
    }
}

/// An intensity within this factor of the ridge point is `balanced`.
pub const BALANCED_BAND: f64 = 2.0;

/// Which side of the ridge an arithmetic intensity lies on.
pub fn bottleneck(intensity: f64, c: &Ceilings) -> BottleneckType {
    let ridge = c.ridge();
    if intensity < ridge / BALANCED_BAND {
        BottleneckType::MemoryBound
    } else if intensity > ridge * BALANCED_BAND {
        BottleneckType::ComputeBound
    } else {
        BottleneckType::Balanced
    }
}

/// One side (unfused or fused) of an instance on the roofline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub bytes: u64,
    /// FLOP per byte moved.
    pub arithmetic_intensity: f64,
    pub bottleneck: BottleneckType,
    /// The roofline's lower bound on its latency, ms.
    pub bound_ms: f64,
    /// Measured latency, ms (0 when not measured).
    pub latency_ms: f64,
    pub achieved_gflops: f64,
    pub achieved_gbs: f64,
    /// achieved / peak, 0..1.
    pub fraction_of_peak_compute: f64,
    pub fraction_of_bandwidth: f64,
}

/// An instance on the roofline, unfused and fused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Roofline {
    pub flops: u64,
    pub unfused: Side,
    pub fused: Side,
    /// Ridge point of the ceilings used, FLOP/byte.
    pub ridge_point: f64,
    /// The largest speedup the roofline allows from the traffic saved: unfused bound / fused bound.
    pub roofline_speedup_bound: f64,
    /// One sentence: why the fusion paid or did not.
    pub explanation: String,
    pub ceilings_source: String,
}

impl Roofline {
    /// Place an instance with `flops` and (unfused, fused) bytes, measured at `latency_ms` (unfused, fused;
    /// 0 when unmeasured) with `speedup` (0 when unmeasured), against `c`.
    pub fn new(flops: u64, bytes: (u64, u64), latency_ms: (f64, f64), speedup: f64, c: &Ceilings) -> Roofline {
        let side = |bytes: u64, ms: f64| {
            let ai = if bytes > 0 { flops as f64 / bytes as f64 } else { f64::INFINITY };
            let s = if ms > 0.0 { ms * 1e-3 } else { 0.0 };
            let gflops = if s > 0.0 { flops as f64 / s / 1e9 } else { 0.0 };
            let gbs = if s > 0.0 { bytes as f64 / s / 1e9 } else { 0.0 };
            Side {
                bytes,
                arithmetic_intensity: finite(ai),
                bottleneck: bottleneck(ai, c),
                bound_ms: c.bound_ms(flops, bytes),
                latency_ms: ms,
                achieved_gflops: gflops,
                achieved_gbs: gbs,
                fraction_of_peak_compute: ratio(gflops, c.peak_gflops),
                fraction_of_bandwidth: ratio(gbs, c.bandwidth_gbs),
            }
        };
        let unfused = side(bytes.0, latency_ms.0);
        let fused = side(bytes.1, latency_ms.1);
        let bound = ratio(unfused.bound_ms, fused.bound_ms).max(if fused.bound_ms > 0.0 { 0.0 } else { 1.0 });
        let explanation = explain(&unfused, &fused, bound, speedup, c);
        Roofline {
            flops,
            unfused,
            fused,
            ridge_point: finite(c.ridge()),
            roofline_speedup_bound: bound,
            explanation,
            ceilings_source: c.source.clone(),
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// JSON has no infinity: an intensity with no bytes is reported as 0 (and called compute-bound).
fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

fn explain(u: &Side, f: &Side, bound: f64, speedup: f64, c: &Ceilings) -> String {
    let saved = if u.bytes > 0 { 100.0 * (1.0 - f.bytes as f64 / u.bytes as f64) } else { 0.0 };
    let at = format!(
        "intensity {:.2} → {:.2} FLOP/B against a ridge of {:.1}",
        finite(u.arithmetic_intensity),
        finite(f.arithmetic_intensity),
        finite(c.ridge())
    );
    let head = match (u.bottleneck, f.bottleneck) {
        (BottleneckType::MemoryBound, _) => format!(
            "memory-bound unfused ({at}): fusion cuts the traffic by {saved:.0}%, which allows up to {bound:.2}×"
        ),
        (BottleneckType::ComputeBound, _) => format!(
            "compute-bound ({at}): the {saved:.0}% of traffic fusion saves barely matters, the roofline allows {bound:.2}×"
        ),
        (BottleneckType::Balanced, _) => {
            format!("near the ridge ({at}): fusion cuts the traffic by {saved:.0}%, allowing up to {bound:.2}×")
        }
    };
    if speedup <= 0.0 {
        return head;
    }
    let tail = if speedup < 0.98 {
        format!("; measured {speedup:.2}×: the fused kernel is slower than its parts, not a traffic effect")
    } else if speedup <= 1.02 {
        if bound < 1.05 {
            format!("; measured {speedup:.2}×, as the roofline predicts")
        } else {
            format!("; measured {speedup:.2}×: the saving the roofline allows did not happen (was the pattern fused? is the unfused side cache-resident?)")
        }
    } else if speedup > bound * 1.1 && bound > 0.0 {
        format!("; measured {speedup:.2}×, beyond the traffic bound: the gain is per-kernel overhead (launches, threading), not bytes")
    } else {
        format!("; measured {speedup:.2}×")
    };
    head + &tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c() -> Ceilings {
        Ceilings { peak_gflops: 100.0, bandwidth_gbs: 10.0, source: "test".into(), precision: None }
    }

    #[test]
    fn ridge_and_bottleneck() {
        assert_eq!(c().ridge(), 10.0);
        assert_eq!(bottleneck(1.0, &c()), BottleneckType::MemoryBound);
        assert_eq!(bottleneck(10.0, &c()), BottleneckType::Balanced);
        assert_eq!(bottleneck(100.0, &c()), BottleneckType::ComputeBound);
    }

    #[test]
    fn elementwise_chain_is_memory_bound_and_bounded_by_traffic() {
        // Add+ReLU on 1M floats: 2M flops, unfused 4+4+4 +4+4 MB, fused 4+4+4 MB
        let r = Roofline::new(2_000_000, (20_000_000, 12_000_000), (2.0, 1.2), 1.67, &c());
        assert_eq!(r.unfused.bottleneck, BottleneckType::MemoryBound);
        assert!((r.unfused.bound_ms - 2.0).abs() < 1e-9, "{}", r.unfused.bound_ms);
        assert!((r.roofline_speedup_bound - 20.0 / 12.0).abs() < 1e-9);
        assert!((r.unfused.achieved_gbs - 10.0).abs() < 1e-9);
        assert!((r.unfused.fraction_of_bandwidth - 1.0).abs() < 1e-9);
        assert!(r.explanation.starts_with("memory-bound"), "{}", r.explanation);
    }

    #[test]
    fn gemm_is_compute_bound_and_fusion_cannot_help() {
        // 1024^3 MatMul + bias: 2.1 GFLOP, ~12 MB unfused, ~8 MB fused
        let r = Roofline::new(2_148_000_000, (16_800_000, 12_600_000), (25.0, 25.0), 1.0, &c());
        assert_eq!(r.unfused.bottleneck, BottleneckType::ComputeBound);
        assert!((r.roofline_speedup_bound - 1.0).abs() < 1e-9);
        assert!(r.explanation.contains("as the roofline predicts"), "{}", r.explanation);
        assert!((r.unfused.fraction_of_peak_compute - 0.8592).abs() < 1e-3);
    }
}
