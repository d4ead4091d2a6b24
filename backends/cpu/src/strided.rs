//! Walking strided views: dims that are contiguous in every view are merged, then the
//! elements are visited as runs along the innermost merged dim, split across threads.

use crate::fastmath::simd;
use crate::pool;
use crate::scalar::Scalar;
use crate::storage::Src;
use beit_engine::Layout;
use rayon::prelude::*;

/// Below this many elements a kernel runs on the calling thread; above, in tasks of this size.
pub(crate) const PAR_CHUNK: usize = 32 * 1024;

/// A joint row-major walk over `N` views of one shape.
pub(crate) struct Walk<const N: usize> {
    /// Merged dims (at least one).
    dims: Vec<usize>,
    /// Per merged dim, the stride of each view.
    strides: Vec<[usize; N]>,
    /// The offset of each view's first element.
    base: [usize; N],
}

impl<const N: usize> Walk<N> {
    /// A walk over `shape` through `layouts` (each of that shape).
    pub fn new(shape: &[usize], layouts: [&Layout; N]) -> Self {
        let (mut dims, mut strides) = (Vec::<usize>::new(), Vec::<[usize; N]>::new());
        for (d, &size) in shape.iter().enumerate() {
            if size == 1 {
                continue;
            }
            let s: [usize; N] = std::array::from_fn(|i| layouts[i].strides()[d]);
            match (dims.last_mut(), strides.last_mut()) {
                (Some(ld), Some(ls)) if (0..N).all(|i| ls[i] == s[i] * size) => {
                    *ld *= size;
                    *ls = s;
                }
                _ => {
                    dims.push(size);
                    strides.push(s);
                }
            }
        }
        if dims.is_empty() || shape.contains(&0) {
            dims = vec![shape.iter().product()];
            strides = vec![[0; N]];
        }
        Walk { dims, strides, base: std::array::from_fn(|i| layouts[i].offset()) }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// Strides of the innermost merged dim, one per view.
    pub fn inner_strides(&self) -> [usize; N] {
        self.strides[self.dims.len() - 1]
    }

    /// Visit elements `lo..hi` (row-major positions) as runs: `f(position, offsets, len)`
    /// where `offsets` are those of the run's first element in each view.
    pub fn runs(&self, lo: usize, hi: usize, mut f: impl FnMut(usize, [usize; N], usize)) {
        if lo >= hi {
            return;
        }
        let r = self.dims.len();
        let inner = self.dims[r - 1];
        let inner_s = self.strides[r - 1];
        let mut idx = vec![0; r];
        let mut offs = self.base;
        let mut rem = lo;
        for d in (0..r).rev() {
            idx[d] = rem % self.dims[d];
            rem /= self.dims[d];
            for (o, s) in offs.iter_mut().zip(self.strides[d]) {
                *o += idx[d] * s;
            }
        }
        let mut pos = lo;
        while pos < hi {
            let n = (inner - idx[r - 1]).min(hi - pos);
            f(pos, offs, n);
            pos += n;
            idx[r - 1] += n;
            for (o, s) in offs.iter_mut().zip(inner_s) {
                *o += n * s;
            }
            // Carry into the outer dims at the end of a run.
            let mut d = r - 1;
            while idx[d] == self.dims[d] && d > 0 {
                for (o, s) in offs.iter_mut().zip(self.strides[d]) {
                    *o -= idx[d] * s;
                }
                idx[d] = 0;
                d -= 1;
                idx[d] += 1;
                for (o, s) in offs.iter_mut().zip(self.strides[d]) {
                    *o += s;
                }
            }
        }
    }

    /// A fresh row-major vector of the walk's length, filled run by run:
    /// `f(out_run, offsets)`, in parallel for large walks.
    pub fn fill<O: Scalar>(&self, f: impl Fn(&mut [O], [usize; N]) + Sync) -> Vec<O> {
        let n = self.len();
        let mut out = pool::reuse(n);
        if n <= PAR_CHUNK {
            self.runs(0, n, |pos, offs, len| f(&mut out[pos..pos + len], offs));
        } else {
            out.par_chunks_mut(PAR_CHUNK).enumerate().for_each(|(c, part)| {
                let lo = c * PAR_CHUNK;
                self.runs(lo, lo + part.len(), |pos, offs, len| f(&mut part[pos - lo..pos - lo + len], offs));
            });
        }
        out
    }
}

/// `f` applied to every element of a view, in row-major order.
pub(crate) fn map1<A: Copy + Sync, O: Scalar>(a: Src<A>, f: impl Fn(A) -> O + Sync) -> Vec<O> {
    let run = |xs: &[A], out: &mut [O]| {
        simd(
            #[inline(always)]
            || {
                for (o, &x) in out.iter_mut().zip(xs) {
                    *o = f(x);
                }
            },
        )
    };
    map1_runs(a, run, &f)
}

/// [`map1`] with `run(xs, out)` on each run of unit stride (`out` as long as `xs`), `f` on
/// each element of the others.
pub(crate) fn map1_runs<A: Copy + Sync, O: Scalar>(a: Src<A>, run: impl Fn(&[A], &mut [O]) + Sync, f: impl Fn(A) -> O + Sync) -> Vec<O> {
    let walk = Walk::new(a.layout.shape(), [a.layout]);
    let [sa] = walk.inner_strides();
    walk.fill(|out, [oa]| {
        let n = out.len();
        if sa == 1 {
            run(&a.data[oa..oa + n], out);
        } else {
            for (k, o) in out.iter_mut().enumerate() {
                *o = f(a.data[oa + k * sa]);
            }
        }
    })
}

/// `f` applied elementwise to two views of one shape.
pub(crate) fn map2<A: Copy + Sync, B: Copy + Sync, O: Scalar>(
    a: Src<A>,
    b: Src<B>,
    f: impl Fn(A, B) -> O + Sync,
) -> Vec<O> {
    let run = |xs: &[A], ys: &[B], out: &mut [O]| {
        simd(
            #[inline(always)]
            || {
                for ((o, &x), &y) in out.iter_mut().zip(xs).zip(ys) {
                    *o = f(x, y);
                }
            },
        )
    };
    map2_runs(a, b, run, &f)
}

/// [`map2`] with `run(xs, ys, out)` on each run where both views have unit stride (all three
/// of one length), `f` on each element of the others.
pub(crate) fn map2_runs<A: Copy + Sync, B: Copy + Sync, O: Scalar>(
    a: Src<A>,
    b: Src<B>,
    run: impl Fn(&[A], &[B], &mut [O]) + Sync,
    f: impl Fn(A, B) -> O + Sync,
) -> Vec<O> {
    let walk = Walk::new(a.layout.shape(), [a.layout, b.layout]);
    let [sa, sb] = walk.inner_strides();
    walk.fill(|out, [oa, ob]| {
        let n = out.len();
        match (sa, sb) {
            (1, 1) => run(&a.data[oa..oa + n], &b.data[ob..ob + n], out),
            (1, 0) => simd(
                #[inline(always)]
                || {
                    let y = b.data[ob];
                    for (o, &x) in out.iter_mut().zip(&a.data[oa..oa + n]) {
                        *o = f(x, y);
                    }
                },
            ),
            (0, 1) => simd(
                #[inline(always)]
                || {
                    let x = a.data[oa];
                    for (o, &y) in out.iter_mut().zip(&b.data[ob..ob + n]) {
                        *o = f(x, y);
                    }
                },
            ),
            _ => {
                for (k, o) in out.iter_mut().enumerate() {
                    *o = f(a.data[oa + k * sa], b.data[ob + k * sb]);
                }
            }
        }
    })
}

/// `f` applied elementwise to three views of one shape.
pub(crate) fn map3<A: Copy + Sync, B: Copy + Sync, C: Copy + Sync, O: Scalar>(
    a: Src<A>,
    b: Src<B>,
    c: Src<C>,
    f: impl Fn(A, B, C) -> O + Sync,
) -> Vec<O> {
    let walk = Walk::new(a.layout.shape(), [a.layout, b.layout, c.layout]);
    let [sa, sb, sc] = walk.inner_strides();
    walk.fill(|out, [oa, ob, oc]| {
        for (k, o) in out.iter_mut().enumerate() {
            *o = f(a.data[oa + k * sa], b.data[ob + k * sb], c.data[oc + k * sc]);
        }
    })
}

/// Copy a view into `dst` at `dst_layout` (same shape).
pub(crate) fn copy_into<T: Copy>(src: Src<T>, dst: &mut [T], dst_layout: &Layout) {
    let walk = Walk::new(src.layout.shape(), [dst_layout, src.layout]);
    let [sd, ss] = walk.inner_strides();
    walk.runs(0, walk.len(), |_, [od, os], n| {
        if sd == 1 && ss == 1 {
            dst[od..od + n].copy_from_slice(&src.data[os..os + n]);
        } else {
            for k in 0..n {
                dst[od + k * sd] = src.data[os + k * ss];
            }
        }
    });
}

/// Rows per parallel task for rows of `d` elements: about [`PAR_CHUNK`] elements a task.
pub(crate) fn rows_per_task(d: usize) -> usize {
    (PAR_CHUNK / d.max(1)).max(1)
}

/// `f(row_index, row)` for each row of `d` elements of `out`, in parallel when large,
/// compiled for the widest SIMD available.
pub(crate) fn par_rows<T: Send>(out: &mut [T], d: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if d == 0 || out.is_empty() {
        return;
    }
    let f = |(r, row)| {
        simd(
            #[inline(always)]
            || f(r, row),
        )
    };
    if out.len() <= PAR_CHUNK {
        out.chunks_mut(d).enumerate().for_each(f);
    } else {
        out.par_chunks_mut(d).enumerate().with_min_len(rows_per_task(d)).for_each(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Tt;
    use beit_engine::DType;

    /// map1 (the gather) must visit elements exactly as the engine's offsets iterator does.
    #[test]
    fn walks_match_the_offsets_iterator() {
        let cases: Vec<Tt> = vec![
            Tt::rand(DType::F64, &[7], 1),
            Tt::rand(DType::F64, &[], 2),
            Tt::rand(DType::F64, &[0, 3], 3),
            Tt::rand(DType::F64, &[3, 1, 5], 4).scrambled(),
            Tt::rand(DType::F64, &[197, 3, 67], 5).scrambled(),
            Tt::rand(DType::F64, &[1, 5], 6).broadcast(&[4, 3, 5]),
            Tt::rand(DType::F64, &[301, 1], 7).broadcast(&[301, 211]).permute(&[1, 0]),
            Tt::rand(DType::F64, &[2, 200, 197], 8).permute(&[1, 0, 2]),
        ];
        for t in cases {
            let s = Src::<f64>::new("t", t.view()).unwrap();
            assert_eq!(map1(s, |x| x), t.vals(), "layout {:?}", t.l);
            assert_eq!(s.contiguous().to_vec(), t.vals());
        }
    }

    #[test]
    fn copy_into_a_transposed_destination() {
        let src = Tt::rand(DType::F32, &[5, 7], 9);
        let mut dst = vec![0f32; 40];
        let dl = Layout::new(vec![5, 7], vec![1, 5], 4);
        copy_into(Src::<f32>::new("t", src.view()).unwrap(), &mut dst, &dl);
        let got: Vec<f64> = dl.offsets().map(|o| dst[o] as f64).collect();
        assert_eq!(got, src.vals());
        assert!(dst[..4].iter().all(|&x| x == 0.0));
    }
}
