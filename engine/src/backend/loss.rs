//! Cross-entropy and its gradient.

use super::rows::{mean_last, row_layouts, softmax_last};
use super::{contiguous, on, BinaryOp, Elementwise, Index, Memory, Reduce, ReduceOp, StorageBox, UnaryOp, View};
use crate::{DType, Error, HostData, Layout, Result};

/// Losses, with defaults composed of the primitive kernels ([`cross_entropy`] and
/// [`cross_entropy_backward`] below, which read the targets back to the host).
pub trait Loss: Elementwise + Reduce + Index {
    /// Cross-entropy of `logits [R, C]` against i64 `targets [R]`, with label smoothing;
    /// rows whose target is `ignore_index` are skipped; the mean over the other rows, as a
    /// 1-element buffer (NaN when no row is selected). A target outside `0..C` is an error.
    fn cross_entropy(&self, logits: View, targets: View, smoothing: f64, ignore_index: i64) -> Result<StorageBox> {
        cross_entropy(self, logits, targets, smoothing, ignore_index)
    }
    /// Gradient of [`Loss::cross_entropy`] w.r.t. the logits; `dloss` has 1 element.
    fn cross_entropy_backward(&self, logits: View, targets: View, smoothing: f64, ignore_index: i64, dloss: View) -> Result<StorageBox> {
        cross_entropy_backward(self, logits, targets, smoothing, ignore_index, dloss)
    }
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
