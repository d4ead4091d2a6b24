//! Sum / max / min / sum of squares over a set of dims, which the output keeps with size 1.
//!
//! The source is walked in its own order with the output seen through it (stride 0 on
//! the reduced dims), so both leading and trailing reductions read memory sequentially.
//! The outermost non-trivial dim is split across threads: disjoint output slices when it
//! is kept, per-task partial results combined at the end when it is reduced.

use crate::CpuBackend;
use crate::fastmath::simd;
use crate::scalar::Num;
use crate::storage::{boxed, num_dispatch, Src};
use crate::strided::{Walk, PAR_CHUNK};
use beit_engine::backend::Reduce;
use beit_engine::layout::contiguous_strides;
use beit_engine::{Layout, ReduceOp, Result, StorageBox, View};
use rayon::prelude::*;

impl Reduce for CpuBackend {
    /// Reduce `src` over `dims` (sorted, unique).
    fn reduce(&self, op: ReduceOp, src: View, dims: &[usize]) -> Result<StorageBox> {
        const OP: &str = "reduce";
        beit_engine::checks::reduce_dims(OP, src.shape().len(), dims)?;
        let dtype = src.dtype();
        num_dispatch!(OP, dtype, T => {
            let s = Src::<T>::new(OP, src)?;
            Ok(boxed(dtype, match op {
                ReduceOp::Sum => Fold { init: <T as Num>::Acc::default(), lift: T::acc, comb: T::acc_add }
                    .run(s, dims)
                    .into_iter()
                    .map(T::from_acc)
                    .collect(),
                ReduceOp::SumSquares => Fold { init: <T as Num>::Acc::default(), lift: T::acc_square, comb: T::acc_add }
                    .run(s, dims)
                    .into_iter()
                    .map(T::from_acc)
                    .collect(),
                ReduceOp::Max => Fold { init: T::LOWEST, lift: |x| x, comb: T::max_of }.run(s, dims),
                ReduceOp::Min => Fold { init: T::HIGHEST, lift: |x| x, comb: T::min_of }.run(s, dims),
            }))
        })
    }
}


/// A reduction: each output is `comb(.., lift(x))` folded over its inputs from `init`
/// (`init` must be an identity of `comb`).
struct Fold<A, L, C> {
    init: A,
    lift: L,
    comb: C,
}

impl<A: Copy + Send + Sync, L: Sync, C: Fn(A, A) -> A + Sync> Fold<A, L, C> {
    fn run<T: Num>(&self, s: Src<T>, dims: &[usize]) -> Vec<A>
    where
        L: Fn(T) -> A,
    {
        let shape = s.shape();
        let out_shape: Vec<usize> =
            shape.iter().enumerate().map(|(d, &n)| if dims.contains(&d) { 1 } else { n }).collect();
        let mut out_strides = contiguous_strides(&out_shape);
        for &d in dims {
            out_strides[d] = 0;
        }
        let mut acc = vec![self.init; out_shape.iter().product()];
        if s.numel() == 0 {
            return acc;
        }
        // Split the first dim longer than 1 into tasks of about PAR_CHUNK elements or more.
        let Some(p) = shape.iter().position(|&n| n > 1) else {
            self.accumulate(s, &out_strides, &mut acc);
            return acc;
        };
        let step = PAR_CHUNK.div_ceil(s.numel() / shape[p]).max(shape[p].div_ceil(4 * rayon::current_num_threads()));
        if step >= shape[p] {
            self.accumulate(s, &out_strides, &mut acc);
            return acc;
        }
        let part = |j: usize| s.layout.narrow(p, j * step, step.min(shape[p] - j * step)).expect("in bounds");
        if dims.contains(&p) {
            (0..shape[p].div_ceil(step))
                .into_par_iter()
                .map(|j| {
                    let mut acc = vec![self.init; acc.len()];
                    self.accumulate(Src { data: s.data, layout: &part(j) }, &out_strides, &mut acc);
                    acc
                })
                .reduce_with(|mut a, b| {
                    for (x, y) in a.iter_mut().zip(b) {
                        *x = (self.comb)(*x, y);
                    }
                    a
                })
                .unwrap_or(acc)
        } else {
            acc.par_chunks_mut(step * out_strides[p]).enumerate().for_each(|(j, acc)| {
                self.accumulate(Src { data: s.data, layout: &part(j) }, &out_strides, acc);
            });
            acc
        }
    }

    /// Fold every element of `s` into `acc[o]`, `o` its offset through `out_strides`.
    fn accumulate<T: Num>(&self, s: Src<T>, out_strides: &[usize], acc: &mut [A])
    where
        L: Fn(T) -> A,
    {
        let (lift, comb) = (&self.lift, &self.comb);
        let out_layout = Layout::new(s.shape().to_vec(), out_strides.to_vec(), 0);
        let walk = Walk::new(s.shape(), [s.layout, &out_layout]);
        let [ss, so] = walk.inner_strides();
        walk.runs(0, walk.len(), |_, [os, oo], n| {
            if (ss, so) == (1, 0) {
                // A contiguous run into one output: 8 independent lanes.
                acc[oo] = simd(
                    #[inline(always)]
                    || {
                        let chunks = s.data[os..os + n].chunks_exact(8);
                        let tail = chunks.remainder().iter().fold(acc[oo], |a, &x| comb(a, lift(x)));
                        let mut lanes = [self.init; 8];
                        for c in chunks {
                            for (l, &x) in lanes.iter_mut().zip(c) {
                                *l = comb(*l, lift(x));
                            }
                        }
                        lanes.into_iter().fold(tail, comb)
                    },
                );
            } else if ss == 1 && so == 1 {
                simd(
                    #[inline(always)]
                    || {
                        for (a, &x) in acc[oo..oo + n].iter_mut().zip(&s.data[os..os + n]) {
                            *a = comb(*a, lift(x));
                        }
                    },
                );
            } else {
                for k in 0..n {
                    let o = oo + k * so;
                    acc[o] = comb(acc[o], lift(s.data[os + k * ss]));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{assert_close, vals, Tt, B};
    use beit_engine::backend::prelude::*;
    use beit_engine::{DType, Error, ReduceOp};

    /// Naive reduction: fold each element into the output at its reduced multi-index.
    fn naive(op: ReduceOp, t: &Tt, dims: &[usize]) -> Vec<f64> {
        let shape = t.l.shape();
        let out_shape: Vec<usize> =
            shape.iter().enumerate().map(|(d, &n)| if dims.contains(&d) { 1 } else { n }).collect();
        let init = match op {
            ReduceOp::Sum | ReduceOp::SumSquares => 0.0,
            ReduceOp::Max => f64::NEG_INFINITY,
            ReduceOp::Min => f64::INFINITY,
        };
        let mut out = vec![init; out_shape.iter().product()];
        for (i, v) in t.vals().into_iter().enumerate() {
            let (mut rem, mut o, mut stride) = (i, 0, 1);
            for d in (0..shape.len()).rev() {
                let idx = rem % shape[d];
                rem /= shape[d];
                o += if dims.contains(&d) { 0 } else { idx * stride };
                stride *= out_shape[d];
            }
            out[o] = match op {
                ReduceOp::Sum => out[o] + v,
                ReduceOp::SumSquares => out[o] + v * v,
                ReduceOp::Max => out[o].max(v),
                ReduceOp::Min => out[o].min(v),
            };
        }
        out
    }

    #[test]
    fn reductions_over_leading_trailing_and_middle_dims() {
        let shapes: [&[usize]; 4] = [&[7], &[1, 197, 5], &[3, 197, 61], &[300, 7, 40]];
        for dtype in [DType::F32, DType::F64, DType::I64] {
            for shape in shapes {
                let base = Tt::new(
                    dtype,
                    shape,
                    &Tt::rand(DType::F64, shape, 2).vals().iter().map(|x| x * 10.0).collect::<Vec<_>>(),
                );
                for t in [base.scrambled(), base] {
                    let rank = shape.len();
                    let mut dim_sets: Vec<Vec<usize>> = (0..rank).map(|d| vec![d]).collect();
                    dim_sets.push((0..rank).collect());
                    if rank == 3 {
                        dim_sets.push(vec![0, 2]);
                        dim_sets.push(vec![0, 1]);
                    }
                    for dims in &dim_sets {
                        for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::SumSquares] {
                            let got = vals(&B.reduce(op, t.view(), dims).unwrap());
                            assert_close(&got, &naive(op, &t, dims), 1e-5);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn broadcast_inputs_empty_dims_and_errors() {
        let t = Tt::rand(DType::F64, &[1, 40], 3).broadcast(&[1000, 40]);
        assert_close(&vals(&B.reduce(ReduceOp::Sum, t.view(), &[0]).unwrap()), &naive(ReduceOp::Sum, &t, &[0]), 1e-12);
        let nan = Tt::new(DType::F32, &[3], &[1.0, f64::NAN, 2.0]);
        assert!(vals(&B.reduce(ReduceOp::Max, nan.view(), &[0]).unwrap())[0].is_nan());
        let empty = Tt::rand(DType::F32, &[0, 3], 1);
        assert_eq!(vals(&B.reduce(ReduceOp::Sum, empty.view(), &[0]).unwrap()), [0.0; 3]);
        assert_eq!(vals(&B.reduce(ReduceOp::Sum, Tt::new(DType::F32, &[], &[4.0]).view(), &[]).unwrap()), [4.0]);
        let x = Tt::rand(DType::F32, &[2, 3], 1);
        assert!(matches!(B.reduce(ReduceOp::Sum, x.view(), &[1, 0]), Err(Error::Invalid { .. })));
        assert!(matches!(B.reduce(ReduceOp::Sum, x.view(), &[2]), Err(Error::Invalid { .. })));
        let u = Tt::rand(DType::U8, &[2], 1);
        assert!(matches!(B.reduce(ReduceOp::Sum, u.view(), &[0]), Err(Error::DType { .. })));
    }
}
