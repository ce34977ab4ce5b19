//! The module map holds: no import cycle between `src/` modules, and no module imports from a layer above
//! its own (docs/architecture.md). Reads the `crate::` paths of every file under `src/`; no ONNX Runtime.
//!
//! A unit is a top-level module (`src/load/`, `src/error.rs`), but for `drivers/` and `cli/`, whose
//! files are units of their own (`drivers::bench`, `cli::validate`), so that drivers cannot import each
//! other in a circle either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, lowest first. A unit may import from its own layer's earlier units and from lower layers.
const LAYERS: &[&[&str]] = &[
    &["error", "onnx", "estimate", "runtime"],
    &["load"],
    &["graph"],
    &["patterns"],
    &["synth"],
    &["carve"],
    &["fuse"],
    &["measure"],
    &["calibration"],
    &["report"],
    &["pipeline"],
    &["drivers::run", "drivers::calibrate", "drivers::attribution", "drivers::bench", "drivers::plan", "drivers"],
    &[
        "cli::args",
        "cli::convert",
        "cli::inspect",
        "cli::bench",
        "cli::calibrate",
        "cli::validate",
        "cli::plan",
        "cli::eventcheck",
        "cli::merge",
        "cli::agreement",
        "cli::report",
        "cli",
    ],
    &["lib", "main"],
];

/// Units split into their files' units.
const SPLIT: &[&str] = &["drivers", "cli"];

fn rank(unit: &str) -> Option<usize> {
    let mut i = 0;
    for layer in LAYERS {
        for u in *layer {
            if *u == unit {
                return Some(i);
            }
            i += 1;
        }
    }
    None
}

/// The unit a file belongs to, from its path under `src/`.
fn unit_of_file(rel: &Path) -> String {
    let parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    let top = parts[0].clone();
    if SPLIT.contains(&top.as_str()) && parts.len() > 1 && parts[1] != "mod" {
        return format!("{top}::{}", parts[1]);
    }
    top
}

/// The unit a `crate::a::b` path names.
fn unit_of_path(a: &str, b: Option<&str>) -> String {
    match b {
        Some(b) if SPLIT.contains(&a) && rank(&format!("{a}::{b}")).is_some() => format!("{a}::{b}"),
        _ => a.to_string(),
    }
}

/// Every `crate::` path in `text`, comments removed, expanded through `use crate::{a, b::c}` braces.
fn imports(text: &str) -> BTreeSet<(String, Option<String>)> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> Vec<String> {
        s.split("::").map(|p| p.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()).collect()
    };
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + 7..];
        if let Some(inner) = after.strip_prefix('{') {
            // use crate::{a::b, c, d::{e, f}}: the first segment of each top-level item
            let mut depth = 0;
            let mut item = String::new();
            for ch in inner.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        push_item(&mut out, &item);
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(ch);
            }
            push_item(&mut out, &item);
        } else {
            let segs = ident(after);
            if !segs[0].is_empty() {
                out.insert((segs[0].clone(), segs.get(1).filter(|s| !s.is_empty()).cloned()));
            }
        }
        rest = &rest[i + 7..];
    }
    out
}

fn push_item(out: &mut BTreeSet<(String, Option<String>)>, item: &str) {
    let segs: Vec<String> = item
        .trim()
        .split("::")
        .map(|p| p.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect())
        .collect();
    if let Some(first) = segs.first().filter(|s| !s.is_empty() && s.as_str() != "self") {
        out.insert((first.clone(), segs.get(1).filter(|s| !s.is_empty()).cloned()));
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// unit → units it imports, and the first file that imports each.
type Deps = BTreeMap<String, BTreeMap<String, String>>;

fn dependencies(src: &Path) -> Deps {
    let mut files = vec![];
    rust_files(src, &mut files);
    let mut deps: Deps = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap();
        let from = unit_of_file(rel);
        let text = std::fs::read_to_string(&f).unwrap();
        let mut found = imports(&text);
        // a split folder's mod.rs depends on the files it declares (`pub mod bench;`)
        if SPLIT.contains(&from.as_str()) {
            for l in text.lines() {
                let l = l.trim();
                if let Some(m) = l.strip_prefix("pub mod ").or_else(|| l.strip_prefix("mod ")) {
                    found.insert((from.clone(), Some(m.trim_end_matches(';').trim().to_string())));
                }
            }
        }
        // a file directly in a split folder reaches its siblings through `super::`
        if let (Some((top, _)), 2) = (from.split_once("::"), rel.iter().count()) {
            found.extend(imports(&text.replace("super::", &format!("crate::{top}::"))));
        }
        for (a, b) in found {
            let to = unit_of_path(&a, b.as_deref());
            if to != from {
                deps.entry(from.clone()).or_default().entry(to).or_insert_with(|| rel.display().to_string());
            }
        }
        deps.entry(from).or_default();
    }
    deps
}

/// A cycle in the graph, as the units along it (first repeated at the end), if there is one.
fn find_cycle(deps: &Deps) -> Option<Vec<String>> {
    fn visit(u: &str, deps: &Deps, state: &mut BTreeMap<String, u8>, stack: &mut Vec<String>) -> Option<Vec<String>> {
        state.insert(u.to_string(), 1);
        stack.push(u.to_string());
        for v in deps.get(u).map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            match state.get(&v).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| *s == v).unwrap();
                    let mut c = stack[at..].to_vec();
                    c.push(v);
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(&v, deps, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(u.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for u in deps.keys() {
        if state.get(u).copied().unwrap_or(0) == 0 {
            let mut stack = vec![];
            if let Some(c) = visit(u, deps, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// Imports that go up the layers, or into a unit the layer table does not know.
fn layer_violations(deps: &Deps) -> Vec<String> {
    let mut bad = vec![];
    for (from, tos) in deps {
        let Some(rf) = rank(from) else {
            bad.push(format!("`{from}` is not in the layer table of tests/architecture.rs"));
            continue;
        };
        for (to, file) in tos {
            match rank(to) {
                Some(rt) if rt < rf => {}
                Some(_) => bad.push(format!("{file}: `{from}` imports `{to}`, which is not below it")),
                None => bad.push(format!("{file}: `{from}` imports `{to}`, which is not in the layer table")),
            }
        }
    }
    bad
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_import_cycle_between_modules() {
    let deps = dependencies(&src());
    assert!(deps.contains_key("patterns") && deps.contains_key("drivers::bench"), "{deps:?}");
    if let Some(c) = find_cycle(&deps) {
        let edges: Vec<String> =
            c.windows(2).map(|w| format!("{} -> {} ({})", w[0], w[1], deps[&w[0]][&w[1]])).collect();
        panic!("import cycle between src/ modules:\n  {}", edges.join("\n  "));
    }
}

#[test]
fn no_module_imports_from_a_layer_above() {
    let bad = layer_violations(&dependencies(&src()));
    assert!(bad.is_empty(), "layering broken (docs/architecture.md):\n  {}", bad.join("\n  "));
}

// The checks themselves, on made-up trees: they must be able to fail.

fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn a_cycle_is_found() {
    let t = tree(&[
        ("load/mod.rs", "use crate::graph::ModelGraph;\n"),
        ("graph/mod.rs", "use crate::{error::user, patterns::Instance};\n"),
        ("patterns/mod.rs", "fn f() { crate::load::load(); }\n"),
        ("error.rs", "// use crate::cli::x; (a comment, not an import)\n"),
    ]);
    let deps = dependencies(t.path());
    let c = find_cycle(&deps).expect("the load -> graph -> patterns -> load cycle");
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4, "{c:?}");
    assert!(deps["error"].is_empty(), "a commented import is not an import: {deps:?}");
}

#[test]
fn a_cycle_between_drivers_is_found() {
    let t = tree(&[
        ("drivers/bench.rs", "use crate::drivers::calibrate::measure_ceilings;\n"),
        ("drivers/calibrate.rs", "use super::bench::BenchOptions;\n"),
    ]);
    let c = find_cycle(&dependencies(t.path())).expect("bench <-> calibrate");
    assert!(c.contains(&"drivers::bench".to_string()) && c.contains(&"drivers::calibrate".to_string()), "{c:?}");
}

#[test]
fn an_upward_import_is_reported() {
    let t = tree(&[
        ("measure/mod.rs", "use crate::report::fmt_ms;\n"),
        ("report/mod.rs", "use crate::measure::Latency;\n"),
    ]);
    let deps = dependencies(t.path());
    let bad = layer_violations(&deps);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("`measure` imports `report`"), "{bad:?}");
    assert!(find_cycle(&deps).is_some());
}

#[test]
fn an_acyclic_downward_tree_passes() {
    let t = tree(&[
        ("load/mod.rs", "use crate::error::user;\n"),
        ("graph/mod.rs", "use crate::{load::Loaded, onnx::elem_size};\n"),
        ("cli/mod.rs", "use crate::drivers::run::exit;\n"),
    ]);
    let deps = dependencies(t.path());
    assert!(find_cycle(&deps).is_none(), "{deps:?}");
    assert!(layer_violations(&deps).is_empty(), "{:?}", layer_violations(&deps));
}
