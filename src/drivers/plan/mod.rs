//! Partition plans: `fuseval validate` checks the groups a graph partitioner fused against measurements
//! (or the cost model's estimates) and lists the fusible patterns it missed; `fuseval plan` proposes a
//! partition greedily from measured (or estimated) benefit. Format, verdicts and exit codes:
//! docs/plan.md.
//!
//! - `format`: the plan file (an object with `groups`, or a plain list of node-name lists);
//! - `groups`: groups resolved against the model, matched to catalog instances, legality checked;
//! - `assess`: the verdict rules, and measuring like `bench`;
//! - `estimated`: the cost model over a calibration file;
//! - `propose`: the greedy partition;
//! - `report`: the JSON report and the text table.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use petgraph::graph::NodeIndex;

use crate::calibration::NOISE;
use crate::drivers::bench::BenchOptions;
use crate::drivers::run::LockMode;
use crate::error::{user, ExitCode};
use crate::load::InputOverride;
use crate::measure::MeasureOptions;
use crate::patterns::Instance;
use crate::pipeline::{check_ep, prepare, Prepared};
use crate::runtime::Ep;

pub mod assess;
pub mod estimated;
pub mod format;
pub mod groups;
pub mod propose;
pub mod report;

pub use assess::{Assessment, Basis, Verdict};
pub use format::{Plan, PlanGroup};
pub use report::ValidationReport;

/// How the model is loaded and measured (as `bench`), resolved from the command line.
#[derive(Debug, Clone)]
pub struct MeasureArgs {
    pub inputs: Vec<String>,
    pub ep: Ep,
    pub threads: usize,
    pub quick: bool,
    pub seed: u64,
    pub replicates: usize,
    pub lock: LockMode,
    pub precision: crate::runtime::Precision,
}

/// What `fuseval validate` was asked (flags: `cli::validate`).
#[derive(Debug)]
pub struct ValidateArgs {
    pub model: PathBuf,
    pub plan: PathBuf,
    pub calibration: Option<PathBuf>,
    pub measure: bool,
    pub no_roofline: bool,
    pub threshold: f64,
    pub strict: bool,
    pub no_missed_measure: bool,
    pub json: bool,
    pub out: Option<PathBuf>,
    pub force: bool,
    pub m: MeasureArgs,
}

/// What `fuseval plan` was asked (flags: `cli::plan`).
#[derive(Debug)]
pub struct PlanArgs {
    pub model: PathBuf,
    pub calibration: Option<PathBuf>,
    pub threshold: f64,
    pub out: PathBuf,
    pub force: bool,
    pub m: MeasureArgs,
}

fn check_threshold(t: f64) -> Result<()> {
    if !(t.is_finite() && t >= 1.0) {
        return Err(user(format!("--threshold must be a speedup of at least 1.0, got {t}")));
    }
    Ok(())
}

/// The bench options for measuring, the ORT pool sized and the provider checked.
fn measuring(m: &MeasureArgs) -> Result<MeasureOptions> {
    let (threads, ep) = (m.threads, m.ep);
    // before anything starts ONNX Runtime: its shared thread pool is sized once per process
    crate::runtime::configure_pool(threads)?;
    check_ep(ep)?;
    Ok(crate::drivers::bench::measure_options(&BenchOptions {
        ep,
        threads,
        quick: m.quick,
        all_patterns: true,
        seed: m.seed,
        whole_model: false,
        progress: false,
        run: None,
        ceilings: None,
        calibration: None,
        cuda_graph: false,
        replicates: m.replicates,
        attribution: false,
        instances: true,
        precision: m.precision,
        whole_model_path: None,
    }))
}

fn refuse_existing(out: &Path, force: bool) -> Result<()> {
    if out.exists() && !force {
        return Err(user(format!("{} already exists: pass --force to overwrite it", out.display())));
    }
    Ok(())
}

fn write_json(out: &Path, json: &[u8]) -> Result<()> {
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    crate::report::atomic_write(out, json)
}

fn progress() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

fn load_model(model: &Path, m: &MeasureArgs) -> Result<Prepared> {
    let p = prepare(model, &InputOverride::parse_all(&m.inputs)?)
        .with_context(|| format!("loading {}", model.display()))?;
    for w in &p.loaded.warnings {
        eprintln!("warning: {w}");
    }
    Ok(p)
}

/// The hardware's ceilings, measured briefly as bench does; a failure only warns.
fn measure_ceilings(
    mopts: &MeasureOptions,
    warnings: &mut Vec<String>,
) -> Option<crate::calibration::roofline::Ceilings> {
    if progress() {
        eprintln!("measuring the hardware ceilings for the roofline (--no-roofline skips this)");
    }
    match crate::drivers::calibrate::measure_ceilings(crate::drivers::calibrate::CeilingOptions::minimal(
        mopts.ep,
        mopts.threads,
        mopts.seed,
        mopts.precision,
    )) {
        Ok((_, c)) => Some(c),
        Err(e) => {
            warnings.push(format!("the hardware ceilings could not be measured, so no bottleneck is given: {e:#}"));
            None
        }
    }
}

/// `fuseval validate`: returns the exit code.
pub fn validate_command(args: &ValidateArgs) -> Result<ExitCode> {
    check_threshold(args.threshold)?;
    let plan = format::read_plan(&args.plan)?;
    if let Some(out) = &args.out {
        refuse_existing(out, args.force)?;
    }
    let estimate = args.calibration.is_some() && !args.measure;
    let mopts = if estimate { None } else { Some(measuring(&args.m)?) };
    let estimator = match (&args.calibration, estimate) {
        (Some(c), true) => Some(estimated::Estimator::load(c, args.threshold)?),
        _ => None,
    };
    let p = load_model(&args.model, &args.m)?;
    let (g, d) = (&p.graph, &p.detection);
    let resolved = groups::resolve(&plan, &args.plan, &args.model, g, d)?;
    let mut warnings = vec![];
    if let Some(m) = &plan.model {
        let name = |s: &Path| s.file_name().map(|n| n.to_string_lossy().into_owned());
        if name(Path::new(m)) != name(&args.model) {
            warnings.push(format!("the plan says it is for {m}, but validating it on {}", args.model.display()));
        }
    }
    if plan.groups.is_empty() {
        warnings.push("the plan has no groups".into());
    }
    let planned: HashSet<NodeIndex> = resolved.iter().flat_map(|r| r.nodes.iter().copied()).collect();
    let missed: Vec<&Instance> =
        d.longest_instances().filter(|i| i.nodes.iter().all(|n| !planned.contains(n))).collect();

    // what each catalog instance is worth
    let catalog: Vec<&Instance> = resolved
        .iter()
        .filter_map(|r| match r.matched {
            groups::Match::Catalog(i) => Some(&d.all[i]),
            _ => None,
        })
        .collect();
    let worth: Box<dyn Fn(&Instance) -> Assessment> = if let Some(e) = &estimator {
        warnings.extend(e.warnings().iter().cloned());
        let t = args.threshold;
        Box::new(move |inst: &Instance| {
            e.assess(g, inst, t)
                .unwrap_or_else(|err| Assessment::none(Verdict::Unmeasured, format!("no estimate: {err:#}")))
        })
    } else {
        let mopts = mopts.as_ref().context("measure options")?;
        let mut todo = catalog.clone();
        if !args.no_missed_measure {
            todo.extend(missed.iter().copied());
        }
        let _lock = crate::drivers::run::take_lock(args.m.lock)?;
        // the ceilings that place measured groups on the roofline: the calibration's, else measured
        let ceilings = match &args.calibration {
            Some(c) => {
                let found = crate::calibration::read::read(c)
                    .map_err(|e| user(format!("--calibration {}: {e:#}", c.display())))?
                    .ceilings()
                    .cloned();
                if found.is_none() {
                    warnings.push(format!("{} has no hardware ceilings: no bottleneck is given", c.display()));
                }
                found
            }
            None if args.no_roofline || todo.is_empty() => None,
            None => measure_ceilings(mopts, &mut warnings),
        };
        let records = assess::measure_instances(&p, &todo, mopts, progress()).context("measuring the plan's groups")?;
        let t = args.threshold;
        Box::new(move |inst: &Instance| match records.get(&inst.signature(g)) {
            Some(r) => assess::from_record(r, t, ceilings.as_ref()),
            None => Assessment::none(Verdict::Unmeasured, "not measured (--no-missed-measure)"),
        })
    };

    let group_reports: Vec<report::GroupReport> = resolved
        .iter()
        .map(|r| {
            let (kind, inst, mut a, tensor, contains) = match &r.matched {
                groups::Match::Catalog(i) => {
                    let inst = &d.all[*i];
                    (report::GroupKind::Catalog, Some(inst), worth(inst), None, vec![])
                }
                groups::Match::Illegal { reason, tensor } => (
                    report::GroupKind::Illegal,
                    None,
                    Assessment::none(Verdict::Harmful, format!("illegal: {reason}")),
                    tensor.clone(),
                    vec![],
                ),
                groups::Match::Uncatalogued { contains } => {
                    let inside: Vec<String> = contains
                        .iter()
                        .map(|&i| format!("{} ({})", d.all[i].pattern, report::short_nodes(&d.all[i].node_names(g))))
                        .collect();
                    let reason = if inside.is_empty() {
                        "legal to fuse, but fuseval has no pattern for these nodes, so there is nothing to measure".to_string()
                    } else {
                        format!(
                            "legal to fuse, but fuseval has no pattern for these nodes as a whole, so there is nothing to measure; inside it: {}",
                            inside.join(", ")
                        )
                    };
                    (report::GroupKind::Uncatalogued, None, Assessment::none(Verdict::Unmeasured, reason), None, inside)
                }
            };
            a.notes.splice(0..0, r.notes.iter().cloned());
            report::GroupReport {
                index: r.index + 1,
                name: r.name.clone(),
                nodes: r.names.clone(),
                kind,
                pattern: inst.map(|i| i.pattern.key().to_string()),
                form: inst.map(|i| i.form.clone()),
                declared_pattern: r.declared.map(|p| p.key().to_string()),
                escaping_tensor: tensor,
                contains,
                assessment: a,
            }
        })
        .collect();
    let missed_reports: Vec<report::MissedReport> = missed
        .iter()
        .map(|i| report::MissedReport {
            pattern: i.pattern.key().into(),
            form: i.form.clone(),
            nodes: i.node_names(g),
            assessment: if estimator.is_none() && args.no_missed_measure {
                Assessment::none(Verdict::Unmeasured, "not measured (--no-missed-measure)")
            } else {
                worth(i)
            },
        })
        .collect();
    let summary = report::Summary::of(&group_reports, &missed_reports);
    let rep = ValidationReport {
        model: args.model.display().to_string(),
        plan: args.plan.display().to_string(),
        basis: if estimator.is_some() { Basis::Estimated } else { Basis::Measured },
        calibration: args.calibration.as_ref().map(|c| c.display().to_string()),
        measurement: mopts.as_ref().map(|m| report::MeasurementInfo {
            execution_provider: m.ep.to_string(),
            threads: m.threads,
            quick: m.quick,
            seed: m.seed,
            ort_version: crate::runtime::ort_version(),
            replicates: m.replicates,
            provenance: crate::runtime::Provenance::current(),
        }),
        threshold: args.threshold,
        noise: NOISE,
        groups: group_reports,
        missed: missed_reports,
        summary,
        warnings,
    };
    let json = serde_json::to_vec_pretty(&rep).context("serialising the validation report")?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&json));
    } else {
        print!("{}", report::text(&rep));
    }
    if let Some(out) = &args.out {
        write_json(out, &json)?;
        if !args.json {
            println!("wrote {}", out.display());
        }
    }
    if args.strict && rep.summary.harmful > 0 {
        eprintln!(
            "--strict: {} harmful group{}: exit {}",
            rep.summary.harmful,
            if rep.summary.harmful == 1 { "" } else { "s" },
            ExitCode::Harmful.code()
        );
        return Ok(ExitCode::Harmful);
    }
    Ok(ExitCode::Ok)
}

/// `fuseval plan`: returns the exit code.
pub fn plan_command(args: &PlanArgs) -> Result<ExitCode> {
    check_threshold(args.threshold)?;
    refuse_existing(&args.out, args.force)?;
    let estimator = match &args.calibration {
        Some(c) => Some(estimated::Estimator::load(c, args.threshold)?),
        None => None,
    };
    let mopts = if estimator.is_some() { None } else { Some(measuring(&args.m)?) };
    let p = load_model(&args.model, &args.m)?;
    let proposal = match (&estimator, &mopts) {
        (Some(e), _) => propose::from_estimates(&p, e, args.threshold),
        (None, mopts) => {
            let mopts = mopts.as_ref().context("measure options")?;
            let all: Vec<&Instance> = p.detection.all.iter().collect();
            let _lock = crate::drivers::run::take_lock(args.m.lock)?;
            let records = assess::measure_instances(&p, &all, mopts, progress()).context("measuring the candidates")?;
            propose::from_measurements(&p, &records, args.threshold)
        }
    };
    let mut plan = proposal.plan;
    plan.model = Some(args.model.display().to_string());
    plan.proposed_by = Some(format::Proposal {
        tool: "fuseval plan".into(),
        fuseval_version: env!("CARGO_PKG_VERSION").into(),
        basis: if estimator.is_some() { "estimated" } else { "measured" }.into(),
        calibration: args.calibration.as_ref().map(|c| c.display().to_string()),
        threshold: args.threshold,
        inputs: args.m.inputs.clone(),
        expected_saving_ms: proposal.saving_ms,
    });
    for w in estimator.iter().flat_map(|e| e.warnings()) {
        eprintln!("warning: {w}");
    }
    print!("{}", proposal.text);
    let json = serde_json::to_vec_pretty(&plan).context("serialising the plan")?;
    write_json(&args.out, &json)?;
    println!("wrote {} ({} groups)", args.out.display(), plan.groups.len());
    Ok(ExitCode::Ok)
}
