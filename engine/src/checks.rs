//! Argument checks that every backend makes the same way, so that a bad call fails with the
//! same error on every device (the conformance suite's `errors` cases rely on it).

use crate::{AdamWStep, BackendStorage, ConvGeom, DType, Epilogue, Error, Layout, Result, View};

/// Error unless `a` and `b` have one dtype.
pub fn same_dtype(op: &'static str, a: View, b: View) -> Result<()> {
    if a.dtype() != b.dtype() {
        return Err(Error::DTypeMismatch { op, lhs: a.dtype(), rhs: b.dtype() });
    }
    Ok(())
}

/// Error unless shapes `a` and `b` are equal.
pub fn same_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<()> {
    if a != b {
        return Err(Error::ShapeMismatch { op, lhs: a.to_vec(), rhs: b.to_vec() });
    }
    Ok(())
}

/// `(rows, d)` of a view of at least one dim whose last dim is `d`.
pub fn rows_of(op: &'static str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape.split_last() {
        Some((&d, lead)) => Ok((lead.iter().product(), d)),
        None => Err(Error::invalid(op, "expected at least one dim, got a scalar")),
    }
}

/// Reduction dims: sorted, unique and below `rank`.
pub fn reduce_dims(op: &'static str, rank: usize, dims: &[usize]) -> Result<()> {
    if dims.windows(2).any(|w| w[0] >= w[1]) || dims.last().is_some_and(|&d| d >= rank) {
        return Err(Error::invalid(op, format!("dims {dims:?} must be sorted, unique and below the rank {rank}")));
    }
    Ok(())
}

/// Matmul operands of one dtype, `[..., m, k]` and `[..., k, n]` with equal batch dims:
/// `(m, k, n)`.
pub fn matmul_shapes(op: &'static str, lhs: View, rhs: View) -> Result<(usize, usize, usize)> {
    same_dtype(op, lhs, rhs)?;
    let (ls, rs) = (lhs.shape(), rhs.shape());
    let r = ls.len();
    if r < 2 || rs.len() != r || ls[..r - 2] != rs[..r - 2] || ls[r - 1] != rs[r - 2] {
        return Err(Error::ShapeMismatch { op, lhs: ls.to_vec(), rhs: rs.to_vec() });
    }
    Ok((ls[r - 2], ls[r - 1], rs[r - 1]))
}

/// A strided copy's destination: the source's dtype and shape, inside its buffer.
pub fn copy_destination(op: &'static str, src: View, dst: &dyn BackendStorage, dst_layout: &Layout) -> Result<()> {
    if src.dtype() != dst.dtype() {
        return Err(Error::DTypeMismatch { op, lhs: src.dtype(), rhs: dst.dtype() });
    }
    same_shape(op, src.shape(), dst_layout.shape())?;
    if dst_layout.span_end() > dst.len() {
        return Err(Error::invalid(op, format!("destination layout {dst_layout:?} exceeds {} elements", dst.len())));
    }
    Ok(())
}

/// Cross-entropy inputs: logits `[rows, c]`, targets `[rows]` of i64, smoothing in [0, 1]:
/// `(rows, c)`. The targets' values are the backend's to check.
pub fn cross_entropy_shapes(op: &'static str, logits: View, targets: View, eps: f64) -> Result<(usize, usize)> {
    let &[rows, c] = logits.shape() else {
        return Err(Error::invalid(op, format!("logits must be [rows, classes], got {:?}", logits.shape())));
    };
    if targets.shape() != [rows] {
        return Err(Error::ShapeMismatch { op, lhs: logits.shape().to_vec(), rhs: targets.shape().to_vec() });
    }
    if !(0.0..=1.0).contains(&eps) {
        return Err(Error::invalid(op, format!("label smoothing {eps} is outside [0, 1]")));
    }
    if targets.dtype() != DType::I64 {
        return Err(Error::DType { op, dtype: targets.dtype(), expected: Some(DType::I64) });
    }
    Ok((rows, c))
}

/// One cross-entropy target `t` of row `r` among `c` classes: `None` when it is
/// `ignore_index`, else its class; outside `0..c` is an error.
pub fn cross_entropy_target(op: &'static str, r: usize, t: i64, c: usize, ignore_index: i64) -> Result<Option<usize>> {
    match t {
        t if t == ignore_index => Ok(None),
        t if (0..c as i64).contains(&t) => Ok(Some(t as usize)),
        t => Err(Error::invalid(op, format!("target {t} of row {r} is outside 0..{c}"))),
    }
}

/// The cross-entropy gradient's `dloss`: one element of the logits' dtype.
pub fn cross_entropy_dloss(op: &'static str, logits: View, dloss: View) -> Result<()> {
    same_dtype(op, logits, dloss)?;
    if dloss.layout.numel() != 1 {
        return Err(Error::invalid(op, format!("dloss must have one element, got shape {:?}", dloss.shape())));
    }
    Ok(())
}

/// A convolution's geometry: positive kernel and stride, kernel within the padded input;
/// `(out_h, out_w)`.
pub fn conv_out(op: &'static str, g: &ConvGeom) -> Result<(usize, usize)> {
    let (kh, kw) = g.kernel;
    if kh == 0 || kw == 0 || g.stride.0 == 0 || g.stride.1 == 0 {
        return Err(Error::invalid(op, format!("kernel {:?} and stride {:?} must be positive", g.kernel, g.stride)));
    }
    if g.height + 2 * g.padding.0 < kh || g.width + 2 * g.padding.1 < kw {
        return Err(Error::invalid(op, format!("kernel {:?} is larger than the padded input {g:?}", g.kernel)));
    }
    Ok((g.out_h(), g.out_w()))
}

/// A convolution's operands: NCHW `x` of `g`'s shape, weight `[O, C, kh, kw]` (of `x`'s
/// dtype, or bf16 against an f32 `x`: [`weight_dtype`]) and optional bias `[O]` of `x`'s
/// dtype: `(O, out_h, out_w)`.
pub fn conv2d_shapes(op: &'static str, x: View, w: View, bias: Option<View>, g: &ConvGeom) -> Result<(usize, usize, usize)> {
    same_shape(op, x.shape(), &[g.batch, g.channels, g.height, g.width])?;
    weight_dtype(op, x.dtype(), w.dtype())?;
    let o = w.shape().first().copied().unwrap_or(0);
    same_shape(op, w.shape(), &[o, g.channels, g.kernel.0, g.kernel.1])?;
    if let Some(bias) = bias {
        same_dtype(op, x, bias)?;
        same_shape(op, bias.shape(), &[o])?;
    }
    let (oh, ow) = conv_out(op, g)?;
    Ok((o, oh, ow))
}

/// A convolution's weight gradient: NCHW `x` of `g`'s shape and `dy [B, O, out_h, out_w]`
/// of its dtype: `(O, out_h, out_w)`.
pub fn conv2d_weight_grad_shapes(op: &'static str, x: View, dy: View, g: &ConvGeom) -> Result<(usize, usize, usize)> {
    same_shape(op, x.shape(), &[g.batch, g.channels, g.height, g.width])?;
    same_dtype(op, x, dy)?;
    let (oh, ow) = conv_out(op, g)?;
    let o = dy.shape().get(1).copied().unwrap_or(0);
    same_shape(op, dy.shape(), &[g.batch, o, oh, ow])?;
    Ok((o, oh, ow))
}

/// `(outer, size, inner)`: a shape seen as `[outer, size, inner]` around `dim`.
pub fn around(op: &'static str, shape: &[usize], dim: usize) -> Result<(usize, usize, usize)> {
    if dim >= shape.len() {
        return Err(Error::invalid(op, format!("dim {dim} is out of range for shape {shape:?}")));
    }
    Ok((shape[..dim].iter().product(), shape[dim], shape[dim + 1..].iter().product()))
}

/// An index vector: 1-D, i64 or u32 (its values are the backend's to check).
pub fn index_vector(op: &'static str, v: View) -> Result<usize> {
    if v.shape().len() != 1 {
        return Err(Error::invalid(op, format!("indices must be 1-D, got shape {:?}", v.shape())));
    }
    if !matches!(v.dtype(), DType::I64 | DType::U32) {
        return Err(Error::DType { op, dtype: v.dtype(), expected: Some(DType::I64) });
    }
    Ok(v.shape()[0])
}

/// A top-k over the last dim: `(rows, d)` with `k <= d`.
pub fn topk_rows(op: &'static str, shape: &[usize], k: usize) -> Result<(usize, usize)> {
    let (rows, d) = rows_of(op, shape)?;
    if k > d {
        return Err(Error::invalid(op, format!("k = {k} exceeds the last dim {d}")));
    }
    Ok((rows, d))
}

/// A dropout keep probability in (0, 1].
pub fn keep_probability(op: &'static str, keep: f64) -> Result<()> {
    if !(keep > 0.0 && keep <= 1.0) {
        return Err(Error::invalid(op, format!("keep probability {keep} is outside (0, 1]")));
    }
    Ok(())
}

/// AdamW's buffers: a 1-based step, and grad, m and v of the parameter's dtype and length.
pub fn adamw_buffers(
    op: &'static str,
    param: &dyn BackendStorage,
    grad: View,
    m: &dyn BackendStorage,
    v: &dyn BackendStorage,
    hp: &AdamWStep,
) -> Result<()> {
    if hp.step == 0 {
        return Err(Error::invalid(op, "the step count is 1-based"));
    }
    if !(hp.grad_scale.is_finite() && hp.grad_scale >= 0.0) {
        return Err(Error::invalid(op, format!("gradient scale {} is not finite and non-negative", hp.grad_scale)));
    }
    let (dtype, len) = (param.dtype(), param.len());
    for (other, n) in [(grad.dtype(), grad.layout.numel()), (m.dtype(), m.len()), (v.dtype(), v.len())] {
        if other != dtype {
            return Err(Error::DTypeMismatch { op, lhs: dtype, rhs: other });
        }
        if n != len {
            return Err(Error::ShapeMismatch { op, lhs: vec![len], rhs: vec![n] });
        }
    }
    Ok(())
}

/// LayerNorm's input: `(rows, d)` with `d > 0`.
pub fn norm_rows(op: &'static str, x: View) -> Result<(usize, usize)> {
    let (rows, d) = rows_of(op, x.shape())?;
    if d == 0 {
        return Err(Error::invalid(op, "the normalised dim is empty"));
    }
    Ok((rows, d))
}

/// A LayerNorm per-feature parameter: x's dtype, shape `[d]`.
pub fn norm_param(op: &'static str, p: View, x: View, d: usize) -> Result<()> {
    same_dtype(op, x, p)?;
    same_shape(op, p.shape(), &[d])
}

/// A LayerNorm per-row statistic: x's dtype, `rows` elements.
pub fn norm_stat(op: &'static str, s: View, x: View, rows: usize) -> Result<()> {
    same_dtype(op, x, s)?;
    if s.layout.numel() != rows {
        return Err(Error::invalid(op, format!("expected {rows} per-row statistics, got shape {:?}", s.shape())));
    }
    Ok(())
}

/// A fused linear's operands: `x [m, k]`, `w [n, k]`, bias and scale `[n]`, residual
/// `[m, n]`, all of one float dtype, except that an f32 `x` may meet a bf16 `w`
/// ([`weight_dtype`]); `(m, k, n)`.
pub fn linear_shapes(op: &'static str, x: View, w: View, epi: &Epilogue) -> Result<(usize, usize, usize)> {
    weight_dtype(op, x.dtype(), w.dtype())?;
    let (&[m, k], &[n, k2]) = (x.shape(), w.shape()) else {
        return Err(Error::invalid(op, format!("needs x [m, k] and w [n, k], got {:?} and {:?}", x.shape(), w.shape())));
    };
    if k != k2 {
        return Err(Error::ShapeMismatch { op, lhs: x.shape().to_vec(), rhs: w.shape().to_vec() });
    }
    if !x.dtype().is_float() {
        return Err(Error::DType { op, dtype: x.dtype(), expected: None });
    }
    if epi.scale.is_some() && epi.residual.is_none() {
        return Err(Error::invalid(op, "a scale needs a residual"));
    }
    for (name, view, shape) in [("bias", epi.bias, vec![n]), ("scale", epi.scale, vec![n]), ("residual", epi.residual, vec![m, n])] {
        if let Some(v) = view {
            same_dtype(op, x, v)?;
            if v.shape() != shape.as_slice() {
                return Err(Error::invalid(op, format!("{name} must be {shape:?}, got {:?}", v.shape())));
            }
        }
    }
    Ok((m, k, n))
}

/// A Linear's or convolution's weight has its input's dtype, or is bf16 against an f32
/// input (bf16 inference: the weights stored in bf16, the activations and the
/// accumulation in f32).
pub fn weight_dtype(op: &'static str, x: DType, w: DType) -> Result<()> {
    if x == w || (x == DType::F32 && w == DType::BF16) {
        return Ok(());
    }
    Err(Error::DTypeMismatch { op, lhs: x, rhs: w })
}

/// Fused attention's operands: `q`, `k`, `v` `[B, H, L, D]` and a bias broadcastable
/// (by strides) to `[B, H, L, L]`, of one float dtype; `(B, H, L, D)`.
pub fn attention_shapes(op: &'static str, q: View, k: View, v: View, bias: Option<View>) -> Result<[usize; 4]> {
    let &[b, h, l, d] = q.shape() else {
        return Err(Error::invalid(op, format!("q must be [B, H, L, D], got {:?}", q.shape())));
    };
    for t in [k, v] {
        same_dtype(op, q, t)?;
        same_shape(op, q.shape(), t.shape())?;
    }
    if !q.dtype().is_float() {
        return Err(Error::DType { op, dtype: q.dtype(), expected: None });
    }
    if let Some(bias) = bias {
        same_dtype(op, q, bias)?;
        same_shape(op, &[b, h, l, l], bias.shape())?;
    }
    Ok([b, h, l, d])
}
