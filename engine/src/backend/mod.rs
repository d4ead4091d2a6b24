//! The object-safe [`Backend`] that every device implements, as families of kernels, each
//! trait in a file of its name here and in each backend (`backends/cpu/src/<family>.rs`,
//! `backends/cuda/src/<family>.rs`, `backends/cuda/kernels/<family>.cu`).
//!
//! A backend works on opaque buffers ([`BackendStorage`]) described by explicit
//! [`crate::Layout`]s (shape, strides, offset). Inputs may be arbitrary strided views,
//! including broadcast (stride 0) dims; outputs are always fresh contiguous row-major
//! buffers. Every method returns [`crate::Result`] so that device errors (out of memory, bad
//! index) surface instead of panicking. Fused kernels ([`Matmul::linear`],
//! [`Rows::attention`], [`Conv::conv2d`], [`Conv::conv2d_weight_grad`]) default to
//! compositions of the others, each written beside its trait method in the family's file
//! (e.g. [`rows::attention`]), public so that a backend fusing only some dtypes can fall
//! back to it. On a `dyn Backend` (what a
//! [`crate::Device`] holds) every family's methods can be called as they are; on a concrete
//! backend type, bring them into scope with `use beit_engine::backend::prelude::*`.

pub mod conv;
pub mod elementwise;
pub mod index;
pub mod loss;
pub mod matmul;
pub mod memory;
pub mod optim;
pub mod random;
pub mod reduce;
pub mod rows;

pub use conv::{Conv, ConvGeom};
pub use elementwise::{BinaryOp, CmpOp, Elementwise, UnaryOp};
pub use index::Index;
pub use loss::Loss;
pub use matmul::{Epilogue, Matmul};
pub use memory::Memory;
pub use optim::{AdamWStep, Optim};
pub use random::Random;
pub use reduce::{Reduce, ReduceOp};
pub use rows::Rows;

use crate::{DType, Layout};
use std::any::Any;
use std::fmt::Debug;

/// Every family, to bring their methods into scope at once.
pub mod prelude {
    pub use super::{Backend, Conv, Elementwise, Index, Loss, Matmul, Memory, Optim, Random, Reduce, Rows};
}

/// A compute device: every kernel family. Implementations: `beit-backend-cpu`,
/// `beit-backend-cuda`; any type implementing the families is one.
///
/// Float kernels must support [`DType::F32`]; [`DType::F64`] is required on the CPU
/// (references, gradient checks) and optional elsewhere.
pub trait Backend: Memory + Elementwise + Reduce + Index + Matmul + Rows + Loss + Conv + Optim + Random + Send + Sync + Debug {}

impl<T> Backend for T where T: Memory + Elementwise + Reduce + Index + Matmul + Rows + Loss + Conv + Optim + Random + Send + Sync + Debug + ?Sized {}

/// An opaque device buffer owned by one backend.
pub trait BackendStorage: Send + Sync + Debug + Any {
    /// The element type.
    fn dtype(&self) -> DType;
    /// Number of elements.
    fn len(&self) -> usize;
    /// Whether the buffer has no elements.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether this is a pre-packed Linear weight ([`Matmul::pack_weight`]), which only
    /// `linear` and `to_host` are sure to read.
    fn is_packed(&self) -> bool {
        false
    }
    /// For the owning backend to downcast.
    fn as_any(&self) -> &dyn Any;
    /// For the owning backend to downcast mutably.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// A freshly allocated, exclusively owned buffer.
pub type StorageBox = Box<dyn BackendStorage>;

/// A strided view of a buffer: what backend kernels read.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// The buffer.
    pub storage: &'a dyn BackendStorage,
    /// Which elements of it, in which order.
    pub layout: &'a Layout,
}

impl View<'_> {
    /// The view's shape.
    pub fn shape(&self) -> &[usize] {
        self.layout.shape()
    }
    /// The buffer's dtype.
    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }
}

// Helpers of the composed defaults in the family files.

/// A row-major copy of `v`'s elements.
pub(crate) fn contiguous<B: Memory + ?Sized>(be: &B, v: View) -> crate::Result<StorageBox> {
    let mut out = be.full(v.dtype(), v.layout.numel(), 0.0)?;
    be.copy_strided(v, &mut *out, &Layout::contiguous(v.shape()))?;
    Ok(out)
}

/// A fresh buffer seen through `layout`.
pub(crate) fn on<'a>(s: &'a StorageBox, layout: &'a Layout) -> View<'a> {
    View { storage: &**s, layout }
}
