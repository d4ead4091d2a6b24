//! Differentiable ops on [`crate::Tensor`], one file per family. Each op checks its inputs,
//! calls one backend kernel (or composes other ops) and records its backward.

mod cast;
mod conv;
mod dropout;
mod elementwise;
mod index;
mod loss;
pub use loss::IGNORE_INDEX;
mod matmul;
mod norm;
mod reduce;
mod select;
mod softmax;
mod unary;
mod view;
