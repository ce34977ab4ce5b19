//! The plan file: the groups of ONNX nodes a partitioner fused. Two spellings are accepted (docs/plan.md):
//!
//! - `{"model": "...", "groups": [{"name": "...", "nodes": ["n1", "n2"], "pattern": "..."}]}`, where only
//!   `nodes` is required and unknown fields are ignored;
//! - a plain list of groups, each a list of node names: `[["n1", "n2"], ["n3", "n4", "n5"]]`.
//!
//! Reading checks the file's shape only; node names are checked against the model in `groups`.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::user;
use crate::estimate::Estimate;

/// A partition plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The model the plan is for (informational; a different file name only warns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub groups: Vec<PlanGroup>,
    /// How `fuseval plan` made it; absent in hand-written plans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_by: Option<Proposal>,
}

/// One fused group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanGroup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Node names, as `fuseval inspect` prints them (the ONNX name, or `<op>_<index>` for a nameless node).
    pub nodes: Vec<String>,
    /// The pattern the partitioner meant: a key or any spelling `cost_model::resolve_pattern` accepts
    /// (`Conv2d_BatchNorm2d_ReLU`, `MatMul+Add`, `SkipLayerNormalization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Written by `fuseval plan`: the speedup it expects (unfused / fused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_speedup: Option<Estimate>,
    /// Written by `fuseval plan`: `measured`, or the cost model's source (`interpolated`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basis: Option<String>,
}

/// What `fuseval plan` records about how it proposed a plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub tool: String,
    pub fuseval_version: String,
    /// `measured` or `estimated`.
    pub basis: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
    pub threshold: f64,
    /// The `--input` values the model was loaded with.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Expected time saved per inference by the plan's groups, ms (measured plans only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_saving_ms: Option<f64>,
}

impl PlanGroup {
    /// How messages name the group: `group 3 ("ffn")`, counting from 1.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(n) => format!("group {} (\"{n}\")", index + 1),
            None => format!("group {}", index + 1),
        }
    }
}

/// Read a plan file. A missing file, bad JSON or a wrong shape is bad input (exit 2), naming the file.
pub fn read_plan(path: &Path) -> Result<Plan> {
    let bytes = std::fs::read(path).map_err(|e| user(format!("--plan {}: cannot read it: {e}", path.display())))?;
    parse_plan(&bytes).map_err(|e| user(format!("--plan {}: {e}", path.display())))
}

const SHAPES: &str =
    "expected {\"groups\": [{\"nodes\": [\"n1\", \"n2\"]}, ...]} or a list of lists of node names (see docs/plan.md)";

/// Parse a plan from JSON bytes; the error says what is wrong and where.
pub fn parse_plan(bytes: &[u8]) -> std::result::Result<Plan, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    match v {
        // re-read from the bytes so that a type error carries its line and column
        Value::Object(_) => serde_json::from_slice::<Plan>(bytes).map_err(|e| format!("{e}; {SHAPES}")),
        Value::Array(items) => {
            let groups = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Array(_) => serde_json::from_value::<Vec<String>>(item)
                        .map(|nodes| PlanGroup { nodes, ..Default::default() })
                        .map_err(|e| format!("group {}: {e} (a group is a list of node-name strings)", i + 1)),
                    Value::Object(_) => {
                        serde_json::from_value::<PlanGroup>(item).map_err(|e| format!("group {}: {e}", i + 1))
                    }
                    other => Err(format!("group {}: expected a list of node names, found {}", i + 1, kind(&other))),
                })
                .collect::<std::result::Result<Vec<_>, String>>()?;
            Ok(Plan { groups, ..Default::default() })
        }
        other => Err(format!("found {}; {SHAPES}", kind(&other))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings() {
        let a = parse_plan(
            br#"{"model": "m.onnx", "groups": [{"name": "g", "nodes": ["a", "b"], "pattern": "Add_ReLU"}]}"#,
        )
        .unwrap();
        assert_eq!(a.groups[0].nodes, ["a", "b"]);
        assert_eq!(a.groups[0].pattern.as_deref(), Some("Add_ReLU"));
        let b = parse_plan(br#"[["a", "b"], ["c"]]"#).unwrap();
        assert_eq!(b.groups.len(), 2);
        assert_eq!(b.groups[1].nodes, ["c"]);
    }

    #[test]
    fn bad_shapes_say_where() {
        assert!(parse_plan(b"{").unwrap_err().contains("not valid JSON"));
        assert!(parse_plan(b"3").unwrap_err().contains("found a number"));
        assert!(parse_plan(br#"[["a"], [1]]"#).unwrap_err().starts_with("group 2"));
        assert!(parse_plan(br#"{"groups": [{"name": "x"}]}"#).unwrap_err().contains("nodes"));
    }
}
