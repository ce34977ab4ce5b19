//! Sigmoid + Mul (SiLU / Swish, SwiGLU).
//!
//! Not detected yet.

use petgraph::graph::NodeIndex;

use super::Instance;
use crate::graph::ModelGraph;

pub fn rule(_g: &ModelGraph, _n: NodeIndex) -> Option<Instance> {
    None
}
