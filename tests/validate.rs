//! `fuseval validate` and `fuseval plan` end to end on the tiny BERT fixture.
//!
//! The deterministic tests use the cost model over a hand-written calibration
//! (fixtures/plans/tiny_bert_cal.json: Linear_Bias_GELU 1.50×, Linear_Bias MatMul+Add 1.08×,
//! Add_LayerNorm 0.75×, MultiHead_Linear 1.44×, the pooler's Gemm 1.00×) and a hand-written plan
//! (fixtures/plans/tiny_bert_plan.json: one group per verdict, an illegal group, an uncatalogued one).
//! One test measures in ONNX Runtime and asserts only what does not depend on the machine.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Output};

use fuseval::drivers::plan::{Basis, Plan, ValidationReport, Verdict};
use fuseval::error::ExitCode;

const MODEL: &str = "fixtures/tiny_bert_legacy.onnx";
const PLAN: &str = "fixtures/plans/tiny_bert_plan.json";
const PLAN_LIST: &str = "fixtures/plans/tiny_bert_plan_list.json";
const UNKNOWN: &str = "fixtures/plans/tiny_bert_unknown_node.json";
const CAL: &str = "fixtures/plans/tiny_bert_cal.json";
const ESCAPING: &str = "/m/encoder/layer.1/intermediate/dense/Add_output_0";

fn fuseval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fuseval")).args(args).output().expect("run fuseval")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `validate MODEL --input input_ids=1x32 --plan PLAN` plus `extra`.
fn validate(plan: &str, extra: &[&str]) -> Output {
    let mut args = vec!["validate", MODEL, "--input", "input_ids=1x32", "--plan", plan];
    args.extend_from_slice(extra);
    fuseval(&args)
}

fn report(o: &Output) -> ValidationReport {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not a ValidationReport ({e}): {}", text(o)))
}

fn verdicts(r: &ValidationReport) -> Vec<Verdict> {
    r.groups.iter().map(|g| g.assessment.verdict).collect()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fuseval-validate-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn write_tmp(name: &str, json: &str) -> String {
    let p = tmp(name);
    std::fs::write(&p, json).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn estimated_plan_gives_every_verdict_and_the_missed_patterns() {
    let o = validate(PLAN, &["--calibration", CAL, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r.basis, Basis::Estimated);
    assert_eq!(r.threshold, 1.2);
    use Verdict::*;
    assert_eq!(verdicts(&r), [Keep, Marginal, Harmful, Harmful, Unmeasured]);

    // keep: the FFN's Linear+Bias+GELU, 1.50× measured at this very size
    let keep = &r.groups[0];
    assert_eq!(keep.name.as_deref(), Some("ffn0_gelu"));
    assert_eq!(keep.pattern.as_deref(), Some("Linear_Bias_GELU"));
    assert_eq!(keep.assessment.basis, Basis::Estimated);
    assert_eq!(keep.assessment.source.as_deref(), Some("measured"));
    assert_eq!(keep.assessment.speedup.unwrap().point, 1.5);
    assert_eq!(keep.assessment.fused_by_ort, Some(true));
    assert!(keep.assessment.bottleneck.is_some(), "the calibration's ceilings give a bottleneck");
    // marginal: faster, under the threshold; the plan's `MatMul+Add` spelling resolves
    let marginal = &r.groups[1];
    assert_eq!(marginal.pattern.as_deref(), Some("Linear_Bias"));
    assert_eq!(marginal.declared_pattern.as_deref(), Some("Linear_Bias"));
    assert!(marginal.assessment.reason.contains("under the 1.20× threshold"), "{}", marginal.assessment.reason);
    // harmful: Add+LayerNorm is slower
    let slower = &r.groups[2];
    assert_eq!(slower.pattern.as_deref(), Some("Add_LayerNorm"));
    assert!(slower.assessment.speedup.unwrap().hi < 0.98);
    assert!(slower.assessment.reason.starts_with("slower"), "{}", slower.assessment.reason);
    // harmful: an intermediate escapes the group
    let illegal = &r.groups[3];
    assert_eq!(illegal.kind, fuseval::drivers::plan::report::GroupKind::Illegal);
    assert_eq!(illegal.escaping_tensor.as_deref(), Some(ESCAPING));
    assert!(illegal.assessment.speedup.is_none());
    assert!(illegal.assessment.reason.contains("intermediate_act_fn/Mul"), "{}", illegal.assessment.reason);
    // unmeasured: Gemm+Tanh is legal, but no catalog pattern; nothing invented
    let other = &r.groups[4];
    assert_eq!(other.kind, fuseval::drivers::plan::report::GroupKind::Uncatalogued);
    assert!(other.assessment.speedup.is_none());
    assert_eq!(other.contains.len(), 1);
    assert!(other.contains[0].starts_with("Linear_Bias"), "{:?}", other.contains);

    // missed: the longest matches sharing no node with the plan (the layer-1 GELU overlaps the illegal group)
    let mut missed: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &r.missed {
        *missed.entry(m.pattern.as_str()).or_default() += 1;
        assert!(m.assessment.speedup.is_some(), "{}: every missed pattern is calibrated", m.pattern);
    }
    assert_eq!(missed, BTreeMap::from([("Add_LayerNorm", 4), ("Linear_Bias", 1), ("MultiHead_Linear", 2)]));
    assert!(r.missed.iter().all(|m| !m.nodes.iter().any(|n| n.contains("layer.1/intermediate"))));
    let mhl: Vec<_> = r.missed.iter().filter(|m| m.pattern == "MultiHead_Linear").collect();
    assert!(mhl.iter().all(|m| m.assessment.verdict == Keep));

    let s = &r.summary;
    assert_eq!((s.groups, s.keep, s.marginal, s.harmful, s.unmeasured), (5, 1, 1, 2, 1));
    assert_eq!((s.missed, s.missed_keep), (7, 2));
}

#[test]
fn text_report_has_the_table_the_missed_patterns_and_the_summary() {
    let o = validate(PLAN, &["--calibration", CAL]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("estimates"), "{s}");
    for word in
        ["ffn0_gelu", "Linear_Bias_GELU", "~1.50× [1.46, 1.55]", "keep", "marginal", "harmful", "unmeasured", "illegal"]
    {
        assert!(s.contains(word), "missing {word}: {s}");
    }
    assert!(s.contains(ESCAPING), "{s}");
    assert!(s.contains("Missed patterns: 7"), "{s}");
    assert!(
        s.contains("summary: 5 groups: 1 keep, 1 marginal, 2 harmful, 1 unmeasured; 7 missed patterns (2 keep)"),
        "{s}"
    );
}

#[test]
fn strict_exits_5_when_a_group_is_harmful() {
    let o = validate(PLAN, &["--calibration", CAL, "--strict"]);
    assert_eq!(o.status.code(), Some(ExitCode::Harmful.code()), "{}", text(&o));
    assert_eq!(ExitCode::Harmful.code(), 5);
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 harmful groups"), "{}", text(&o));
    // the report is printed all the same
    assert!(String::from_utf8_lossy(&o.stdout).contains("summary:"));

    // without --strict the same plan exits 0
    assert_eq!(validate(PLAN, &["--calibration", CAL]).status.code(), Some(0));

    // --strict with no harmful group exits 0 (marginal and unmeasured do not fail it)
    let fine = write_tmp(
        "fine.json",
        r#"{"groups": [
            {"nodes": ["/m/encoder/layer.0/output/dense/MatMul", "/m/encoder/layer.0/output/dense/Add"]},
            {"nodes": ["/m/pooler/dense/Gemm", "/m/pooler/activation/Tanh"]}
        ]}"#,
    );
    let o = validate(&fine, &["--calibration", CAL, "--strict"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn plain_list_plan_is_accepted() {
    let o = validate(PLAN_LIST, &["--calibration", CAL, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(verdicts(&r), [Verdict::Keep, Verdict::Harmful]);
    assert!(r.groups.iter().all(|g| g.name.is_none() && g.declared_pattern.is_none()));
    assert_eq!(r.groups[1].pattern.as_deref(), Some("Add_LayerNorm"));
    // fewer groups, more missed: the layer-1 GELU and both output Linear+Bias now count
    assert_eq!(r.summary.missed, 10);
    assert_eq!(r.summary.missed_keep, 3);
}

#[test]
fn threshold_moves_the_keep_line() {
    let r = report(&validate(PLAN, &["--calibration", CAL, "--json", "--threshold", "1.6"]));
    assert_eq!(r.groups[0].assessment.verdict, Verdict::Marginal, "1.50× is under 1.6");
    let r = report(&validate(PLAN, &["--calibration", CAL, "--json", "--threshold", "1.05"]));
    assert_eq!(r.groups[1].assessment.verdict, Verdict::Keep, "1.08× [1.05, 1.11] clears 1.05");
    let o = validate(PLAN, &["--calibration", CAL, "--threshold", "0.5"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--threshold"));
}

#[test]
fn disconnected_groups_and_escaping_model_outputs_are_illegal() {
    let plan = write_tmp(
        "illegal.json",
        r#"[
            ["/m/encoder/layer.0/output/dense/MatMul", "/m/pooler/dense/Gemm"],
            ["/m/encoder/layer.1/output/LayerNorm/Add_1", "/m/pooler/Gather"]
        ]"#,
    );
    let o = validate(&plan, &["--calibration", CAL, "--json", "--strict"]);
    assert_eq!(o.status.code(), Some(ExitCode::Harmful.code()), "{}", text(&o));
    let r = report(&o);
    assert_eq!(verdicts(&r), [Verdict::Harmful, Verdict::Harmful]);
    assert!(r.groups[0].assessment.reason.contains("not connected"), "{}", r.groups[0].assessment.reason);
    // the layer norm's output is the model output `last_hidden_state`: it must leave the group
    assert_eq!(r.groups[1].escaping_tensor.as_deref(), Some("last_hidden_state"));
    assert!(r.groups[1].assessment.reason.contains("a model output"), "{}", r.groups[1].assessment.reason);
}

#[test]
fn unknown_node_is_bad_input() {
    let o = validate(UNKNOWN, &["--calibration", CAL]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains(UNKNOWN), "names the plan file: {e}");
    assert!(e.contains("group 2 (\"typo\")"), "names the group: {e}");
    assert!(e.contains("`/m/encoder/layer.0/output/dense/Matmul`"), "names the node: {e}");
    assert!(e.contains("did you mean `/m/encoder/layer.0/output/dense/MatMul`"), "{e}");
    assert!(o.stdout.is_empty(), "no report on bad input");
}

#[test]
fn malformed_plans_are_bad_input() {
    let cases = [
        (
            "two_groups.json",
            r#"[["/m/pooler/dense/Gemm"], ["/m/pooler/activation/Tanh", "/m/pooler/dense/Gemm"]]"#,
            "which group 1 already holds",
        ),
        ("twice.json", r#"[["/m/pooler/dense/Gemm", "/m/pooler/dense/Gemm"]]"#, "twice"),
        ("empty.json", r#"{"groups": [{"name": "e", "nodes": []}]}"#, "group 1 (\"e\") is empty"),
        ("not_json.json", "{\"groups\": [", "not valid JSON"),
        ("number.json", "42", "found a number"),
        ("no_nodes.json", r#"{"groups": [{"name": "x"}]}"#, "nodes"),
        ("bad_item.json", r#"[["/m/pooler/dense/Gemm"], 7]"#, "group 2"),
        (
            "bad_pattern.json",
            r#"{"groups": [{"nodes": ["/m/pooler/dense/Gemm"], "pattern": "Frobnicate"}]}"#,
            "Frobnicate",
        ),
    ];
    for (name, json, want) in cases {
        let plan = write_tmp(name, json);
        let o = validate(&plan, &["--calibration", CAL]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(&plan), "{name}: names the plan file: {e}");
        assert!(e.contains(want), "{name}: wants `{want}`: {e}");
    }
    let o = validate("fixtures/plans/does_not_exist.json", &["--calibration", CAL]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn json_report_is_written_with_o_and_not_overwritten() {
    let out = tmp("report.json");
    let path = out.to_str().unwrap();
    let o = validate(PLAN, &["--calibration", CAL, "-o", path]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: ValidationReport = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(r.summary.harmful, 2);
    let o = validate(PLAN, &["--calibration", CAL, "-o", path]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--force"));
    let o = validate(PLAN, &["--calibration", CAL, "-o", path, "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// The plan's groups, each checked for no node in two groups.
fn disjoint_groups(plan: &Plan) -> usize {
    let mut seen = HashSet::new();
    for g in &plan.groups {
        assert!(!g.nodes.is_empty());
        for n in &g.nodes {
            assert!(seen.insert(n.clone()), "node {n} is in two groups");
        }
    }
    plan.groups.len()
}

#[test]
fn plan_from_calibration_is_accepted_by_validate() {
    let out = tmp("proposed.json");
    let path = out.to_str().unwrap();
    let args = ["plan", MODEL, "--input", "input_ids=1x32", "--calibration", CAL, "-o", path];
    let o = fuseval(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let plan: Plan = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(disjoint_groups(&plan), 4);
    let mut patterns: Vec<&str> = plan.groups.iter().map(|g| g.pattern.as_deref().unwrap()).collect();
    patterns.sort();
    // fused: those whose CI clears 1.2 (GELU 1.50, attention block 1.44); never Add+LayerNorm
    assert_eq!(patterns, ["Linear_Bias_GELU", "Linear_Bias_GELU", "MultiHead_Linear", "MultiHead_Linear"]);
    assert!(plan.groups.iter().all(|g| g.expected_speedup.is_some_and(|s| s.lo >= 1.2)));
    assert_eq!(plan.proposed_by.as_ref().unwrap().basis, "estimated");

    // validate accepts it: every group keep, so --strict passes
    let o = validate(path, &["--calibration", CAL, "--json", "--strict"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert!(verdicts(&r).iter().all(|v| *v == Verdict::Keep), "{:?}", verdicts(&r));
    assert_eq!(r.summary.missed_keep, 0, "the plan leaves nothing worth fusing");

    // not overwritten without --force
    let o = fuseval(&args);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--force"));
    let mut forced = args.to_vec();
    forced.push("--force");
    assert_eq!(fuseval(&forced).status.code(), Some(0));
}

#[test]
fn measured_plan_and_validate_quick() {
    // validate by measuring: structure and machine-independent verdicts only
    let o = validate(PLAN, &["--quick", "--threads", "1", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r.basis, Basis::Measured);
    assert_eq!(r.measurement.as_ref().unwrap().threads, 1);
    assert_eq!(r.groups.len(), 5);
    for g in &r.groups[..3] {
        let a = &g.assessment;
        assert_eq!(a.basis, Basis::Measured, "group {}", g.index);
        assert!(a.unfused_ms.unwrap() > 0.0 && a.fused_ms.unwrap() > 0.0, "group {}", g.index);
        assert!(a.speedup.is_some_and(|s| s.lo <= s.point && s.point <= s.hi), "group {}: {a:?}", g.index);
        assert!(a.variant.is_some() && a.fused_by_ort.is_some());
        assert!(matches!(a.verdict, Verdict::Keep | Verdict::Marginal | Verdict::Harmful));
    }
    assert_eq!(r.groups[3].assessment.verdict, Verdict::Harmful);
    assert_eq!(r.groups[3].escaping_tensor.as_deref(), Some(ESCAPING));
    assert_eq!(r.groups[4].assessment.verdict, Verdict::Unmeasured);
    assert_eq!(r.missed.len(), 7);
    assert!(r.missed.iter().all(|m| m.assessment.speedup.is_some() || m.assessment.equivalent == Some(false)));

    // the strict exit follows the verdicts
    let o = validate(PLAN, &["--quick", "--threads", "1", "--strict", "--no-missed-measure", "--no-roofline"]);
    assert_eq!(o.status.code(), Some(ExitCode::Harmful.code()), "the illegal group is always harmful: {}", text(&o));

    // plan by measuring: disjoint groups that validate accepts
    let out = tmp("measured_plan.json");
    let path = out.to_str().unwrap();
    let o = fuseval(&["plan", MODEL, "--input", "input_ids=1x32", "--quick", "--threads", "1", "-o", path]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let plan: Plan = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    disjoint_groups(&plan);
    assert_eq!(plan.proposed_by.as_ref().unwrap().basis, "measured");
    assert!(plan.groups.iter().all(|g| g.pattern.is_some() && g.expected_speedup.is_some_and(|s| s.point >= 1.2)));
    let o = validate(path, &["--calibration", CAL, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&o);
    assert_eq!(r.groups.len(), plan.groups.len());
    assert!(r.groups.iter().all(|g| g.kind == fuseval::drivers::plan::report::GroupKind::Catalog));
}
