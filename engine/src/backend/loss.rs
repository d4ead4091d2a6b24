//! Cross-entropy and its gradient.

use super::{Elementwise, Index, Reduce, StorageBox, View};
use crate::Result;

/// Losses, with defaults composed of the primitive kernels ([`crate::composed`], which
/// read the targets back to the host).
pub trait Loss: Elementwise + Reduce + Index {
    /// Cross-entropy of `logits [R, C]` against i64 `targets [R]`, with label smoothing;
    /// rows whose target is `ignore_index` are skipped; the mean over the other rows, as a
    /// 1-element buffer (NaN when no row is selected). A target outside `0..C` is an error.
    fn cross_entropy(&self, logits: View, targets: View, smoothing: f64, ignore_index: i64) -> Result<StorageBox> {
        crate::composed::cross_entropy(self, logits, targets, smoothing, ignore_index)
    }
    /// Gradient of [`Loss::cross_entropy`] w.r.t. the logits; `dloss` has 1 element.
    fn cross_entropy_backward(&self, logits: View, targets: View, smoothing: f64, ignore_index: i64, dloss: View) -> Result<StorageBox> {
        crate::composed::cross_entropy_backward(self, logits, targets, smoothing, ignore_index, dloss)
    }
}
