//! Kernels over the rows of the last dim: softmax, LayerNorm, and fused attention.

use super::{Matmul, Reduce, StorageBox, View};
use crate::Result;

/// Row kernels, each with a default composed of the primitive kernels
/// ([`crate::composed`]); a backend overrides them with one pass per row.
pub trait Rows: Matmul + Reduce {
    /// Softmax over the last dim.
    fn softmax_last(&self, src: View) -> Result<StorageBox> {
        crate::composed::softmax_last(self, src)
    }
    /// Gradient of softmax: `y ⊙ (dy − Σ dy ⊙ y)` over the last dim.
    fn softmax_last_backward(&self, y: View, dy: View) -> Result<StorageBox> {
        crate::composed::softmax_last_backward(self, y, dy)
    }
    /// LayerNorm over the last dim; returns `(y, mean, rstd)`, the stats with one value per row.
    fn layer_norm(&self, x: View, weight: Option<View>, bias: Option<View>, eps: f64) -> Result<(StorageBox, StorageBox, StorageBox)> {
        crate::composed::layer_norm(self, x, weight, bias, eps)
    }
    /// Gradient of LayerNorm: `(dx, dweight, dbias)`; the last two when `weight` is given.
    fn layer_norm_backward(&self, x: View, weight: Option<View>, mean: View, rstd: View, dy: View) -> Result<(StorageBox, Option<StorageBox>, Option<StorageBox>)> {
        crate::composed::layer_norm_backward(self, x, weight, mean, rstd, dy)
    }

    /// Attention at inference: `softmax(scale·q·kᵀ + bias)·v` per batch entry and head, for
    /// `q`, `k`, `v` `[B, H, L, D]` and `bias` broadcastable to `[B, H, L, L]` (any strides);
    /// the output is `[B, L, H, D]` (heads merged). The default composes the primitive ops
    /// ([`crate::composed::attention`]); a backend may keep the `L × L` scores on chip.
    fn attention(&self, q: View, k: View, v: View, bias: Option<View>, scale: f64) -> Result<StorageBox> {
        crate::composed::attention(self, q, k, v, bias, scale)
    }
}
