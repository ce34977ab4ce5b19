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
        let (a, b) = (read(pa)?, read(pb)?);
        for w in different_runs(&a, &b) {
            eprintln!("warning: {w}");
        }
        let g = agreement(&a, &b);
        if cmd.json {
            json.insert(name.clone(), serde_json::to_value(&g)?);
        } else {
            // --precision all folders: which precision
            if name != "run" {
                println!("== {name}");
            }
            print!("{}", agreement_text(&g, &pa.display().to_string(), &pb.display().to_string()));
        }
    }
    if cmd.json {
        // one run: its agreement; --precision all folders: one per precision
        let v = match json.remove("run") {
            Some(v) => v,
            None => serde_json::Value::Object(json),
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
    let per_precision = |d: &Path| {
        crate::runtime::Precision::ALL.iter().any(|q| d.join(q.name()).join(crate::report::CALIBRATION_JSON).exists())
    };
    // one single run and one --precision all folder: say which precision to take
    for (x, fx, y, fy) in [(a, &fa, b, &fb), (b, &fb, a, &fa)] {
        if !fx.exists() && x.is_dir() && per_precision(x) && fy.exists() {
            return Err(crate::error::user(format!(
                "{} is a --precision all folder (one run per precision) and {} a single run: compare it with one precision's folder, e.g. {}",
                x.display(),
                y.display(),
                x.join(crate::runtime::Precision::Fp32.name()).display()
            )));
        }
    }
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

/// Why two runs may not be runs of the same bench: another model, other input shapes, another provider
/// or precision. Their figures are still compared.
fn different_runs(a: &crate::calibration::CalibrationFile, b: &crate::calibration::CalibrationFile) -> Vec<String> {
    let (x, y) = (&a.metadata, &b.metadata);
    let mut w = vec![];
    let name = |m: &str| m.rsplit(['/', '\\']).next().unwrap_or(m).to_string();
    if name(&x.model) != name(&y.model) {
        w.push(format!("the runs are of different models ({} and {})", x.model, y.model));
    }
    if x.model_inputs != y.model_inputs {
        w.push(format!("the runs have different input shapes ({:?} and {:?})", x.model_inputs, y.model_inputs));
    }
    if x.execution_provider != y.execution_provider {
        w.push(format!("the runs are on different providers ({} and {})", x.execution_provider, y.execution_provider));
    }
    if x.precision != y.precision {
        let p = |q: Option<crate::runtime::Precision>| q.map_or("unrecorded", |q| q.name());
        w.push(format!("the runs are in different precisions ({} and {})", p(x.precision), p(y.precision)));
    }
    w
}
