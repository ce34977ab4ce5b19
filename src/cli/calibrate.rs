//! `fuseval calibrate`: the hardware's ceilings and every pattern swept over a size grid.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::args::{threads_arg, MeasureFlags};
use crate::drivers::run::LockMode;
use crate::error::ExitCode;
use crate::report;

/// Calibrate the hardware: measure its ceilings, sweep every catalog pattern over a size grid, and
/// write a HardwareCalibration (docs/calibration.md) that `FusionCostModel`, `validate` and `plan` read.
#[derive(Args, Debug)]
pub struct CalibrateCmd {
    /// A name for the hardware, e.g. `xeon-2c` or `h100-sxm`.
    #[arg(long)]
    pub hardware: String,
    #[command(flatten)]
    pub measure: MeasureFlags,
    /// Which patterns: `all`, families (linear, conv, attention, elementwise) or keys, comma-separated.
    #[arg(long, default_value = "all")]
    pub patterns: String,
    /// Theoretical peak f32 GFLOP/s, to report efficiency (overrides --preset).
    #[arg(long)]
    pub peak_gflops: Option<f64>,
    /// Theoretical memory bandwidth in GB/s (overrides --preset).
    #[arg(long)]
    pub peak_bandwidth: Option<f64>,
    /// Theoretical peaks of a known device: h100-sxm, h100-pcie, h200, a100-sxm, i7-12700k.
    #[arg(long)]
    pub preset: Option<String>,
    /// Skip the nn-Meter fusion-rule table.
    #[arg(long)]
    pub no_rules: bool,
    /// With --ep cuda: time CUDA-graph replays.
    #[arg(long)]
    pub cuda_graph: bool,
    /// The HardwareCalibration file.
    #[arg(short = 'o', long = "out", default_value = "calibration.json")]
    pub out: PathBuf,
    /// Overwrite an existing output.
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: CalibrateCmd) -> Result<ExitCode> {
    let CalibrateCmd {
        hardware,
        measure: MeasureFlags { ep, device_id, threads, quick, seed, replicates, precision },
        patterns,
        peak_gflops,
        peak_bandwidth,
        preset,
        no_rules,
        cuda_graph,
        out,
        force,
    } = cmd;
    crate::drivers::run::install_signal_handlers()?;
    if out.exists() && !force {
        return Err(crate::error::user(format!("{} already exists: pass --force to overwrite it", out.display())));
    }
    let ep = ep.ep(device_id);
    let threads = threads_arg(threads)?;
    if replicates.is_some_and(|r| r != 1) {
        return Err(crate::error::user(
            "calibrate measures one replicate per size (the sweep's neighbouring sizes show its spread); drop --replicates",
        ));
    }
    let patterns = crate::drivers::calibrate::parse_patterns(&patterns)?;
    let precisions = super::args::precision_args(precision, ep)?;
    // the datasheet peak of the precision the ceilings are measured in (the first)
    let preset = match preset {
        Some(name) => Some(crate::drivers::calibrate::preset(&name, precisions[0]).ok_or_else(|| {
            let known: Vec<&str> = crate::drivers::calibrate::PRESETS.iter().map(|p| p.name).collect();
            crate::error::user(format!("--preset: unknown device `{name}`; known: {}", known.join(", ")))
        })?),
        None => None,
    };
    let theoretical_source = match (peak_gflops.is_some() || peak_bandwidth.is_some(), &preset) {
        (true, _) => Some("given on the command line".to_string()),
        (false, Some(p)) => Some(p.2.clone()),
        _ => None,
    };
    let opts = crate::drivers::calibrate::CalibrateOptions {
        hardware,
        ep,
        threads,
        quick,
        patterns,
        seed,
        theoretical_gflops: peak_gflops.or(preset.as_ref().map(|p| p.0)),
        theoretical_bandwidth_gbs: peak_bandwidth.or(preset.as_ref().map(|p| p.1)),
        theoretical_source,
        rules: !no_rules,
        progress: true,
        cuda_graph,
        precisions,
    };
    crate::runtime::configure_pool(threads)?;
    let _lock = crate::drivers::run::lock_path()
        .and_then(|path| crate::drivers::run::RunLock::acquire(&path, LockMode::Wait))
        .unwrap_or(None);
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut save = |cal: &crate::calibration::hardware::HardwareCalibration| -> Result<()> {
        let json = serde_json::to_vec_pretty(cal).context("serialising the calibration")?;
        report::atomic_write(&out, &json)
    };
    let cal = crate::drivers::calibrate::calibrate(&opts, &mut save)?;
    save(&cal)?;
    print!("{}", crate::report::hardware::summary_text(&cal));
    println!("wrote {}", out.display());
    let page_path = out.with_extension("html");
    let page = crate::report::html::hardware_page(&cal)
        .with_context(|| format!("{} was written, but its report {} was not", out.display(), page_path.display()))?;
    report::atomic_write(&page_path, page.as_bytes())?;
    println!("wrote {} (the report: open it in a browser)", page_path.display());
    if !cal.complete {
        eprintln!("interrupted: the sizes measured so far are in {}", out.display());
        return Ok(ExitCode::Interrupted);
    }
    Ok(ExitCode::Ok)
}
