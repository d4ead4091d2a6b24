//! Reductions over sets of dims.

use super::{StorageBox, View};
use crate::Result;

/// Reductions over a set of dims (kept as size 1 in the output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Sum of squares, each square widened as the sum's terms are (no squared copy: for
    /// norms).
    SumSquares,
}

/// Reductions.
pub trait Reduce {
    /// Reduce over `dims` (sorted, unique); the output keeps them with size 1.
    fn reduce(&self, op: ReduceOp, src: View, dims: &[usize]) -> Result<StorageBox>;
}
