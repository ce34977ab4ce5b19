//! Calibrate: the hardware's `HardwareCalibration`, in the design's schema.
//!
//! 1. Ceilings, through the same runtime: peak MatMul GFLOP/s (per dtype the provider runs) and memory
//!    bandwidth (a large Add, bytes read + written), beside optional theoretical peaks.
//! 2. Every selected catalog pattern swept over a size grid (`crate::synth`), each size a model fuseval
//!    builds itself, detected, carved and measured exactly as `bench` measures a model's instances:
//!    unfused, runtime-fused, explicit-fused, with CIs, equivalence and the A/A control.
//! 3. Where fusion starts or stops paying per pattern, and an nn-Meter-style fusion-rule table: for each
//!    producer→consumer pair, T1 + T2 − T_block against 0.5 · min(T1, T2).

use std::time::Instant;

use anyhow::{Context, Result};
use petgraph::graph::NodeIndex;

use crate::calibration::hardware::{
    best_speedup, size_label, CalibrationMetadata, Crossover, FusionRule, HardwareCalibration, OperationProfile,
    SweepPoint, HW_SCHEMA_VERSION,
};
use crate::calibration::roofline::{bottleneck, Ceilings};
use crate::calibration::{kernel_count, FusionCalibration, Status};
use crate::carve::{carve, ConstValues};
use crate::measure::{self, DType, InputSpec, MeasureOptions, ModelSource};
use crate::patterns::{Family, Instance, Pattern, Role};
use crate::pipeline::{carved_specs, distinct_groups, measure_group, prepare, Prepared};
use crate::report::hardware::rule_text;
use crate::runtime::{Ep, TempDir};

/// `linear,conv`, `all`, or pattern keys in any common spelling; catalog order, no duplicates.
pub fn parse_patterns(s: &str) -> Result<Vec<Pattern>> {
    let mut want = vec![];
    for item in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let lower = item.to_ascii_lowercase();
        if lower == "all" {
            want.extend(Pattern::ALL);
        } else if let Some(f) = Family::ALL.into_iter().find(|f| f.name() == lower) {
            want.extend(Pattern::ALL.into_iter().filter(|p| p.family() == f));
        } else {
            let p = crate::calibration::cost_model::resolve_pattern(item).map_err(|e| {
                let families: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
                crate::error::user(format!("--patterns: {e:#} (or a family: all, {})", families.join(", ")))
            })?;
            want.push(p);
        }
    }
    if want.is_empty() {
        return Err(crate::error::user("--patterns names no pattern"));
    }
    Ok(Pattern::ALL.into_iter().filter(|p| want.contains(p)).collect())
}

/// A known device's datasheet figures, for `--preset`: dense peaks in GFLOP/s per precision (fp32 on the
/// CUDA cores; TF32 and fp16 on the tensor cores, `None` on a CPU) and the memory bandwidth in GB/s.
pub struct Preset {
    pub name: &'static str,
    pub fp32: f64,
    pub tf32: Option<f64>,
    pub fp16: Option<f64>,
    pub bandwidth_gbs: f64,
    /// Where the figures come from.
    pub source: &'static str,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "h100-sxm",
        fp32: 66_900.0,
        tf32: Some(494_700.0),
        fp16: Some(989_400.0),
        bandwidth_gbs: 3_350.0,
        source: "NVIDIA H100 SXM datasheet (dense), HBM3 3.35 TB/s",
    },
    Preset {
        name: "h100-pcie",
        fp32: 51_200.0,
        tf32: Some(378_000.0),
        fp16: Some(756_000.0),
        bandwidth_gbs: 2_000.0,
        source: "NVIDIA H100 PCIe datasheet (dense), HBM2e 2.0 TB/s",
    },
    Preset {
        name: "h200",
        fp32: 66_900.0,
        tf32: Some(494_700.0),
        fp16: Some(989_400.0),
        bandwidth_gbs: 4_800.0,
        source: "NVIDIA H200 SXM datasheet (dense), HBM3e 4.8 TB/s",
    },
    Preset {
        name: "a100-sxm",
        fp32: 19_500.0,
        tf32: Some(156_000.0),
        fp16: Some(312_000.0),
        bandwidth_gbs: 2_039.0,
        source: "NVIDIA A100 80GB SXM datasheet (dense), HBM2e 2.04 TB/s",
    },
    Preset {
        name: "i7-12700k",
        fp32: 1_152.0,
        tf32: None,
        fp16: None,
        bandwidth_gbs: 76.8,
        source: "design doc example: 8P cores x 4.5 GHz x 32 FLOP/cycle, DDR5-4800 dual channel",
    },
];

/// A preset's peak GFLOP/s in `precision` (the one the ceilings' peak is measured in), its bandwidth, and
/// the source naming the figure taken.
pub fn preset(name: &str, precision: crate::runtime::Precision) -> Option<(f64, f64, String)> {
    use crate::runtime::Precision;
    let p = PRESETS.iter().find(|p| p.name.eq_ignore_ascii_case(name))?;
    let (peak, what) = match (precision, p.tf32, p.fp16) {
        (Precision::Tf32, Some(x), _) => (x, "TF32 tensor"),
        (Precision::Fp16, _, Some(x)) => (x, "fp16 tensor"),
        _ => (p.fp32, "fp32"),
    };
    Some((peak, p.bandwidth_gbs, format!("{}: {what} {:.1} TFLOP/s", p.source, peak / 1e3)))
}

#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    pub hardware: String,
    pub ep: Ep,
    pub threads: usize,
    pub quick: bool,
    pub patterns: Vec<Pattern>,
    pub seed: u64,
    pub theoretical_gflops: Option<f64>,
    pub theoretical_bandwidth_gbs: Option<f64>,
    pub theoretical_source: Option<String>,
    /// Also measure the fusion-rule table.
    pub rules: bool,
    /// One line per measurement on stderr.
    pub progress: bool,
    /// CUDA: time CUDA-graph replays.
    pub cuda_graph: bool,
    /// What the pattern sessions compute in: each size of each pattern is measured in each of these
    /// (fp16: the synthetic model converted), every record keyed by its precision. Not empty.
    pub precisions: Vec<crate::runtime::Precision>,
}

fn probe_opts(ep: Ep, threads: usize, quick: bool, seed: u64) -> MeasureOptions {
    // one replicate per sweep point: the sweep's neighbours show its spread
    MeasureOptions { seed, replicates: 1, ..MeasureOptions::new(ep, threads, quick) }
}

/// One ceiling probe: a single-op model of inputs `A` and `B`, both `input`-shaped.
struct Probe {
    operation: &'static str,
    dtype: DType,
    shape: Vec<usize>,
    input: Vec<usize>,
    note: String,
    flops: u64,
    bytes: u64,
}

/// Time a probe's model at ORT's Disable level (it is a single kernel), with the same rounds and CI as
/// everything else; a model that cannot be built or run is an unsupported profile saying why.
fn probe(p: Probe, model: Result<Vec<u8>>, mopts: &MeasureOptions) -> OperationProfile {
    let spec = |name: &str| InputSpec { name: name.into(), dtype: p.dtype, shape: p.input.clone(), range: None };
    let mut out = OperationProfile {
        operation: p.operation.into(),
        dtype: p.dtype.name().to_string(),
        shape: p.shape,
        supported: false,
        note: p.note,
        flops: p.flops,
        bytes: p.bytes,
        arithmetic_intensity: p.flops as f64 / p.bytes as f64,
        latency: None,
        measured_gflops: 0.0,
        efficiency: None,
        achieved_bandwidth_gbps: 0.0,
        bandwidth_efficiency: None,
        bottleneck: None,
    };
    let timed = model.and_then(|m| measure::compare(ModelSource::Bytes(&m), &[spec("A"), spec("B")], mopts));
    match timed {
        Ok(c) => {
            let s = c.unfused.median_ms * 1e-3;
            out.supported = true;
            out.latency = Some(c.unfused);
            out.measured_gflops = p.flops as f64 / s / 1e9;
            out.achieved_bandwidth_gbps = p.bytes as f64 / s / 1e9;
        }
        Err(e) => out.note = format!("not run on {}: {e:#}", mopts.ep),
    }
    out
}

/// What [`measure_ceilings`] measures.
#[derive(Clone, Copy, Debug)]
pub struct CeilingOptions {
    pub ep: Ep,
    pub threads: usize,
    pub quick: bool,
    pub seed: u64,
    /// The datasheet's peak GFLOP/s and bandwidth, for the efficiencies.
    pub theoretical: (Option<f64>, Option<f64>),
    pub progress: bool,
    /// Bench's roofline: the largest MatMul and the largest Add only.
    pub minimal: bool,
    /// The peak's precision: fp16 an f16 MatMul, fp32 and tf32 an f32 one with TF32 off or on.
    pub precision: crate::runtime::Precision,
}

impl CeilingOptions {
    /// Bench's (and plan's) brief ceilings in `precision`.
    pub fn minimal(ep: Ep, threads: usize, seed: u64, precision: crate::runtime::Precision) -> Self {
        CeilingOptions {
            ep,
            threads,
            quick: true,
            seed,
            theoretical: (None, None),
            progress: false,
            minimal: true,
            precision,
        }
    }
}

/// Measure the ceilings: MatMul n×n×n per dtype, Add over growing sizes. The peak is the best MatMul in
/// the options' precision (f16 for fp16, else f32 with TF32 as asked), the bandwidth the largest Add (out
/// of every cache).
pub fn measure_ceilings(o: CeilingOptions) -> Result<(Vec<OperationProfile>, Ceilings)> {
    use crate::runtime::Precision;
    let CeilingOptions { ep, threads, quick, seed, theoretical, progress, minimal, precision } = o;
    let mopts = MeasureOptions { precision, ..probe_opts(ep, threads, quick, seed) };
    let peak_dtype = if precision == Precision::Fp16 { DType::F16 } else { DType::F32 };
    let gpu = matches!(ep, Ep::Cuda { .. });
    let gemm_sizes: Vec<usize> = match (gpu, quick) {
        (false, true) => vec![512, 1024],
        (false, false) => vec![256, 512, 1024, 2048],
        (true, true) => vec![2048, 4096],
        (true, false) => vec![1024, 2048, 4096, 8192],
    };
    let dram = dram_add_numel(last_level_cache_bytes());
    let add_sizes: Vec<usize> = match (gpu, quick) {
        (false, true) => vec![1 << 16, dram],
        (false, false) => {
            let mut v = vec![1 << 14, 1 << 18, 1 << 22, dram];
            v.dedup();
            v
        }
        (true, true) => vec![1 << 20, 1 << 26],
        (true, false) => vec![1 << 16, 1 << 20, 1 << 24, 1 << 27],
    };
    let largest = *gemm_sizes.last().unwrap_or(&1024);
    // minimal (bench's roofline): the largest MatMul in the peak's dtype and the largest Add only;
    // otherwise every size in the peak's dtype and the largest in the other
    let (gemm_sizes, add_sizes) =
        if minimal { (vec![largest], add_sizes[add_sizes.len() - 1..].to_vec()) } else { (gemm_sizes, add_sizes) };
    let other = if minimal { vec![] } else { vec![largest] };
    let (f32_sizes, f16_sizes) = if peak_dtype == DType::F16 { (other, gemm_sizes) } else { (gemm_sizes, other) };
    let mut profiles = vec![];
    for (dtype, sizes) in [(DType::F32, f32_sizes), (DType::F16, f16_sizes)] {
        for n in sizes {
            let p = probe(
                Probe {
                    operation: "MatMul",
                    dtype,
                    shape: vec![n, n, n],
                    input: vec![n, n],
                    note: format!("Y[{n},{n}] = A[{n},{n}] @ B[{n},{n}]"),
                    flops: 2 * (n as u64).pow(3),
                    bytes: 3 * (n * n * dtype.size_bytes()) as u64,
                },
                crate::synth::gemm_model(n, dtype),
                &mopts,
            );
            if progress {
                eprintln!("  ceiling  MatMul {n}^3 {}: {:.1} GFLOP/s", dtype.name(), p.measured_gflops);
            }
            profiles.push(p);
        }
    }
    for numel in add_sizes {
        let bytes = 3 * 4 * numel as u64;
        let p = probe(
            Probe {
                operation: "Add",
                dtype: DType::F32,
                shape: vec![numel],
                input: vec![numel],
                note: format!("Y[{numel}] = A + B: {} MB read and written", bytes / 1_000_000),
                flops: numel as u64,
                bytes,
            },
            crate::synth::add_model(numel),
            &mopts,
        );
        if progress {
            eprintln!("  ceiling  Add 2^{} f32: {:.1} GB/s", numel.trailing_zeros(), p.achieved_bandwidth_gbps);
        }
        profiles.push(p);
    }
    let best = |op: &str, dtype: &str, key: fn(&OperationProfile) -> f64| {
        profiles
            .iter()
            .filter(|p| p.supported && p.operation == op && p.dtype == dtype)
            .max_by(|a, b| key(a).total_cmp(&key(b)))
    };
    let peak = best("MatMul", peak_dtype.name(), |p| p.measured_gflops)
        .with_context(|| format!("no {} MatMul probe ran: no peak GFLOP/s", peak_dtype.name()))?;
    // the largest Add: the DRAM (or HBM) figure, not a cache's
    let bw = profiles
        .iter()
        .filter(|p| p.supported && p.operation == "Add")
        .max_by_key(|p| p.shape[0])
        .context("no Add probe ran: no bandwidth")?;
    let ceilings = Ceilings {
        peak_gflops: peak.measured_gflops,
        bandwidth_gbs: bw.achieved_bandwidth_gbps,
        source: format!(
            "measured by fuseval on {ep} with {threads} threads: MatMul {}^3 {}{}, Add of {} f32",
            peak.shape[0],
            peak_dtype.name(),
            match (ep, precision) {
                (Ep::Cuda { .. }, Precision::Fp32) => " (TF32 off)",
                (Ep::Cuda { .. }, Precision::Tf32) => " (TF32)",
                _ => "",
            },
            bw.shape[0]
        ),
        precision: Some(precision),
    };
    for p in profiles.iter_mut().filter(|p| p.supported) {
        p.bottleneck = Some(bottleneck(p.arithmetic_intensity, &ceilings));
        if p.dtype == peak_dtype.name() {
            p.efficiency = theoretical.0.map(|t| p.measured_gflops / t);
        }
        p.bandwidth_efficiency = theoretical.1.map(|t| p.achieved_bandwidth_gbps / t);
    }
    Ok((profiles, ceilings))
}

/// The CPU's largest cache in bytes (Linux sysfs), if it says.
fn last_level_cache_bytes() -> Option<u64> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("size")).ok())
        .filter_map(|s| parse_cache_size(s.trim()))
        .max()
}

/// "32768K", "1M", "512" (bytes).
fn parse_cache_size(s: &str) -> Option<u64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "" => n,
        "K" => n << 10,
        "M" => n << 20,
        "G" => n << 30,
        _ => return None,
    })
}

/// Elements of the CPU bandwidth probe `Y = A + B` (12 bytes each): a power of two moving at least three
/// times the largest cache, so that the figure is DRAM's; 2^24 when the cache size is unknown. Smaller
/// than that wastes nothing but memory: the probe's buffers stay in the shared arena for the whole run.
pub fn dram_add_numel(llc_bytes: Option<u64>) -> usize {
    match llc_bytes {
        Some(b) => ((3 * b).div_ceil(12) as usize).next_power_of_two().clamp(1 << 22, 1 << 27),
        None => 1 << 24,
    }
}

/// The one instance of `pattern` a synthetic model holds (the largest match, should several overlap).
fn target(p: &Prepared, pattern: Pattern) -> Option<&Instance> {
    p.detection.all.iter().filter(|i| i.pattern == pattern).max_by_key(|i| i.nodes.len())
}

/// Write a synthetic model where `prepare` can load it.
fn stage(dir: &TempDir, name: &str, bytes: &[u8]) -> Result<std::path::PathBuf> {
    let path = dir.0.join(format!("{name}.onnx"));
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Run the whole calibration. `on_record` sees the file after each measured size (`complete` false).
pub fn calibrate(
    opts: &CalibrateOptions,
    on_record: &mut dyn FnMut(&HardwareCalibration) -> Result<()>,
) -> Result<HardwareCalibration> {
    crate::pipeline::check_ep(opts.ep)?;
    let started = Instant::now();
    let mopts = MeasureOptions {
        cuda_graph: opts.cuda_graph,
        // the fusion rules' precision; the sweeps take each of `opts.precisions`
        precision: opts.precisions[0],
        ..probe_opts(opts.ep, opts.threads, opts.quick, opts.seed)
    };
    if opts.progress {
        eprintln!("ceilings");
    }
    let (operation_profiles, ceilings) = measure_ceilings(CeilingOptions {
        ep: opts.ep,
        threads: opts.threads,
        quick: opts.quick,
        seed: opts.seed,
        theoretical: (opts.theoretical_gflops, opts.theoretical_bandwidth_gbs),
        progress: opts.progress,
        minimal: false,
        precision: opts.precisions[0],
    })?;
    let hardware = crate::runtime::hardware_for(opts.ep);
    let gpu = matches!(opts.ep, Ep::Cuda { .. });
    let mut cal = HardwareCalibration {
        schema_version: HW_SCHEMA_VERSION,
        metadata: CalibrationMetadata {
            hardware_name: opts.hardware.clone(),
            date: crate::calibration::utc_now(),
            tool: "fuseval".into(),
            fuseval_version: env!("CARGO_PKG_VERSION").into(),
            device_type: if gpu { "gpu" } else { "cpu" }.into(),
            precisions: opts.precisions.clone(),
            hardware,
            runtime: "onnxruntime".into(),
            ort_version: crate::runtime::ort_version(),
            provenance: crate::runtime::Provenance::current(),
            execution_provider: opts.ep.to_string(),
            cuda_graph: opts.cuda_graph,
            threads: opts.threads,
            quick: opts.quick,
            seed: opts.seed,
            warmup: "per session: two plain runs (equivalence), one bound run, then warm-up iterations until a \
                     round takes ≥ its target time, before the timed rounds"
                .into(),
            measurement: "sessions interleaved in shuffled rounds; per-round per-iteration times; median with a \
                          95% CI (bootstrap + order statistic), rounds added until the speedup CI is within the \
                          target or the budget is spent"
                .into(),
            target_rel_ci: mopts.target_rel_ci,
            budget_per_measurement_s: mopts.budget.as_secs_f64(),
            min_rounds: mopts.min_rounds,
            max_rounds: mopts.max_rounds,
            patterns: opts.patterns.iter().map(|p| p.key().to_string()).collect(),
            measured: String::new(),
        },
        theoretical_peak_gflops: opts.theoretical_gflops,
        theoretical_bandwidth_gbps: opts.theoretical_bandwidth_gbs,
        theoretical_source: opts.theoretical_source.clone(),
        measured_peak_gflops: ceilings.peak_gflops,
        measured_bandwidth_gbps: ceilings.bandwidth_gbs,
        peak_efficiency: opts.theoretical_gflops.map(|t| ceilings.peak_gflops / t),
        bandwidth_efficiency: opts.theoretical_bandwidth_gbs.map(|t| ceilings.bandwidth_gbs / t),
        ceilings: ceilings.clone(),
        precision_ceilings: vec![],
        operation_profiles,
        fusion_profiles: vec![],
        crossovers: vec![],
        fusion_rules: vec![],
        warnings: vec![],
        complete: false,
    };
    let dir = TempDir::new()?;
    let several = opts.precisions.len() > 1;
    for &precision in &opts.precisions {
        let mopts = MeasureOptions { precision, ..mopts.clone() };
        if opts.progress && several {
            eprintln!("precision {}", precision.name());
        }
        // each precision's records on its own roofline: the first's ceilings, the others' peak measured
        // briefly in their precision
        let ceilings = if precision == opts.precisions[0] {
            ceilings.clone()
        } else {
            match measure_ceilings(CeilingOptions::minimal(opts.ep, opts.threads, opts.seed, precision)) {
                Ok((_, c)) => c,
                Err(e) => {
                    cal.warnings.push(format!(
                        "the {} ceilings could not be measured, so its records sit on the {} roofline: {e:#}",
                        precision.name(),
                        opts.precisions[0].name()
                    ));
                    ceilings.clone()
                }
            }
        };
        if opts.progress && several {
            eprintln!("  ceilings: {:.0} GFLOP/s, {:.0} GB/s", ceilings.peak_gflops, ceilings.bandwidth_gbs);
        }
        if several {
            cal.precision_ceilings.push(ceilings.clone());
        }
        for &pattern in &opts.patterns {
            let sizes = crate::synth::grid(pattern, opts.quick, opts.ep);
            for (k, size) in sizes.iter().enumerate() {
                if crate::drivers::run::interrupted() {
                    return Ok(finish(cal, started));
                }
                let rec = match sweep_point(&dir, pattern, k, size, opts.seed, &mopts) {
                    Ok(r) => r.with_roofline(&ceilings),
                    Err(e) => {
                        let at = if several { format!(" in {}", precision.name()) } else { String::new() };
                        cal.warnings.push(format!("{} at {}{at}: {e:#}", pattern.key(), size.label));
                        continue;
                    }
                };
                if opts.progress {
                    eprintln!("  {:<30} {:<28} {}", pattern.key(), size.label, point_text(&rec));
                }
                cal.fusion_profiles.push(rec);
                cal.metadata.measured = format!("{:.1} s", started.elapsed().as_secs_f64());
                on_record(&cal)?;
            }
        }
    }
    cal.crossovers = crossovers(&cal.fusion_profiles, &opts.patterns);
    if opts.rules && !crate::drivers::run::interrupted() {
        if opts.progress {
            eprintln!("fusion rules");
        }
        cal.fusion_rules = fusion_rules(&dir, opts, &mopts, &mut cal.warnings);
    }
    cal.complete = !crate::drivers::run::interrupted();
    Ok(finish(cal, started))
}

fn finish(mut cal: HardwareCalibration, started: Instant) -> HardwareCalibration {
    cal.metadata.measured = format!("{:.1} s", started.elapsed().as_secs_f64());
    cal
}

fn point_text(r: &FusionCalibration) -> String {
    match (r.status, best_speedup(r)) {
        (Status::Measured, Some(s)) => format!(
            "unfused {:.3} ms, runtime {:.2}× [{:.2}, {:.2}], best {} {:.2}×{}",
            r.unfused_latency_ms,
            r.speedup_factor,
            r.speedup_ci_low,
            r.speedup_ci_high,
            r.best_variant,
            s.point,
            if r.trustworthy { "" } else { " (A/A off or not equivalent)" }
        ),
        _ => format!("skipped: {}", r.skip_reason.as_deref().unwrap_or("?")),
    }
}

/// Build, load, detect and measure one size of one pattern.
fn sweep_point(
    dir: &TempDir,
    pattern: Pattern,
    k: usize,
    size: &crate::synth::Size,
    seed: u64,
    mopts: &MeasureOptions,
) -> Result<FusionCalibration> {
    let bytes = crate::synth::build(pattern, size, seed).context("building the synthetic model")?;
    let path = stage(dir, &format!("{}_{k}", pattern.key()), &bytes)?;
    let p = prepare(&path, &[])?;
    let inst = target(&p, pattern).with_context(|| {
        format!("internal: the synthetic {} model was not detected as {}", size.label, pattern.key())
    })?;
    let groups = distinct_groups(&p.graph, &[inst]);
    let (sig, group) = &groups[0];
    let consts = ConstValues::evaluate(&p.loaded, &p.graph, &[inst])?;
    let mut rec = measure_group(&p, sig, group, &consts, mopts);
    rec.extra_params.insert("size".into(), serde_json::json!(size.label));
    rec.extra_params.insert("size_params".into(), serde_json::json!(size.params));
    rec.instances = vec![];
    Ok(rec)
}

/// Per precision and pattern, in grid order: where fusion pays.
pub fn crossovers(profiles: &[FusionCalibration], patterns: &[Pattern]) -> Vec<Crossover> {
    let mut precisions: Vec<Option<crate::runtime::Precision>> = profiles.iter().map(|r| r.precision).collect();
    precisions.sort();
    precisions.dedup();
    let pairs: Vec<(Option<crate::runtime::Precision>, &Pattern)> =
        precisions.iter().flat_map(|&q| patterns.iter().map(move |p| (q, p))).collect();
    pairs
        .into_iter()
        .filter_map(|(precision, p)| {
            let recs: Vec<&FusionCalibration> =
                profiles.iter().filter(|r| r.fusion_pattern == p.key() && r.precision == precision).collect();
            if recs.is_empty() {
                return None;
            }
            let points: Vec<SweepPoint> = recs
                .iter()
                .map(|r| {
                    let measured = r.status == Status::Measured;
                    SweepPoint {
                        size: size_label(r),
                        flops: r.flops,
                        unfused_memory_bytes: r.unfused_memory_bytes,
                        unfused_latency_ms: r.unfused_latency_ms,
                        speedup: r.extended.as_ref().map(|l| l.speedup),
                        best_variant: r.best_variant,
                        best_speedup: if measured { best_speedup(r) } else { None },
                        verdict: r.verdict,
                        bottleneck_unfused: r.roofline.as_ref().map(|x| x.unfused.bottleneck),
                        trustworthy: !r.aa_failed(),
                    }
                })
                .collect();
            // a size whose A/A control failed says nothing about where fusion pays: shown, left out here
            let trusted: Vec<SweepPoint> = points.iter().filter(|x| x.trustworthy).cloned().collect();
            let pays: Vec<bool> = recs
                .iter()
                .filter(|r| !r.aa_failed())
                .map(|r| r.best_variant != crate::calibration::Variant::Unfused)
                .collect();
            let pays_at: Vec<String> =
                trusted.iter().zip(&pays).filter(|(_, &y)| y).map(|(p, _)| p.size.clone()).collect();
            let left_out = points.len() - trusted.len();
            let mut summary = if trusted.is_empty() {
                "no size could be trusted".to_string()
            } else {
                crossover_summary(&trusted, &pays)
            };
            if left_out > 0 {
                summary.push_str(&format!("; {left_out} size(s) left out: their A/A control failed"));
            }
            Some(Crossover { fusion_pattern: p.key().into(), precision, points, pays_at, summary })
        })
        .collect()
}

fn crossover_summary(points: &[SweepPoint], pays: &[bool]) -> String {
    let n = pays.len();
    let k = pays.iter().filter(|&&y| y).count();
    let best = |i: usize| points[i].best_speedup.map(|s| format!("{:.2}×", s.point)).unwrap_or_else(|| "—".into());
    if k == 0 {
        return format!("fusion does not pay at any of the {n} sizes (best {} to {})", best(0), best(n - 1));
    }
    if k == n {
        return format!(
            "fusion pays at every size, {} at {} to {} at {}",
            best(0),
            points[0].size,
            best(n - 1),
            points[n - 1].size
        );
    }
    let first = pays.iter().position(|&y| y).unwrap_or(0);
    let last = pays.iter().rposition(|&y| y).unwrap_or(0);
    if pays[first..=last].iter().all(|&y| y) {
        if first > 0 && last == n - 1 {
            return format!(
                "fusion starts paying at {} ({}); below it, within noise or slower",
                points[first].size,
                best(first)
            );
        }
        if first == 0 && last < n - 1 {
            return format!(
                "fusion stops paying above {} ({}); at {} it is {}",
                points[last].size,
                best(last),
                points[last + 1].size,
                best(last + 1)
            );
        }
        return format!("fusion pays only from {} to {}", points[first].size, points[last].size);
    }
    let at: Vec<&str> = points.iter().zip(pays).filter(|(_, &y)| y).map(|(p, _)| p.size.as_str()).collect();
    format!("fusion pays at {} of {n} sizes, not monotonically: {}", k, at.join("; "))
}

/// nn-Meter's rule per producer→consumer pair inside each selected pattern's middle-size model: T1, T2 and
/// T_block at ORT's default level (all) on this provider.
fn fusion_rules(
    dir: &TempDir,
    opts: &CalibrateOptions,
    mopts: &MeasureOptions,
    warnings: &mut Vec<String>,
) -> Vec<FusionRule> {
    let mut seen: Vec<(String, String)> = vec![];
    let mut rules = vec![];
    for &pattern in &opts.patterns {
        let sizes = crate::synth::grid(pattern, true, opts.ep);
        let Some(size) = sizes.get(sizes.len() / 2) else { continue };
        let mut run = || -> Result<Vec<FusionRule>> {
            let bytes = crate::synth::build(pattern, size, opts.seed)?;
            let path = stage(dir, &format!("rules_{}", pattern.key()), &bytes)?;
            let p = prepare(&path, &[])?;
            let inst = target(&p, pattern).context("pattern not detected")?;
            let g = &p.graph;
            let mut out = vec![];
            let roles: Vec<(Role, NodeIndex)> = inst.roles.iter().copied().zip(inst.nodes.iter().copied()).collect();
            for w in roles.windows(2) {
                let (a, b) = (w[0].1, w[1].1);
                let (na, nb) = (g.node(a), g.node(b));
                let pair = (na.op.clone(), nb.op.clone());
                // a pair only where b reads a's output, once per op pair
                if !nb.inputs.iter().any(|i| na.outputs.contains(i)) || seen.contains(&pair) {
                    continue;
                }
                let (Some(i1), Some(i2), Some(i12)) = (
                    Instance::new(g, pattern, "rule", vec![w[0]]),
                    Instance::new(g, pattern, "rule", vec![w[1]]),
                    Instance::new(g, pattern, "rule", vec![w[0], w[1]]),
                ) else {
                    continue;
                };
                let consts = ConstValues::evaluate(&p.loaded, g, &[&i1, &i2, &i12])?;
                let time = |inst: &Instance| -> Result<(f64, Vec<String>)> {
                    let c = carve(&p.loaded, g, inst, &consts)?;
                    let specs = carved_specs(&c)?;
                    let m = measure::compare(ModelSource::Bytes(&c.bytes), &specs, mopts)?;
                    Ok((m.fused_all.median_ms, m.fused_ops_all))
                };
                let (t1, ops1) = time(&i1)?;
                let (t2, ops2) = time(&i2)?;
                let (tb, ops) = time(&i12)?;
                let saving = t1 + t2 - tb;
                let threshold = 0.5 * t1.min(t2);
                seen.push(pair.clone());
                let rule = FusionRule {
                    execution_provider: opts.ep.to_string(),
                    first: pair.0,
                    second: pair.1,
                    from: format!("{} {}", pattern.key(), size.label),
                    t1_ms: t1,
                    t2_ms: t2,
                    t_block_ms: tb,
                    saving_ms: saving,
                    threshold_ms: threshold,
                    rule_says_fused: saving > threshold,
                    graph_says_fused: kernel_count(&ops) < kernel_count(&ops1) + kernel_count(&ops2),
                    block_ops: ops,
                };
                if opts.progress {
                    eprintln!("  {:<18} → {:<18} {}", rule.first, rule.second, rule_text(&rule));
                }
                out.push(rule);
            }
            Ok(out)
        };
        match run() {
            Ok(r) => rules.extend(r),
            Err(e) => warnings.push(format!("fusion rules from {}: {e:#}", pattern.key())),
        }
    }
    rules
}

/// The patterns and sizes `fuseval eventcheck` times with CUDA events: per pattern the smallest and the
/// largest quick size.
pub const EVENT_CHECK_PATTERNS: [Pattern; 6] = [
    Pattern::ConvBnRelu,
    Pattern::LinearBiasGelu,
    Pattern::AttentionHead,
    Pattern::MultiHeadLinear,
    Pattern::AddLayerNorm,
    Pattern::SigmoidMul,
];

/// Check fuseval's GPU timing against CUDA events on synthetic pattern models ([`EVENT_CHECK_PATTERNS`]).
pub fn event_checks(
    ep: Ep,
    threads: usize,
    quick: bool,
    seed: u64,
    progress: bool,
) -> Result<Vec<measure::events::EventCheck>> {
    crate::pipeline::check_ep(ep)?;
    let mopts = probe_opts(ep, threads, quick, seed);
    let dir = TempDir::new()?;
    let mut out = vec![];
    for p in EVENT_CHECK_PATTERNS {
        let grid = crate::synth::grid(p, true, ep);
        for size in [grid.first(), grid.last()].into_iter().flatten() {
            let bytes = crate::synth::build(p, size, seed)?;
            let path = stage(&dir, &format!("events_{}", p.key()), &bytes)?;
            let prepared = prepare(&path, &[])?;
            let specs = crate::pipeline::model_input_specs(&prepared.loaded, &prepared.graph)?;
            let label = format!("{} {}", p.key(), size.label);
            let c = measure::events::event_check(&label, &bytes, &specs, &mopts).with_context(|| label.clone())?;
            if progress {
                eprintln!(
                    "  {label:<44} fuseval {:.4} ms  events {:.4} ms  ({:+.1}%)  host {:.4} ms ({:+.1}%)",
                    c.fuseval_ms,
                    c.event_ms,
                    100.0 * c.fuseval_vs_events,
                    c.host_ms,
                    100.0 * c.host_vs_events
                );
            }
            out.push(c);
        }
    }
    Ok(out)
}
