//! The command line: `fuseval inspect` (a model, or `--patterns`: the catalog), `fuseval bench` (or
//! `bench --resume DIR`), `fuseval calibrate`, `fuseval validate`, `fuseval plan` and `fuseval merge`. Exit codes: [`crate::run::exit`] and [`EXIT_CODES`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::bench::{bench_run, default_out_dir, prepare, BenchOptions};
use crate::calibration::{CalibrationFile, RunOptions, Status};
use crate::run::{exit, LockMode};
use crate::load::InputOverride;
use crate::report;
use crate::runtime::Ep;

#[derive(Parser, Debug)]
#[command(
    name = "fuseval",
    version,
    about = "Does fusing these operators make this model faster on this hardware, and by how much?",
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The exit codes, as `--help` prints them.
pub const EXIT_CODES: &str = "Exit codes:
  0    success: every distinct instance measured
  1    any other failure
  2    bad input to fix: the model, a flag, an existing output without --force, a --resume that does not match
  3    bench finished, but some instances were skipped (each with its skip_reason)
  4    --lock fail, and another bench run holds the lock
  5    validate --strict: a group of the plan is harmful (slower, not equivalent, or illegal)
  130  interrupted (Ctrl-C, SIGTERM): finished instances are in calibration.json; continue with bench --resume DIR";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load a model, resolve its shapes and list every fusible pattern. No timing. With --patterns, list
    /// the pattern catalog instead: forms and fused kernels.
    Inspect {
        /// The model (not needed with --patterns).
        #[arg(required_unless_present = "patterns", conflicts_with = "patterns")]
        model: Option<PathBuf>,
        /// List every pattern fuseval knows, its forms, and the fused kernel it maps to on CPU and CUDA.
        #[arg(long)]
        patterns: bool,
        /// Fix a dynamic input: NAME=DIMS, e.g. input_ids=1x128. Repeatable.
        #[arg(long = "input", value_name = "NAME=DIMS")]
        inputs: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure every distinct pattern instance unfused and fused, and write the results.
    #[command(after_help = EXIT_CODES)]
    Bench {
        /// The model (not with --resume).
        #[arg(required_unless_present = "resume")]
        model: Option<PathBuf>,
        /// Finish an interrupted run: measure only the instances missing from OUT_DIR/calibration.json,
        /// with the model and options it records.
        #[arg(long, value_name = "OUT_DIR", conflicts_with_all = ["model", "inputs", "ep", "seed", "device_id", "threads", "quick", "all_patterns", "no_whole_model", "out", "force", "calibration", "cuda_graph"])]
        resume: Option<PathBuf>,
        /// When another bench run holds the machine-wide lock: wait for it, fail (exit 4), or warn and go on.
        #[arg(long, value_enum, default_value_t = LockMode::Wait)]
        lock: LockMode,
        #[arg(long = "input", value_name = "NAME=DIMS")]
        inputs: Vec<String>,
        /// Execution provider.
        #[arg(long, value_enum, default_value_t = EpArg::Cpu)]
        ep: EpArg,
        /// CUDA device, with --ep cuda.
        #[arg(long, default_value_t = 0)]
        device_id: i32,
        /// Intra-op threads (default: all logical cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Wider CI target (±5%) and a short time budget per pattern.
        #[arg(long)]
        quick: bool,
        /// Measure every match, overlapping sub-matches too, not only the longest.
        #[arg(long)]
        all_patterns: bool,
        /// Skip timing the whole model.
        #[arg(long)]
        no_whole_model: bool,
        /// Seed of the random inputs.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Write annotated.onnx without copying the weights: its initializers point at their bytes in
        /// MODEL (ONNX external data), so it is the graph's size and runs when put beside MODEL.
        #[arg(long)]
        slim_annotated: bool,
        /// With --ep cuda: capture each session in a CUDA graph and time its replays, which removes the
        /// kernel-launch overhead that fusion also removes.
        #[arg(long)]
        cuda_graph: bool,
        /// A calibration file (from `fuseval calibrate`): its ceilings place every instance on the
        /// roofline (instead of measuring them first), and its cost model predicts the whole model.
        #[arg(long, value_name = "FILE")]
        calibration: Option<PathBuf>,
        /// Output directory (default: fuseval-out/<model name>).
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Overwrite existing outputs.
        #[arg(long)]
        force: bool,
    },
    /// Calibrate the hardware: measure its ceilings, sweep every catalog pattern over a size grid, and
    /// write a HardwareCalibration (docs/calibration.md) that `FusionCostModel`, `validate` and `plan` read.
    Calibrate {
        /// A name for the hardware, e.g. `xeon-2c` or `h100-sxm`.
        #[arg(long)]
        hardware: String,
        /// Execution provider.
        #[arg(long, value_enum, default_value_t = EpArg::Cpu)]
        ep: EpArg,
        /// CUDA device, with --ep cuda.
        #[arg(long, default_value_t = 0)]
        device_id: i32,
        /// Intra-op threads (default: all logical cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Three sizes per pattern, a wider CI target (±5%) and a short budget per measurement.
        #[arg(long)]
        quick: bool,
        /// Which patterns: `all`, families (linear, conv, attention, elementwise) or keys, comma-separated.
        #[arg(long, default_value = "all")]
        patterns: String,
        /// Theoretical peak f32 GFLOP/s, to report efficiency (overrides --preset).
        #[arg(long)]
        peak_gflops: Option<f64>,
        /// Theoretical memory bandwidth in GB/s (overrides --preset).
        #[arg(long)]
        peak_bandwidth: Option<f64>,
        /// Theoretical peaks of a known device: h100-sxm, h100-pcie, h200, a100-sxm, i7-12700k.
        #[arg(long)]
        preset: Option<String>,
        /// Skip the nn-Meter fusion-rule table.
        #[arg(long)]
        no_rules: bool,
        /// With --ep cuda: time CUDA-graph replays.
        #[arg(long)]
        cuda_graph: bool,
        /// Seed of the random inputs and weights.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// The HardwareCalibration file.
        #[arg(short = 'o', long = "out", default_value = "calibration.json")]
        out: PathBuf,
        /// Overwrite an existing output.
        #[arg(long)]
        force: bool,
    },
    /// Check a partitioner's fusion plan: a verdict per group, and the patterns it missed.
    Validate(crate::plan::ValidateArgs),
    /// Propose a fusion plan, greedily by measured (or estimated) benefit.
    Plan(crate::plan::PlanArgs),
    /// Check fuseval's GPU timing against CUDA events: a few synthetic patterns timed by fuseval and,
    /// on a stream of its own, by CUDA events (device clock). Needs --ep cuda and libcudart.
    Eventcheck {
        #[arg(long, value_enum, default_value_t = EpArg::Cuda)]
        ep: EpArg,
        #[arg(long, default_value_t = 0)]
        device_id: i32,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Write the checks as JSON here.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
    },
    /// Combine calibration files (from several machines or runs) into one, each run with its metadata.
    Merge {
        /// calibration.json files, or merged files.
        #[arg(required = true, num_args = 2..)]
        files: Vec<PathBuf>,
        /// The merged file.
        #[arg(short = 'o', long = "out", required = true)]
        out: PathBuf,
        /// Overwrite an existing output.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EpArg {
    Cpu,
    Cuda,
}

impl EpArg {
    /// The provider, with `--device-id` for CUDA.
    pub fn ep(self, device_id: i32) -> Ep {
        match self {
            EpArg::Cpu => Ep::Cpu,
            EpArg::Cuda => Ep::Cuda { device_id },
        }
    }
}

/// `--threads`, defaulting to every logical core; 0 is bad input.
pub fn threads_arg(threads: Option<usize>) -> Result<usize> {
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if threads == 0 {
        return Err(crate::error::user("--threads must be at least 1"));
    }
    Ok(threads)
}

fn parse_inputs(v: &[String]) -> Result<Vec<InputOverride>> {
    v.iter().map(|s| s.parse()).collect()
}

/// Run the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| c.downcast_ref::<crate::run::Interrupted>().is_some()) {
                eprintln!("interrupted before anything was measured");
                return exit::INTERRUPTED;
            }
            eprintln!("error: {e:#}");
            if e.chain().any(|c| c.downcast_ref::<crate::run::Locked>().is_some()) {
                exit::LOCKED
            } else if crate::error::is_user_error(&e) {
                exit::BAD_INPUT
            } else {
                exit::FAILURE
            }
        }
    }
}

pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Inspect { patterns: true, json, .. } => {
            let c = report::catalog::catalog();
            if json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print!("{}", report::catalog::catalog_text(&c));
            }
            Ok(0)
        }
        Command::Inspect { model, inputs, json, .. } => {
            let model = model.ok_or_else(|| crate::error::user("inspect needs a MODEL (or --patterns)"))?;
            let p = prepare(&model, &parse_inputs(&inputs)?)?;
            let r = report::inspect::inspect_report(&p.loaded, &p.graph, &p.detection);
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", report::inspect::inspect_text(&r));
            }
            Ok(0)
        }
        Command::Bench {
            model,
            resume,
            lock,
            inputs,
            ep,
            device_id,
            threads,
            quick,
            all_patterns,
            no_whole_model,
            seed,
            slim_annotated,
            cuda_graph,
            calibration,
            out,
            force,
        } => {
            crate::run::install_signal_handlers()?;
            let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let (out, previous, opts) = match resume {
                Some(dir) => {
                    let (prev, opts) = resume_plan(&dir, progress)?;
                    (dir, Some(prev), opts)
                }
                None => {
                    let model = model.ok_or_else(|| crate::error::user("bench needs a MODEL (or --resume OUT_DIR)"))?;
                    let out = out.unwrap_or_else(|| default_out_dir(&model));
                    report::check_outputs_free(&out, force)?;
                    let ep = ep.ep(device_id);
                    let threads = threads_arg(threads)?;
                    let model_path = std::fs::canonicalize(&model).unwrap_or_else(|_| model.clone());
                    let run = RunOptions {
                        model_path: model_path.display().to_string(),
                        model_fingerprint: crate::run::fingerprint(&model)
                            .map_err(|e| crate::error::user(format!("{e:#}")))?,
                        inputs: inputs.clone(),
                        all_patterns,
                        whole_model: !no_whole_model,
                    };
                    let opts = BenchOptions {
                        ep,
                        threads,
                        quick,
                        all_patterns,
                        seed,
                        whole_model: !no_whole_model,
                        progress,
                        run: Some(run),
                        ceilings: match &calibration {
                            Some(path) => Some(crate::calibrate::read_ceilings(path)?),
                            None => None,
                        },
                        calibration,
                        cuda_graph,
                    };
                    (out, None, opts)
                }
            };
            let run = opts.run.clone().context("bench options without run options")?;
            // before anything starts ONNX Runtime: its shared thread pool is sized once per process
            crate::runtime::configure_pool(opts.threads)?;
            let p = prepare(Path::new(&run.model_path), &parse_inputs(&run.inputs)?)?;
            if previous.is_none() {
                for w in &p.loaded.warnings {
                    eprintln!("warning: {w}");
                }
            }
            // one measuring run per machine at a time
            let _lock = match crate::run::lock_path().and_then(|path| crate::run::RunLock::acquire(&path, lock)) {
                Ok(l) => l,
                Err(e)
                    if e.chain().any(|c| {
                        c.downcast_ref::<crate::run::Locked>().is_some()
                            || c.downcast_ref::<crate::run::Interrupted>().is_some()
                    }) =>
                {
                    return Err(e)
                }
                // a cache directory that cannot be written must not stop the run
                Err(e) => {
                    eprintln!("warning: no lock against concurrent runs: {e:#}");
                    None
                }
            };
            if crate::run::interrupted() {
                return Err(anyhow::Error::new(crate::run::Interrupted));
            }
            std::fs::create_dir_all(&out).with_context(|| format!("creating output directory {}", out.display()))?;
            let cal_path = out.join(report::CALIBRATION_JSON);
            let mut save = |cal: &CalibrationFile| -> Result<()> {
                let json = serde_json::to_vec_pretty(cal).context("serialising calibration.json")?;
                report::atomic_write(&cal_path, &json)
            };
            let outcome = bench_run(&p, &opts, previous.as_ref(), &mut save)?;
            drop(_lock);
            let cal = outcome.cal;
            print!("{}", report::summary::summary_text(&cal));
            for w in report::warnings::measurement_warnings(&cal) {
                eprintln!("warning: {w}");
            }
            let written = report::write_outputs_with(&out, &cal, &p.loaded, &p.graph, &p.detection, slim_annotated)?;
            for f in written {
                println!("wrote {}", f.display());
            }
            let skipped = cal.fusion_profiles.iter().filter(|r| r.status == Status::Skipped).count();
            if outcome.interrupted {
                let total = crate::bench::distinct_count(&p, opts.all_patterns);
                eprintln!(
                    "interrupted: {} of {total} distinct instances are in {}; finish with `fuseval bench --resume {}`",
                    cal.fusion_profiles.len(),
                    cal_path.display(),
                    out.display()
                );
                return Ok(exit::INTERRUPTED);
            }
            if skipped > 0 {
                eprintln!("{skipped} distinct instances were skipped (see skip_reason in {})", cal_path.display());
                return Ok(exit::SKIPPED);
            }
            Ok(exit::OK)
        }
        Command::Calibrate {
            hardware,
            ep,
            device_id,
            threads,
            quick,
            patterns,
            peak_gflops,
            peak_bandwidth,
            preset,
            no_rules,
            cuda_graph,
            seed,
            out,
            force,
        } => {
            crate::run::install_signal_handlers()?;
            if out.exists() && !force {
                return Err(crate::error::user(format!("{} already exists: pass --force to overwrite it", out.display())));
            }
            let ep = ep.ep(device_id);
            let threads = threads_arg(threads)?;
            let patterns = crate::calibrate::parse_patterns(&patterns)?;
            let preset = match preset {
                Some(name) => Some(crate::calibrate::preset(&name).ok_or_else(|| {
                    let known: Vec<&str> = crate::calibrate::PRESETS.iter().map(|p| p.0).collect();
                    crate::error::user(format!("--preset: unknown device `{name}`; known: {}", known.join(", ")))
                })?),
                None => None,
            };
            let theoretical_source = match (peak_gflops.is_some() || peak_bandwidth.is_some(), preset) {
                (true, _) => Some("given on the command line".to_string()),
                (false, Some(p)) => Some(p.2.to_string()),
                _ => None,
            };
            let opts = crate::calibrate::CalibrateOptions {
                hardware,
                ep,
                threads,
                quick,
                patterns,
                seed,
                theoretical_gflops: peak_gflops.or(preset.map(|p| p.0)),
                theoretical_bandwidth_gbs: peak_bandwidth.or(preset.map(|p| p.1)),
                theoretical_source,
                rules: !no_rules,
                progress: true,
                cuda_graph,
            };
            crate::runtime::configure_pool(threads)?;
            let _lock = crate::run::lock_path()
                .and_then(|path| crate::run::RunLock::acquire(&path, LockMode::Wait))
                .unwrap_or(None);
            if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            }
            let mut save = |cal: &crate::calibrate::HardwareCalibration| -> Result<()> {
                let json = serde_json::to_vec_pretty(cal).context("serialising the calibration")?;
                report::atomic_write(&out, &json)
            };
            let cal = crate::calibrate::calibrate(&opts, &mut save)?;
            save(&cal)?;
            print!("{}", crate::calibrate::summary_text(&cal));
            println!("wrote {}", out.display());
            if !cal.complete {
                eprintln!("interrupted: the sizes measured so far are in {}", out.display());
                return Ok(exit::INTERRUPTED);
            }
            Ok(exit::OK)
        }
        Command::Validate(args) => crate::plan::validate_command(&args),
        Command::Plan(args) => crate::plan::plan_command(&args),
        Command::Eventcheck { ep, device_id, threads, quick, seed, out } => {
            let ep = match ep {
                EpArg::Cpu => return Err(crate::error::user("eventcheck times CUDA events: use --ep cuda")),
                EpArg::Cuda => Ep::Cuda { device_id },
            };
            crate::runtime::configure_pool(threads.max(1))?;
            let checks = crate::calibrate::event_checks(ep, threads.max(1), quick, seed, true)?;
            println!("{:<44} {:>12} {:>12} {:>9} {:>12} {:>9}", "model", "fuseval ms", "events ms", "diff", "host ms", "diff");
            for c in &checks {
                println!(
                    "{:<44} {:>12.4} {:>12.4} {:>8.1}% {:>12.4} {:>8.1}%",
                    c.label,
                    c.fuseval_ms,
                    c.event_ms,
                    100.0 * c.fuseval_vs_events,
                    c.host_ms,
                    100.0 * c.host_vs_events
                );
            }
            if let Some(out) = out {
                report::atomic_write(&out, &serde_json::to_vec_pretty(&checks)?)?;
                println!("wrote {}", out.display());
            }
            Ok(exit::OK)
        }
        Command::Merge { files, out, force } => {
            if out.exists() && !force {
                return Err(crate::error::user(format!(
                    "{} already exists: pass --force to overwrite it",
                    out.display()
                )));
            }
            let merged = crate::run::merge(&files)?;
            let json = serde_json::to_vec_pretty(&merged).context("serialising the merged file")?;
            if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            }
            report::atomic_write(&out, &json)?;
            println!("merged {} runs from {} files into {}", merged.runs.len(), files.len(), out.display());
            Ok(exit::OK)
        }
    }
}

/// What `--resume DIR` continues: the file there, and the options it was measured with. Refuses (as bad
/// input) a file without them, a model that changed since, or another machine or ORT version.
fn resume_plan(dir: &Path, progress: bool) -> Result<(CalibrationFile, BenchOptions)> {
    let path = dir.join(report::CALIBRATION_JSON);
    let bytes = std::fs::read(&path)
        .map_err(|e| crate::error::user(format!("--resume {}: cannot read {}: {e}", dir.display(), path.display())))?;
    let prev: CalibrationFile = serde_json::from_slice(&bytes)
        .map_err(|e| crate::error::user(format!("--resume: {} is not a fuseval calibration file: {e}", path.display())))?;
    let m = &prev.metadata;
    let run = m.run.clone().ok_or_else(|| {
        crate::error::user(format!("--resume: {} does not record its run options (written by an older fuseval)", path.display()))
    })?;
    let now = crate::run::fingerprint(Path::new(&run.model_path))
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
            path.display(), m.ort_version
        )));
    }
    let ep = match m.execution_provider.as_str() {
        "cpu" => Ep::Cpu,
        s => match s.strip_prefix("cuda:").and_then(|d| d.parse().ok()) {
            Some(device_id) => Ep::Cuda { device_id },
            None => return Err(crate::error::user(format!("--resume: unknown execution provider `{s}` in {}", path.display()))),
        },
    };
    if prev.complete {
        eprintln!("{} is already complete; nothing left to measure", path.display());
    }
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
        cuda_graph: false,
    };
    Ok((prev, opts))
}
