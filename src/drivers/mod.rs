//! The drivers: what a command runs, over the pipeline. `run` keeps a long run safe (signals, the lock);
//! `calibrate` measures the hardware; `bench` a model; `plan` validates and proposes fusion plans.

pub mod attribution;
pub mod bench;
pub mod calibrate;
pub mod plan;
pub mod run;
