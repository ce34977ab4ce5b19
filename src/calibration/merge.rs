//! Files across runs: the model fingerprint `--resume` checks, and `fuseval merge`, which keeps several
//! runs' calibration files (each with its metadata) in one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{utc_now, CalibrationFile, SCHEMA_VERSION};

/// What `--resume` checks to be sure the model on disk is the one measured: its size and mtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: u128,
}

pub fn fingerprint(model: &Path) -> Result<Fingerprint> {
    let m = std::fs::metadata(model).with_context(|| format!("reading {}", model.display()))?;
    let mtime_ns =
        m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    Ok(Fingerprint { size: m.len(), mtime_ns })
}

/// A merged calibration file: every run kept whole, its metadata beside its measurements.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MergedFile {
    pub schema_version: u32,
    /// Always `merged`, telling this file from a single run's.
    pub kind: String,
    /// UTC, RFC 3339.
    pub date: String,
    /// The files merged, as given.
    pub sources: Vec<String>,
    pub runs: Vec<CalibrationFile>,
}

pub const MERGED_KIND: &str = "merged";

/// The runs in a calibration file: one for a bench run, all of them for a merged file
/// ([`super::read::Source::into_runs`]); errors name the file.
pub fn read_runs(path: &Path) -> Result<Vec<CalibrationFile>> {
    super::read::read(path)?.into_runs()
}

/// Merge calibration files (single runs or merged files) into one list of runs, in the order given.
pub fn merge(inputs: &[PathBuf]) -> Result<MergedFile> {
    let mut runs = vec![];
    for p in inputs {
        runs.extend(read_runs(p)?);
    }
    Ok(MergedFile {
        schema_version: SCHEMA_VERSION,
        kind: MERGED_KIND.into(),
        date: utc_now(),
        sources: inputs.iter().map(|p| p.display().to_string()).collect(),
        runs,
    })
}
