//! `cargo bench`: load+inspect of the ResNet-50 and BERT-base graphs, and for a few seed patterns the
//! unfused and fused carved models side by side (criterion, ONNX Runtime on the CPU).
//!
//! The full-size graphs are used when `models/make_models.py` has made them, else the fixtures.

use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fuseval::carve::{carve, ConstValues};
use fuseval::patterns::Pattern;
use fuseval::pipeline::prepare;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{DynValue, Tensor};
use rand::{Rng, SeedableRng};

fn model(full: &str, fixture: &str) -> String {
    if Path::new(full).exists() {
        full.to_string()
    } else {
        fixture.to_string()
    }
}

fn load_inspect(c: &mut Criterion) {
    let mut g = c.benchmark_group("load_inspect");
    g.sample_size(10);
    for (name, path) in [
        ("resnet50", model("models/resnet50.onnx", "fixtures/light_resnet50.onnx")),
        ("bert-base", model("models/bert-base.onnx", "fixtures/tiny_bert_legacy.onnx")),
    ] {
        g.bench_with_input(BenchmarkId::new(name, &path), &path, |b, p| {
            b.iter(|| prepare(Path::new(p), &[]).expect("model loads").detection.all.len())
        });
    }
    g.finish();
}

/// A session of the carved model at `level`, and seeded random f32 inputs for it.
fn session(bytes: &[u8], level: GraphOptimizationLevel) -> ort::Result<Session> {
    let env = fuseval::runtime::environment().map_err(|e| ort::Error::new(format!("{e:#}")))?;
    Session::builder(env)?.with_optimization_level(level)?.with_intra_threads(1)?.commit_from_memory(bytes)
}

fn inputs(specs: &[(String, i32, Vec<usize>)]) -> Vec<(String, DynValue)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    specs
        .iter()
        .map(|(name, _, dims)| {
            let n: usize = dims.iter().product();
            let data: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let t = Tensor::from_array((dims.clone(), data)).expect("input tensor");
            (name.clone(), t.into_dyn())
        })
        .collect()
}

fn carved_patterns(c: &mut Criterion) {
    let seeds: &[(&str, Pattern, &str)] = &[
        ("fixtures/light_resnet50.onnx", Pattern::ConvBnRelu, "conv_bn_relu"),
        ("fixtures/light_resnet50.onnx", Pattern::AddRelu, "sum_relu"),
        ("fixtures/tiny_bert_legacy.onnx", Pattern::LinearBiasGelu, "linear_bias_gelu"),
        ("fixtures/tiny_bert_legacy.onnx", Pattern::AddLayerNorm, "add_layernorm"),
    ];
    let mut g = c.benchmark_group("carved");
    for (file, pattern, name) in seeds {
        let p = prepare(Path::new(file), &[]).expect("fixture loads");
        let inst = p.detection.all.iter().find(|i| i.pattern == *pattern).expect("pattern found");
        let consts = ConstValues::evaluate(&p.loaded, &p.graph, &[inst]).expect("constants");
        let carved = carve(&p.loaded, &p.graph, inst, &consts).expect("carves");
        let feeds = inputs(&carved.inputs);
        for (variant, level) in
            [("unfused", GraphOptimizationLevel::Disable), ("fused", GraphOptimizationLevel::Level2)]
        {
            let mut s = session(&carved.bytes, level).expect("session");
            g.bench_function(BenchmarkId::new(*name, variant), |b| {
                b.iter(|| {
                    let feed: Vec<(String, ort::session::SessionInputValue<'_>)> =
                        feeds.iter().map(|(n, v)| (n.clone(), v.view().into())).collect();
                    s.run(feed).expect("runs").len()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, load_inspect, carved_patterns);
criterion_main!(benches);
