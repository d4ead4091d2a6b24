//! Neural-network layers with PyTorch/Hugging Face parameter names.
//!
//! Layers are built from a [`VarBuilder`], which names every parameter with its full
//! dotted path (`encoder.layer.0.attention.output.dense.weight`), so that
//! [`Module::state_dict`] and [`Module::load_state_dict`] match checkpoint names exactly.

mod batch_norm2d;
mod builder;
mod conv2d;
mod conv_transpose2d;
mod dropout;
mod init;
mod layer_norm;
mod linear;
mod module;
mod param;

pub use batch_norm2d::{BatchNorm2d, NormStats};
pub use builder::VarBuilder;
pub use conv2d::{Conv2d, Conv2dConfig};
pub use conv_transpose2d::ConvTranspose2d;
pub use dropout::{DropPath, Dropout};
pub use init::Init;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use module::{load_params, LoadReport, Module};
pub(crate) use param::exclusive_storage;
pub use param::Param;
