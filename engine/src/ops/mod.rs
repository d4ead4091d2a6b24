//! Differentiable ops on [`crate::Tensor`], one file per family. Each op checks its inputs,
//! calls one backend kernel (or composes other ops) and records its backward.

mod attention;
mod batch_norm;
pub use batch_norm::BatchStats;
mod cast;
mod collective;
mod conv;
mod conv_transpose;
mod dropout;
mod elementwise;
mod index;
mod linear;
pub use linear::LinearPost;
mod loss;
pub use loss::IGNORE_INDEX;
mod matmul;
mod norm;
mod reduce;
mod resample;
pub use resample::{interp_taps, Interp};
mod select;
mod softmax;
mod unary;
mod view;
