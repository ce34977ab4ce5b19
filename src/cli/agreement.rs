//! `fuseval agreement A B`: whether two runs of the same bench agree, instance by instance and for the
//! whole model.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use crate::error::ExitCode;
use crate::report::agreement::{agreement, agreement_text};

/// Compare two bench runs of one model: per distinct instance and speedup, and for the whole model's
/// latencies and speedups, the difference and whether it lies within the two runs' combined CI. Two
/// `--precision all` folders are compared precision by precision.
#[derive(Args, Debug)]
pub struct AgreementCmd {
    /// Two calibration.json files, or the output folders that hold them (or one folder per precision).
    #[arg(num_args = 2)]
    pub runs: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: AgreementCmd) -> Result<ExitCode> {
    let pairs = run_pairs(&cmd.runs[0], &cmd.runs[1])?;
    let mut json = serde_json::Map::new();
    for (name, pa, pb) in &pairs {
        let read = |p: &PathBuf| crate::calibration::read::read(p).and_then(|s| s.into_bench());
        let g = agreement(&read(pa)?, &read(pb)?);
        if cmd.json {
            json.insert(name.clone(), serde_json::to_value(&g)?);
        } else {
            if pairs.len() > 1 {
                println!("== {name}");
            }
            print!("{}", agreement_text(&g, &pa.display().to_string(), &pb.display().to_string()));
        }
    }
    if cmd.json {
        // one run: its agreement; --precision all folders: one per precision
        let v = match json.len() {
            1 => json.into_iter().next().map(|(_, v)| v).unwrap_or_default(),
            _ => serde_json::Value::Object(json),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(ExitCode::Ok)
}

/// The calibration files to compare: the two given, or in two `--precision all` folders each precision
/// both hold.
fn run_pairs(a: &Path, b: &Path) -> Result<Vec<(String, PathBuf, PathBuf)>> {
    let file = |p: &Path| if p.is_dir() { p.join(crate::report::CALIBRATION_JSON) } else { p.to_path_buf() };
    let (fa, fb) = (file(a), file(b));
    if fa.exists() || fb.exists() || !a.is_dir() || !b.is_dir() {
        return Ok(vec![("run".into(), fa, fb)]);
    }
    let pairs: Vec<_> = crate::runtime::Precision::ALL
        .iter()
        .map(|q| (q.name().to_string(), file(&a.join(q.name())), file(&b.join(q.name()))))
        .filter(|(_, x, y)| x.exists() && y.exists())
        .collect();
    if pairs.is_empty() {
        return Err(crate::error::user(format!(
            "neither {} nor {} holds a {} (nor, as --precision all folders, one per precision in common)",
            a.display(),
            b.display(),
            crate::report::CALIBRATION_JSON
        )));
    }
    Ok(pairs)
}
