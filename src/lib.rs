//! fuseval: does fusing these operators make this model faster on this hardware, and by how much?
//!
//! Layers, lowest first; a module imports only from layers below it (checked by `tests/architecture.rs`):
//! - support: `error`, `onnx` (element types, protobuf builders), `estimate` (statistics), `runtime`
//!   (ONNX Runtime, execution providers, hardware);
//! - the pipeline's stages, in order: `load` → `graph` → `patterns` → `synth` → `carve` → `fuse` →
//!   `measure` → `calibration` (the results format, its reader, the roofline, the cost model) →
//!   `report` (every exporter);
//! - `pipeline`: the per-model flow on one screen;
//! - `drivers`: `bench`, `calibrate`, `plan` (validate and plan), and `run` (signals, the lock);
//! - `cli`: every command.

pub mod error;
pub mod estimate;
pub mod onnx;
pub mod runtime;

pub mod calibration;
pub mod carve;
pub mod fuse;
pub mod graph;
pub mod load;
pub mod measure;
pub mod patterns;
pub mod report;
pub mod synth;

pub mod cli;
pub mod drivers;
pub mod pipeline;
