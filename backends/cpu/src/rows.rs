//! The row kernels: softmax over the last dim and its gradient (here: one pass per row,
//! rows in parallel), LayerNorm (`norm.rs`) and fused attention (`attention.rs`).

use crate::pool;
use crate::scalar::{max_of, sum2, sum_by, Real};
use crate::storage::{boxed, float_dispatch, rows_of, same_dtype, same_shape, Src};
use crate::strided::par_rows;
use crate::{attention, norm, CpuBackend};
use beit_engine::backend::Rows;
use beit_engine::{Result, StorageBox, View};

impl Rows for CpuBackend {
    fn layer_norm(&self, x: View, weight: Option<View>, bias: Option<View>, eps: f64) -> Result<(StorageBox, StorageBox, StorageBox)> {
        norm::layer_norm(x, weight, bias, eps)
    }

    fn layer_norm_backward(&self, x: View, weight: Option<View>, mean: View, rstd: View, dy: View) -> Result<(StorageBox, Option<StorageBox>, Option<StorageBox>)> {
        norm::layer_norm_backward(x, weight, mean, rstd, dy)
    }

    fn attention(&self, q: View, k: View, v: View, bias: Option<View>, scale: f64) -> Result<StorageBox> {
        attention::attention(q, k, v, bias, scale)
    }

    /// Softmax over the last dim, max-subtracted.
    fn softmax_last(&self, src: View) -> Result<StorageBox> {
        const OP: &str = "softmax_last";
        let (_, d) = rows_of(OP, src.shape())?;
        let dtype = src.dtype();
        float_dispatch!(OP, dtype, T => {
            let x = Src::<T>::new(OP, src)?.contiguous();
            Ok(boxed(dtype, softmax_t(&x, d)))
        })
    }

    /// `y ⊙ (dy − Σ dy ⊙ y)` over the last dim.
    fn softmax_last_backward(&self, y: View, dy: View) -> Result<StorageBox> {
        const OP: &str = "softmax_last_backward";
        same_dtype(OP, y, dy)?;
        same_shape(OP, y.shape(), dy.shape())?;
        let (_, d) = rows_of(OP, y.shape())?;
        let dtype = y.dtype();
        float_dispatch!(OP, dtype, T => {
            let (y, dy) = (Src::<T>::new(OP, y)?.contiguous(), Src::<T>::new(OP, dy)?.contiguous());
            let mut dx = pool::reuse(y.len());
            par_rows(&mut dx, d, #[inline(always)] |r, dx| {
                let (y, dy) = (&y[r * d..(r + 1) * d], &dy[r * d..(r + 1) * d]);
                let dot = sum2(y, dy, |a, b| a * b);
                for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
                    *dx = y * (g - dot);
                }
            });
            Ok(boxed(dtype, dx))
        })
    }
}


fn softmax_t<T: Real>(x: &[T], d: usize) -> Vec<T> {
    let mut y = pool::reuse(x.len());
    par_rows(
        &mut y,
        d,
        #[inline(always)]
        |r, y| {
            y.copy_from_slice(&x[r * d..(r + 1) * d]);
            softmax_row(y);
        },
    );
    y
}

/// One row's softmax in place, max-subtracted.
#[inline(always)]
pub(crate) fn softmax_row<T: Real>(y: &mut [T]) {
    T::exp_shifted(y, max_of(y));
    let inv = sum_by(y, |e| e).recip();
    for y in y.iter_mut() {
        *y *= inv;
    }
}


#[cfg(test)]
mod tests {
    use crate::testutil::{assert_close, vals, Tt, B};
    use beit_engine::backend::prelude::*;
    use beit_engine::{DType};

    fn naive_softmax(x: &[f64], d: usize) -> Vec<f64> {
        x.chunks(d)
            .flat_map(|r| {
                let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = r.iter().map(|v| (v - m).exp()).sum();
                r.iter().map(move |v| (v - m).exp() / s).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn softmax_and_its_gradient() {
        for (dtype, tol) in [(DType::F64, 1e-13), (DType::F32, 1e-6)] {
            for shape in [&[1][..], &[3, 7], &[4, 197, 197]] {
                let d = *shape.last().unwrap();
                let x = Tt::new(
                    dtype,
                    shape,
                    &Tt::rand(DType::F64, shape, 1).vals().iter().map(|v| v * 20.0).collect::<Vec<_>>(),
                )
                .scrambled();
                let want = naive_softmax(&x.vals(), d);
                let y = Tt::new(dtype, shape, &vals(&B.softmax_last(x.view()).unwrap()));
                assert_close(&y.vals(), &want, tol);

                let dy = Tt::rand(dtype, shape, 2).scrambled();
                let (yv, gv) = (y.vals(), dy.vals());
                let want: Vec<f64> = yv
                    .chunks(d)
                    .zip(gv.chunks(d))
                    .flat_map(|(y, g)| {
                        let dot: f64 = y.iter().zip(g).map(|(a, b)| a * b).sum();
                        y.iter().zip(g).map(move |(y, g)| y * (g - dot)).collect::<Vec<_>>()
                    })
                    .collect();
                assert_close(&vals(&B.softmax_last_backward(y.view(), dy.view()).unwrap()), &want, tol);
            }
        }
    }

    #[test]
    fn softmax_of_huge_logits_is_finite() {
        let x = Tt::new(DType::F32, &[1, 3], &[1e30, 1e30, -1e30]);
        assert_eq!(vals(&B.softmax_last(x.view()).unwrap()), [0.5, 0.5, 0.0]);
    }
}
