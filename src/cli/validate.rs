//! `fuseval validate`: check a partitioner's fusion plan (docs/plan.md).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{MeasureFlags, ModelFlags};
use crate::calibration::cost_model::DEFAULT_THRESHOLD;
use crate::drivers::plan::{MeasureArgs, ValidateArgs};
use crate::error::ExitCode;

/// Check a partitioner's fusion plan: a verdict per group, and the patterns it missed.
#[derive(Args, Debug)]
#[command(after_help = VALIDATE_EXIT_CODES)]
pub struct ValidateCmd {
    /// The model the plan partitions.
    pub model: PathBuf,
    /// The plan: JSON naming the groups of nodes fused (docs/plan.md).
    #[arg(long, value_name = "PLAN.json")]
    pub plan: PathBuf,
    /// Estimate with the cost model over this calibration file instead of measuring.
    #[arg(long, value_name = "CAL.json")]
    pub calibration: Option<PathBuf>,
    /// Measure even with --calibration (its hardware ceilings then place groups on the roofline).
    #[arg(long = "measure")]
    pub measure_flag: bool,
    /// When measuring, skip measuring the hardware's ceilings (about 10 s), so no bottleneck is given.
    #[arg(long)]
    pub no_roofline: bool,
    /// Speedup a group needs for `keep`.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Exit with code 5 when any group is harmful.
    #[arg(long)]
    pub strict: bool,
    /// List the missed patterns without measuring them.
    #[arg(long)]
    pub no_missed_measure: bool,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
    /// Overwrite an existing -o file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub model_flags: ModelFlags,
    #[command(flatten)]
    pub measure: MeasureFlags,
}

/// Exit codes of `validate`, as `--help` prints them.
pub const VALIDATE_EXIT_CODES: &str = "Exit codes:
  0    the plan was validated (with --strict: and no group is harmful)
  1    any other failure
  2    bad input: the model, the plan (unknown node, a node in two groups, an empty group), a flag, an existing -o without --force
  4    --lock fail, and another bench run holds the lock
  5    --strict, and at least one group is harmful";

pub fn run(cmd: ValidateCmd) -> Result<ExitCode> {
    let m = measure_args(&cmd.model_flags, &cmd.measure)?;
    crate::drivers::plan::validate_command(&ValidateArgs {
        model: cmd.model,
        plan: cmd.plan,
        calibration: cmd.calibration,
        measure: cmd.measure_flag,
        no_roofline: cmd.no_roofline,
        threshold: cmd.threshold,
        strict: cmd.strict,
        no_missed_measure: cmd.no_missed_measure,
        json: cmd.json,
        out: cmd.out,
        force: cmd.force,
        m,
    })
}

/// The measuring flags, resolved for the plan driver.
pub(super) fn measure_args(model: &ModelFlags, m: &MeasureFlags) -> Result<MeasureArgs> {
    Ok(MeasureArgs {
        inputs: model.inputs.clone(),
        ep: m.ep(),
        threads: m.threads()?,
        quick: m.quick,
        seed: m.seed,
        replicates: m.replicates()?,
        lock: model.lock,
        precision: super::args::precision_arg(m.precision, m.ep())?,
    })
}
