//! 2-D convolutions and the im2col/col2im pair.

use super::{Matmul, Reduce, StorageBox, View};
use crate::Result;

/// Geometry of a 2-D convolution (NCHW input, OIHW weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Kernel (height, width).
    pub kernel: (usize, usize),
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// Zero padding (height, width), on both sides.
    pub padding: (usize, usize),
}

impl ConvGeom {
    /// Output height.
    pub fn out_h(&self) -> usize {
        (self.height + 2 * self.padding.0 - self.kernel.0) / self.stride.0 + 1
    }
    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.width + 2 * self.padding.1 - self.kernel.1) / self.stride.1 + 1
    }
    /// Length of one im2col row: channels · kh · kw.
    pub fn patch_len(&self) -> usize {
        self.channels * self.kernel.0 * self.kernel.1
    }
}

/// Convolutions.
pub trait Conv: Matmul + Reduce {
    /// 2-D convolution (groups = 1) of NCHW `x` with a weight `[O, C, kh, kw]` and optional
    /// bias `[O]` (any strides): `[B, O, out_h, out_w]`. The default composes
    /// [`Conv::im2col`] and [`Matmul::matmul`] ([`crate::composed::conv2d`]); a backend
    /// may gather the patches as it multiplies (implicit GEMM) instead of storing them.
    fn conv2d(&self, x: View, w: View, bias: Option<View>, geom: &ConvGeom) -> Result<StorageBox> {
        crate::composed::conv2d(self, x, w, bias, geom)
    }
    /// The weight gradient of [`Conv::conv2d`]: `Σ_b dy[b]·patches(x[b])ᵀ` for
    /// `dy [B, O, out_h, out_w]`, as `[O, C, kh, kw]`. The default is
    /// [`crate::composed::conv2d_weight_grad`].
    fn conv2d_weight_grad(&self, x: View, dy: View, geom: &ConvGeom) -> Result<StorageBox> {
        crate::composed::conv2d_weight_grad(self, x, dy, geom)
    }
    /// im2col: NCHW `x` to `[batch, out_h·out_w, channels·kh·kw]` (zero padding).
    fn im2col(&self, x: View, geom: &ConvGeom) -> Result<StorageBox>;
    /// col2im, the adjoint of [`Conv::im2col`]: sums the patches back into `[B, C, H, W]`.
    fn col2im(&self, cols: View, geom: &ConvGeom) -> Result<StorageBox>;
}
