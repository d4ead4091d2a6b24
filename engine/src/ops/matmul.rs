//! Batched strided matmul; transposed operands are read through their strides.

use crate::layout::broadcast_shapes;
use crate::{Error, Result, Tensor};

impl Tensor {
    /// Matrix product over the last two dims, broadcasting the batch dims:
    /// `[..., m, k] @ [..., k, n] -> [..., m, n]`. A 2-D `rhs` (a Linear weight viewed as
    /// `wᵀ`) against a batched `self` runs as one large GEMM when `self`'s rows merge.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.check_same(rhs, "matmul")?;
        self.check_float("matmul")?;
        let (ra, rb) = (self.rank(), rhs.rank());
        if ra < 2 || rb < 2 {
            return Err(Error::invalid("matmul", format!("needs 2+ dims: {:?} @ {:?}", self.shape(), rhs.shape())));
        }
        let (m, k) = (self.shape()[ra - 2], self.shape()[ra - 1]);
        let (k2, n) = (rhs.shape()[rb - 2], rhs.shape()[rb - 1]);
        if k != k2 {
            return Err(Error::ShapeMismatch { op: "matmul", lhs: self.shape().to_vec(), rhs: rhs.shape().to_vec() });
        }
        // [..., m, k] @ [k, n] with mergeable rows: one [rows, k] @ [k, n] GEMM.
        if rb == 2 && ra > 2 {
            let rows = self.numel() / k.max(1);
            if self.layout().reshape(&[rows, k]).is_some() {
                let mut out_shape = self.shape()[..ra - 1].to_vec();
                out_shape.push(n);
                return self.reshape(&[rows, k])?.matmul(rhs)?.reshape(&out_shape);
            }
        }
        let batch = broadcast_shapes("matmul", &self.shape()[..ra - 2], &rhs.shape()[..rb - 2])?;
        let full = |b: &[usize], r, c| [b, &[r, c][..]].concat();
        let la = self.layout().broadcast_to(&full(&batch, m, k))?;
        let lb = rhs.layout().broadcast_to(&full(&batch, k, n))?;
        let out = self.device().backend().matmul(self.view_with(&la), rhs.view_with(&lb))?;
        let (a, b) = (self.clone(), rhs.clone());
        Tensor::from_op(out, &full(&batch, m, n), self.device(), "matmul", &[self, rhs], move |g, needs| {
            let ga = if needs[0] { Some(g.matmul(&b.t()?)?.sum_to_shape(a.shape())?) } else { None };
            let gb = if !needs[1] {
                None
            } else if b.rank() == 2 {
                // Weight gradient of a broadcast 2-D rhs: one GEMM over all rows, written in
                // b's own order: a Linear's `wᵀ` gets `(gᵀ·a)ᵀ`, so that w's gradient (its
                // transpose) is contiguous and the optimiser reads it in place.
                let rows = g.numel() / n.max(1);
                let (a2, g2) = (a.reshape(&[rows, k])?, g.reshape(&[rows, n])?);
                Some(if b.t()?.is_contiguous() && !b.is_contiguous() { g2.t()?.matmul(&a2)?.t()? } else { a2.t()?.matmul(&g2)? })
            } else {
                Some(a.t()?.matmul(g)?.sum_to_shape(b.shape())?)
            };
            Ok(vec![ga, gb])
        })
    }
}
