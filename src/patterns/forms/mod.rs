//! Building blocks that several patterns share: how a convolution, a linear layer, a GELU or a layer
//! norm can be written.

pub mod conv;
pub mod gelu;
pub mod layernorm;
pub mod linear;
