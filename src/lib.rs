//! fuseval: does fusing these operators make this model faster on this hardware, and by how much?
//!
//! The modules follow the pipeline: load → graph → patterns → carve → measure → calibration → report.

pub mod error;
pub mod load;
pub mod graph;
pub mod patterns;
pub mod carve;
pub mod fuse;
pub mod bench;
pub mod synth;
pub mod runtime;
pub mod estimate;
pub mod measure;
pub mod calibration;
pub mod roofline;
pub mod calibrate;
pub mod cost_model;
pub mod plan;
pub mod report;
pub mod cli;
pub mod run;
