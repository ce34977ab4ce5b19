//! `fuseval eventcheck`: fuseval's GPU timing against CUDA events.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::EpArg;
use crate::error::ExitCode;
use crate::report;
use crate::runtime::Ep;

/// Check fuseval's GPU timing against CUDA events: a few synthetic patterns timed by fuseval and,
/// on a stream of its own, by CUDA events (device clock). Needs --ep cuda and libcudart.
#[derive(Args, Debug)]
pub struct EventcheckCmd {
    #[arg(long, value_enum, default_value_t = EpArg::Cuda)]
    pub ep: EpArg,
    #[arg(long, default_value_t = 0)]
    pub device_id: i32,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long)]
    pub quick: bool,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the checks as JSON here.
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
}

pub fn run(cmd: EventcheckCmd) -> Result<ExitCode> {
    let EventcheckCmd { ep, device_id, threads, quick, seed, out } = cmd;
    let ep = match ep {
        EpArg::Cpu => return Err(crate::error::user("eventcheck times CUDA events: use --ep cuda")),
        EpArg::Cuda => Ep::Cuda { device_id },
    };
    crate::runtime::configure_pool(threads.max(1))?;
    let checks = crate::drivers::calibrate::event_checks(ep, threads.max(1), quick, seed, true)?;
    println!("{:<44} {:>12} {:>12} {:>9} {:>12} {:>9}", "model", "fuseval ms", "events ms", "diff", "host ms", "diff");
    for c in &checks {
        println!(
            "{:<44} {:>12.4} {:>12.4} {:>8.1}% {:>12.4} {:>8.1}%",
            c.label,
            c.fuseval_ms,
            c.event_ms,
            100.0 * c.fuseval_vs_events,
            c.host_ms,
            100.0 * c.host_vs_events
        );
    }
    if let Some(out) = out {
        report::atomic_write(&out, &serde_json::to_vec_pretty(&checks)?)?;
        println!("wrote {}", out.display());
    }
    Ok(ExitCode::Ok)
}
