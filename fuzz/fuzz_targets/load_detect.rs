//! Load → graph → pattern detection on arbitrary bytes: errors are fine, panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // load reads a path (it memory-maps the file)
    let path = std::env::temp_dir().join(format!("fuseval-fuzz-{}.onnx", std::process::id()));
    std::fs::write(&path, data).expect("write the input");
    let _ = fuseval::pipeline::prepare(&path, &[]);
});
