//! Cross-entropy with label smoothing and an ignored target, and its gradient
//! (PyTorch semantics: the target distribution is (1−ε)·onehot + ε/C).

use crate::CpuBackend;
use crate::fastmath::simd;
use crate::pool;
use crate::scalar::{max_of, sum_by, Real};
use crate::storage::{boxed, float_dispatch, Src};
use crate::strided::{par_rows, rows_per_task};
use beit_engine::backend::Loss;
use beit_engine::{Result, StorageBox, View};
use rayon::prelude::*;
use std::borrow::Cow;

/// Validated inputs: the logits gathered row-major, `c` classes, each row's target class
/// (`None` when ignored) and the smoothing ε.
struct Batch<'a, T: Clone> {
    logits: Cow<'a, [T]>,
    c: usize,
    targets: Vec<Option<usize>>,
    eps: f64,
}

impl<'a, T: Real> Batch<'a, T> {
    fn new(op: &'static str, logits: View<'a>, targets: View, eps: f64, ignore_index: i64) -> Result<Self> {
        let (_, c) = beit_engine::checks::cross_entropy_shapes(op, logits, targets, eps)?;
        let t = Src::<i64>::new(op, targets)?.contiguous();
        let targets = t
            .iter()
            .enumerate()
            .map(|(r, &t)| beit_engine::checks::cross_entropy_target(op, r, t, c, ignore_index))
            .collect::<Result<_>>()?;
        Ok(Batch { logits: Src::<T>::new(op, logits)?.contiguous(), c, targets, eps })
    }

    fn row(&self, r: usize) -> &[T] {
        &self.logits[r * self.c..(r + 1) * self.c]
    }

    /// Rows with a target.
    fn count(&self) -> usize {
        self.targets.iter().flatten().count()
    }

    /// The smoothed cross-entropy of row `r` against class `t`: lse − (1−ε)·x_t − ε/C·Σx.
    #[inline(always)]
    fn row_loss(&self, r: usize, t: usize) -> f64 {
        let x = self.row(r);
        let m = max_of(x);
        let lse = m.to64() + sum_by(x, |v| (v - m).fexp()).to64().ln();
        let mean = sum_by(x, |v| v).to64() / self.c as f64;
        lse - (1.0 - self.eps) * x[t].to64() - self.eps * mean
    }

    fn loss(&self) -> f64 {
        let total: f64 = (0..self.targets.len())
            .into_par_iter()
            .with_min_len(rows_per_task(self.c))
            .filter_map(|r| {
                self.targets[r].map(|t| {
                    simd(
                        #[inline(always)]
                        || self.row_loss(r, t),
                    )
                })
            })
            .sum();
        // 0/0 = NaN when every row is ignored.
        total / self.count() as f64
    }

    /// `dloss` · d loss / d logits.
    fn grad(&self, dloss: f64) -> Vec<T> {
        let scale = T::of(dloss / self.count() as f64);
        let (hit, off) = (T::of(1.0 - self.eps), T::of(self.eps / self.c as f64));
        let mut g = pool::filled(self.logits.len(), T::zero());
        par_rows(
            &mut g,
            self.c,
            #[inline(always)]
            |r, g| {
                let Some(t) = self.targets[r] else { return };
                let x = self.row(r);
                let m = max_of(x);
                for (g, &x) in g.iter_mut().zip(x) {
                    *g = (x - m).fexp();
                }
                let inv = sum_by(g, |e| e).recip();
                for g in g.iter_mut() {
                    *g = (*g * inv - off) * scale;
                }
                g[t] = g[t] - hit * scale;
            },
        );
        g
    }
}

impl Loss for CpuBackend {
    /// Mean smoothed cross-entropy over the rows whose target is not `ignore_index`.
    fn cross_entropy(&self, logits: View, targets: View, smoothing: f64, ignore_index: i64) -> Result<StorageBox> {
        const OP: &str = "cross_entropy";
        let dtype = logits.dtype();
        float_dispatch!(OP, dtype, T => {
            let batch = Batch::<T>::new(OP, logits, targets, smoothing, ignore_index)?;
            Ok(boxed(dtype, vec![T::of(batch.loss())]))
        })
    }

    /// Gradient of [`Loss::cross_entropy`] w.r.t. the logits, scaled by the 1-element `dloss`.
    fn cross_entropy_backward(&self, logits: View, targets: View, smoothing: f64, ignore_index: i64, dloss: View) -> Result<StorageBox> {
        const OP: &str = "cross_entropy_backward";
        beit_engine::checks::cross_entropy_dloss(OP, logits, dloss)?;
        let dtype = logits.dtype();
        float_dispatch!(OP, dtype, T => {
            let batch = Batch::<T>::new(OP, logits, targets, smoothing, ignore_index)?;
            let g = Src::<T>::new(OP, dloss)?.contiguous()[0];
            Ok(boxed(dtype, batch.grad(g.to64())))
        })
    }
}



#[cfg(test)]
mod tests {
    use crate::testutil::{assert_close, vals, Tt, B};
    use beit_engine::backend::prelude::*;
    use beit_engine::{DType, Error};

    const IGNORE: i64 = -100;

    fn naive(x: &[f64], c: usize, t: &[i64], eps: f64) -> f64 {
        let (mut sum, mut n) = (0.0, 0);
        for (r, &t) in x.chunks(c).zip(t) {
            if t == IGNORE {
                continue;
            }
            let lse = r.iter().map(|v| v.exp()).sum::<f64>().ln();
            let logp: Vec<f64> = r.iter().map(|v| v - lse).collect();
            sum += -(1.0 - eps) * logp[t as usize] - eps / c as f64 * logp.iter().sum::<f64>();
            n += 1;
        }
        sum / n as f64
    }

    #[test]
    fn loss_and_gradient_with_smoothing_and_ignored_rows() {
        let (rows, c, eps) = (5, 7, 0.1);
        let targets = [3.0, IGNORE as f64, 0.0, 6.0, 6.0];
        let t = Tt::new(DType::I64, &[rows], &targets);
        let tv: Vec<i64> = targets.iter().map(|&v| v as i64).collect();
        let x = Tt::rand(DType::F64, &[rows, c], 1).scrambled();
        let xv = x.vals();
        let loss = vals(&B.cross_entropy(x.view(), t.view(), eps, IGNORE).unwrap());
        assert_close(&loss, &[naive(&xv, c, &tv, eps)], 1e-14);

        let dloss = Tt::new(DType::F64, &[], &[2.5]);
        let g = vals(&B.cross_entropy_backward(x.view(), t.view(), eps, IGNORE, dloss.view()).unwrap());
        let h = 1e-6;
        let fd: Vec<f64> = (0..xv.len())
            .map(|i| {
                let (mut p, mut q) = (xv.clone(), xv.clone());
                p[i] += h;
                q[i] -= h;
                2.5 * (naive(&p, c, &tv, eps) - naive(&q, c, &tv, eps)) / (2.0 * h)
            })
            .collect();
        assert_close(&g, &fd, 1e-8);
        assert!(g[c..2 * c].iter().all(|&v| v == 0.0), "ignored row has zero gradient");
    }

    #[test]
    fn f32_on_many_classes() {
        let (rows, c) = (197, 1000);
        let tv: Vec<i64> = (0..rows as i64).map(|r| (r * 37) % c as i64).collect();
        let t = Tt::new(DType::I64, &[rows], &tv.iter().map(|&v| v as f64).collect::<Vec<_>>());
        let x = Tt::rand(DType::F32, &[rows, c], 2);
        let loss = vals(&B.cross_entropy(x.view(), t.view(), 0.0, IGNORE).unwrap());
        assert_close(&loss, &[naive(&x.vals(), c, &tv, 0.0)], 1e-6);
        let one = Tt::new(DType::F32, &[1], &[1.0]);
        let g = vals(&B.cross_entropy_backward(x.view(), t.view(), 0.0, IGNORE, one.view()).unwrap());
        // Each row's gradient sums to zero.
        for r in g.chunks(c) {
            assert!(r.iter().sum::<f64>().abs() < 1e-7);
        }
    }

    #[test]
    fn all_ignored_and_bad_targets() {
        let x = Tt::rand(DType::F32, &[2, 3], 3);
        let t = Tt::new(DType::I64, &[2], &[IGNORE as f64; 2]);
        assert!(vals(&B.cross_entropy(x.view(), t.view(), 0.1, IGNORE).unwrap())[0].is_nan());
        let one = Tt::new(DType::F32, &[1], &[1.0]);
        assert_eq!(vals(&B.cross_entropy_backward(x.view(), t.view(), 0.1, IGNORE, one.view()).unwrap()), [0.0; 6]);
        let bad = Tt::new(DType::I64, &[2], &[1.0, 3.0]);
        match B.cross_entropy(x.view(), bad.view(), 0.0, IGNORE) {
            Err(Error::Invalid { msg, .. }) => assert!(msg.contains("target 3"), "{msg}"),
            other => panic!("expected an error, got {other:?}"),
        }
        let f = Tt::new(DType::F32, &[2], &[1.0, 0.0]);
        assert!(matches!(B.cross_entropy(x.view(), f.view(), 0.0, IGNORE), Err(Error::DType { .. })));
    }
}
