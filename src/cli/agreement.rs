//! `fuseval agreement A B [C ...]`: whether runs of the same bench agree, instance by instance and for
//! the whole model.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use crate::error::ExitCode;
use crate::report::agreement::{agreement, agreement_summary, agreement_text, spread_text, whole_model_spread};
use crate::report::precisions::precision_files;
use crate::runtime::Precision;

/// Compare bench runs of one model: per distinct instance and speedup, and for the whole model's
/// latencies and speedups, the difference and whether it lies within the two runs' combined CI. With
/// more than two runs, every pair's summary and the whole model's spread over all of them. `--precision
/// all` folders are compared precision by precision.
#[derive(Args, Debug)]
pub struct AgreementCmd {
    /// Two or more calibration.json files, or the output folders that hold them (or one folder per
    /// precision).
    #[arg(num_args = 2.., required = true)]
    pub runs: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: AgreementCmd) -> Result<ExitCode> {
    let sets = run_sets(&cmd.runs)?;
    let mut json = serde_json::Map::new();
    for (name, paths) in &sets {
        let read = |p: &PathBuf| crate::calibration::read::read(p).and_then(|s| s.into_bench());
        let cals = paths.iter().map(read).collect::<Result<Vec<_>>>()?;
        for w in different_runs(&cals) {
            eprintln!("warning: {w}");
        }
        // --precision all folders: which precision
        if !cmd.json && name != "run" {
            println!("== {name}");
        }
        let shown = |k: usize| paths[k].display().to_string();
        let value = if cals.len() == 2 {
            let g = agreement(&cals[0], &cals[1]);
            if !cmd.json {
                print!("{}", agreement_text(&g, &shown(0), &shown(1)));
            }
            serde_json::to_value(&g)?
        } else {
            let mut pairs = vec![];
            for i in 0..cals.len() {
                for j in i + 1..cals.len() {
                    let g = agreement(&cals[i], &cals[j]);
                    if !cmd.json {
                        println!("{}", agreement_summary(&g, &shown(i), &shown(j)));
                    }
                    pairs.push(serde_json::json!({ "a": shown(i), "b": shown(j), "agreement": g }));
                }
            }
            let spread = whole_model_spread(&cals.iter().collect::<Vec<_>>());
            if !cmd.json {
                print!("{}", spread_text(&spread));
            }
            serde_json::json!({ "pairs": pairs, "whole_model_spread": spread })
        };
        json.insert(name.clone(), value);
    }
    if cmd.json {
        // plain runs: their agreement; --precision all folders: one per precision
        let v = match json.remove("run") {
            Some(v) => v,
            None => serde_json::Value::Object(json),
        };
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(ExitCode::Ok)
}

/// The calibration files to compare, one per run: those given, or in `--precision all` folders each
/// precision all of them hold.
fn run_sets(runs: &[PathBuf]) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let file = |p: &Path| if p.is_dir() { p.join(crate::report::CALIBRATION_JSON) } else { p.to_path_buf() };
    let files: Vec<PathBuf> = runs.iter().map(|r| file(r)).collect();
    let held: Vec<Vec<(Precision, PathBuf)>> = runs.iter().map(|r| precision_files(r)).collect();
    // single runs and --precision all folders mixed: say which precision to take
    let all_folder = runs.iter().zip(&files).zip(&held).find_map(|((r, f), h)| match h.first() {
        Some((q, _)) if !f.exists() => Some((r, *q)),
        _ => None,
    });
    if let (Some((dir, q)), Some(single)) = (all_folder, files.iter().find(|f| f.exists())) {
        return Err(crate::error::user(format!(
            "{} is a --precision all folder (one run per precision) and {} a single run: compare it with one precision's folder, e.g. {}",
            dir.display(),
            single.display(),
            dir.join(q.name()).display()
        )));
    }
    if files.iter().any(|f| f.exists()) || !runs.iter().all(|r| r.is_dir()) {
        return Ok(vec![("run".into(), files)]);
    }
    // the precisions every folder holds
    let sets: Vec<(String, Vec<PathBuf>)> = Precision::ALL
        .into_iter()
        .filter_map(|q| {
            let fs: Vec<PathBuf> =
                held.iter().filter_map(|h| h.iter().find(|(p, _)| *p == q).map(|(_, f)| f.clone())).collect();
            (fs.len() == runs.len()).then(|| (q.name().to_string(), fs))
        })
        .collect();
    if sets.is_empty() {
        let shown: Vec<String> = runs.iter().map(|r| r.display().to_string()).collect();
        return Err(crate::error::user(format!(
            "none of {} holds a {} (nor, as --precision all folders, one per precision in common)",
            shown.join(", "),
            crate::report::CALIBRATION_JSON
        )));
    }
    Ok(sets)
}

/// Why runs may not be runs of the same bench: another model, other input shapes, another provider or
/// precision than the first. Their figures are still compared.
fn different_runs(cals: &[crate::calibration::CalibrationFile]) -> Vec<String> {
    let Some((first, rest)) = cals.split_first() else { return vec![] };
    let x = &first.metadata;
    let name = |m: &str| m.rsplit(['/', '\\']).next().unwrap_or(m).to_string();
    let p = |q: Option<Precision>| q.map_or("unrecorded", |q| q.name());
    let mut w = vec![];
    for y in rest.iter().map(|c| &c.metadata) {
        if name(&x.model) != name(&y.model) {
            w.push(format!("the runs are of different models ({} and {})", x.model, y.model));
        }
        if x.model_inputs != y.model_inputs {
            w.push(format!("the runs have different input shapes ({:?} and {:?})", x.model_inputs, y.model_inputs));
        }
        if x.execution_provider != y.execution_provider {
            w.push(format!(
                "the runs are on different providers ({} and {})",
                x.execution_provider, y.execution_provider
            ));
        }
        if x.precision != y.precision {
            w.push(format!("the runs are in different precisions ({} and {})", p(x.precision), p(y.precision)));
        }
    }
    w.dedup();
    w
}
