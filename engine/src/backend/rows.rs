//! Kernels over the rows of the last dim: softmax, LayerNorm, and fused attention.

use super::{contiguous, on, BinaryOp, Elementwise, Matmul, Reduce, ReduceOp, StorageBox, UnaryOp, View};
use crate::checks::attention_shapes;
use crate::{Layout, Result};

/// Row kernels, each with a default composed of the primitive kernels (the functions of
/// the same names below); a backend overrides them with one pass per row.
pub trait Rows: Matmul + Reduce {
    /// Softmax over the last dim.
    fn softmax_last(&self, src: View) -> Result<StorageBox> {
        softmax_last(self, src)
    }
    /// Gradient of softmax: `y ⊙ (dy − Σ dy ⊙ y)` over the last dim.
    fn softmax_last_backward(&self, y: View, dy: View) -> Result<StorageBox> {
        softmax_last_backward(self, y, dy)
    }
    /// LayerNorm over the last dim; returns `(y, mean, rstd)`, the stats with one value per row.
    fn layer_norm(&self, x: View, weight: Option<View>, bias: Option<View>, eps: f64) -> Result<(StorageBox, StorageBox, StorageBox)> {
        layer_norm(self, x, weight, bias, eps)
    }
    /// Gradient of LayerNorm: `(dx, dweight, dbias)`; the last two when `weight` is given.
    fn layer_norm_backward(&self, x: View, weight: Option<View>, mean: View, rstd: View, dy: View) -> Result<(StorageBox, Option<StorageBox>, Option<StorageBox>)> {
        layer_norm_backward(self, x, weight, mean, rstd, dy)
    }

    /// Attention at inference: `softmax(scale·q·kᵀ + bias)·v` per batch entry and head, for
    /// `q`, `k`, `v` `[B, H, L, D]` and `bias` broadcastable to `[B, H, L, L]` (any strides);
    /// the output is `[B, L, H, D]` (heads merged). The default composes the primitive ops
    /// ([`attention`]); a backend may keep the `L × L` scores on chip.
    fn attention(&self, q: View, k: View, v: View, bias: Option<View>, scale: f64) -> Result<StorageBox> {
        attention(self, q, k, v, bias, scale)
    }
}

/// `softmax(scale·q·kᵀ + bias)·v`, heads merged into `[B, L, H, D]`, through `[B, H, L, L]`
/// scores in memory.
pub fn attention<B: Rows + ?Sized>(be: &B, q: View, k: View, v: View, bias: Option<View>, scale: f64) -> Result<StorageBox> {
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

/// Softmax over the last dim: `exp(x − max) / Σ exp(x − max)`.
pub fn softmax_last<B: Elementwise + Reduce + ?Sized>(be: &B, src: View) -> Result<StorageBox> {
    let (per_row, full, _) = row_layouts("softmax_last", src.shape())?;
    let last = src.shape().len() - 1;
    let max = be.reduce(ReduceOp::Max, src, &[last])?;
    let shifted = be.binary(BinaryOp::Sub, src, on(&max, &per_row))?;
    let e = be.unary(UnaryOp::Exp, on(&shifted, &full))?;
    let sum = be.reduce(ReduceOp::Sum, on(&e, &full), &[last])?;
    be.binary(BinaryOp::Div, on(&e, &full), on(&sum, &per_row))
}

/// The gradient of softmax: `y ⊙ (dy − Σ dy ⊙ y)` over the last dim.
pub fn softmax_last_backward<B: Elementwise + Reduce + ?Sized>(be: &B, y: View, dy: View) -> Result<StorageBox> {
    const OP: &str = "softmax_last_backward";
    crate::checks::same_dtype(OP, y, dy)?;
    crate::checks::same_shape(OP, y.shape(), dy.shape())?;
    let (per_row, full, _) = row_layouts(OP, y.shape())?;
    let prod = be.binary(BinaryOp::Mul, y, dy)?;
    let sum = be.reduce(ReduceOp::Sum, on(&prod, &full), &[y.shape().len() - 1])?;
    let diff = be.binary(BinaryOp::Sub, dy, on(&sum, &per_row))?;
    be.binary(BinaryOp::Mul, y, on(&diff, &full))
}

/// LayerNorm over the last dim, `(y, mean, rstd)`: `xc = x − mean`, `rstd = 1/√(mean(xc²) + eps)`,
/// `y = xc·rstd·w + b`.
pub fn layer_norm<B: Elementwise + Reduce + ?Sized>(be: &B, x: View, w: Option<View>, b: Option<View>, eps: f64) -> Result<(StorageBox, StorageBox, StorageBox)> {
    const OP: &str = "layer_norm";
    let (_, d) = crate::checks::norm_rows(OP, x)?;
    for p in [w, b].into_iter().flatten() {
        crate::checks::norm_param(OP, p, x, d)?;
    }
    let (per_row, full, _) = row_layouts(OP, x.shape())?;
    let mean = mean_last(be, x, d)?;
    let xc = be.binary(BinaryOp::Sub, x, on(&mean, &per_row))?;
    let sq = be.unary(UnaryOp::Sqr, on(&xc, &full))?;
    let var = mean_last(be, on(&sq, &full), d)?;
    let stat = Layout::contiguous(&[x.layout.numel() / d]);
    let sd = be.unary(UnaryOp::Sqrt, on(&be.unary(UnaryOp::Affine { mul: 1.0, add: eps }, on(&var, &stat))?, &stat))?;
    let rstd = be.unary(UnaryOp::Recip, on(&sd, &stat))?;
    let mut y = be.binary(BinaryOp::Mul, on(&xc, &full), on(&rstd, &per_row))?;
    for (p, op) in [(w, BinaryOp::Mul), (b, BinaryOp::Add)] {
        if let Some(p) = p {
            let rows = p.layout.broadcast_to(x.shape())?;
            y = be.binary(op, on(&y, &full), View { storage: p.storage, layout: &rows })?;
        }
    }
    Ok((y, mean, rstd))
}

/// The gradient of [`layer_norm`]: with `x̂ = (x − mean)·rstd` and `g = dy ⊙ w`,
/// `dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂))`, `dw = Σ_rows dy ⊙ x̂`, `db = Σ_rows dy`.
pub fn layer_norm_backward<B: Elementwise + Reduce + ?Sized>(
    be: &B,
    x: View,
    w: Option<View>,
    mean: View,
    rstd: View,
    dy: View,
) -> Result<(StorageBox, Option<StorageBox>, Option<StorageBox>)> {
    const OP: &str = "layer_norm_backward";
    let (rows, d) = crate::checks::norm_rows(OP, x)?;
    crate::checks::same_dtype(OP, x, dy)?;
    crate::checks::same_shape(OP, x.shape(), dy.shape())?;
    for s in [mean, rstd] {
        crate::checks::norm_stat(OP, s, x, rows)?;
    }
    let (per_row, full, _) = row_layouts(OP, x.shape())?;
    let (mean, rstd) = (contiguous(be, mean)?, contiguous(be, rstd)?);
    let xc = be.binary(BinaryOp::Sub, x, on(&mean, &per_row))?;
    let xhat = be.binary(BinaryOp::Mul, on(&xc, &full), on(&rstd, &per_row))?;
    let g = match w {
        Some(w) => {
            crate::checks::norm_param(OP, w, x, d)?;
            be.binary(BinaryOp::Mul, dy, View { storage: w.storage, layout: &w.layout.broadcast_to(x.shape())? })?
        }
        None => contiguous(be, dy)?,
    };
    let g_mean = mean_last(be, on(&g, &full), d)?;
    let gx = be.binary(BinaryOp::Mul, on(&g, &full), on(&xhat, &full))?;
    let gx_mean = mean_last(be, on(&gx, &full), d)?;
    let t = be.binary(BinaryOp::Sub, on(&g, &full), on(&g_mean, &per_row))?;
    let u = be.binary(BinaryOp::Mul, on(&xhat, &full), on(&gx_mean, &per_row))?;
    let inner = be.binary(BinaryOp::Sub, on(&t, &full), on(&u, &full))?;
    let dx = be.binary(BinaryOp::Mul, on(&inner, &full), on(&rstd, &per_row))?;
    if w.is_none() {
        return Ok((dx, None, None));
    }
    let flat = Layout::contiguous(&[rows, d]);
    let dyx = be.binary(BinaryOp::Mul, dy, on(&xhat, &full))?;
    let dw = be.reduce(ReduceOp::Sum, on(&dyx, &flat), &[0])?;
    let dy = contiguous(be, dy)?;
    let db = be.reduce(ReduceOp::Sum, on(&dy, &flat), &[0])?;
    Ok((dx, Some(dw), Some(db)))
}

/// `x`'s shape with the last dim 1, the layout that broadcasts such a per-row buffer back
/// over `x`'s shape, and `x`'s own contiguous layout.
pub(crate) fn row_layouts(op: &'static str, shape: &[usize]) -> Result<(Layout, Layout, usize)> {
    let (_, d) = crate::checks::rows_of(op, shape)?;
    let mut kept = shape.to_vec();
    *kept.last_mut().expect("rows_of checked the rank") = 1;
    Ok((Layout::contiguous(&kept).broadcast_to(shape)?, Layout::contiguous(shape), d))
}

/// The mean over the last dim, one value per row.
pub(crate) fn mean_last<B: Elementwise + Reduce + ?Sized>(be: &B, x: View, d: usize) -> Result<StorageBox> {
    let sum = be.reduce(ReduceOp::Sum, x, &[x.shape().len() - 1])?;
    let kept = Layout::contiguous(&[x.layout.numel() / d.max(1)]);
    be.unary(UnaryOp::Affine { mul: 1.0 / d as f64, add: 0.0 }, on(&sum, &kept))
}
