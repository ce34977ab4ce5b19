//! `fuseval inspect`: a model's shapes and fusible patterns, or (`--patterns`) the pattern catalog.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::error::ExitCode;
use crate::load::InputOverride;
use crate::pipeline::prepare;
use crate::report;

/// Load a model, resolve its shapes and list every fusible pattern. No timing. With --patterns, list
/// the pattern catalog instead: forms and fused kernels.
#[derive(Args, Debug)]
pub struct InspectCmd {
    /// The model (not needed with --patterns).
    #[arg(required_unless_present = "patterns", conflicts_with = "patterns")]
    pub model: Option<PathBuf>,
    /// List every pattern fuseval knows, its forms, and the fused kernel it maps to on CPU and CUDA.
    #[arg(long)]
    pub patterns: bool,
    /// Fix a dynamic input: NAME=DIMS, e.g. input_ids=1x128. Repeatable.
    #[arg(long = "input", value_name = "NAME=DIMS")]
    pub inputs: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// With --patterns: show each pattern's measured figures from this calibration file (bench, calibrate
    /// or merged).
    #[arg(long, requires = "patterns")]
    pub calibration: Option<std::path::PathBuf>,
}

pub fn run(cmd: InspectCmd) -> Result<ExitCode> {
    if cmd.patterns {
        let c = match &cmd.calibration {
            Some(path) => report::catalog::catalog_with(&crate::calibration::read::read(path)?),
            None => report::catalog::catalog(),
        };
        if cmd.json {
            println!("{}", serde_json::to_string_pretty(&c)?);
        } else {
            print!("{}", report::catalog::catalog_text(&c));
        }
        return Ok(ExitCode::Ok);
    }
    let model = cmd.model.ok_or_else(|| crate::error::user("inspect needs a MODEL (or --patterns)"))?;
    let p = prepare(&model, &InputOverride::parse_all(&cmd.inputs)?)?;
    let r = report::inspect::inspect_report(&p.loaded, &p.graph, &p.detection);
    if cmd.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", report::inspect::inspect_text(&r));
    }
    Ok(ExitCode::Ok)
}
