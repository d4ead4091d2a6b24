//! Sum / max / min / sum of squares over a set of dims (kernels/reduce.cu).

use crate::alloc::{boxed, CudaStorage};
use crate::driver::{args, row_threads, Grid};
use crate::geometry::walk_dims;
use crate::gpu::{suffix, CudaBackend};
use beit_engine::backend::Reduce;
use beit_engine::{DType, Error, Layout, ReduceOp, Result, StorageBox, View};

/// Reductions of at least this many elements per output, over few outputs, go in two passes.
const SPLIT_MIN: usize = 1 << 16;

/// A chunk length that divides `count`, near 4096 (between 1024 and 16384), if there is one.
fn chunk_of(count: usize) -> Option<usize> {
    (1024..=16_384).filter(|l| count.is_multiple_of(*l)).min_by_key(|&l| l.abs_diff(4096))
}

impl CudaBackend {
    /// Reduce over `dims` (sorted, unique); the output keeps them with size 1.
    pub(crate) fn reduce_impl(&self, op: ReduceOp, src: View, dims: &[usize]) -> Result<CudaStorage> {
        const OP: &str = "reduce";
        let shape = src.shape();
        let rank = shape.len();
        beit_engine::checks::reduce_dims(OP, rank, dims)?;
        let dtype = src.dtype();
        if !matches!(dtype, DType::F32 | DType::F64 | DType::I64) {
            return Err(Error::DType { op: OP, dtype, expected: None });
        }
        let s = self.buffer(OP, src)?;
        let kept: Vec<usize> = (0..rank).filter(|d| !dims.contains(d)).collect();
        let outputs: usize = kept.iter().map(|&d| shape[d]).product();
        let count: usize = dims.iter().map(|&d| shape[d]).product();
        let out = self.alloc(dtype, outputs)?;
        if outputs == 0 {
            return Ok(out);
        }
        let (kd, [ko]) = walk_dims(OP, shape, &kept, [src.layout])?;
        let (rd, [ro]) = walk_dims(OP, shape, dims, [src.layout])?;
        let ro = ro.at_zero();
        // Columns kernel when the reduced elements are far apart but neighbouring outputs are
        // neighbours in memory (e.g. a bias gradient: sum over the rows of [N, D]).
        // Few outputs with one long run each (e.g. a sum over everything): one block per
        // output would leave the GPU idle, so reduce chunks of the run first, then the chunks.
        if outputs < 256 && count >= SPLIT_MIN && rd.rank() == 1 {
            if let Some(len) = chunk_of(count) {
                let stride = ro.stride(0);
                let mut shape: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
                let mut strides: Vec<usize> = kept.iter().map(|&d| src.layout.strides()[d]).collect();
                shape.extend([count / len, len]);
                strides.extend([len * stride, stride]);
                let split = Layout::new(shape, strides, src.layout.offset());
                let r = split.rank();
                let partial = self.reduce_impl(op, View { storage: src.storage, layout: &split }, &[r - 1])?;
                let pl = Layout::contiguous(&split.shape()[..r - 1]);
                // The chunks' sums of squares are summed.
                let then = if op == ReduceOp::SumSquares { ReduceOp::Sum } else { op };
                return self.reduce_impl(then, View { storage: &partial, layout: &pl }, &[r - 2]);
            }
        }
        let reduced_far = rd.rank() > 0 && (0..rd.rank()).all(|k| ro.stride(k) != 1);
        let kept_near = kd.rank() > 0 && ko.stride(kd.rank() - 1) == 1;
        let (kind, grid) = if reduced_far && kept_near && outputs >= 32 {
            ("cols", Grid::columns(outputs))
        } else {
            ("rows", Grid::rows(outputs, row_threads(count)))
        };
        let code: i32 = match op {
            ReduceOp::Sum => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
            ReduceOp::SumSquares => 3,
        };
        let name = format!("reduce_{kind}_{}", suffix(dtype));
        let (o64, c64, sp, o) = (outputs as i64, count as i64, s.at(0), out.at(0));
        // SAFETY: the layout was checked against its buffer; `out` holds `outputs` elements.
        unsafe { self.driver.launch("reduce", &name, grid, &args![o64, c64, kd, ko, rd, ro, sp, o, code])? };
        Ok(out)
    }
}

impl Reduce for CudaBackend {
    fn reduce(&self, op: ReduceOp, src: View, dims: &[usize]) -> Result<StorageBox> {
        self.reduce_impl(op, src, dims).map(boxed)
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_of;

    #[test]
    fn chunks_divide_the_run() {
        assert_eq!(chunk_of(3_000_000), Some(4000));
        assert_eq!(chunk_of(1 << 20), Some(4096));
        assert_eq!(chunk_of(65_537), None);
    }
}
