//! The command line: one file per subcommand, the shared flags once (`args`). `fuseval inspect` (a model,
//! or `--patterns`: the catalog), `bench` (or `bench --resume DIR`), `calibrate`, `validate`, `plan`,
//! `eventcheck` and `merge`. Exit codes: [`EXIT_CODES`].

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::drivers::run::exit;

pub mod args;
pub mod bench;
pub mod calibrate;
pub mod eventcheck;
pub mod inspect;
pub mod merge;
pub mod plan;
pub mod validate;

pub use args::{threads_arg, EpArg, EXIT_CODES};

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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load a model, resolve its shapes and list every fusible pattern. No timing. With --patterns, list
    /// the pattern catalog instead: forms and fused kernels.
    Inspect(inspect::InspectCmd),
    /// Measure every distinct pattern instance unfused and fused, and write the results.
    #[command(after_help = EXIT_CODES)]
    Bench(bench::BenchCmd),
    /// Calibrate the hardware: measure its ceilings, sweep every catalog pattern over a size grid, and
    /// write a HardwareCalibration (docs/calibration.md) that `FusionCostModel`, `validate` and `plan` read.
    Calibrate(calibrate::CalibrateCmd),
    /// Check a partitioner's fusion plan: a verdict per group, and the patterns it missed.
    #[command(after_help = validate::VALIDATE_EXIT_CODES)]
    Validate(validate::ValidateCmd),
    /// Propose a fusion plan, greedily by measured (or estimated) benefit.
    Plan(plan::PlanCmd),
    /// Check fuseval's GPU timing against CUDA events: a few synthetic patterns timed by fuseval and,
    /// on a stream of its own, by CUDA events (device clock). Needs --ep cuda and libcudart.
    Eventcheck(eventcheck::EventcheckCmd),
    /// Combine calibration files (from several machines or runs) into one, each run with its metadata.
    Merge(merge::MergeCmd),
}

/// Run the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.chain().any(|c| c.downcast_ref::<crate::drivers::run::Interrupted>().is_some()) {
                eprintln!("interrupted before anything was measured");
                return exit::INTERRUPTED;
            }
            eprintln!("error: {e:#}");
            if e.chain().any(|c| c.downcast_ref::<crate::drivers::run::Locked>().is_some()) {
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
        Command::Inspect(c) => inspect::run(c),
        Command::Bench(c) => bench::run(c),
        Command::Calibrate(c) => calibrate::run(c),
        Command::Validate(c) => validate::run(c),
        Command::Plan(c) => plan::run(c),
        Command::Eventcheck(c) => eventcheck::run(c),
        Command::Merge(c) => merge::run(c),
    }
}
