//! The command line: one file per subcommand, the shared flags once (`args`). `fuseval inspect` (a model,
//! or `--patterns`: the catalog), `bench` (or `bench --resume DIR`), `calibrate`, `validate`, `plan`,
//! `eventcheck`, `merge` and `agreement`. Exit codes: [`EXIT_CODES`].

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::error::ExitCode;

pub mod agreement;
pub mod args;
pub mod bench;
pub mod calibrate;
pub mod convert;
pub mod eventcheck;
pub mod inspect;
pub mod merge;
pub mod plan;
pub mod report;
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
    /// Compare bench runs of one model: does each speedup, and the whole model, agree within the runs'
    /// combined CI and within 3%?
    Agreement(agreement::AgreementCmd),
    /// Rebuild the HTML report of a saved run (a bench output folder or a calibration file), or put two
    /// bench runs side by side.
    Report(report::ReportCmd),
    /// Write the model converted to another precision (fp16: fp16 computation, fp32 inputs and outputs).
    Convert(convert::ConvertCmd),
}

/// Run the command line; returns the process's exit code (a failure's: [`ExitCode::of`] its error).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // commands that only read and print end quietly when their reader does (`| head`), as Unix tools do;
    // measuring commands keep Rust's default, so that a closed pipe does not stop a measurement
    if matches!(
        cli.command,
        Command::Inspect(_) | Command::Agreement(_) | Command::Report(_) | Command::Merge(_) | Command::Convert(_)
    ) {
        crate::drivers::run::default_sigpipe();
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = ExitCode::of(&e);
            if code == ExitCode::Interrupted {
                eprintln!("interrupted before anything was measured");
            } else {
                eprintln!("error: {e:#}");
            }
            code
        }
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Inspect(c) => inspect::run(c),
        Command::Bench(c) => bench::run(c),
        Command::Calibrate(c) => calibrate::run(c),
        Command::Validate(c) => validate::run(c),
        Command::Plan(c) => plan::run(c),
        Command::Eventcheck(c) => eventcheck::run(c),
        Command::Merge(c) => merge::run(c),
        Command::Agreement(c) => agreement::run(c),
        Command::Report(c) => report::run(c),
        Command::Convert(c) => convert::run(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes an exit-code table lists, in order: the number that starts each line after the first.
    fn listed(table: &str) -> Vec<i32> {
        table.lines().skip(1).map(|l| l.split_whitespace().next().unwrap().parse().unwrap()).collect()
    }

    #[test]
    fn the_help_lists_every_exit_code() {
        let all: Vec<i32> = ExitCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(listed(EXIT_CODES), all, "{EXIT_CODES}");
    }

    #[test]
    fn validate_help_lists_the_codes_validate_can_exit_with() {
        let codes = [ExitCode::Ok, ExitCode::Failure, ExitCode::BadInput, ExitCode::Locked, ExitCode::Harmful];
        let want: Vec<i32> = codes.iter().map(|c| c.code()).collect();
        assert_eq!(listed(validate::VALIDATE_EXIT_CODES), want, "{}", validate::VALIDATE_EXIT_CODES);
    }
}
