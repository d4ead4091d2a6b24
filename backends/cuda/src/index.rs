//! Gather and scatter-add along a dim by an index vector, and top-k over the last dim
//! (kernels/index.cu).

use crate::alloc::boxed;
use crate::driver::{args, row_threads, Grid};
use crate::gpu::{bits, float, same_dtype, same_shape, suffix, Contig, CudaBackend};
use beit_engine::backend::Index;
use beit_engine::{checks, DType, Error, Result, StorageBox, View};

impl CudaBackend {
    /// A 1-D i64/u32 index view, contiguous, with every entry checked to be below `limit`.
    fn indices(&self, op: &'static str, v: View, limit: usize) -> Result<Contig> {
        let n = checks::index_vector(op, v)?;
        let idx = self.contiguous(op, v)?;
        if n > 0 {
            let bad = self.full_impl(DType::I64, 1, n as f64)?;
            let (n64, lim, bp) = (n as i64, limit as i64, bad.at(0));
            let name = format!("first_bad_index_{}", suffix(v.dtype()));
            // SAFETY: idx holds n indices of its dtype, bad one i64.
            unsafe { self.driver.launch("index", &name, Grid::elements(n), &args![n64, idx.ptr, lim, bp])? };
            let p = self.read_int(bp, 8)?;
            if p < n as i64 {
                let size = v.dtype().size_in_bytes();
                let i = self.read_int(idx.ptr + (size as u64) * p as u64, size)?;
                return Err(Error::invalid(op, format!("index {i} at position {p} is out of range for a dim of size {limit}")));
            }
        }
        Ok(idx)
    }



}

impl Index for CudaBackend {
    /// Entries `indices` of `src` along `dim`.
    fn index_select(&self, src: View, dim: usize, indices: View) -> Result<StorageBox> {
        const OP: &str = "index_select";
        let (outer, n, inner) = checks::around(OP, src.shape(), dim)?;
        let idx = self.indices(OP, indices, n)?;
        let k = indices.shape()[0];
        let s = self.contiguous(OP, src)?;
        let total = outer * k * inner;
        let out = self.alloc(src.dtype(), total)?;
        if total > 0 {
            let name = format!("index_select_{}_{}", bits(src.dtype()), suffix(indices.dtype()));
            let (t, n64, k64, i64_, o) = (total as i64, n as i64, k as i64, inner as i64, out.at(0));
            // SAFETY: src holds outer·n·inner elements, idx k checked indices, out `total`.
            unsafe { self.driver.launch("index", &name, Grid::elements(total), &args![t, n64, k64, i64_, s.ptr, idx.ptr, o])? };
        }
        Ok(boxed(out))
    }

    /// A copy of `dst` with `src` added at `indices` along `dim` (repeats accumulate).
    fn index_add(&self, dst: View, dim: usize, indices: View, src: View) -> Result<StorageBox> {
        const OP: &str = "index_add";
        same_dtype(OP, dst, src)?;
        let (outer, n, inner) = checks::around(OP, dst.shape(), dim)?;
        let idx = self.indices(OP, indices, n)?;
        let k = indices.shape()[0];
        let mut expected = dst.shape().to_vec();
        expected[dim] = k;
        same_shape(OP, &expected, src.shape())?;
        let dtype = dst.dtype();
        if !matches!(dtype, DType::F32 | DType::F64 | DType::I64) {
            return Err(Error::DType { op: OP, dtype, expected: None });
        }
        let out = self.gather(OP, dst)?;
        let s = self.contiguous(OP, src)?;
        let total = outer * k * inner;
        if total > 0 {
            let name = format!("index_add_{}_{}", suffix(dtype), suffix(indices.dtype()));
            let (t, n64, k64, i64_, o) = (total as i64, n as i64, k as i64, inner as i64, out.at(0));
            // SAFETY: src holds `total` elements, idx k checked indices, out outer·n·inner.
            unsafe { self.driver.launch("index", &name, Grid::elements(total), &args![t, n64, k64, i64_, s.ptr, idx.ptr, o])? };
        }
        Ok(boxed(out))
    }

    /// The `k` largest entries of each last-dim row, sorted descending, with i64 indices.
    fn topk_last(&self, src: View, k: usize) -> Result<(StorageBox, StorageBox)> {
        const OP: &str = "topk_last";
        let (rows, d) = checks::topk_rows(OP, src.shape(), k)?;
        float(OP, src.dtype())?;
        let x = self.contiguous(OP, src)?;
        let (vals, idx) = (self.alloc(src.dtype(), rows * k)?, self.alloc(DType::I64, rows * k)?);
        if rows * k > 0 {
            let (r, d64, k64, vp, ip) = (rows as i64, d as i64, k as i64, vals.at(0), idx.at(0));
            let name = format!("topk_{}", suffix(src.dtype()));
            // SAFETY: x holds rows·d elements, vals and idx rows·k.
            unsafe { self.driver.launch("index", &name, Grid::rows(rows, row_threads(d)), &args![r, d64, k64, x.ptr, vp, ip])? };
        }
        Ok((boxed(vals), boxed(idx)))
    }
}
