//! The matrix products: batched matmul on our GEMM (f32 where [`crate::gemm`] runs; one
//! product cut between threads packs the operand they share once) or `matrixmultiply`'s
//! single-threaded gemm, parallelised with rayon over batch entries when there are enough,
//! else over blocks of rows or columns ([`crate::blocks`]); Linear layers with fused
//! epilogues (`linear.rs`) and their pre-packed weights (`packed.rs`).

use crate::blocks::{for_blocks, OutPtr};
use crate::pool;
use crate::scalar::Real;
use crate::storage::{boxed, float_dispatch, Src};
use crate::{linear, packed, CpuBackend};
use beit_engine::backend::Matmul;
use beit_engine::{BackendStorage, Epilogue, Layout, Result, StorageBox, View};
use std::ops::Range;

/// Operand blocks of at most this many elements are re-laid out before the gemm call.
const RELAYOUT_MAX: usize = 1 << 16;
/// Row/column blocks are multiples of this for `matrixmultiply` (its widest tile).
const TILE: usize = 16;

impl Matmul for CpuBackend {
    fn linear(&self, x: View, w: View, epilogue: &Epilogue) -> Result<StorageBox> {
        linear::linear(x, w, epilogue)
    }

    fn pack_weight(&self, w: &mut dyn BackendStorage, n: usize, k: usize) -> Result<Option<StorageBox>> {
        packed::pack(w, n, k)
    }

    /// Batched matmul `[..., m, k] × [..., k, n] → [..., m, n]`.
    fn matmul(&self, lhs: View, rhs: View) -> Result<StorageBox> {
        const OP: &str = "matmul";
        beit_engine::checks::matmul_shapes(OP, lhs, rhs)?;
        let dtype = lhs.dtype();
        float_dispatch!(OP, dtype, T => {
            let (a, b) = (Src::<T>::new(OP, lhs)?, Src::<T>::new(OP, rhs)?);
            Ok(boxed(dtype, Gemm::new(a, b).run()))
        })
    }
}


/// One strided matrix operand: the buffer, the offset of each batch entry, row and column strides.
struct Operand<'a, T> {
    data: &'a [T],
    batch_offsets: Vec<usize>,
    rs: usize,
    cs: usize,
}

impl<'a, T: Real> Operand<'a, T> {
    fn new(src: Src<'a, T>) -> Self {
        let (shape, strides) = (src.shape(), src.layout.strides());
        let r = shape.len();
        let batch = Layout::new(shape[..r - 2].to_vec(), strides[..r - 2].to_vec(), src.layout.offset());
        Operand { data: src.data, batch_offsets: batch.offsets().collect(), rs: strides[r - 2], cs: strides[r - 1] }
    }

    /// The block `rows × cols` of batch entry `i`, copied column-major or else row-major.
    fn copy(&self, i: usize, rows: Range<usize>, cols: Range<usize>, col_major: bool) -> Vec<T> {
        let base = self.batch_offsets[i];
        let (r0, c0, nr) = (rows.start, cols.start, rows.len());
        let mut out = vec![T::zero(); nr * cols.len()];
        for r in rows {
            for c in cols.clone() {
                let dst = if col_major { (c - c0) * nr + r - r0 } else { (r - r0) * cols.len() + c - c0 };
                out[dst] = self.data[base + r * self.rs + c * self.cs];
            }
        }
        out
    }

    /// Pointer and strides of the block at (`row`, `col`) of batch entry `i`.
    fn at(&self, i: usize, row: usize, col: usize) -> (*const T, isize, isize) {
        let off = self.batch_offsets[i] + row * self.rs + col * self.cs;
        // `wrapping_add`: a block of zero rows may start one past the end.
        (self.data.as_ptr().wrapping_add(off), self.rs as isize, self.cs as isize)
    }
}

struct Gemm<'a, T> {
    a: Operand<'a, T>,
    b: Operand<'a, T>,
    m: usize,
    k: usize,
    n: usize,
}

impl<'a, T: Real> Gemm<'a, T> {
    fn new(a: Src<'a, T>, b: Src<'a, T>) -> Self {
        let r = a.shape().len();
        let (m, k, n) = (a.shape()[r - 2], a.shape()[r - 1], b.shape()[r - 1]);
        Gemm { a: Operand::new(a), b: Operand::new(b), m, k, n }
    }

    /// C[i][rows, cols] = A[i][rows, :] · B[i][:, cols], C row-major `[m, n]` at `c`.
    ///
    /// # Safety
    /// `c` must point to batch entry `i`'s output, which no other thread writes in this block.
    unsafe fn block(&self, i: usize, rows: Range<usize>, cols: Range<usize>, c: OutPtr<T>) {
        let c = c.add(rows.start * self.n + cols.start).0;
        let (mr, nc, k) = (rows.len(), cols.len(), self.k);
        if T::gemm_tiles().is_some() {
            let (a, b) = (self.a.at(i, rows.start, 0), self.b.at(i, 0, cols.start));
            return T::gemm(mr, k, nc, a, b, (c, self.n as isize, 1));
        }
        // Small blocks go through copies in the layouts that matrixmultiply packs with plain
        // memcpy (A column-major, B row-major); the strided packing dominates there.
        let a_copy = (self.a.rs != 1 && mr * k <= RELAYOUT_MAX).then(|| self.a.copy(i, rows.clone(), 0..k, true));
        let b_copy = (self.b.cs != 1 && k * nc <= RELAYOUT_MAX).then(|| self.b.copy(i, 0..k, cols.clone(), false));
        let a = match &a_copy {
            Some(v) => (v.as_ptr(), 1, mr as isize),
            None => self.a.at(i, rows.start, 0),
        };
        let b = match &b_copy {
            Some(v) => (v.as_ptr(), nc as isize, 1),
            None => self.b.at(i, 0, cols.start),
        };
        T::gemm(mr, k, nc, a, b, (c, self.n as isize, 1));
    }

    fn run(self) -> Vec<T> {
        let (m, n, batch) = (self.m, self.n, self.a.batch_offsets.len());
        let len = batch * m * n;
        if len == 0 || self.k == 0 {
            return pool::filled(len, T::zero());
        }
        let mut out = pool::reuse(len);
        // SAFETY: the operands were bounds-checked by `Src::new`; C is entry 0's output.
        if batch == 1 && unsafe { T::gemm_threads(m, self.k, n, self.a.at(0, 0, 0), self.b.at(0, 0, 0), out.as_mut_ptr()) } {
            return out;
        }
        let base = OutPtr(out.as_mut_ptr());
        let tiles = T::gemm_tiles().unwrap_or((TILE, TILE));
        for_blocks(batch, m, self.k, n, tiles, |i, rows, cols| {
            // SAFETY: the operands were bounds-checked by `Src::new`; the blocks are
            // disjoint and inside entry i's output.
            unsafe { self.block(i, rows, cols, base.add(i * m * n)) }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{assert_close, vals, Tt, B};
    use beit_engine::backend::prelude::*;
    use beit_engine::{DType, Error};

    /// Naive batched matmul of logical values.
    fn naive(a: &Tt, b: &Tt) -> Vec<f64> {
        let (sa, sb) = (a.l.shape(), b.l.shape());
        let r = sa.len();
        let (m, k, n) = (sa[r - 2], sa[r - 1], sb[r - 1]);
        let batch: usize = sa[..r - 2].iter().product();
        let (av, bv) = (a.vals(), b.vals());
        let mut out = vec![0.0; batch * m * n];
        for t in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    out[(t * m + i) * n + j] = (0..k).map(|p| av[(t * m + i) * k + p] * bv[(t * k + p) * n + j]).sum();
                }
            }
        }
        out
    }

    #[test]
    fn strided_and_batched_products() {
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            // (m, k, n): tiny, odd, large enough to split across threads by rows and by columns,
            // and with operand blocks too large to re-lay out (A, then B).
            for (m, k, n) in [(1, 1, 1), (7, 5, 3), (197, 64, 33), (300, 70, 41), (20, 70, 300), (600, 230, 40), (40, 230, 600)] {
                let a = Tt::rand(dtype, &[m, k], 1);
                let w = Tt::rand(dtype, &[n, k], 2).permute(&[1, 0]);
                // Rounding error grows with the length of the dot products.
                let tol = tol * (k as f64 / 64.0).max(1.0);
                assert_close(&vals(&B.matmul(a.view(), w.view()).unwrap()), &naive(&a, &w), tol);
                let (sa, sw) = (a.scrambled(), w.scrambled());
                assert_close(&vals(&B.matmul(sa.view(), sw.view()).unwrap()), &naive(&a, &w), tol);
            }
            // Batched, with a broadcast (stride-0) batch dim on the right; 3 entries split unevenly.
            for batch in [2, 3, 12] {
                let a = Tt::rand(dtype, &[batch, 37, 16], 3).scrambled();
                let b = Tt::rand(dtype, &[1, 16, 19], 4).broadcast(&[batch, 16, 19]);
                assert_close(&vals(&B.matmul(a.view(), b.view()).unwrap()), &naive(&a, &b), tol);
                let big = Tt::rand(dtype, &[batch, 130, 64], 5);
                let bt = Tt::rand(dtype, &[batch, 130, 64], 6).permute(&[0, 2, 1]);
                assert_close(&vals(&B.matmul(big.view(), bt.view()).unwrap()), &naive(&big, &bt), tol);
            }
        }
    }

    #[test]
    fn empty_dims_and_mismatches() {
        let (a, b) = (Tt::rand(DType::F32, &[3, 0], 1), Tt::rand(DType::F32, &[0, 4], 2));
        assert_eq!(vals(&B.matmul(a.view(), b.view()).unwrap()), [0.0; 12]);
        let (a, b) = (Tt::rand(DType::F32, &[3, 4], 1), Tt::rand(DType::F32, &[5, 2], 2));
        assert!(matches!(B.matmul(a.view(), b.view()), Err(Error::ShapeMismatch { .. })));
        let (a, b) = (Tt::rand(DType::F32, &[2, 3, 4], 1), Tt::rand(DType::F32, &[3, 4, 2], 2));
        assert!(matches!(B.matmul(a.view(), b.view()), Err(Error::ShapeMismatch { .. })));
        let (a, b) = (Tt::rand(DType::F32, &[3, 4], 1), Tt::rand(DType::F64, &[4, 2], 2));
        assert!(matches!(B.matmul(a.view(), b.view()), Err(Error::DTypeMismatch { .. })));
        let (a, b) = (Tt::rand(DType::I64, &[3, 4], 1), Tt::rand(DType::I64, &[4, 2], 2));
        assert!(matches!(B.matmul(a.view(), b.view()), Err(Error::DType { .. })));
    }
}
