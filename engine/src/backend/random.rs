//! Random buffers, the same on every backend.

use super::StorageBox;
use crate::{DType, Result};

/// Random fills.
pub trait Random {
    /// A buffer whose element `i` is `1/keep` with probability `keep`, else 0, drawn from
    /// [`crate::rng::uniform`]`(seed, i)` so that every backend gives the same mask.
    fn bernoulli_scaled(&self, dtype: DType, len: usize, keep: f64, seed: u64) -> Result<StorageBox>;
}
