//! Bad input, built from the real fixtures by truncating, flipping bytes and editing the protobuf: both
//! `inspect` and `bench` answer with exit code 2, a message naming the file (and the node or tensor),
//! no panic, and no output. Unknown ops elsewhere in a model do not stop `inspect`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prost::Message;
use tract_onnx::pb;

fn fuseval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fuseval")).args(args).output().expect("run fuseval")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fuseval-bad-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn decode(fixture: &str) -> pb::ModelProto {
    pb::ModelProto::decode(std::fs::read(fixture).unwrap().as_slice()).unwrap()
}

/// Write `m` as `dir/name`.
fn write(dir: &Path, name: &str, m: &pb::ModelProto) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

/// `fixture`, edited by `f`, written as `dir/name`.
fn edited(dir: &Path, fixture: &str, name: &str, f: impl FnOnce(&mut pb::ModelProto)) -> PathBuf {
    let mut m = decode(fixture);
    f(&mut m);
    write(dir, name, &m)
}

fn graph(m: &mut pb::ModelProto) -> &mut pb::GraphProto {
    m.graph.as_mut().unwrap()
}

/// Both commands refuse `model` with exit code 2, naming every one of `names`, without a panic or output.
fn refused(model: &Path, names: &[&str]) {
    let out = model.with_extension("out");
    let m = model.to_str().unwrap();
    for args in [vec!["inspect", m], vec!["bench", m, "--quick", "--no-whole-model", "-o", out.to_str().unwrap()]] {
        let o = fuseval(&args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains(model.file_name().unwrap().to_str().unwrap()), "{args:?}: must name the file: {t}");
        for n in names {
            assert!(t.contains(n), "{args:?}: must name `{n}`: {t}");
        }
        assert!(!t.contains("panicked"), "{args:?}: {t}");
        assert!(t.trim().lines().count() <= 2, "{args:?}: one paragraph: {t}");
        assert!(o.stdout.is_empty(), "{args:?}: no half output: {t}");
    }
    let left = std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "no output files in {}", out.display());
}

#[test]
fn unreadable_files() {
    let dir = tmp("files");
    let empty = dir.join("empty.onnx");
    std::fs::write(&empty, b"").unwrap();
    refused(&empty, &["empty"]);

    let full = std::fs::read("fixtures/light_resnet50.onnx").unwrap();
    for (name, len) in [("cut_half.onnx", full.len() / 2), ("cut_tail.onnx", full.len() - 3), ("cut_head.onnx", 40)] {
        let p = dir.join(name);
        std::fs::write(&p, &full[..len]).unwrap();
        refused(&p, &["not a valid ONNX model"]);
    }

    let text_file = dir.join("readme.onnx");
    std::fs::copy("README.md", &text_file).unwrap();
    refused(&text_file, &["ONNX"]);

    // a flipped first key byte gives a wire type protobuf does not have
    let mut flipped = std::fs::read("fixtures/patterns/mlp.onnx").unwrap();
    flipped[0] ^= 0x07;
    let p = dir.join("flipped.onnx");
    std::fs::write(&p, &flipped).unwrap();
    refused(&p, &["ONNX"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn inconsistent_graphs() {
    let dir = tmp("graphs");
    let src = "fixtures/patterns/conv_bn_relu.onnx";
    let m = decode(src);
    let g = m.graph.as_ref().unwrap();
    let (n0, n1, last) = (g.node[0].clone(), g.node[1].clone(), g.node.last().unwrap().clone());

    let p = edited(&dir, src, "dangling.onnx", |m| graph(m).node[1].input[0] = "ghost".into());
    refused(&p, &[&n1.name, "`ghost`"]);

    let p = edited(&dir, src, "duplicate.onnx", |m| graph(m).node[1].output[0] = n0.output[0].clone());
    refused(&p, &[&format!("`{}`", n0.output[0]), "produced twice"]);

    let p = edited(&dir, src, "cycle.onnx", |m| graph(m).node[0].input[0] = last.output[0].clone());
    refused(&p, &["cycle"]);

    let p = edited(&dir, src, "opset.onnx", |m| m.opset_import[0].version = 99);
    refused(&p, &["opset 99"]);

    let p = edited(&dir, src, "domain.onnx", |m| graph(m).node[1].domain = "com.example".into());
    refused(&p, &[&n1.name, "com.example"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_dimensions_and_data() {
    let dir = tmp("dims");
    let src = "fixtures/patterns/conv_bn_relu.onnx";
    let m = decode(src);
    let g = m.graph.as_ref().unwrap();
    let w = g.initializer.iter().position(|t| t.dims.len() == 4).expect("a conv weight");
    let w_name = g.initializer[w].name.clone();
    let input = g.input[0].name.clone();

    let p = edited(&dir, src, "negative.onnx", |m| graph(m).initializer[w].dims[0] = -3);
    refused(&p, &[&w_name, "negative"]);

    let p = edited(&dir, src, "absurd.onnx", |m| graph(m).initializer[w].dims[0] = 1 << 42);
    refused(&p, &[&w_name, "2^40"]);

    let dim = |v: i64| pb::tensor_shape_proto::Dimension {
        value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)),
        ..Default::default()
    };
    let set_input_dim = |v: i64| {
        move |m: &mut pb::ModelProto| {
            let Some(pb::type_proto::Value::TensorType(t)) = graph(m).input[0].r#type.as_mut().unwrap().value.as_mut()
            else {
                panic!("a tensor input")
            };
            t.shape.as_mut().unwrap().dim[1] = dim(v);
        }
    };
    let p = edited(&dir, src, "input_negative.onnx", set_input_dim(-7));
    refused(&p, &[&input, "negative"]);
    let p = edited(&dir, src, "input_absurd.onnx", set_input_dim(1 << 45));
    refused(&p, &[&input, "2^40"]);

    // one more element than the raw data holds
    let p = edited(&dir, src, "short_data.onnx", |m| graph(m).initializer[w].dims[0] += 1);
    refused(&p, &[&w_name, "raw data"]);

    // an inline Constant whose value is 2 bytes short
    let p = edited(&dir, "fixtures/patterns/add_relu.onnx", "short_constant.onnx", |m| {
        let t = pb::TensorProto { dims: vec![4], data_type: 1, raw_data: vec![0; 14], ..Default::default() };
        let a = pb::AttributeProto { name: "value".into(), r#type: 4, t: Some(t), ..Default::default() };
        let c = pb::NodeProto {
            name: "the_constant".into(),
            op_type: "Constant".into(),
            output: vec!["const_out".into()],
            attribute: vec![a],
            ..Default::default()
        };
        graph(m).node.insert(0, c);
    });
    refused(&p, &["the_constant", "const_out", "14 bytes"]);

    // external data that is not there
    let p = edited(&dir, src, "external.onnx", |m| {
        let t = &mut graph(m).initializer[w];
        t.raw_data.clear();
        t.data_location = Some(pb::tensor_proto::DataLocation::External as i32);
        t.external_data = vec![pb::StringStringEntryProto { key: "location".into(), value: "weights.bin".into() }];
    });
    refused(&p, &[&w_name, "weights.bin"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_flags() {
    let dir = tmp("flags");
    let out = dir.join("out");
    let m = "fixtures/tiny_bert_legacy.onnx";
    for cmd in ["inspect", "bench"] {
        for (flag, names) in [
            ("input_ids=1xq", &["input_ids=1xq", "NAME=DIMS"][..]),
            ("ids=1x8", &["ids", "input_ids", "tiny_bert_legacy.onnx"][..]),
            ("input_ids=1x8x3", &["input_ids", "rank"][..]),
            ("input_ids=1099511627776x2", &["input_ids", "2^40"][..]),
        ] {
            let o = fuseval(
                &[cmd, m, "--input", flag, "-o", out.to_str().unwrap()][..if cmd == "inspect" { 4 } else { 6 }],
            );
            let t = text(&o);
            assert_eq!(o.status.code(), Some(2), "{cmd} {flag}: {t}");
            for n in names {
                assert!(t.contains(n), "{cmd} {flag}: must name `{n}`: {t}");
            }
            assert!(!t.contains("panicked"), "{t}");
            assert!(!out.exists(), "no output");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_shapeless_input_is_an_error_that_names_the_fix() {
    let dir = tmp("shapeless");
    let m = edited(&dir, "fixtures/patterns/add_relu.onnx", "shapeless.onnx", |m| {
        let x = graph(m).input.iter_mut().find(|i| i.name == "x").unwrap();
        if let Some(pb::type_proto::Value::TensorType(t)) = x.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            t.shape = None;
        }
    });
    let model = m.to_str().unwrap();
    let o = fuseval(&["inspect", model]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("shapeless.onnx") && t.contains("`x`") && t.contains("--input x="), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    // with the shape given, the pattern is found
    let o = fuseval(&["inspect", model, "--input", "x=1x64x28x28", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["patterns_longest"]["Add_ReLU"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dynamic_dimension_says_which_input_fixes_it() {
    let o = fuseval(&["inspect", "fixtures/tiny_bert_legacy.onnx"]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("--input input_ids="), "{t}");
}

#[test]
fn unknown_ops_elsewhere_do_not_stop_inspect() {
    let dir = tmp("unknown");
    let src = "fixtures/light_resnet50.onnx";
    // unknown ops after the model's output: one in a custom domain, one in the default domain, and a Cast
    // without its `to` attribute, which tract knows but cannot build
    let p = edited(&dir, src, "unknown_ops.onnx", |m| {
        m.opset_import.push(pb::OperatorSetIdProto { domain: "com.example".into(), version: 1 });
        let g = graph(m);
        let out = g.output[0].name.clone();
        let node = |name: &str, domain: &str, op: &str, input: &str, output: &str| pb::NodeProto {
            name: name.into(),
            domain: domain.into(),
            op_type: op.into(),
            input: vec![input.into()],
            output: vec![output.into()],
            ..Default::default()
        };
        g.node.push(node("mystery", "com.example", "Mystery", &out, "mystery_out"));
        g.node.push(node("enigma", "", "NoSuchOnnxOp", "mystery_out", "enigma_out"));
        g.node.push(node("broken_cast", "", "Cast", "enigma_out", "cast_out"));
        g.output[0] = pb::ValueInfoProto { name: "cast_out".into(), ..Default::default() };
    });
    let o = fuseval(&["inspect", p.to_str().unwrap(), "--json"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("com.example.Mystery") && t.contains("NoSuchOnnxOp"), "the unknown ops are listed: {t}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let longest = &v["patterns_longest"];
    assert_eq!(longest["Conv2d_BN_ReLU"], 32, "{t}");
    // the residual Sum+Relu belongs to Conv2d_Add_ReLU in the longest-match cover (was Add_ReLU)
    assert_eq!(longest["Conv2d_Add_ReLU"], 16, "{t}");
    assert_eq!(longest["Linear_Bias"], 1, "{t}");

    let loaded = fuseval::load::load(&p, &[]).unwrap();
    assert_eq!(loaded.unsupported_ops, ["Cast", "NoSuchOnnxOp", "com.example.Mystery"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unknown_ops_elsewhere_do_not_stop_bench() {
    let dir = tmp("unknown-bench");
    let p = edited(&dir, "fixtures/patterns/add_relu.onnx", "add_relu_mystery.onnx", |m| {
        m.opset_import.push(pb::OperatorSetIdProto { domain: "com.example".into(), version: 1 });
        let g = graph(m);
        let out = g.output[0].name.clone();
        g.node.push(pb::NodeProto {
            name: "mystery".into(),
            domain: "com.example".into(),
            op_type: "Mystery".into(),
            input: vec![out],
            output: vec!["mystery_out".into()],
            ..Default::default()
        });
        g.output[0] = pb::ValueInfoProto { name: "mystery_out".into(), ..Default::default() };
    });
    let out = dir.join("out");
    let o = fuseval(&["bench", p.to_str().unwrap(), "--quick", "--threads", "1", "-o", out.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("com.example.Mystery"), "the unknown op is listed: {t}");
    let cal: fuseval::calibration::CalibrationFile =
        serde_json::from_slice(&std::fs::read(out.join("calibration.json")).unwrap()).unwrap();
    let p = cal.fusion_profiles.iter().find(|p| p.fusion_pattern == "Add_ReLU").expect("Add_ReLU benched");
    assert_eq!(p.status, fuseval::calibration::Status::Measured, "{:?}", p.skip_reason);
    let _ = std::fs::remove_dir_all(&dir);
}
