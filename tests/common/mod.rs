//! Helpers the integration tests share: carve a pattern instance out of a fixture, and measure it
//! briefly (these tests check values, not speed).
#![allow(dead_code)]

pub mod browser;
pub mod made;

use std::time::Duration;

use fuseval::carve::{carve, Carved, ConstValues};
use fuseval::measure::{DType, HostTensor, InputSpec, MeasureOptions, OutputValues};
use fuseval::patterns::{Instance, Pattern};
use fuseval::pipeline::Prepared;
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
        .map(|(n, e, d)| InputSpec {
            name: n.clone(),
            dtype: DType::from_onnx(*e).unwrap(),
            shape: d.clone(),
            range: None,
        })
        .collect()
}

/// Short runs: these tests check values, not speed.
pub fn short() -> MeasureOptions {
    MeasureOptions {
        budget: Duration::from_millis(300),
        min_rounds: 3,
        max_rounds: 20,
        ..MeasureOptions::new(Ep::Cpu, 1, true)
    }
}

/// Run a model once at ORT_DISABLE_ALL, one thread, on f32 and i64 inputs; its (f32) outputs in session order.
pub fn run_disabled(bytes: &[u8], inputs: &[HostTensor]) -> Vec<OutputValues> {
    use ort::session::{builder::GraphOptimizationLevel, Session, SessionInputValue};
    let env = fuseval::runtime::environment().unwrap();
    let mut s = Session::builder(env)
        .unwrap()
        .with_optimization_level(GraphOptimizationLevel::Disable)
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .commit_from_memory(bytes)
        .unwrap_or_else(|e| panic!("ORT cannot load the model: {e}"));
    let names: Vec<String> = s.outputs().iter().map(|o| o.name().to_string()).collect();
    let mut feed: Vec<(std::borrow::Cow<'_, str>, SessionInputValue<'_>)> = vec![];
    for h in inputs {
        let v: SessionInputValue<'_> = match h.dtype {
            DType::F32 => {
                let d: Vec<f32> = h.data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
                ort::value::Tensor::from_array((h.shape.clone(), d)).unwrap().into()
            }
            DType::I64 => {
                let d: Vec<i64> = h.data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
                ort::value::Tensor::from_array((h.shape.clone(), d)).unwrap().into()
            }
            d => panic!("test inputs are f32 or i64: {} is {d:?}", h.name),
        };
        feed.push((h.name.clone().into(), v));
    }
    let out = s.run(feed).unwrap_or_else(|e| panic!("ORT run failed: {e}"));
    names
        .iter()
        .map(|n| {
            let (shape, data) = out[n.as_str()].try_extract_tensor::<f32>().unwrap();
            OutputValues::f32(n.clone(), shape.iter().map(|&d| d as usize).collect(), data)
        })
        .collect()
}
