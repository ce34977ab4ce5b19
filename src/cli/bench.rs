//! `fuseval bench`: measure every distinct pattern instance of a model, unfused and fused, and write the
//! results (or finish an interrupted run with `--resume`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::args::{threads_arg, MeasureFlags, ModelFlags};
use crate::calibration::{CalibrationFile, RunOptions, Status};
use crate::drivers::bench::{bench_run, default_out_dir, BenchOptions};
use crate::error::ExitCode;
use crate::load::InputOverride;
use crate::pipeline::prepare;
use crate::report;
use crate::runtime::Ep;

/// Measure every distinct pattern instance unfused and fused, and write the results.
#[derive(Args, Debug)]
#[command(after_help = super::args::EXIT_CODES)]
pub struct BenchCmd {
    /// The model (not with --resume).
    #[arg(required_unless_present = "resume")]
    pub model: Option<PathBuf>,
    /// Finish an interrupted run: measure only the instances missing from OUT_DIR/calibration.json,
    /// with the model and options it records.
    #[arg(long, value_name = "OUT_DIR", conflicts_with_all = ["model", "inputs", "ep", "seed", "replicates", "device_id", "threads", "quick", "all_patterns", "no_whole_model", "whole_model_only", "no_attribution", "out", "force", "calibration", "cuda_graph"])]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub model_flags: ModelFlags,
    #[command(flatten)]
    pub measure: MeasureFlags,
    /// Measure every match, overlapping sub-matches too, not only the longest.
    #[arg(long)]
    pub all_patterns: bool,
    /// Skip timing the whole model (and the attribution to ORT's transformers).
    #[arg(long)]
    pub no_whole_model: bool,
    /// Time only the whole model, at ORT's levels (its replicates in full, --quick too): no pattern
    /// instances, no ceilings, no attribution. A cheap way to see whether the whole model's figures hold
    /// from one run to the next (`fuseval agreement` on two such folders).
    #[arg(long, conflicts_with_all = ["no_whole_model", "all_patterns", "calibration"])]
    pub whole_model_only: bool,
    /// Time the whole model at ORT's levels only: skip finding which of ORT's transformers act on it,
    /// timing each one in context and verifying a faster configuration.
    #[arg(long)]
    pub no_attribution: bool,
    /// Write annotated.onnx without copying the weights: its initializers point at their bytes in
    /// MODEL (ONNX external data), so it is the graph's size and runs when put beside MODEL.
    #[arg(long)]
    pub slim_annotated: bool,
    /// With --ep cuda: capture each session in a CUDA graph and time its replays, which removes the
    /// kernel-launch overhead that fusion also removes.
    #[arg(long)]
    pub cuda_graph: bool,
    /// A calibration file (from `fuseval calibrate`): its ceilings place every instance on the
    /// roofline (instead of measuring them first), and its cost model predicts the whole model.
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
    /// Output directory (default: fuseval-out/<model name>).
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
    /// Overwrite existing outputs.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: BenchCmd) -> Result<ExitCode> {
    let BenchCmd {
        model,
        resume,
        model_flags: ModelFlags { inputs, lock },
        measure: MeasureFlags { ep, device_id, threads, quick, seed, replicates, precision },
        all_patterns,
        no_whole_model,
        whole_model_only,
        no_attribution,
        slim_annotated,
        cuda_graph,
        calibration,
        out,
        force,
    } = cmd;
    crate::drivers::run::install_signal_handlers()?;
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (out, previous, mut runs) = match resume {
        Some(dir) => {
            let (prev, opts) = resume_plan(&dir, progress)?;
            (dir.clone(), Some(prev), vec![(dir, opts)])
        }
        None => {
            let model = model.ok_or_else(|| crate::error::user("bench needs a MODEL (or --resume OUT_DIR)"))?;
            let out = out.unwrap_or_else(|| default_out_dir(&model));
            let ep = ep.ep(device_id);
            let threads = threads_arg(threads)?;
            let precisions = crate::cli::args::precision_args(precision, ep)?;
            // several precisions: one bench folder each, under OUT
            let several = precisions.len() > 1;
            let dirs: Vec<PathBuf> =
                precisions.iter().map(|q| if several { out.join(q.name()) } else { out.clone() }).collect();
            if several {
                report::precisions::check_outputs_free(&out, force)?;
            }
            for d in &dirs {
                report::check_outputs_free(d, force)?;
            }
            let model_path = std::fs::canonicalize(&model).unwrap_or_else(|_| model.clone());
            let attribution = !no_whole_model && !no_attribution && !whole_model_only;
            let run = RunOptions {
                model_path: model_path.display().to_string(),
                model_fingerprint: crate::calibration::merge::fingerprint(&model)
                    .map_err(|e| crate::error::user(format!("{e:#}")))?,
                inputs: inputs.clone(),
                all_patterns,
                whole_model: !no_whole_model,
                attribution,
                instances: !whole_model_only,
            };
            let base = BenchOptions {
                ep,
                threads,
                quick,
                all_patterns,
                seed,
                whole_model: !no_whole_model,
                progress,
                run: Some(run),
                ceilings: None,
                calibration,
                cuda_graph,
                replicates: crate::cli::args::replicates_arg(replicates)?,
                attribution,
                instances: !whole_model_only,
                precision: precisions[0],
                whole_model_path: None,
            };
            let mut runs = vec![];
            for (q, d) in precisions.iter().zip(dirs) {
                // --calibration: its ceilings in this precision (a calibrate file may hold several)
                let ceilings = match &base.calibration {
                    Some(path) => {
                        let (c, warning) = crate::calibration::hardware::read_ceilings(path, *q)?;
                        if let Some(w) = warning {
                            eprintln!("warning: {w}");
                        }
                        Some(c)
                    }
                    None => None,
                };
                runs.push((d, BenchOptions { precision: *q, ceilings, ..base.clone() }));
            }
            (out, None, runs)
        }
    };
    let run = runs[0].1.run.clone().context("bench options without run options")?;
    // before anything starts ONNX Runtime: its shared thread pool is sized once per process
    crate::runtime::configure_pool(runs[0].1.threads)?;
    let p = prepare(Path::new(&run.model_path), &InputOverride::parse_all(&run.inputs)?)?;
    if previous.is_none() {
        for w in &p.loaded.warnings {
            eprintln!("warning: {w}");
        }
    }
    // a resumed run whose whole model is still to time makes its files again, in its own folder
    if previous.as_ref().is_none_or(|c| c.whole_model.is_none()) {
        whole_model_files(&p, &out, &mut runs)?;
    }
    // one measuring run per machine at a time
    let _lock = crate::drivers::run::take_lock(lock)?;
    let mut done: Vec<(crate::runtime::Precision, PathBuf, CalibrationFile)> = vec![];
    let mut code = ExitCode::Ok;
    for (dir, opts) in &runs {
        if crate::drivers::run::interrupted() {
            return Err(crate::error::Error::Interrupted.into());
        }
        if runs.len() > 1 {
            println!("== precision {} → {}", opts.precision.name(), dir.display());
        }
        let (c, cal) = bench_one(&p, dir, opts, previous.as_ref(), slim_annotated)?;
        done.push((opts.precision, dir.clone(), cal));
        if c != ExitCode::Ok {
            code = c;
        }
        if c == ExitCode::Interrupted {
            break;
        }
    }
    drop(_lock);
    if done.len() > 1 {
        for f in report::precisions::write(&out, &out.join(report::html::REPORT_HTML), &done)? {
            println!("wrote {}", f.display());
        }
        print!("{}", report::precisions::text(&done));
        println!("Report: {} (open it in a browser)", out.join(report::html::REPORT_HTML).display());
    }
    Ok(code)
}

/// Measure one bench run into `out` and write its outputs; its exit code and calibration file.
fn bench_one(
    p: &crate::pipeline::Prepared,
    out: &Path,
    opts: &BenchOptions,
    previous: Option<&CalibrationFile>,
    slim_annotated: bool,
) -> Result<(ExitCode, CalibrationFile)> {
    std::fs::create_dir_all(out).with_context(|| format!("creating output directory {}", out.display()))?;
    let cal_path = out.join(report::CALIBRATION_JSON);
    let mut save = |cal: &CalibrationFile| -> Result<()> {
        let json = serde_json::to_vec_pretty(cal).context("serialising calibration.json")?;
        report::atomic_write(&cal_path, &json)
    };
    let outcome = bench_run(p, opts, previous, &mut save)?;
    let cal = outcome.cal;
    print!("{}", report::summary::summary_text(&cal));
    for w in report::warnings::measurement_warnings(&cal) {
        eprintln!("warning: {w}");
    }
    let written = report::write_outputs_with(out, &cal, &p.loaded, &p.graph, &p.detection, slim_annotated)?;
    for f in &written {
        println!("wrote {}", f.display());
    }
    if let Some(page) = written.iter().find(|f| f.ends_with(report::html::REPORT_HTML)) {
        println!("Report: {} (open it in a browser)", page.display());
    }
    let skipped = cal.fusion_profiles.iter().filter(|r| r.status == Status::Skipped).count();
    if outcome.interrupted {
        let total = crate::pipeline::distinct_count(p, opts.all_patterns);
        eprintln!(
            "interrupted: {} of {total} distinct instances are in {}; finish with `fuseval bench --resume {}`",
            cal.fusion_profiles.len(),
            cal_path.display(),
            out.display()
        );
        return Ok((ExitCode::Interrupted, cal));
    }
    if skipped > 0 {
        eprintln!("{skipped} distinct instances were skipped (see skip_reason in {})", cal_path.display());
        return Ok((ExitCode::Skipped, cal));
    }
    Ok((ExitCode::Ok, cal))
}

/// What `--resume DIR` continues: the file there, and the options it was measured with. Refuses (as bad
/// input) a file without them, a model that changed since, or another machine or ORT version.
fn resume_plan(dir: &Path, progress: bool) -> Result<(CalibrationFile, BenchOptions)> {
    let path = dir.join(report::CALIBRATION_JSON);
    // a --precision all folder: one run per precision, each resumed on its own
    let subs: Vec<String> = report::precisions::precision_files(dir)
        .into_iter()
        .map(|(q, _)| dir.join(q.name()).display().to_string())
        .collect();
    if !path.exists() && !subs.is_empty() {
        return Err(crate::error::user(format!(
            "--resume {}: a --precision all folder holds one run per precision; resume the unfinished one (--resume {}), then `fuseval report {}` puts them side by side again",
            dir.display(),
            subs.join(" or --resume "),
            dir.display()
        )));
    }
    let prev = crate::calibration::read::read(&path)
        .and_then(|s| s.into_bench())
        .map_err(|e| crate::error::user(format!("--resume {}: {e:#}", dir.display())))?;
    let m = &prev.metadata;
    let run = m.run.clone().ok_or_else(|| {
        crate::error::user(format!(
            "--resume: {} does not record its run options (written by an older fuseval)",
            path.display()
        ))
    })?;
    let now = crate::calibration::merge::fingerprint(Path::new(&run.model_path))
        .map_err(|e| crate::error::user(format!("--resume: the model measured is gone: {e:#}")))?;
    if now != run.model_fingerprint {
        return Err(crate::error::user(format!(
            "--resume: {} changed since it was measured (size {} → {} bytes, or its modification time); start a new run",
            run.model_path, run.model_fingerprint.size, now.size
        )));
    }
    let hw = crate::runtime::hardware();
    if hw.cpu_model != m.hardware.cpu_model || hw.logical_cores != m.hardware.logical_cores {
        return Err(crate::error::user(format!(
            "--resume: {} was measured on {} ({} cores), this machine is {} ({} cores); measure here into a new directory and `fuseval merge` them",
            path.display(), m.hardware.cpu_model, m.hardware.logical_cores, hw.cpu_model, hw.logical_cores
        )));
    }
    let ort = crate::runtime::ort_version();
    if ort != m.ort_version {
        return Err(crate::error::user(format!(
            "--resume: {} was measured with ONNX Runtime {}, this is {ort}",
            path.display(),
            m.ort_version
        )));
    }
    let ep = match m.execution_provider.as_str() {
        "cpu" => Ep::Cpu,
        s => match s.strip_prefix("cuda:").and_then(|d| d.parse().ok()) {
            Some(device_id) => Ep::Cuda { device_id },
            None => {
                return Err(crate::error::user(format!(
                    "--resume: unknown execution provider `{s}` in {}",
                    path.display()
                )))
            }
        },
    };
    if prev.complete {
        eprintln!("{} is already complete; nothing left to measure", path.display());
    }
    let attribution_recorded = run.attribution;
    let instances = run.instances;
    let precision = m.precision.unwrap_or_else(|| crate::runtime::Precision::default_for(ep));
    let opts = BenchOptions {
        ep,
        threads: m.threads,
        quick: m.quick,
        all_patterns: run.all_patterns,
        seed: m.seed,
        whole_model: run.whole_model,
        progress,
        run: Some(run),
        ceilings: prev.ceilings.clone(),
        calibration: None,
        cuda_graph: m.cuda_graph,
        replicates: m.replicates,
        attribution: attribution_recorded,
        instances,
        precision,
        // made before the whole model is timed (`whole_model_files`)
        whole_model_path: None,
    };
    Ok((prev, opts))
}

/// `<out>/<stem of model><suffix>`: where bench writes a model derived from `model`.
fn derived_path(model: &Path, out: &Path, suffix: &str) -> PathBuf {
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    out.join(format!("{stem}{suffix}"))
}

/// Where `bench --precision fp16` writes the fp16 model of `model`: `<out>/<stem>-fp16.onnx`.
fn fp16_path(model: &Path, out: &Path) -> PathBuf {
    derived_path(model, out, "-fp16.onnx")
}

/// The files the whole model is timed from, where it is not the model itself, each written once:
/// with CUDA graphs the model with its shape arithmetic folded for the run's input shapes (`onnx::fold`:
/// ORT keeps it on the CPU, and a session with a node on the CPU cannot be captured), as
/// `<out>/<stem>-static.onnx`, for every precision, when there is any to fold; in fp16 that (or the
/// model) converted, as `<run's folder>/<stem>-fp16.onnx`. The instances are carved from the model as it
/// is and converted one by one (`pipeline::measure_instance`).
fn whole_model_files(p: &crate::pipeline::Prepared, out: &Path, runs: &mut [(PathBuf, BenchOptions)]) -> Result<()> {
    let Some((_, first)) = runs.first() else { return Ok(()) };
    let fold = first.whole_model && first.cuda_graph && matches!(first.ep, Ep::Cuda { .. });
    let fp16 = first.whole_model && runs.iter().any(|(_, o)| o.precision == crate::runtime::Precision::Fp16);
    if !fold && !fp16 {
        return Ok(());
    }
    let model = &p.loaded.path;
    let (proto, folded) = if fold {
        let (m, r) = p.loaded.folded_shapes()?;
        if r.nodes() == 0 {
            // nothing the shapes decide: the model is timed as it is, without a copy
            eprintln!("--cuda-graph: no shape arithmetic to fold; the whole model is timed as it is");
            (m, None)
        } else {
            let path = derived_path(model, out, "-static.onnx");
            std::fs::create_dir_all(out).with_context(|| format!("creating output directory {}", out.display()))?;
            crate::report::atomic_write(&path, &prost::Message::encode_to_vec(&m))?;
            let ops: Vec<String> = r.folded.iter().map(|(op, n)| format!("{op} ×{n}")).collect();
            eprintln!(
                "--cuda-graph: the whole model is timed with its shape arithmetic folded for these input shapes ({} nodes: {}) from {}",
                r.nodes(),
                ops.join(", "),
                path.display()
            );
            (m, Some(path))
        }
    } else {
        (p.loaded.full_proto()?, None)
    };
    for (dir, o) in runs.iter_mut() {
        o.whole_model_path = match o.precision {
            crate::runtime::Precision::Fp16 => Some(convert_fp16(&proto, model, dir)?),
            _ => folded.clone(),
        };
    }
    Ok(())
}

/// The fp16 model of `proto` (the model at `model`, maybe folded), written as `<out>/<stem>-fp16.onnx`
/// (`fuseval convert --to fp16`).
fn convert_fp16(proto: &tract_onnx::pb::ModelProto, model: &Path, out: &Path) -> Result<PathBuf> {
    let path = fp16_path(model, out);
    let r = crate::cli::convert::write_fp16_proto(proto, model, &path)?;
    eprintln!(
        "--precision fp16: {} converted to {} ({} nodes in fp16, {} kept in fp32)",
        model.display(),
        path.display(),
        r.converted_nodes,
        r.kept.len()
    );
    Ok(path)
}
