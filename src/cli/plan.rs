//! `fuseval plan`: propose a partition (docs/plan.md).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{MeasureFlags, ModelFlags};
use super::validate::measure_args;
use crate::calibration::cost_model::DEFAULT_THRESHOLD;
use crate::drivers::plan::PlanArgs;
use crate::error::ExitCode;

/// Propose a fusion plan, greedily by measured (or estimated) benefit.
#[derive(Args, Debug)]
pub struct PlanCmd {
    /// The model to partition.
    pub model: PathBuf,
    /// Estimate with the cost model over this calibration file instead of measuring.
    #[arg(long, value_name = "CAL.json")]
    pub calibration: Option<PathBuf>,
    /// Speedup a candidate needs to be fused.
    #[arg(long, default_value_t = DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// The plan file to write.
    #[arg(short = 'o', long = "out", required = true)]
    pub out: PathBuf,
    /// Overwrite an existing plan file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub model_flags: ModelFlags,
    #[command(flatten)]
    pub measure: MeasureFlags,
}

pub fn run(cmd: PlanCmd) -> Result<ExitCode> {
    let m = measure_args(&cmd.model_flags, &cmd.measure)?;
    crate::drivers::plan::plan_command(&PlanArgs {
        model: cmd.model,
        calibration: cmd.calibration,
        threshold: cmd.threshold,
        out: cmd.out,
        force: cmd.force,
        m,
    })
}
