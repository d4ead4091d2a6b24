//! 2-D convolutions and the im2col/col2im pair.

use super::{contiguous, on, BinaryOp, Matmul, Reduce, ReduceOp, StorageBox, View};
use crate::checks::{conv2d_shapes, conv2d_weight_grad_shapes};
use crate::{Layout, Result};

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
    /// [`Conv::im2col`] and [`Matmul::matmul`] ([`conv2d`]); a backend
    /// may gather the patches as it multiplies (implicit GEMM) instead of storing them.
    fn conv2d(&self, x: View, w: View, bias: Option<View>, geom: &ConvGeom) -> Result<StorageBox> {
        conv2d(self, x, w, bias, geom)
    }
    /// The weight gradient of [`Conv::conv2d`]: `Σ_b dy[b]·patches(x[b])ᵀ` for
    /// `dy [B, O, out_h, out_w]`, as `[O, C, kh, kw]`. The default is
    /// [`conv2d_weight_grad`].
    fn conv2d_weight_grad(&self, x: View, dy: View, geom: &ConvGeom) -> Result<StorageBox> {
        conv2d_weight_grad(self, x, dy, geom)
    }
    /// im2col: NCHW `x` to `[batch, out_h·out_w, channels·kh·kw]` (zero padding).
    fn im2col(&self, x: View, geom: &ConvGeom) -> Result<StorageBox>;
    /// col2im, the adjoint of [`Conv::im2col`]: sums the patches back into `[B, C, H, W]`.
    fn col2im(&self, cols: View, geom: &ConvGeom) -> Result<StorageBox>;
}

/// Convolution by im2col: `[B, out_h·out_w, C·kh·kw]` patches times the weight, plus the
/// bias, copied into NCHW; a bf16 weight is first cast to x's dtype.
pub fn conv2d<B: Conv + ?Sized>(be: &B, x: View, w: View, bias: Option<View>, g: &ConvGeom) -> Result<StorageBox> {
    let (o, oh, ow) = conv2d_shapes("conv2d", x, w, bias, g)?;
    if w.dtype() != x.dtype() {
        let cast = be.cast(w, x.dtype())?;
        return conv2d(be, x, on(&cast, &Layout::contiguous(w.shape())), bias, g);
    }
    let (p, k) = (oh * ow, g.patch_len());
    let cols = be.im2col(x, g)?;
    let w = contiguous(be, w)?;
    let wt = Layout::contiguous(&[o, k]).permute(&[1, 0])?.broadcast_to(&[g.batch, k, o])?;
    let mut y = be.matmul(on(&cols, &Layout::contiguous(&[g.batch, p, k])), on(&w, &wt))?;
    let pixels_last = Layout::contiguous(&[g.batch, p, o]);
    if let Some(bias) = bias {
        let rows = bias.layout.broadcast_to(&[g.batch, p, o])?;
        y = be.binary(BinaryOp::Add, on(&y, &pixels_last), View { storage: bias.storage, layout: &rows })?;
    }
    let mut out = be.full(x.dtype(), g.batch * o * p, 0.0)?;
    let nchw = Layout::contiguous(&[g.batch, o, p]).permute(&[0, 2, 1])?;
    be.copy_strided(on(&y, &pixels_last), &mut *out, &nchw)?;
    Ok(out)
}

/// The weight gradient of [`conv2d`]: `dy [B, O, out_h·out_w]` times the im2col patches,
/// summed over the batch.
pub fn conv2d_weight_grad<B: Conv + ?Sized>(be: &B, x: View, dy: View, g: &ConvGeom) -> Result<StorageBox> {
    let (o, oh, ow) = conv2d_weight_grad_shapes("conv2d_weight_grad", x, dy, g)?;
    let (p, k) = (oh * ow, g.patch_len());
    let cols = be.im2col(x, g)?;
    let dy = contiguous(be, dy)?;
    let per_image = be.matmul(on(&dy, &Layout::contiguous(&[g.batch, o, p])), on(&cols, &Layout::contiguous(&[g.batch, p, k])))?;
    be.reduce(ReduceOp::Sum, on(&per_image, &Layout::contiguous(&[g.batch, o, k])), &[0])
}
