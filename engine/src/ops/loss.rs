//! Fused cross-entropy with label smoothing over selected rows.

use crate::{DType, Error, Result, Tensor};

/// Target value that marks a row as not selected (as PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

impl Tensor {
    /// Mean cross-entropy of `self` (logits `[R, C]`) against i64 `targets [R]`, with
    /// label smoothing; rows whose target is [`IGNORE_INDEX`] are skipped.
    pub fn cross_entropy(&self, targets: &Tensor, smoothing: f64) -> Result<Tensor> {
        self.check_float("cross_entropy")?;
        if self.rank() != 2 || targets.shape() != [self.shape()[0]] {
            return Err(Error::ShapeMismatch {
                op: "cross_entropy",
                lhs: self.shape().to_vec(),
                rhs: targets.shape().to_vec(),
            });
        }
        if targets.dtype() != DType::I64 {
            return Err(Error::DType { op: "cross_entropy targets", dtype: targets.dtype(), expected: Some(DType::I64) });
        }
        if !(0.0..1.0).contains(&smoothing) {
            return Err(Error::invalid("cross_entropy", format!("label smoothing {smoothing} not in [0, 1)")));
        }
        let backend = self.device().backend();
        let out = backend.cross_entropy(self.view(), targets.view(), smoothing, IGNORE_INDEX)?;
        let (x, t) = (self.clone(), targets.clone());
        Tensor::from_op(out, &[], self.device(), "cross_entropy", &[self], move |g, _| {
            let backend = x.device().backend();
            let dx = backend.cross_entropy_backward(x.view(), t.view(), smoothing, IGNORE_INDEX, g.view())?;
            Ok(vec![Some(Tensor::from_storage(dx, x.shape(), x.device())?)])
        })
    }

    /// Cross-entropy over the rows where the bool/u8 `mask [R]` is set.
    pub fn cross_entropy_masked(&self, targets: &Tensor, mask: &Tensor, smoothing: f64) -> Result<Tensor> {
        let ignore = Tensor::full(IGNORE_INDEX as f64, &[], DType::I64, targets.device())?;
        self.cross_entropy(&mask.where_cond(targets, &ignore)?, smoothing)
    }
}
