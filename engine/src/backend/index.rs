//! Gathers, scatter-adds and top-k.

use super::{StorageBox, View};
use crate::Result;

/// Indexing kernels.
pub trait Index {
    /// Select entries along `dim` by i64/u32 `indices` (1-D). Out-of-range is an error.
    fn index_select(&self, src: View, dim: usize, indices: View) -> Result<StorageBox>;
    /// A copy of `dst` with `src` added at `indices` along `dim` (repeats accumulate).
    fn index_add(&self, dst: View, dim: usize, indices: View, src: View) -> Result<StorageBox>;
    /// The `k` largest entries of the last dim, sorted descending: `(values, i64 indices)`.
    fn topk_last(&self, src: View, k: usize) -> Result<(StorageBox, StorageBox)>;
}
