//! Batched matmul: cuBLAS strided batched GEMM with transposes read from the strides, or
//! the built-in tiled kernel (kernels/matmul.cu) when cuBLAS is absent.

use crate::alloc::{boxed, CudaStorage};
use crate::blas::{blas_operand, BlasOperand, GemmCall};
use crate::driver::{args, Grid};
use crate::geometry::{walk, walk_dims, Offs};
use crate::gpu::{float, suffix, CudaBackend};
use beit_engine::backend::Matmul;
use beit_engine::{DType, Error, Layout, Result, StorageBox, View};

/// One operand of the built-in kernel (`Mat` in matmul.cu).
#[repr(C)]
#[derive(Clone, Copy)]
struct Mat {
    bo: Offs,
    rs: i64,
    cs: i64,
}

/// An operand as cuBLAS reads it: address of batch 0, how to read a matrix, batch stride;
/// and the copy that holds it when the view had to be gathered.
struct Planned {
    ptr: u64,
    op: BlasOperand,
    batch_stride: i64,
    _copy: Option<CudaStorage>,
}

impl CudaBackend {

    /// How cuBLAS reads the `[rows, cols]` matrices of `v`, gathering a copy when its strides
    /// do not allow a direct read.
    fn plan(&self, v: View, rows: usize, cols: usize) -> Result<Planned> {
        let s = self.buffer("matmul", v)?;
        let (shape, strides) = (v.shape(), v.layout.strides());
        let r = shape.len();
        let bl = Layout::new(shape[..r - 2].to_vec(), strides[..r - 2].to_vec(), v.layout.offset());
        let (bd, [bo]) = walk("matmul", bl.shape(), [&bl])?;
        let op = blas_operand(rows, cols, strides[r - 2], strides[r - 1]);
        let stride = if bd.rank() == 0 { Some(0) } else { (bd.rank() == 1).then(|| bo.stride(0)) };
        if let (Some(op), Some(stride)) = (op, stride) {
            if let Ok(batch_stride) = i64::try_from(stride) {
                return Ok(Planned { ptr: s.at(v.layout.offset()), op, batch_stride, _copy: None });
            }
        }
        let copy = self.gather("matmul", v)?;
        let op = blas_operand(rows, cols, cols, 1).ok_or_else(|| Error::invalid("matmul", "matrix too large for cuBLAS"))?;
        Ok(Planned { ptr: copy.at(0), op, batch_stride: (rows * cols) as i64, _copy: Some(copy) })
    }

    /// Row-major `C = A·B` as column-major `Cᵀ = Bᵀ·Aᵀ`: cuBLAS's first operand is our rhs.
    fn blas_matmul(&self, lhs: View, rhs: View, (batch, m, k, n): (usize, usize, usize, usize), out: &CudaStorage) -> Result<()> {
        let (a, b) = (self.plan(lhs, m, k)?, self.plan(rhs, k, n)?);
        let call = GemmCall {
            m: n as i32,
            n: m as i32,
            k: k as i32,
            a: (b.ptr, b.op, b.batch_stride),
            b: (a.ptr, a.op, a.batch_stride),
            c: (out.at(0), n as i32, (m * n) as i64),
            batch: batch as i32,
        };
        self.driver.enter()?;
        // SAFETY: the plans describe live buffers checked against their layouts; out holds batch·m·n.
        unsafe { self.gemm.run(lhs.dtype() == DType::F64, &call) }
            .map_err(|msg| Error::Backend { backend: self.driver.name().to_string(), msg })
    }

    /// The built-in tiled kernel: any strides, batch dims walked in the kernel.
    fn kernel_matmul(&self, lhs: View, rhs: View, (batch, m, k, n): (usize, usize, usize, usize), out: &CudaStorage) -> Result<()> {
        let (a, b) = (self.buffer("matmul", lhs)?, self.buffer("matmul", rhs)?);
        let r = lhs.shape().len();
        let batch_dims: Vec<usize> = (0..r - 2).collect();
        let (bd, [ba, bb]) = walk_dims("matmul", lhs.shape(), &batch_dims, [lhs.layout, rhs.layout])?;
        let (ls, rs) = (lhs.layout.strides(), rhs.layout.strides());
        let ma = Mat { bo: ba, rs: ls[r - 2] as i64, cs: ls[r - 1] as i64 };
        let mb = Mat { bo: bb, rs: rs[r - 2] as i64, cs: rs[r - 1] as i64 };
        let grid = Grid { grid: (n.div_ceil(64) as u32, m.div_ceil(64).min(65_535) as u32, batch.min(65_535) as u32), block: (256, 1, 1) };
        if m.div_ceil(64) > 65_535 {
            return Err(Error::invalid("matmul", format!("{m} rows exceed the built-in GEMM kernel's grid")));
        }
        let (b64, m64, n64, k64, ap, bp, cp) = (batch as i64, m as i64, n as i64, k as i64, a.at(0), b.at(0), out.at(0));
        let name = format!("gemm_{}", suffix(lhs.dtype()));
        // SAFETY: both layouts were checked against their buffers; out holds batch·m·n.
        unsafe { self.driver.launch("matmul", &name, grid, &args![b64, bd, m64, n64, k64, ma, ap, mb, bp, cp]) }
    }
}

impl Matmul for CudaBackend {
    /// `[..., m, k] · [..., k, n]` with equal batch dims.
    fn matmul(&self, lhs: View, rhs: View) -> Result<StorageBox> {
        const OP: &str = "matmul";
        let (m, k, n) = beit_engine::checks::matmul_shapes(OP, lhs, rhs)?;
        float(OP, lhs.dtype())?;
        self.buffer(OP, lhs)?;
        self.buffer(OP, rhs)?;
        let batch: usize = lhs.shape()[..lhs.shape().len() - 2].iter().product();
        let dtype = lhs.dtype();
        if batch * m * n == 0 {
            return self.alloc(dtype, 0).map(boxed);
        }
        if k == 0 {
            return self.full_impl(dtype, batch * m * n, 0.0).map(boxed);
        }
        let out = self.alloc(dtype, batch * m * n)?;
        if self.gemm.has_blas() && [m, n, k, batch].iter().all(|&v| i32::try_from(v).is_ok()) {
            self.blas_matmul(lhs, rhs, (batch, m, k, n), &out)?;
        } else {
            self.kernel_matmul(lhs, rhs, (batch, m, k, n), &out)?;
        }
        Ok(boxed(out))
    }
}
