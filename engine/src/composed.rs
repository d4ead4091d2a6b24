//! The fused kernels written with the primitive ones: the defaults of [`Matmul::linear`],
//! the row kernels ([`Rows`]: softmax, LayerNorm, attention), the losses ([`crate::backend::Loss`]), the
//! GELU gradient and the convolutions ([`Conv`]), so that a new backend needs only the
//! primitives; and the fallback of a backend that fuses only some dtypes.

use crate::checks::{attention_shapes, conv2d_shapes, conv2d_weight_grad_shapes, linear_shapes};
use crate::backend::{Conv, Elementwise, Index, Matmul, Memory, Reduce, Rows};
use crate::{BinaryOp, ConvGeom, DType, Epilogue, Error, HostData, Layout, ReduceOp, Result, StorageBox, UnaryOp, View};

/// `epilogue(x·wᵀ)` by matmul, then one elementwise kernel per epilogue term; a bf16
/// weight is first cast to x's dtype.
pub fn linear<B: Matmul + ?Sized>(be: &B, x: View, w: View, epi: &Epilogue) -> Result<StorageBox> {
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

/// A row-major copy of `v`'s elements.
fn contiguous<B: Memory + ?Sized>(be: &B, v: View) -> Result<StorageBox> {
    let mut out = be.full(v.dtype(), v.layout.numel(), 0.0)?;
    be.copy_strided(v, &mut *out, &Layout::contiguous(v.shape()))?;
    Ok(out)
}

/// A fresh buffer seen through `layout`.
fn on<'a>(s: &'a StorageBox, layout: &'a Layout) -> View<'a> {
    View { storage: &**s, layout }
}

/// `x`'s shape with the last dim 1, the layout that broadcasts such a per-row buffer back
/// over `x`'s shape, and `x`'s own contiguous layout.
fn row_layouts(op: &'static str, shape: &[usize]) -> Result<(Layout, Layout, usize)> {
    let (_, d) = crate::checks::rows_of(op, shape)?;
    let mut kept = shape.to_vec();
    *kept.last_mut().expect("rows_of checked the rank") = 1;
    Ok((Layout::contiguous(&kept).broadcast_to(shape)?, Layout::contiguous(shape), d))
}

/// The mean over the last dim, one value per row.
fn mean_last<B: Elementwise + Reduce + ?Sized>(be: &B, x: View, d: usize) -> Result<StorageBox> {
    let sum = be.reduce(ReduceOp::Sum, x, &[x.shape().len() - 1])?;
    let kept = Layout::contiguous(&[x.layout.numel() / d.max(1)]);
    be.unary(UnaryOp::Affine { mul: 1.0 / d as f64, add: 0.0 }, on(&sum, &kept))
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

/// The gradient of GELU (erf form) times `dy`: `(Φ(x) + x·φ(x))·dy`, with
/// `Φ(x) = ½(1 + erf(x/√2))` and `φ(x) = e^(−x²/2)/√(2π)`.
pub fn gelu_backward<B: Elementwise + ?Sized>(be: &B, x: View, dy: View) -> Result<StorageBox> {
    const OP: &str = "gelu_backward";
    crate::checks::same_dtype(OP, x, dy)?;
    crate::checks::same_shape(OP, x.shape(), dy.shape())?;
    let full = Layout::contiguous(x.shape());
    let affine = |v: View, mul: f64, add: f64| be.unary(UnaryOp::Affine { mul, add }, v);
    let erf = be.unary(UnaryOp::Erf, on(&affine(x, std::f64::consts::FRAC_1_SQRT_2, 0.0)?, &full))?;
    let cdf = affine(on(&erf, &full), 0.5, 0.5)?;
    let sq = be.unary(UnaryOp::Sqr, x)?;
    let gauss = be.unary(UnaryOp::Exp, on(&affine(on(&sq, &full), -0.5, 0.0)?, &full))?;
    let pdf = affine(on(&gauss, &full), 1.0 / (2.0 * std::f64::consts::PI).sqrt(), 0.0)?;
    let xpdf = be.binary(BinaryOp::Mul, x, on(&pdf, &full))?;
    let slope = be.binary(BinaryOp::Add, on(&cdf, &full), on(&xpdf, &full))?;
    be.binary(BinaryOp::Mul, on(&slope, &full), dy)
}

/// Cross-entropy's targets read back to the host: per row, the flat index `r·C + t` of its
/// target (`r·C` for an ignored row), whether it counts (1 or 0), and how many rows count.
fn ce_rows<B: Memory + ?Sized>(be: &B, op: &'static str, targets: View, c: usize, ignore: i64) -> Result<(Vec<i64>, Vec<f32>, usize)> {
    let HostData::I64(t) = be.to_host(targets)? else {
        return Err(Error::DType { op, dtype: targets.dtype(), expected: Some(DType::I64) });
    };
    let (mut flat, mut counts) = (Vec::with_capacity(t.len()), Vec::with_capacity(t.len()));
    for (r, &t) in t.iter().enumerate() {
        let class = crate::checks::cross_entropy_target(op, r, t, c, ignore)?;
        flat.push((r * c + class.unwrap_or(0)) as i64);
        counts.push(if class.is_some() { 1.0 } else { 0.0 });
    }
    let n = counts.iter().filter(|&&w| w > 0.0).count();
    Ok((flat, counts, n))
}

/// Upload host data as a fresh buffer of `dtype`.
fn upload<B: Memory + ?Sized>(be: &B, data: HostData, dtype: DType) -> Result<StorageBox> {
    let len = data.len();
    let s = be.from_host_owned(data)?;
    if s.dtype() == dtype {
        return Ok(s);
    }
    be.cast(on(&s, &Layout::contiguous(&[len])), dtype)
}

/// `log softmax` over the last dim of `[rows, c]` logits.
fn log_softmax<B: Elementwise + Reduce + ?Sized>(be: &B, x: View) -> Result<StorageBox> {
    let (per_row, full, _) = row_layouts("cross_entropy", x.shape())?;
    let max = be.reduce(ReduceOp::Max, x, &[1])?;
    let shifted = be.binary(BinaryOp::Sub, x, on(&max, &per_row))?;
    let e = be.unary(UnaryOp::Exp, on(&shifted, &full))?;
    let sum = be.reduce(ReduceOp::Sum, on(&e, &full), &[1])?;
    let lse = be.unary(UnaryOp::Log, on(&sum, &Layout::contiguous(&[x.shape()[0]])))?;
    be.binary(BinaryOp::Sub, on(&shifted, &full), on(&lse, &per_row))
}

/// Cross-entropy with label smoothing `ε`: the mean over the counted rows of
/// `−((1−ε)·log p[t] + ε·mean_c log p)`; NaN when no row counts. The targets are read back
/// to the host to be checked and turned into row picks.
pub fn cross_entropy<B: Elementwise + Reduce + Index + ?Sized>(be: &B, logits: View, targets: View, eps: f64, ignore: i64) -> Result<StorageBox> {
    const OP: &str = "cross_entropy";
    let (rows, c) = crate::checks::cross_entropy_shapes(OP, logits, targets, eps)?;
    let (flat, counts, n) = ce_rows(be, OP, targets, c, ignore)?;
    let dtype = logits.dtype();
    let logp = log_softmax(be, logits)?;
    let idx = upload(be, HostData::I64(flat), DType::I64)?;
    let row = Layout::contiguous(&[rows]);
    let picked = be.index_select(on(&logp, &Layout::contiguous(&[rows * c])), 0, on(&idx, &row))?;
    let mean = mean_last(be, on(&logp, &Layout::contiguous(&[rows, c])), c)?;
    let a = be.unary(UnaryOp::Affine { mul: eps - 1.0, add: 0.0 }, on(&picked, &row))?;
    let b = be.unary(UnaryOp::Affine { mul: -eps, add: 0.0 }, on(&mean, &row))?;
    let per_row = be.binary(BinaryOp::Add, on(&a, &row), on(&b, &row))?;
    let weights = upload(be, HostData::F32(counts), dtype)?;
    let counted = be.binary(BinaryOp::Mul, on(&per_row, &row), on(&weights, &row))?;
    let total = be.reduce(ReduceOp::Sum, on(&counted, &row), &[0])?;
    be.unary(UnaryOp::Affine { mul: 1.0 / n as f64, add: 0.0 }, on(&total, &Layout::contiguous(&[1])))
}

/// The gradient of [`cross_entropy`] w.r.t. the logits: `(softmax − q)·dloss/n` on the
/// counted rows (0 on the others), `q = (1−ε)·onehot(t) + ε/C`.
pub fn cross_entropy_backward<B: Elementwise + Reduce + Index + ?Sized>(
    be: &B,
    logits: View,
    targets: View,
    eps: f64,
    ignore: i64,
    dloss: View,
) -> Result<StorageBox> {
    const OP: &str = "cross_entropy_backward";
    let (rows, c) = crate::checks::cross_entropy_shapes(OP, logits, targets, eps)?;
    crate::checks::cross_entropy_dloss(OP, logits, dloss)?;
    let (flat, counts, n) = ce_rows(be, OP, targets, c, ignore)?;
    let dtype = logits.dtype();
    let full = Layout::contiguous(&[rows, c]);
    let p = softmax_last(be, logits)?;
    let smooth = be.full(dtype, rows * c, eps / c as f64)?;
    let idx = upload(be, HostData::I64(flat), DType::I64)?;
    let hit = be.full(dtype, rows, 1.0 - eps)?;
    let row = Layout::contiguous(&[rows]);
    let q = be.index_add(on(&smooth, &Layout::contiguous(&[rows * c])), 0, on(&idx, &row), on(&hit, &row))?;
    let diff = be.binary(BinaryOp::Sub, on(&p, &full), on(&q, &full))?;
    let weights = upload(be, HostData::F32(counts), dtype)?;
    let by_row = Layout::contiguous(&[rows, 1]).broadcast_to(&[rows, c])?;
    let counted = be.binary(BinaryOp::Mul, on(&diff, &full), on(&weights, &by_row))?;
    let dloss = contiguous(be, dloss)?;
    let scaled = be.binary(BinaryOp::Mul, on(&counted, &full), on(&dloss, &Layout::contiguous(&[1, 1]).broadcast_to(&[rows, c])?))?;
    be.unary(UnaryOp::Affine { mul: 1.0 / n.max(1) as f64, add: 0.0 }, on(&scaled, &full))
}
