//! Gather and scatter-add along a dim by an index vector, and top-k over the last dim.

use crate::CpuBackend;
use crate::pool;
use crate::scalar::{Num, Real};
use crate::storage::{any_dispatch, boxed, float_dispatch, num_dispatch, same_dtype, same_shape, Src};
use crate::strided::par_rows;
use beit_engine::backend::Index;
use beit_engine::checks::{around, index_vector, topk_rows};
use beit_engine::{DType, Error, Result, StorageBox, View};
use rayon::prelude::*;
use std::cmp::Ordering;

/// `Ok` when every entry of `raw` is below `limit`; else the first that is not, named.
fn check<I: Copy + Into<i64> + Sync>(op: &'static str, raw: &[I], limit: usize) -> Result<()> {
    let fits = |i: I| usize::try_from(i.into()).is_ok_and(|i| i < limit);
    if raw.par_iter().with_min_len(1 << 16).all(|&i| fits(i)) {
        return Ok(());
    }
    let p = raw.iter().position(|&i| !fits(i)).expect("a bad index was seen");
    Err(Error::invalid(op, format!("index {} at position {p} is out of range for a dim of size {limit}", raw[p].into())))
}

/// `$body` with `$idx` the entries (i64 or u32, read in place where contiguous) of a 1-D
/// index view, each checked to be below `$limit`.
macro_rules! with_indices {
    ($op:expr, $view:expr, $limit:expr, |$idx:ident| $body:expr) => {{
        index_vector($op, $view)?;
        match $view.dtype() {
            DType::I64 => {
                let $idx = Src::<i64>::new($op, $view)?.contiguous();
                check($op, &$idx, $limit)?;
                $body
            }
            DType::U32 => {
                let $idx = Src::<u32>::new($op, $view)?.contiguous();
                check($op, &$idx, $limit)?;
                $body
            }
            dtype => Err(Error::DType { op: $op, dtype, expected: Some(DType::I64) }),
        }
    }};
}

/// `out [outer, idx.len(), inner]` = rows `idx` of `s [outer, n, inner]` along the middle dim;
/// `idx` checked ([`check`]), so each entry is a position.
fn select<T: Copy + Send + Sync, I: Copy + Into<i64> + Sync>(s: &[T], n: usize, inner: usize, idx: &[I], out: &mut [T]) {
    par_rows(out, idx.len() * inner, |o, out| {
        let s = &s[o * n * inner..][..n * inner];
        if inner == 1 {
            // One element per index (e.g. a relative position bias from its table): a
            // plain gather, not a copy call per element.
            out.iter_mut().zip(idx).for_each(|(d, &i)| *d = s[i.into() as usize]);
        } else {
            for (dst, &i) in out.chunks_mut(inner).zip(idx) {
                dst.copy_from_slice(&s[i.into() as usize * inner..][..inner]);
            }
        }
    });
}

/// `out [outer, n, inner]` += `s [outer, idx.len(), inner]` at rows `idx` along the middle dim;
/// `idx` checked ([`check`]).
fn add_at<T: Num, I: Copy + Into<i64> + Sync>(out: &mut [T], n: usize, inner: usize, idx: &[I], s: &[T]) {
    let k = idx.len();
    par_rows(out, n * inner, |o, out| {
        for (j, &i) in idx.iter().enumerate() {
            let add = &s[(o * k + j) * inner..][..inner];
            for (a, &b) in out[i.into() as usize * inner..][..inner].iter_mut().zip(add) {
                *a = a.plus(b);
            }
        }
    });
}

impl Index for CpuBackend {
    /// Entries `indices` of `src` along `dim`.
    fn index_select(&self, src: View, dim: usize, indices_view: View) -> Result<StorageBox> {
        const OP: &str = "index_select";
        let (_, n, inner) = around(OP, src.shape(), dim)?;
        let dtype = src.dtype();
        with_indices!(OP, indices_view, n, |idx| any_dispatch!(dtype, T => {
            let s = Src::<T>::new(OP, src)?.contiguous();
            let mut out = pool::reuse(s.len() / n.max(1) * idx.len());
            select(&s, n, inner, &idx, &mut out);
            Ok(boxed(dtype, out))
        }))
    }

    /// A copy of `dst` with the entries of `src` along `dim` added at `indices`.
    fn index_add(&self, dst: View, dim: usize, indices_view: View, src: View) -> Result<StorageBox> {
        const OP: &str = "index_add";
        same_dtype(OP, dst, src)?;
        let (_, n, inner) = around(OP, dst.shape(), dim)?;
        let mut expected = dst.shape().to_vec();
        expected[dim] = indices_view.shape().first().copied().unwrap_or(0);
        let dtype = dst.dtype();
        with_indices!(OP, indices_view, n, |idx| {
            same_shape(OP, &expected, src.shape())?;
            num_dispatch!(OP, dtype, T => {
                let mut out = Src::<T>::new(OP, dst)?.contiguous().into_owned();
                add_at(&mut out, n, inner, &idx, &Src::<T>::new(OP, src)?.contiguous());
                Ok(boxed(dtype, out))
            })
        })
    }

    /// The `k` largest entries of each last-dim row, sorted descending, with their i64 indices.
    fn topk_last(&self, src: View, k: usize) -> Result<(StorageBox, StorageBox)> {
        const OP: &str = "topk_last";
        let (rows, d) = topk_rows(OP, src.shape(), k)?;
        let dtype = src.dtype();
        float_dispatch!(OP, dtype, T => {
            let x = Src::<T>::new(OP, src)?.contiguous();
            let (mut vals, mut idx) = (vec![T::default(); rows * k], vec![0i64; rows * k]);
            if k > 0 {
                vals.par_chunks_mut(k).zip(idx.par_chunks_mut(k)).enumerate().for_each(|(r, (vals, idx))| {
                    let x = &x[r * d..(r + 1) * d];
                    let mut order: Vec<usize> = (0..d).collect();
                    if k < d {
                        order.select_nth_unstable_by(k - 1, |&a, &b| before(x, a, b));
                    }
                    let top = &mut order[..k];
                    top.sort_unstable_by(|&a, &b| before(x, a, b));
                    for ((v, i), &j) in vals.iter_mut().zip(idx.iter_mut()).zip(top.iter()) {
                        (*v, *i) = (x[j], j as i64);
                    }
                });
            }
            Ok((boxed(dtype, vals), boxed(DType::I64, idx)))
        })
    }
}



/// Descending order with NaN first (as the largest) and ties broken by lower index.
fn before<T: Real>(x: &[T], a: usize, b: usize) -> Ordering {
    let (va, vb) = (x[a], x[b]);
    let by_value = match (va.is_nan(), vb.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => vb.partial_cmp(&va).unwrap_or(Ordering::Equal),
    };
    by_value.then(a.cmp(&b))
}


#[cfg(test)]
mod tests {
    use crate::testutil::{assert_close, vals, Tt, B};
    use beit_engine::backend::prelude::*;
    use beit_engine::{DType, Error};

    /// Naive gather of `idx` along `dim` of a [a, b, c] tensor's logical values.
    fn naive_select(v: &[f64], shape: [usize; 3], dim: usize, idx: &[usize]) -> Vec<f64> {
        let mut out_shape = shape;
        out_shape[dim] = idx.len();
        let mut out = vec![];
        for i in 0..out_shape[0] {
            for j in 0..out_shape[1] {
                for k in 0..out_shape[2] {
                    let mut p = [i, j, k];
                    p[dim] = idx[p[dim]];
                    out.push(v[(p[0] * shape[1] + p[1]) * shape[2] + p[2]]);
                }
            }
        }
        out
    }

    #[test]
    fn index_select_and_index_add_along_each_dim() {
        let shape = [4, 5, 3];
        let x = Tt::rand(DType::F64, &shape, 1).scrambled();
        for dim in 0..3 {
            let idx = [2usize, 0, 2];
            for idt in [DType::I64, DType::U32] {
                let iv = Tt::new(idt, &[3], &idx.map(|i| i as f64));
                let got = vals(&B.index_select(x.view(), dim, iv.view()).unwrap());
                assert_eq!(got, naive_select(&x.vals(), shape, dim, &idx));

                let mut src_shape = shape;
                src_shape[dim] = 3;
                let src = Tt::rand(DType::F64, &src_shape, 2).scrambled();
                let got = vals(&B.index_add(x.view(), dim, iv.view(), src.view()).unwrap());
                // Naive: index_add is the adjoint of index_select.
                let mut want = x.vals();
                let positions: Vec<f64> = (0..want.len()).map(|p| p as f64).collect();
                let sel = naive_select(&positions, shape, dim, &idx);
                for (p, s) in sel.iter().zip(src.vals()) {
                    want[*p as usize] += s;
                }
                assert_close(&got, &want, 1e-15);
            }
        }
        let b = Tt::new(DType::Bool, &[3], &[1.0, 0.0, 1.0]);
        let iv = Tt::new(DType::I64, &[2], &[1.0, 2.0]);
        let sel = B.index_select(b.view(), 0, iv.view()).unwrap();
        assert_eq!((sel.dtype(), vals(&sel)), (DType::Bool, vec![0.0, 1.0]));
    }

    #[test]
    fn bad_indices_are_named() {
        let x = Tt::rand(DType::F32, &[4, 2], 1);
        for (dtype, bad) in [(DType::I64, 4.0), (DType::I64, -1.0), (DType::U32, 4.0), (DType::U32, 70000.0)] {
            let iv = Tt::new(dtype, &[2], &[0.0, bad]);
            match B.index_select(x.view(), 0, iv.view()) {
                Err(Error::Invalid { msg, .. }) => assert!(msg.contains(&format!("index {bad}")), "{msg}"),
                other => panic!("expected an error, got {other:?}"),
            }
            let src = Tt::rand(DType::F32, &[2, 2], 1);
            assert!(matches!(B.index_add(x.view(), 0, iv.view(), src.view()), Err(Error::Invalid { .. })));
        }
        // A bad index is named before a source of the wrong shape.
        let (iv, wrong) = (Tt::new(DType::U32, &[1], &[9.0]), Tt::rand(DType::F32, &[3, 2], 1));
        assert!(matches!(B.index_add(x.view(), 0, iv.view(), wrong.view()), Err(Error::Invalid { .. })));
        let iv = Tt::new(DType::I64, &[1], &[0.0]);
        let wrong = Tt::rand(DType::F32, &[2, 2], 1);
        assert!(matches!(B.index_add(x.view(), 0, iv.view(), wrong.view()), Err(Error::ShapeMismatch { .. })));
        assert!(matches!(B.index_select(x.view(), 2, iv.view()), Err(Error::Invalid { .. })));
        let fidx = Tt::new(DType::F32, &[1], &[0.0]);
        assert!(matches!(B.index_select(x.view(), 0, fidx.view()), Err(Error::DType { .. })));
    }

    #[test]
    fn topk_sorted_with_ties_and_nan() {
        let x = Tt::new(DType::F32, &[2, 5], &[1.0, 3.0, 3.0, f64::NAN, 0.0, 2.0, 2.0, 2.0, 5.0, -1.0]);
        let (v, i) = B.topk_last(x.view(), 3).unwrap();
        let v = vals(&v);
        assert!(v[0].is_nan());
        assert_eq!(&v[1..], [3.0, 3.0, 5.0, 2.0, 2.0]);
        assert_eq!((i.dtype(), vals(&i)), (DType::I64, vec![3.0, 1.0, 2.0, 3.0, 0.0, 1.0]));
        // Against a full sort on random rows, strided.
        let x = Tt::rand(DType::F64, &[7, 197], 2).scrambled();
        let (v, i) = B.topk_last(x.view(), 5).unwrap();
        let (v, i) = (vals(&v), vals(&i));
        for (r, row) in x.vals().chunks(197).enumerate() {
            let mut order: Vec<usize> = (0..197).collect();
            order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap().then(a.cmp(&b)));
            for j in 0..5 {
                assert_eq!((v[r * 5 + j], i[r * 5 + j] as usize), (row[order[j]], order[j]));
            }
        }
        assert_eq!(vals(&B.topk_last(x.view(), 0).unwrap().0).len(), 0);
        assert_eq!(vals(&B.topk_last(x.view(), 197).unwrap().1).len(), 7 * 197);
        assert!(matches!(B.topk_last(x.view(), 198), Err(Error::Invalid { .. })));
    }
}
