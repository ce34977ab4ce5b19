//! `fuseval merge`: several calibration files into one, each run with its metadata.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::error::ExitCode;
use crate::report;

/// Combine calibration files (from several machines or runs) into one, each run with its metadata.
#[derive(Args, Debug)]
pub struct MergeCmd {
    /// calibration.json files, or merged files.
    #[arg(required = true, num_args = 2..)]
    pub files: Vec<PathBuf>,
    /// The merged file.
    #[arg(short = 'o', long = "out", required = true)]
    pub out: PathBuf,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: MergeCmd) -> Result<ExitCode> {
    let MergeCmd { files, out, force } = cmd;
    if out.exists() && !force {
        return Err(crate::error::user(format!("{} already exists: pass --force to overwrite it", out.display())));
    }
    let merged = crate::calibration::merge::merge(&files)?;
    let json = serde_json::to_vec_pretty(&merged).context("serialising the merged file")?;
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    report::atomic_write(&out, &json)?;
    println!("merged {} runs from {} files into {}", merged.runs.len(), files.len(), out.display());
    Ok(ExitCode::Ok)
}
