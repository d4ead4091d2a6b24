//! The fused kernels of [`Backend`] written with its primitive kernels: the defaults of
//! [`Backend::linear`], [`Backend::attention`] and the convolutions, and the fallback of a
//! backend that fuses only some dtypes.

use crate::checks::{attention_shapes, conv2d_shapes, conv2d_weight_grad_shapes, linear_shapes};
use crate::{Backend, BinaryOp, ConvGeom, Epilogue, Layout, ReduceOp, Result, StorageBox, UnaryOp, View};

/// `epilogue(x·wᵀ)` by matmul, then one elementwise kernel per epilogue term; a bf16
/// weight is first cast to x's dtype.
pub fn linear<B: Backend + ?Sized>(be: &B, x: View, w: View, epi: &Epilogue) -> Result<StorageBox> {
    let (m, _, n) = linear_shapes("linear", x, w, epi)?;
    if w.dtype() != x.dtype() {
        let cast = be.cast(w, x.dtype())?;
        let layout = Layout::contiguous(w.shape());
        return linear(be, x, on(&cast, &layout), epi);
    }
    let wt = w.layout.permute(&[1, 0])?;
    let out = Layout::contiguous(&[m, n]);
    let mut y = be.matmul(x, View { storage: w.storage, layout: &wt })?;
    if let Some(bias) = epi.bias {
        let rows = bias.layout.broadcast_to(&[m, n])?;
        y = be.binary(BinaryOp::Add, on(&y, &out), View { storage: bias.storage, layout: &rows })?;
    }
    if epi.gelu {
        y = be.unary(UnaryOp::Gelu, on(&y, &out))?;
    }
    if let Some(residual) = epi.residual {
        if let Some(scale) = epi.scale {
            let rows = scale.layout.broadcast_to(&[m, n])?;
            y = be.binary(BinaryOp::Mul, on(&y, &out), View { storage: scale.storage, layout: &rows })?;
        }
        y = be.binary(BinaryOp::Add, residual, on(&y, &out))?;
    }
    Ok(y)
}

/// `softmax(scale·q·kᵀ + bias)·v`, heads merged into `[B, L, H, D]`, through `[B, H, L, L]`
/// scores in memory.
pub fn attention<B: Backend + ?Sized>(be: &B, q: View, k: View, v: View, bias: Option<View>, scale: f64) -> Result<StorageBox> {
    let [b, h, l, d] = attention_shapes("attention", q, k, v, bias)?;
    let kt = k.layout.permute(&[0, 1, 3, 2])?;
    let scores_layout = Layout::contiguous(&[b, h, l, l]);
    let mut s = be.matmul(q, View { storage: k.storage, layout: &kt })?;
    s = be.unary(UnaryOp::Affine { mul: scale, add: 0.0 }, on(&s, &scores_layout))?;
    if let Some(bias) = bias {
        s = be.binary(BinaryOp::Add, on(&s, &scores_layout), bias)?;
    }
    let p = be.softmax_last(on(&s, &scores_layout))?;
    let o = be.matmul(on(&p, &scores_layout), v)?;
    let mut merged = be.full(q.dtype(), b * l * h * d, 0.0)?;
    let heads_last = Layout::contiguous(&[b, l, h, d]).permute(&[0, 2, 1, 3])?;
    let o_layout = Layout::contiguous(&[b, h, l, d]);
    be.copy_strided(View { storage: &*o, layout: &o_layout }, &mut *merged, &heads_last)?;
    Ok(merged)
}

/// Convolution by im2col: `[B, out_h·out_w, C·kh·kw]` patches times the weight, plus the
/// bias, copied into NCHW; a bf16 weight is first cast to x's dtype.
pub fn conv2d<B: Backend + ?Sized>(be: &B, x: View, w: View, bias: Option<View>, g: &ConvGeom) -> Result<StorageBox> {
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
pub fn conv2d_weight_grad<B: Backend + ?Sized>(be: &B, x: View, dy: View, g: &ConvGeom) -> Result<StorageBox> {
    let (o, oh, ow) = conv2d_weight_grad_shapes("conv2d_weight_grad", x, dy, g)?;
    let (p, k) = (oh * ow, g.patch_len());
    let cols = be.im2col(x, g)?;
    let dy = contiguous(be, dy)?;
    let per_image = be.matmul(on(&dy, &Layout::contiguous(&[g.batch, o, p])), on(&cols, &Layout::contiguous(&[g.batch, p, k])))?;
    be.reduce(ReduceOp::Sum, on(&per_image, &Layout::contiguous(&[g.batch, o, k])), &[0])
}

/// A row-major copy of `v`'s elements.
fn contiguous<B: Backend + ?Sized>(be: &B, v: View) -> Result<StorageBox> {
    let mut out = be.full(v.dtype(), v.layout.numel(), 0.0)?;
    be.copy_strided(v, &mut *out, &Layout::contiguous(v.shape()))?;
    Ok(out)
}

/// A fresh buffer seen through `layout`.
fn on<'a>(s: &'a StorageBox, layout: &'a Layout) -> View<'a> {
    View { storage: &**s, layout }
}
