//! beit-engine: a small tensor engine with pluggable backends and tape-based autograd.
//!
//! - [`Tensor`]: a strided view of a device buffer, with autograd.
//! - [`Device`] / [`Backend`]: the object-safe device interface that backends implement.
//! - [`nn`], [`optim`], [`io`]: layers, AdamW and schedules, safetensors state dicts.
#![warn(missing_docs)]

pub mod autograd;
pub mod backend;
pub mod checks;
pub mod collective;
pub mod device;
pub mod dtype;
pub mod error;
pub mod io;
pub mod layout;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod tensor;

pub use ops::{interp_taps, BatchStats, Interp, LinearPost, IGNORE_INDEX};
pub use autograd::{no_grad, Gradients, NoGradGuard};
pub use backend::{
    AdamWStep, Backend, BackendStorage, BinaryOp, CmpOp, ConvGeom, Epilogue, ReduceOp, StorageBox, UnaryOp, View,
};
pub use device::{Device, DeviceSpec};
pub use dtype::{DType, Element, HostData};
pub use error::{Error, Result};
pub use layout::Layout;
pub use tensor::{Tensor, TensorId};
