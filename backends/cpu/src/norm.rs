//! LayerNorm over the last dim and its gradient: one pass per row, rows in parallel.

use crate::fastmath::simd;
use crate::pool;
use crate::scalar::{sum2, sum_by, Real};
use crate::storage::{boxed, float_dispatch, same_dtype, same_shape, Src};
use crate::strided::rows_per_task;
use beit_engine::{checks, Result, StorageBox, View};
use rayon::prelude::*;
use std::borrow::Cow;

/// A per-feature `[D]` parameter (weight or bias) of x's dtype, gathered.
fn param<'a, T: Real>(op: &'static str, p: Option<View<'a>>, x: View, d: usize) -> Result<Option<Cow<'a, [T]>>> {
    p.map(|p| {
        checks::norm_param(op, p, x, d)?;
        Ok(Src::<T>::new(op, p)?.contiguous())
    })
    .transpose()
}

/// A per-row statistic of x's dtype with `rows` elements, gathered.
fn stat<'a, T: Real>(op: &'static str, s: View<'a>, x: View, rows: usize) -> Result<Cow<'a, [T]>> {
    checks::norm_stat(op, s, x, rows)?;
    Ok(Src::<T>::new(op, s)?.contiguous())
}


/// LayerNorm: `(y, mean, rstd)`.
pub(crate) fn layer_norm(x: View, weight: Option<View>, bias: Option<View>, eps: f64) -> Result<(StorageBox, StorageBox, StorageBox)> {
    const OP: &str = "layer_norm";
    let (_, d) = checks::norm_rows(OP, x)?;
    let dtype = x.dtype();
    float_dispatch!(OP, dtype, T => {
        let (w, b) = (param::<T>(OP, weight, x, d)?, param::<T>(OP, bias, x, d)?);
        let xs = Src::<T>::new(OP, x)?.contiguous();
        let (y, mean, rstd) = forward(&xs, d, w.as_deref(), b.as_deref(), T::of(eps));
        Ok((boxed(dtype, y), boxed(dtype, mean), boxed(dtype, rstd)))
    })
}

fn forward<T: Real>(xs: &[T], d: usize, w: Option<&[T]>, b: Option<&[T]>, eps: T) -> (Vec<T>, Vec<T>, Vec<T>) {
    let rows = xs.len() / d;
    let (mut mean, mut rstd) = (vec![T::zero(); rows], vec![T::zero(); rows]);
    let mut y = pool::reuse(xs.len());
    y.par_chunks_mut(d)
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .enumerate()
        .with_min_len(rows_per_task(d))
        .for_each(|(r, (y, (mean, rstd)))| {
            (*mean, *rstd) = simd(
                #[inline(always)]
                || normalize(&xs[r * d..(r + 1) * d], y, w, b, eps),
            )
        });
    (y, mean, rstd)
}

/// One row: `y = (x − μ)·rstd·w + b`; returns `(μ, rstd)`.
#[inline(always)]
fn normalize<T: Real>(x: &[T], y: &mut [T], w: Option<&[T]>, b: Option<&[T]>, eps: T) -> (T, T) {
    let inv_d = T::of(1.0 / x.len() as f64);
    let mu = sum_by(x, |v| v) * inv_d;
    let rs = (sum_by(x, |v| (v - mu) * (v - mu)) * inv_d + eps).sqrt().recip();
    for (y, &v) in y.iter_mut().zip(x) {
        *y = (v - mu) * rs;
    }
    if let Some(w) = w {
        y.iter_mut().zip(w).for_each(|(y, &w)| *y *= w);
    }
    if let Some(b) = b {
        y.iter_mut().zip(b).for_each(|(y, &b)| *y += b);
    }
    (mu, rs)
}

/// Gradient of LayerNorm: `(dx, dweight, dbias)`, the last two when `weight` is given.
pub(crate) fn layer_norm_backward(x: View, weight: Option<View>, mean: View, rstd: View, dy: View) -> Result<(StorageBox, Option<StorageBox>, Option<StorageBox>)> {
    const OP: &str = "layer_norm_backward";
    same_dtype(OP, x, dy)?;
    same_shape(OP, x.shape(), dy.shape())?;
    let (rows, d) = checks::norm_rows(OP, x)?;
    let dtype = x.dtype();
    float_dispatch!(OP, dtype, T => {
        let w = param::<T>(OP, weight, x, d)?;
        let (mean, rstd) = (stat::<T>(OP, mean, x, rows)?, stat::<T>(OP, rstd, x, rows)?);
        let (xs, dys) = (Src::<T>::new(OP, x)?.contiguous(), Src::<T>::new(OP, dy)?.contiguous());
        let saved = Saved { x: &xs, dy: &dys, w: w.as_deref(), mean: &mean, rstd: &rstd, d };
        let (dx, sums) = backward(&saved);
        let to_t = |v: Vec<f64>| boxed(dtype, v.into_iter().map(T::of).collect::<Vec<T>>());
        let (dw, db) = sums.map(|(dw, db)| (to_t(dw), to_t(db))).unzip();
        Ok((boxed(dtype, dx), dw, db))
    })
}

/// The gathered inputs of the backward pass.
struct Saved<'a, T> {
    x: &'a [T],
    dy: &'a [T],
    w: Option<&'a [T]>,
    mean: &'a [T],
    rstd: &'a [T],
    d: usize,
}

impl<T: Real> Saved<'_, T> {
    /// Rows `first..` into `dx`, adding their parameter gradients to `sums`.
    #[inline(always)]
    fn rows(&self, first: usize, dx: &mut [T], sums: &mut ParamGrads) {
        let d = self.d;
        let inv_d = T::of(1.0 / d as f64);
        let (mut g, mut xhat) = (vec![T::zero(); d], vec![T::zero(); d]);
        for (i, dx) in dx.chunks_mut(d).enumerate() {
            let r = first + i;
            let (x, dy) = (&self.x[r * d..(r + 1) * d], &self.dy[r * d..(r + 1) * d]);
            let (mu, rs) = (self.mean[r], self.rstd[r]);
            for (h, &v) in xhat.iter_mut().zip(x) {
                *h = (v - mu) * rs;
            }
            match self.w {
                Some(w) => g.iter_mut().zip(dy).zip(w).for_each(|((g, &dy), &w)| *g = dy * w),
                None => g.copy_from_slice(dy),
            }
            let c1 = sum2(&g, &xhat, |g, h| g * h) * inv_d;
            let c2 = sum_by(&g, |g| g) * inv_d;
            for ((dx, &g), &h) in dx.iter_mut().zip(&g).zip(&xhat) {
                *dx = rs * (g - c2 - h * c1);
            }
            if let Some((dw, db)) = sums {
                for (((dw, db), &dy), &h) in dw.iter_mut().zip(db.iter_mut()).zip(dy).zip(&xhat) {
                    *dw += (dy * h).to64();
                    *db += dy.to64();
                }
            }
        }
    }
}

/// Per-feature gradient sums `(dweight, dbias)`, accumulated in f64.
type ParamGrads = Option<(Vec<f64>, Vec<f64>)>;

/// `dx`, and the parameter gradients when there is a weight.
fn backward<T: Real>(s: &Saved<T>) -> (Vec<T>, ParamGrads) {
    let d = s.d;
    let zero_sums = || s.w.map(|_| (vec![0.0; d], vec![0.0; d]));
    let task = rows_per_task(d);
    let mut dx = pool::reuse(s.x.len());
    let sums = dx
        .par_chunks_mut(task * d)
        .enumerate()
        .map(|(t, dx)| {
            let mut sums = zero_sums();
            simd(
                #[inline(always)]
                || s.rows(t * task, dx, &mut sums),
            );
            sums
        })
        .reduce_with(|a, b| {
            a.zip(b).map(|((mut dw, mut db), (dw2, db2))| {
                dw.iter_mut().zip(dw2).for_each(|(a, b)| *a += b);
                db.iter_mut().zip(db2).for_each(|(a, b)| *a += b);
                (dw, db)
            })
        });
    // No rows at all: zero parameter gradients.
    (dx, sums.unwrap_or_else(zero_sums))
}

#[cfg(test)]
mod tests {
    use crate::testutil::{assert_close, vals, Tt, B};
    use beit_engine::backend::prelude::*;
    use beit_engine::{DType, Error};

    /// Naive LayerNorm forward: (y, mean, rstd).
    fn naive(x: &[f64], d: usize, w: &[f64], b: &[f64], eps: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (mut y, mut mean, mut rstd) = (vec![], vec![], vec![]);
        for r in x.chunks(d) {
            let mu = r.iter().sum::<f64>() / d as f64;
            let rs = 1.0 / (r.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / d as f64 + eps).sqrt();
            y.extend(r.iter().enumerate().map(|(j, v)| (v - mu) * rs * w[j] + b[j]));
            mean.push(mu);
            rstd.push(rs);
        }
        (y, mean, rstd)
    }

    /// Σ dy·y of the naive forward: a scalar whose gradient we compare with.
    fn objective(x: &[f64], d: usize, w: &[f64], b: &[f64], dy: &[f64]) -> f64 {
        naive(x, d, w, b, 1e-5).0.iter().zip(dy).map(|(y, g)| y * g).sum()
    }

    #[test]
    fn layer_norm_forward_matches_naive() {
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            for shape in [&[1][..], &[3, 7], &[2, 197, 64]] {
                let d = *shape.last().unwrap();
                let x = Tt::rand(dtype, shape, 1).scrambled();
                let (w, b) = (Tt::rand(dtype, &[d], 2), Tt::rand(dtype, &[d], 3).scrambled());
                let (want_y, want_m, want_r) = naive(&x.vals(), d, &w.vals(), &b.vals(), 1e-5);
                let (y, m, r) = B.layer_norm(x.view(), Some(w.view()), Some(b.view()), 1e-5).unwrap();
                assert_close(&vals(&y), &want_y, tol);
                assert_close(&vals(&m), &want_m, tol);
                assert_close(&vals(&r), &want_r, tol);
                let (y, _, _) = B.layer_norm(x.view(), None, None, 1e-5).unwrap();
                let (want, _, _) = naive(&x.vals(), d, &vec![1.0; d], &vec![0.0; d], 1e-5);
                assert_close(&vals(&y), &want, tol);
            }
        }
    }

    #[test]
    fn layer_norm_backward_matches_finite_differences() {
        let (shape, d) = ([5, 7], 7);
        let x = Tt::rand(DType::F64, &shape, 4).scrambled();
        let (w, b, dy) =
            (Tt::rand(DType::F64, &[d], 5), Tt::rand(DType::F64, &[d], 6), Tt::rand(DType::F64, &shape, 7));
        let (xv, wv, bv, gv) = (x.vals(), w.vals(), b.vals(), dy.vals());
        let (_, m, r) = B.layer_norm(x.view(), Some(w.view()), Some(b.view()), 1e-5).unwrap();
        let (m, r) = (Tt::new(DType::F64, &[5, 1], &vals(&m)), Tt::new(DType::F64, &[5], &vals(&r)));
        let (dx, dw, db) = B.layer_norm_backward(x.view(), Some(w.view()), m.view(), r.view(), dy.view()).unwrap();
        let h = 1e-6;
        let fd = |v: &[f64], f: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
            (0..v.len())
                .map(|i| {
                    let (mut p, mut q) = (v.to_vec(), v.to_vec());
                    p[i] += h;
                    q[i] -= h;
                    (f(&p) - f(&q)) / (2.0 * h)
                })
                .collect()
        };
        assert_close(&vals(&dx), &fd(&xv, &|x| objective(x, d, &wv, &bv, &gv)), 1e-7);
        assert_close(&vals(&dw.unwrap()), &fd(&wv, &|w| objective(&xv, d, w, &bv, &gv)), 1e-7);
        assert_close(&vals(&db.unwrap()), &fd(&bv, &|b| objective(&xv, d, &wv, b, &gv)), 1e-7);
        // Without affine parameters: the gradient with w = 1.
        let (dx, dw, db) = B.layer_norm_backward(x.view(), None, m.view(), r.view(), dy.view()).unwrap();
        assert!(dw.is_none() && db.is_none());
        assert_close(&vals(&dx), &fd(&xv, &|x| objective(x, d, &[1.0; 7], &[0.0; 7], &gv)), 1e-7);
    }

    #[test]
    fn layer_norm_backward_f32_on_many_rows() {
        // Enough rows for several parallel tasks; compare f32 with the f64 kernel.
        let shape = [300, 197];
        let run = |dtype| {
            let x = Tt::new(dtype, &shape, &Tt::rand(DType::F64, &shape, 8).vals());
            let w = Tt::new(dtype, &[197], &Tt::rand(DType::F64, &[197], 9).vals());
            let dy = Tt::new(dtype, &shape, &Tt::rand(DType::F64, &shape, 10).vals());
            let (_, m, r) = B.layer_norm(x.view(), Some(w.view()), None, 1e-5).unwrap();
            let (m, r) = (Tt::new(dtype, &[300], &vals(&m)), Tt::new(dtype, &[300], &vals(&r)));
            let (dx, dw, db) = B.layer_norm_backward(x.view(), Some(w.view()), m.view(), r.view(), dy.view()).unwrap();
            (vals(&dx), vals(&dw.unwrap()), vals(&db.unwrap()))
        };
        let (a, b) = (run(DType::F32), run(DType::F64));
        assert_close(&a.0, &b.0, 1e-4);
        assert_close(&a.1, &b.1, 1e-4);
        assert_close(&a.2, &b.2, 1e-4);
    }

    #[test]
    fn bad_parameters_are_errors() {
        let x = Tt::rand(DType::F32, &[2, 4], 1);
        let w = Tt::rand(DType::F32, &[3], 1);
        assert!(matches!(B.layer_norm(x.view(), Some(w.view()), None, 1e-5), Err(Error::ShapeMismatch { .. })));
        let w = Tt::rand(DType::F64, &[4], 1);
        assert!(matches!(B.layer_norm(x.view(), Some(w.view()), None, 1e-5), Err(Error::DTypeMismatch { .. })));
        let stats = Tt::rand(DType::F32, &[3], 1);
        assert!(matches!(
            B.layer_norm_backward(x.view(), None, stats.view(), stats.view(), x.view()),
            Err(Error::Invalid { .. })
        ));
    }
}
