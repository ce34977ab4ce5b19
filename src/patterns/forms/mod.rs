//! Building blocks that several patterns share: how a convolution, a linear layer, an activation (ReLU,
//! ReLU6 as `Clip`, inference `Dropout`), a GELU or a layer norm can be written.

pub mod activation;
pub mod conv;
pub mod gelu;
pub mod layernorm;
pub mod linear;
