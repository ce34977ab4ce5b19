//! Helpers the integration tests share: carve a pattern instance out of a fixture, and measure it
//! briefly (these tests check values, not speed).
#![allow(dead_code)]

use std::time::Duration;

use fuseval::bench::Prepared;
use fuseval::carve::{carve, Carved, ConstValues};
use fuseval::measure::{DType, InputSpec, MeasureOptions};
use fuseval::patterns::{Instance, Pattern};
use fuseval::runtime::Ep;

/// The `nth` match of `pattern` (all matches, model order), carved.
pub fn carve_nth(p: &Prepared, pattern: Pattern, nth: usize) -> (Carved, Instance) {
    let inst = p.detection.all.iter().filter(|i| i.pattern == pattern).nth(nth).expect("pattern found").clone();
    let consts = ConstValues::evaluate(&p.loaded, &p.graph, &[&inst]).unwrap();
    (carve(&p.loaded, &p.graph, &inst, &consts).unwrap(), inst)
}

/// The first match of `pattern`, carved.
pub fn carve_first(p: &Prepared, pattern: Pattern) -> (Carved, Instance) {
    carve_nth(p, pattern, 0)
}

/// Input specs of a carved model (default value ranges).
pub fn specs(c: &Carved) -> Vec<InputSpec> {
    c.inputs
        .iter()
        .map(|(n, e, d)| InputSpec { name: n.clone(), dtype: DType::from_onnx(*e).unwrap(), shape: d.clone(), range: None })
        .collect()
}

/// Short runs: these tests check values, not speed.
pub fn short() -> MeasureOptions {
    MeasureOptions { budget: Duration::from_millis(300), min_rounds: 3, max_rounds: 20, ..MeasureOptions::new(Ep::Cpu, 1, true) }
}
