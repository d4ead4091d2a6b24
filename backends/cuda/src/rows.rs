//! Softmax over the last dim and LayerNorm, forward and backward (kernels/rows.cu).

use crate::alloc::boxed;
use crate::driver::{args, row_threads, Grid};
use crate::gpu::{float, rows_of, same_dtype, same_shape, suffix, CudaBackend};
use beit_engine::backend::Rows;
use beit_engine::{checks, DType, Result, StorageBox, View};

impl CudaBackend {


    /// A per-feature `[d]` parameter of x's dtype as a device address (0 when absent).
    fn param(&self, op: &'static str, p: Option<View>, x: View, d: usize) -> Result<Option<crate::gpu::Contig>> {
        p.map(|p| {
            checks::norm_param(op, p, x, d)?;
            self.contiguous(op, p)
        })
        .transpose()
    }

    /// A per-row statistic of x's dtype with `rows` elements.
    fn stat(&self, op: &'static str, s: View, x: View, rows: usize) -> Result<crate::gpu::Contig> {
        checks::norm_stat(op, s, x, rows)?;
        self.contiguous(op, s)
    }

    fn rows_d(op: &'static str, x: View) -> Result<(usize, usize)> {
        let (rows, d) = checks::norm_rows(op, x)?;
        float(op, x.dtype())?;
        Ok((rows, d))
    }


}

impl Rows for CudaBackend {
    /// Softmax over the last dim.
    fn softmax_last(&self, src: View) -> Result<StorageBox> {
        const OP: &str = "softmax_last";
        let (rows, d) = rows_of(OP, src.shape())?;
        float(OP, src.dtype())?;
        let x = self.contiguous(OP, src)?;
        let out = self.alloc(src.dtype(), rows * d)?;
        if rows * d > 0 {
            let (r, d64, o) = (rows as i64, d as i64, out.at(0));
            let name = format!("softmax_{}", suffix(src.dtype()));
            // SAFETY: x and out hold rows·d contiguous elements.
            unsafe { self.driver.launch("rows", &name, Grid::rows(rows, row_threads(d)), &args![r, d64, x.ptr, o])? };
        }
        Ok(boxed(out))
    }

    /// `y ⊙ (dy − Σ dy ⊙ y)` over the last dim.
    fn softmax_last_backward(&self, y: View, dy: View) -> Result<StorageBox> {
        const OP: &str = "softmax_last_backward";
        same_dtype(OP, y, dy)?;
        same_shape(OP, y.shape(), dy.shape())?;
        let (rows, d) = rows_of(OP, y.shape())?;
        float(OP, y.dtype())?;
        let (yc, gc) = (self.contiguous(OP, y)?, self.contiguous(OP, dy)?);
        let out = self.alloc(y.dtype(), rows * d)?;
        if rows * d > 0 {
            let (r, d64, o) = (rows as i64, d as i64, out.at(0));
            let name = format!("softmax_backward_{}", suffix(y.dtype()));
            // SAFETY: every buffer holds rows·d contiguous elements.
            unsafe {
                self.driver.launch("rows", &name, Grid::rows(rows, row_threads(d)), &args![r, d64, yc.ptr, gc.ptr, o])?
            };
        }
        Ok(boxed(out))
    }

    /// LayerNorm: `(y, mean, rstd)`.
    fn layer_norm(&self, x: View, weight: Option<View>, bias: Option<View>, eps: f64) -> Result<(StorageBox, StorageBox, StorageBox)> {
        const OP: &str = "layer_norm";
        let (rows, d) = Self::rows_d(OP, x)?;
        let dtype = x.dtype();
        let (w, b) = (self.param(OP, weight, x, d)?, self.param(OP, bias, x, d)?);
        let xc = self.contiguous(OP, x)?;
        let (y, mean, rstd) = (self.alloc(dtype, rows * d)?, self.alloc(dtype, rows)?, self.alloc(dtype, rows)?);
        if rows > 0 {
            let (wp, bp) = (w.as_ref().map_or(0, |c| c.ptr), b.as_ref().map_or(0, |c| c.ptr));
            let (r, d64, yp, mp, sp) = (rows as i64, d as i64, y.at(0), mean.at(0), rstd.at(0));
            let name = format!("layer_norm_{}", suffix(dtype));
            let g = Grid::rows(rows, row_threads(d));
            // SAFETY: x, y hold rows·d elements, w and b d (or are null), mean and rstd rows.
            unsafe {
                if dtype == DType::F32 {
                    self.driver.launch("rows", &name, g, &args![r, d64, xc.ptr, wp, bp, eps as f32, yp, mp, sp])?
                } else {
                    self.driver.launch("rows", &name, g, &args![r, d64, xc.ptr, wp, bp, eps, yp, mp, sp])?
                }
            }
        }
        Ok((boxed(y), boxed(mean), boxed(rstd)))
    }

    /// Gradient of LayerNorm: `(dx, dweight, dbias)`, the last two when `weight` is given.
    fn layer_norm_backward(&self, x: View, weight: Option<View>, mean: View, rstd: View, dy: View) -> Result<(StorageBox, Option<StorageBox>, Option<StorageBox>)> {
        const OP: &str = "layer_norm_backward";
        same_dtype(OP, x, dy)?;
        same_shape(OP, x.shape(), dy.shape())?;
        let (rows, d) = Self::rows_d(OP, x)?;
        let dtype = x.dtype();
        let w = self.param(OP, weight, x, d)?;
        let (mc, sc) = (self.stat(OP, mean, x, rows)?, self.stat(OP, rstd, x, rows)?);
        let (xc, gc) = (self.contiguous(OP, x)?, self.contiguous(OP, dy)?);
        let dx = self.alloc(dtype, rows * d)?;
        let (r, d64) = (rows as i64, d as i64);
        if rows > 0 {
            let (wp, o) = (w.as_ref().map_or(0, |c| c.ptr), dx.at(0));
            let name = format!("layer_norm_dx_{}", suffix(dtype));
            // SAFETY: x, dy, dx hold rows·d elements, w d (or null), mean and rstd rows.
            unsafe {
                self.driver.launch(
                    "rows",
                    &name,
                    Grid::rows(rows, row_threads(d)),
                    &args![r, d64, xc.ptr, wp, mc.ptr, sc.ptr, gc.ptr, o],
                )?
            };
        }
        if w.is_none() {
            return Ok((boxed(dx), None, None));
        }
        let (dw, db) = (self.alloc(dtype, d)?, self.alloc(dtype, d)?);
        let (dwp, dbp) = (dw.at(0), db.at(0));
        let name = format!("layer_norm_dwdb_{}", suffix(dtype));
        // SAFETY: as above; dw and db hold d elements (zero when there are no rows).
        unsafe {
            self.driver.launch("rows", &name, Grid::columns(d), &args![r, d64, xc.ptr, mc.ptr, sc.ptr, gc.ptr, dwp, dbp])?
        };
        Ok((boxed(dx), Some(boxed(dw)), Some(boxed(db))))
    }
}
