//! Cross-entropy with label smoothing and an ignored target, and its gradient
//! (kernels/loss.cu).

use crate::alloc::{boxed, CudaStorage};
use crate::driver::{args, row_threads, Grid, BLOCK};
use crate::gpu::{float, suffix, Contig, CudaBackend};
use beit_engine::backend::Loss;
use beit_engine::{checks, DType, Error, Result, StorageBox, View};

/// Checked inputs: contiguous logits `[rows, c]` and targets.
struct Batch {
    rows: usize,
    c: usize,
    logits: Contig,
    targets: Contig,
}

impl CudaBackend {
    fn ce_batch(&self, op: &'static str, logits: View, targets: View, eps: f64, ignore: i64) -> Result<Batch> {
        float(op, logits.dtype())?;
        let (rows, c) = checks::cross_entropy_shapes(op, logits, targets, eps)?;
        let t = self.contiguous(op, targets)?;
        if rows > 0 {
            let bad = self.full_impl(DType::I64, 1, rows as f64)?;
            let (r, c64, bp) = (rows as i64, c as i64, bad.at(0));
            // SAFETY: t holds `rows` i64, bad one.
            unsafe { self.driver.launch("loss", "first_bad_target", Grid::elements(rows), &args![r, c64, t.ptr, ignore, bp])? };
            let row = self.read_int(bp, 8)?;
            if row < rows as i64 {
                let tv = self.read_int(t.ptr + 8 * row as u64, 8)?;
                return Err(Error::invalid(op, format!("target {tv} of row {row} is outside 0..{c}")));
            }
        }
        Ok(Batch { rows, c, logits: self.contiguous(op, logits)?, targets: t })
    }

    /// `stats = [Σ loss, rows with a target]` (loss 0 = absent), and `*out = Σ/count` when given.
    fn ce_total(&self, b: &Batch, dtype: DType, loss: u64, ignore: i64, out: u64) -> Result<CudaStorage> {
        let stats = self.alloc(DType::F64, 2)?;
        let (r, sp) = (b.rows as i64, stats.at(0));
        let name = format!("ce_total_{}", suffix(dtype));
        let g = Grid { grid: (1, 1, 1), block: (BLOCK, 1, 1) };
        // SAFETY: targets hold `rows` i64, loss `rows` f64 (or null), stats 2, out 1 (or null).
        unsafe { self.driver.launch("loss", &name, g, &args![r, loss, b.targets.ptr, ignore, sp, out])? };
        Ok(stats)
    }


}

impl Loss for CudaBackend {
    /// Mean smoothed cross-entropy over the rows whose target is not `ignore_index`.
    fn cross_entropy(&self, logits: View, targets: View, eps: f64, ignore: i64) -> Result<StorageBox> {
        const OP: &str = "cross_entropy";
        let b = self.ce_batch(OP, logits, targets, eps, ignore)?;
        let dtype = logits.dtype();
        let out = self.alloc(dtype, 1)?;
        let per_row = self.alloc(DType::F64, b.rows)?;
        if b.rows > 0 {
            let (r, c, lp) = (b.rows as i64, b.c as i64, per_row.at(0));
            let name = format!("ce_row_loss_{}", suffix(dtype));
            // SAFETY: logits hold rows·c elements, targets and per_row `rows`.
            unsafe {
                self.driver.launch(
                    "loss",
                    &name,
                    Grid::rows(b.rows, row_threads(b.c)),
                    &args![r, c, b.logits.ptr, b.targets.ptr, ignore, eps, lp],
                )?
            };
        }
        self.ce_total(&b, dtype, per_row.at(0), ignore, out.at(0))?;
        Ok(boxed(out))
    }

    /// Gradient of the cross-entropy w.r.t. the logits, scaled by the 1-element `dloss`.
    fn cross_entropy_backward(&self, logits: View, targets: View, eps: f64, ignore: i64, dloss: View) -> Result<StorageBox> {
        const OP: &str = "cross_entropy_backward";
        checks::cross_entropy_dloss(OP, logits, dloss)?;
        let b = self.ce_batch(OP, logits, targets, eps, ignore)?;
        let dtype = logits.dtype();
        let g = self.alloc(dtype, b.rows * b.c)?;
        if b.rows * b.c == 0 {
            return Ok(boxed(g));
        }
        let stats = self.ce_total(&b, dtype, 0, ignore, 0)?;
        let dl = self.contiguous(OP, dloss)?;
        let (r, c, sp, gp) = (b.rows as i64, b.c as i64, stats.at(0), g.at(0));
        let name = format!("ce_grad_{}", suffix(dtype));
        // SAFETY: logits and g hold rows·c elements, targets `rows`, dloss 1, stats 2.
        unsafe {
            self.driver.launch(
                "loss",
                &name,
                Grid::rows(b.rows, row_threads(b.c)),
                &args![r, c, b.logits.ptr, b.targets.ptr, ignore, eps, dl.ptr, sp, gp],
            )?
        };
        Ok(boxed(g))
    }
}
