//! `fuseval report`: rebuild the HTML report of a saved run (a bench output folder, or a calibration
//! file of `bench` or `calibrate`), or put two bench runs side by side.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::calibration::read::{self, Kind};
use crate::error::{user, ExitCode};
use crate::report::html::{self, ReportGraph, REPORT_HTML};
use crate::report::{atomic_write, CALIBRATION_JSON, GRAPH_JSON};

/// Rebuild the HTML report of a saved run, or compare two runs.
#[derive(Args, Debug)]
pub struct ReportCmd {
    /// A bench output folder or a calibration file (bench or calibrate); two bench runs to compare them.
    #[arg(required = true, num_args = 1..=2)]
    pub paths: Vec<PathBuf>,
    /// The page to write (default: report.html beside the calibration file; compare.html for two runs).
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
}

/// The calibration file a path names: the file, or a folder's calibration.json.
fn calibration_path(p: &Path) -> Result<PathBuf> {
    if p.is_dir() {
        let f = p.join(CALIBRATION_JSON);
        if !f.exists() {
            return Err(user(format!(
                "{} holds no {CALIBRATION_JSON}: is it a `fuseval bench` output folder?",
                p.display()
            )));
        }
        Ok(f)
    } else if p.exists() {
        Ok(p.to_path_buf())
    } else {
        Err(user(format!("{} does not exist", p.display())))
    }
}

/// The graph.json beside a calibration file, when there is one (read errors name the file).
pub fn graph_beside(cal: &Path) -> Result<Option<ReportGraph>> {
    let g = cal.with_file_name(GRAPH_JSON);
    if !g.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&g).with_context(|| format!("reading {}", g.display()))?;
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| user(format!("{}: not JSON: {e}", g.display())))?;
    ReportGraph::from_value(v).map(Some).map_err(|e| user(format!("{}: not a fuseval graph.json: {e}", g.display())))
}

pub fn run(cmd: ReportCmd) -> Result<ExitCode> {
    // a `bench --precision all` folder: the precisions side by side again
    if let [dir] = cmd.paths.as_slice() {
        if dir.is_dir() && !dir.join(CALIBRATION_JSON).exists() {
            if let Some(runs) = crate::report::precisions::read_folder(dir)? {
                let page = cmd.out.clone().unwrap_or_else(|| dir.join(REPORT_HTML));
                let written = crate::report::precisions::write(dir, &page, &runs)?;
                print!("{}", crate::report::precisions::text(&runs));
                println!("wrote {} and {}: open the page in a browser", written[0].display(), written[1].display());
                return Ok(ExitCode::Ok);
            }
        }
    }
    let files: Vec<PathBuf> = cmd.paths.iter().map(|p| calibration_path(p)).collect::<Result<_>>()?;
    let (page, default_out) = match files.as_slice() {
        [one] => {
            let src = read::read(one)?;
            let page = match src.kind() {
                Kind::Merged => {
                    return Err(user(format!(
                        "{} is a merged file: report each run's own calibration.json, or compare two with `fuseval report A B`",
                        one.display()
                    )))
                }
                Kind::Hardware => html::hardware_page(&src.into_hardware()?)?,
                // a bench file, or one that is not fuseval's (refused by into_bench, naming it)
                _ => {
                    let cal = src.into_bench()?;
                    html::bench_page(&cal, graph_beside(one)?.as_ref())?
                }
            };
            let out = if one.file_name().is_some_and(|n| n == CALIBRATION_JSON) {
                one.with_file_name(REPORT_HTML)
            } else {
                one.with_extension("html")
            };
            (page, out)
        }
        [a, b] => {
            let name = |p: &Path, f: &Path| -> String {
                let shown = if p.is_dir() { p } else { f.parent().unwrap_or(f) };
                shown.display().to_string()
            };
            let ca = read::read(a)?.into_bench()?;
            let cb = read::read(b)?.into_bench()?;
            let (na, nb) = (name(&cmd.paths[0], a), name(&cmd.paths[1], b));
            let (na, nb) = if na == nb { (a.display().to_string(), b.display().to_string()) } else { (na, nb) };
            (html::compare_page((&na, &ca), (&nb, &cb))?, PathBuf::from("compare.html"))
        }
        _ => unreachable!("clap takes one or two paths"),
    };
    let out = cmd.out.unwrap_or(default_out);
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    atomic_write(&out, page.as_bytes())?;
    println!("wrote {} ({} KB): open it in a browser", out.display(), page.len() / 1024);
    Ok(ExitCode::Ok)
}
