//! The one reader of calibration files: [`read`] opens a file, tells a `fuseval bench` calibration.json,
//! a `fuseval calibrate` HardwareCalibration and a `fuseval merge` file apart, and returns it typed
//! ([`Calibration`]). Every error names the file and is bad input (`crate::error::user`, exit code 2).
//!
//! What reads calibration files goes through it: the cost model (`FusionCostModel::from_path`), `plan`
//! and `validate --calibration`, `bench --calibration` (ceilings), `bench --resume`, `fuseval merge`,
//! and `hardware::read`. The cost model and plan need only the records (and the ceilings), so a file
//! that has a top-level `fusion_profiles` array of valid records but is not complete in every other
//! field (written by hand, or by another tool) is still read, as [`Calibration::Records`]; the commands
//! that need the whole file (`--resume`, `merge`) refuse it, saying what is missing.

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::hardware::HardwareCalibration;
use super::merge::{MergedFile, MERGED_KIND};
use super::roofline::Ceilings;
use super::{CalibrationFile, FusionCalibration};
use crate::error::user;

/// Which of fuseval's calibration files a file is, by its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `fuseval bench`'s calibration.json (`patterns_found_longest`, `metadata.model`).
    Bench,
    /// `fuseval calibrate`'s HardwareCalibration (`operation_profiles`, `crossovers`, `hardware_name`).
    Hardware,
    /// `fuseval merge`'s file (`"kind": "merged"`, `runs`).
    Merged,
    /// None of these: only a top-level `fusion_profiles` array.
    Records,
}

impl Kind {
    /// The kind in words, for messages: `a fuseval bench calibration.json`.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Bench => "a `fuseval bench` calibration.json",
            Kind::Hardware => "a `fuseval calibrate` hardware calibration",
            Kind::Merged => "a merged file (`fuseval merge`)",
            Kind::Records => "a file of calibration records",
        }
    }
}

/// A calibration file, typed.
#[derive(Clone, Debug)]
pub enum Calibration {
    Bench(Box<CalibrationFile>),
    Hardware(Box<HardwareCalibration>),
    Merged(MergedFile),
    /// A file whose records are valid but which is not, in full, the kind it looks like (`looks_like`):
    /// a hand-written file, another tool's, or one missing fields fuseval writes (`why`). Only its
    /// records, ceilings and `complete` flags are read.
    Records {
        looks_like: Kind,
        why: String,
        runs: Vec<RecordsRun>,
    },
}

/// One run's records of a [`Calibration::Records`] file (one run, or each run of a merged file).
#[derive(Clone, Debug)]
pub struct RecordsRun {
    pub fusion_profiles: Vec<FusionCalibration>,
    pub ceilings: Option<Ceilings>,
    pub complete: bool,
    /// `metadata.hardware.cpu_model` and `metadata.execution_provider`, where present.
    pub cpu_model: Option<String>,
    pub execution_provider: Option<String>,
}

/// One run's records, whatever the file: one for a bench or calibrate file, each run of a merged one.
#[derive(Clone, Copy, Debug)]
pub struct Run<'a> {
    /// `runs[i].` in a merged file, empty otherwise: where the run is, for messages.
    pub at: &'a str,
    pub records: &'a [FusionCalibration],
    pub ceilings: Option<&'a Ceilings>,
    /// False for an interrupted run, whose records are only the finished ones.
    pub complete: bool,
    cpu_model: Option<&'a str>,
    execution_provider: Option<&'a str>,
}

impl Run<'_> {
    /// The machine and provider it was measured on: `CPU model (provider)`, `?` for what is missing.
    pub fn machine(&self) -> String {
        format!("{} ({})", self.cpu_model.unwrap_or("?"), self.execution_provider.unwrap_or("?"))
    }
}

/// A calibration file and where it was read from.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    pub calibration: Calibration,
    /// `runs[i].` labels of a merged file's runs.
    labels: Vec<String>,
}

/// Read a calibration file. Errors (bad input, each naming the file): it cannot be read, is not JSON,
/// has no top-level `fusion_profiles` array (nor is a merged file with `runs`), or a record is not a
/// `FusionCalibration` (named by its index).
pub fn read(path: &Path) -> Result<Source> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| user(format!("cannot read {shown}: {e}")))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| user(format!("{shown}: not JSON: {e}")))?;
    let shown = shown.to_string();
    let Value::Object(mut obj) = v else { return Err(no_profiles(&shown)) };
    let kind = kind_of(&obj);
    if kind != Kind::Merged {
        let (records, rest) = split_records(&shown, "", obj)?;
        let run = records_run(&rest, records);
        let calibration = match kind {
            Kind::Bench => match typed::<CalibrationFile>(rest) {
                Ok(mut c) => {
                    c.fusion_profiles = run.fusion_profiles;
                    Calibration::Bench(Box::new(c))
                }
                Err(why) => Calibration::Records { looks_like: kind, why, runs: vec![run] },
            },
            Kind::Hardware => match typed::<HardwareCalibration>(rest) {
                Ok(mut h) => {
                    h.fusion_profiles = run.fusion_profiles;
                    Calibration::Hardware(Box::new(h))
                }
                Err(why) => Calibration::Records { looks_like: kind, why, runs: vec![run] },
            },
            _ => Calibration::Records {
                looks_like: kind,
                why: "it has none of the other fields fuseval writes".into(),
                runs: vec![run],
            },
        };
        return Ok(Source { path: path.to_path_buf(), calibration, labels: vec![String::new()] });
    }
    let Some(Value::Array(list)) = obj.remove("runs") else {
        return Err(user(format!("{shown}: merged file without `runs`")));
    };
    let (mut runs, mut labels, mut why) = (vec![], vec![], None);
    for (i, run) in list.into_iter().enumerate() {
        let at = format!("runs[{i}].");
        let Value::Object(run) = run else { return Err(user(format!("{shown}: {at} is not an object"))) };
        let (records, rest) = split_records(&shown, &at, run)?;
        let lenient = records_run(&rest, records);
        runs.push(match typed::<CalibrationFile>(rest) {
            Ok(mut c) => {
                c.fusion_profiles = lenient.fusion_profiles;
                Ok(c)
            }
            Err(e) => {
                why.get_or_insert(format!("{at}{e}"));
                Err(lenient)
            }
        });
        labels.push(at);
    }
    obj.insert("runs".into(), Value::Array(vec![]));
    let calibration = match (typed::<MergedFile>(obj), why) {
        (Ok(mut m), None) => {
            m.runs = runs.into_iter().flatten().collect();
            Calibration::Merged(m)
        }
        (Err(why), _) | (Ok(_), Some(why)) => Calibration::Records {
            looks_like: kind,
            why,
            runs: runs.into_iter().map(|r| r.map_or_else(|l| l, RecordsRun::from)).collect(),
        },
    };
    Ok(Source { path: path.to_path_buf(), calibration, labels })
}

/// The kind a JSON object looks like.
fn kind_of(obj: &Map<String, Value>) -> Kind {
    let meta = |k: &str| obj.get("metadata").and_then(|m| m.get(k)).is_some();
    if obj.get("kind").and_then(|k| k.as_str()) == Some(MERGED_KIND) {
        Kind::Merged
    } else if ["operation_profiles", "crossovers", "fusion_rules", "hardware_name"].iter().any(|k| obj.contains_key(*k))
        || meta("hardware_name")
    {
        Kind::Hardware
    } else if ["patterns_found_longest", "patterns_found_all"].iter().any(|k| obj.contains_key(*k)) || meta("model") {
        Kind::Bench
    } else {
        Kind::Records
    }
}

fn no_profiles(shown: &str) -> anyhow::Error {
    user(format!(
        "{shown}: no top-level `fusion_profiles` array (expected a `fuseval bench` calibration.json, a `fuseval calibrate` hardware calibration or a merged file)"
    ))
}

/// A run's records, and the rest of it.
type Split = (Vec<FusionCalibration>, Map<String, Value>);

/// Take a run's `fusion_profiles` out of it, each record parsed (an error names its index); the rest
/// keeps an empty `fusion_profiles`. An error when there is no such array.
fn split_records(shown: &str, at: &str, mut obj: Map<String, Value>) -> Result<Split> {
    let Some(Value::Array(list)) = obj.remove("fusion_profiles") else { return Err(no_profiles(shown)) };
    let mut records = Vec::with_capacity(list.len());
    for (i, item) in list.into_iter().enumerate() {
        let rec = serde_json::from_value::<FusionCalibration>(item)
            .map_err(|e| user(format!("{shown}: {at}fusion_profiles[{i}] is not a FusionCalibration record: {e}")))?;
        records.push(rec);
    }
    obj.insert("fusion_profiles".into(), Value::Array(vec![]));
    Ok((records, obj))
}

/// What a run without a full type still tells: ceilings, `complete`, the machine.
fn records_run(rest: &Map<String, Value>, mut fusion_profiles: Vec<FusionCalibration>) -> RecordsRun {
    let meta = |p: &str| rest.get("metadata").and_then(|m| m.pointer(p)).and_then(|c| c.as_str()).map(str::to_string);
    // records written before they were keyed by precision: the run's, else its provider's default
    let precision = meta("/precision").and_then(|p| serde_json::from_value(Value::String(p)).ok()).or_else(|| {
        let ep = meta("/execution_provider")?;
        Some(crate::runtime::Precision::default_for(if ep.starts_with("cuda") {
            crate::runtime::Ep::Cuda { device_id: 0 }
        } else {
            crate::runtime::Ep::Cpu
        }))
    });
    for r in fusion_profiles.iter_mut().filter(|r| r.precision.is_none()) {
        r.precision = precision;
    }
    RecordsRun {
        fusion_profiles,
        ceilings: rest.get("ceilings").and_then(|c| serde_json::from_value(c.clone()).ok()),
        complete: rest.get("complete").and_then(|c| c.as_bool()) != Some(false),
        cpu_model: meta("/hardware/cpu_model"),
        execution_provider: meta("/execution_provider"),
    }
}

/// The rest of a file (records taken out) typed as `T`, or why it is not one.
fn typed<T: DeserializeOwned>(rest: Map<String, Value>) -> std::result::Result<T, String> {
    serde_json::from_value(Value::Object(rest)).map_err(|e| e.to_string())
}

impl From<CalibrationFile> for RecordsRun {
    fn from(c: CalibrationFile) -> Self {
        RecordsRun {
            fusion_profiles: c.fusion_profiles,
            ceilings: c.ceilings,
            complete: c.complete,
            cpu_model: Some(c.metadata.hardware.cpu_model),
            execution_provider: Some(c.metadata.execution_provider),
        }
    }
}

impl Source {
    /// The kind of file, or for [`Calibration::Records`] the kind it looks like.
    pub fn kind(&self) -> Kind {
        match &self.calibration {
            Calibration::Bench(_) => Kind::Bench,
            Calibration::Hardware(_) => Kind::Hardware,
            Calibration::Merged(_) => Kind::Merged,
            Calibration::Records { looks_like, .. } => *looks_like,
        }
    }

    /// Its runs: one for a bench or calibrate file, each run of a merged file.
    pub fn runs(&self) -> Vec<Run<'_>> {
        let at = |i: usize| self.labels.get(i).map(String::as_str).unwrap_or("");
        match &self.calibration {
            Calibration::Bench(c) => vec![bench_run(at(0), c)],
            Calibration::Merged(m) => m.runs.iter().enumerate().map(|(i, c)| bench_run(at(i), c)).collect(),
            Calibration::Hardware(h) => vec![Run {
                at: at(0),
                records: &h.fusion_profiles,
                ceilings: Some(&h.ceilings),
                complete: h.complete,
                cpu_model: Some(&h.metadata.hardware.cpu_model),
                execution_provider: Some(&h.metadata.execution_provider),
            }],
            Calibration::Records { runs, .. } => runs
                .iter()
                .enumerate()
                .map(|(i, r)| Run {
                    at: at(i),
                    records: &r.fusion_profiles,
                    ceilings: r.ceilings.as_ref(),
                    complete: r.complete,
                    cpu_model: r.cpu_model.as_deref(),
                    execution_provider: r.execution_provider.as_deref(),
                })
                .collect(),
        }
    }

    /// Every record, run after run.
    pub fn records(&self) -> impl Iterator<Item = &FusionCalibration> + '_ {
        self.runs().into_iter().flat_map(|r| r.records.iter())
    }

    /// The machines (and providers) its runs were measured on, each once, sorted.
    pub fn machines(&self) -> Vec<String> {
        let mut m: Vec<String> = self.runs().iter().map(Run::machine).collect();
        m.sort();
        m.dedup();
        m
    }

    /// The hardware ceilings: the file's, or the first run's that has them in a merged file of one
    /// machine; none for a merged file of several machines.
    pub fn ceilings(&self) -> Option<&Ceilings> {
        if self.machines().len() > 1 {
            return None;
        }
        self.runs().into_iter().find_map(|r| r.ceilings)
    }

    /// The ceilings for records in `precision`: a calibrate file's measured in it when it has them,
    /// else [`Self::ceilings`].
    pub fn ceilings_in(&self, precision: crate::runtime::Precision) -> Option<&Ceilings> {
        if let Calibration::Hardware(h) = &self.calibration {
            if let Some(c) = h.precision_ceilings.iter().find(|c| c.precision == Some(precision)) {
                return Some(c);
            }
        }
        self.ceilings()
    }

    /// A bench calibration.json (for `--resume`); anything else is refused, saying what it is.
    pub fn into_bench(self) -> Result<CalibrationFile> {
        let shown = self.path.display();
        match self.calibration {
            Calibration::Bench(c) => Ok(*c),
            Calibration::Records { looks_like: Kind::Bench | Kind::Records, why, .. } => {
                Err(user(format!("{shown} is not a fuseval calibration file: {why}")))
            }
            other => Err(user(format!(
                "{shown} is {}, not a `fuseval bench` calibration.json",
                kind_of_calibration(&other).describe()
            ))),
        }
    }

    /// The bench runs it holds (for `fuseval merge`): one for a bench calibration.json, each run of a
    /// merged file; a hardware calibration, or a file not complete, is refused.
    pub fn into_runs(self) -> Result<Vec<CalibrationFile>> {
        let shown = self.path.display();
        match self.calibration {
            Calibration::Bench(c) => Ok(vec![*c]),
            Calibration::Merged(m) => Ok(m.runs),
            Calibration::Hardware(_) | Calibration::Records { looks_like: Kind::Hardware, .. } => Err(user(format!(
                "{shown} is {}: merge takes `fuseval bench` calibration.json files and merged files",
                Kind::Hardware.describe()
            ))),
            Calibration::Records { why, .. } => Err(user(format!("{shown}: not a fuseval calibration file: {why}"))),
        }
    }

    /// A `fuseval calibrate` HardwareCalibration; anything else is refused, saying why.
    pub fn into_hardware(self) -> Result<HardwareCalibration> {
        let shown = self.path.display();
        match self.calibration {
            Calibration::Hardware(h) => Ok(*h),
            Calibration::Records { looks_like: Kind::Hardware | Kind::Records, why, .. } => {
                Err(user(format!("{shown} is not a fuseval HardwareCalibration: {why}")))
            }
            other => Err(user(format!(
                "{shown} is not a fuseval HardwareCalibration: it is {}",
                kind_of_calibration(&other).describe()
            ))),
        }
    }
}

fn kind_of_calibration(c: &Calibration) -> Kind {
    match c {
        Calibration::Bench(_) => Kind::Bench,
        Calibration::Hardware(_) => Kind::Hardware,
        Calibration::Merged(_) => Kind::Merged,
        Calibration::Records { looks_like, .. } => *looks_like,
    }
}

fn bench_run<'a>(at: &'a str, c: &'a CalibrationFile) -> Run<'a> {
    Run {
        at,
        records: &c.fusion_profiles,
        ceilings: c.ceilings.as_ref(),
        complete: c.complete,
        cpu_model: Some(&c.metadata.hardware.cpu_model),
        execution_provider: Some(&c.metadata.execution_provider),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BENCH: &str = "fixtures/plans/tiny_bert_cal.json";

    fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
        p
    }

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        let e = r.unwrap_err();
        assert!(crate::error::is_user_error(&e), "{e:#}");
        format!("{e:#}")
    }

    #[test]
    fn a_bench_file_reads_typed_and_whole() {
        let s = read(Path::new(BENCH)).unwrap();
        assert!(matches!(s.calibration, Calibration::Bench(_)), "{:?}", s.kind());
        assert_eq!(s.runs().len(), 1);
        assert_eq!(s.records().count(), 5);
        assert!(s.ceilings().is_some());
        let c = s.clone().into_bench().unwrap();
        assert_eq!(c.fusion_profiles.len(), 5);
        assert_eq!(s.into_runs().unwrap().len(), 1);
    }

    #[test]
    fn merged_and_partial_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let bench: Value = serde_json::from_slice(&std::fs::read(BENCH).unwrap()).unwrap();
        let merged = serde_json::json!({ "schema_version": 1, "kind": "merged", "date": "x", "sources": ["a", "b"], "runs": [bench, bench] });
        let s = read(&write(dir.path(), "merged.json", &merged)).unwrap();
        assert!(matches!(s.calibration, Calibration::Merged(_)));
        let labels: Vec<&str> = s.runs().iter().map(|r| r.at).collect();
        assert_eq!(labels, ["runs[0].", "runs[1]."]);
        assert_eq!(s.machines().len(), 1);
        assert!(s.ceilings().is_some());
        assert_eq!(s.clone().into_runs().unwrap().len(), 2);
        assert!(err(s.into_bench()).contains("is a merged file"));

        // a run that misses a field fuseval writes: its records still read, the file is no full merged file
        let mut partial = merged.clone();
        partial["runs"][1].as_object_mut().unwrap().remove("metadata");
        let s = read(&write(dir.path(), "partial.json", &partial)).unwrap();
        assert!(
            matches!(&s.calibration, Calibration::Records { looks_like: Kind::Merged, why, .. } if why.starts_with("runs[1]."))
        );
        assert_eq!(s.records().count(), 10);
        assert!(err(s.into_runs()).contains("partial.json: not a fuseval calibration file: runs[1]."));

        // calibrate's shape, incomplete: records only, and refused where the whole file is needed
        let hw =
            serde_json::json!({ "hardware_name": "x", "fusion_profiles": bench["fusion_profiles"], "complete": false });
        let s = read(&write(dir.path(), "hw.json", &hw)).unwrap();
        assert_eq!(s.kind(), Kind::Hardware);
        assert!(!s.runs()[0].complete && s.ceilings().is_none());
        assert_eq!(s.runs()[0].machine(), "? (?)");
        assert!(err(s.clone().into_hardware()).contains("hw.json is not a fuseval HardwareCalibration"));
        assert!(err(s.into_runs()).contains("merge takes"));
    }

    #[test]
    fn errors_name_the_file_and_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        assert!(err(read(&dir.path().join("nope.json"))).contains("cannot read"));
        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, b"{ not json").unwrap();
        assert!(err(read(&garbage)).contains("garbage.json: not JSON"));
        let e = err(read(&write(dir.path(), "other.json", &serde_json::json!({ "profiles": [] }))));
        assert!(e.contains("other.json: no top-level `fusion_profiles`"), "{e}");
        let e = err(read(&write(dir.path(), "list.json", &serde_json::json!([1, 2]))));
        assert!(e.contains("list.json: no top-level `fusion_profiles`"), "{e}");
        let e = err(read(&write(dir.path(), "m.json", &serde_json::json!({ "kind": "merged" }))));
        assert!(e.contains("m.json: merged file without `runs`"), "{e}");
        let mut bad: Value = serde_json::from_slice(&std::fs::read(BENCH).unwrap()).unwrap();
        bad["fusion_profiles"][2]["best_variant"] = serde_json::json!("fastest");
        let e = err(read(&write(dir.path(), "bad.json", &bad)));
        assert!(e.contains("bad.json: fusion_profiles[2] is not a FusionCalibration record"), "{e}");
    }
}
