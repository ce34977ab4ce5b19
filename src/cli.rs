//! The command line: `fuseval inspect` (a model, or `--patterns`: the catalog) and `fuseval bench`. Exit codes: 0 success; 2 bad input (a
//! model, a flag or an output directory the user must fix); 1 any other failure.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

use crate::bench::{bench, default_out_dir, prepare, BenchOptions};
use crate::load::InputOverride;
use crate::report;
use crate::runtime::Ep;

#[derive(Parser, Debug)]
#[command(name = "fuseval", version, about = "Does fusing these operators make this model faster on this hardware, and by how much?")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

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
    Bench {
        model: PathBuf,
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
        /// Output directory (default: fuseval-out/<model name>).
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Overwrite existing outputs.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EpArg {
    Cpu,
    Cuda,
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
            eprintln!("error: {e:#}");
            if crate::error::is_user_error(&e) {
                2
            } else {
                1
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
        Command::Bench { model, inputs, ep, device_id, threads, quick, all_patterns, no_whole_model, seed, out, force } => {
            let out = out.unwrap_or_else(|| default_out_dir(&model));
            report::check_outputs_free(&out, force)?;
            let ep = match ep {
                EpArg::Cpu => Ep::Cpu,
                EpArg::Cuda => Ep::Cuda { device_id },
            };
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            if threads == 0 {
                return Err(crate::error::user("--threads must be at least 1"));
            }
            // before anything starts ONNX Runtime: its shared thread pool is sized once per process
            crate::runtime::configure_pool(threads)?;
            let p = prepare(&model, &parse_inputs(&inputs)?)?;
            for w in &p.loaded.warnings {
                eprintln!("warning: {w}");
            }
            let opts = BenchOptions {
                ep,
                threads,
                quick,
                all_patterns,
                seed,
                whole_model: !no_whole_model,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let cal = bench(&p, &opts)?;
            print!("{}", report::summary::summary_text(&cal));
            for w in report::warnings::measurement_warnings(&cal) {
                eprintln!("warning: {w}");
            }
            let written = report::write_outputs(&out, &cal, &p.loaded, &p.graph, &p.detection)?;
            for f in written {
                println!("wrote {}", f.display());
            }
            Ok(0)
        }
    }
}
