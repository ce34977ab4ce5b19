//! `fuseval agreement A B`: whether two runs of the same bench agree, instance by instance.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::error::ExitCode;
use crate::report::agreement::{agreement, agreement_text};

/// Compare two bench runs of one model: per distinct instance and speedup, the difference and whether
/// it lies within the two runs' combined CI.
#[derive(Args, Debug)]
pub struct AgreementCmd {
    /// Two calibration.json files (or the output folders that hold them).
    #[arg(num_args = 2)]
    pub runs: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: AgreementCmd) -> Result<ExitCode> {
    let read = |p: &PathBuf| {
        let path = if p.is_dir() { p.join(crate::report::CALIBRATION_JSON) } else { p.clone() };
        crate::calibration::read::read(&path)?.into_bench().map(|c| (path, c))
    };
    let (pa, a) = read(&cmd.runs[0])?;
    let (pb, b) = read(&cmd.runs[1])?;
    let g = agreement(&a, &b);
    if cmd.json {
        println!("{}", serde_json::to_string_pretty(&g)?);
    } else {
        print!("{}", agreement_text(&g, &pa.display().to_string(), &pb.display().to_string()));
    }
    Ok(ExitCode::Ok)
}
