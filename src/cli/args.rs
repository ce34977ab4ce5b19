//! Flags several commands share, declared once and flattened into each (`#[command(flatten)]`).

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::drivers::run::LockMode;
use crate::runtime::Ep;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EpArg {
    Cpu,
    Cuda,
}

impl EpArg {
    /// The provider, with `--device-id` for CUDA.
    pub fn ep(self, device_id: i32) -> Ep {
        match self {
            EpArg::Cpu => Ep::Cpu,
            EpArg::Cuda => Ep::Cuda { device_id },
        }
    }
}

/// How to measure: provider, threads, budget, seed (bench, calibrate, validate, plan).
#[derive(Args, Debug, Clone)]
pub struct MeasureFlags {
    /// Execution provider.
    #[arg(long, value_enum, default_value_t = EpArg::Cpu)]
    pub ep: EpArg,
    /// CUDA device, with --ep cuda.
    #[arg(long, default_value_t = 0)]
    pub device_id: i32,
    /// Intra-op threads (default: all logical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Wider CI target (±5%) and a short time budget per measurement (calibrate: also three sizes per
    /// pattern).
    #[arg(long)]
    pub quick: bool,
    /// Seed of the random inputs (and of calibrate's weights).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Independent replicates per instance, each in fresh sessions at another point of the run; the CI
    /// covers their spread. Each takes the full time budget. Default 2 (bench, validate, plan); calibrate's
    /// sweeps take one per size.
    #[arg(long)]
    pub replicates: Option<usize>,
    /// What to compute in (CUDA): fp32 (TF32 off), tf32 (ORT's CUDA default), fp16 (the model converted by
    /// fuseval), all (bench, calibrate: the three in one run, side by side). The CPU computes fp32 only.
    /// Default: fp32 on the CPU, tf32 on CUDA.
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    Fp32,
    Tf32,
    Fp16,
    All,
}

/// The precision asked for, or the provider's default; an error (exit 2) when the provider cannot.
pub fn precision_arg(p: Option<PrecisionArg>, ep: Ep) -> Result<crate::runtime::Precision> {
    use crate::runtime::Precision;
    let p = match p {
        None => return Ok(Precision::default_for(ep)),
        Some(PrecisionArg::Fp32) => Precision::Fp32,
        Some(PrecisionArg::Tf32) => Precision::Tf32,
        Some(PrecisionArg::Fp16) => Precision::Fp16,
        Some(PrecisionArg::All) => {
            return Err(crate::error::user("--precision all is for bench and calibrate; name one precision here"))
        }
    };
    p.check(ep)?;
    Ok(p)
}

/// The precisions asked for (`all`: fp32, tf32, fp16), or the provider's default; an error (exit 2) when
/// the provider cannot compute one of them.
pub fn precision_args(p: Option<PrecisionArg>, ep: Ep) -> Result<Vec<crate::runtime::Precision>> {
    match p {
        Some(PrecisionArg::All) => {
            for q in crate::runtime::Precision::ALL {
                q.check(ep).map_err(|e| crate::error::user(format!("--precision all: {e:#}")))?;
            }
            Ok(crate::runtime::Precision::ALL.to_vec())
        }
        p => Ok(vec![precision_arg(p, ep)?]),
    }
}

impl MeasureFlags {
    pub fn ep(&self) -> Ep {
        self.ep.ep(self.device_id)
    }

    /// `--threads`, defaulting to every logical core; 0 is bad input.
    pub fn threads(&self) -> Result<usize> {
        threads_arg(self.threads)
    }

    /// `--replicates`, defaulting to [`crate::measure::replicates::DEFAULT_REPLICATES`]; 0 is bad input.
    pub fn replicates(&self) -> Result<usize> {
        replicates_arg(self.replicates)
    }
}

/// `--replicates`, defaulting to two; 0 is bad input.
pub fn replicates_arg(r: Option<usize>) -> Result<usize> {
    match r {
        Some(0) => Err(crate::error::user("--replicates must be at least 1")),
        Some(r) => Ok(r),
        None => Ok(crate::measure::replicates::DEFAULT_REPLICATES),
    }
}

/// Which model inputs to fix, and what to do about another run holding the lock (bench, validate, plan).
#[derive(Args, Debug, Clone)]
pub struct ModelFlags {
    /// Fix a dynamic input: NAME=DIMS, e.g. input_ids=1x128. Repeatable.
    #[arg(long = "input", value_name = "NAME=DIMS")]
    pub inputs: Vec<String>,
    /// When another bench run holds the machine-wide lock: wait for it, fail (exit 4), or warn and go on.
    #[arg(long, value_enum, default_value_t = LockMode::Wait)]
    pub lock: LockMode,
}

/// `--threads`, defaulting to every logical core; 0 is bad input.
pub fn threads_arg(threads: Option<usize>) -> Result<usize> {
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    if threads == 0 {
        return Err(crate::error::user("--threads must be at least 1"));
    }
    Ok(threads)
}

/// The exit codes, as `--help` prints them.
pub const EXIT_CODES: &str = "Exit codes:
  0    success: every distinct instance measured
  1    any other failure
  2    bad input to fix: the model, a flag, an existing output without --force, a --resume that does not match
  3    bench finished, but some instances were skipped (each with its skip_reason)
  4    --lock fail, and another bench run holds the lock
  5    validate --strict: a group of the plan is harmful (slower, not equivalent, or illegal)
  130  interrupted (Ctrl-C, SIGTERM): finished instances are in calibration.json; continue with bench --resume DIR";
