//! Top-k and argmax over the last dim (no gradient).

use crate::{Result, Tensor};

impl Tensor {
    /// The `k` largest entries of the last dim, sorted descending: `(values, i64 indices)`.
    /// Has no backward: an input that tracks gradients is an error (detach it first).
    pub fn topk(&self, k: usize) -> Result<(Tensor, Tensor)> {
        self.check_no_grad("topk")?;
        let last = self.dim(-1)?;
        if k == 0 || k > last {
            return Err(crate::Error::invalid("topk", format!("k = {k} for a last dim of {last}")));
        }
        let (v, i) = self.device().backend().topk_last(self.view(), k)?;
        let mut shape = self.shape().to_vec();
        *shape.last_mut().expect("rank >= 1") = k;
        Ok((Tensor::from_storage(v, &shape, self.device())?, Tensor::from_storage(i, &shape, self.device())?))
    }

    /// Index of the largest entry of the last dim (i64, last dim removed). Integer output:
    /// it carries no gradient, so a tracked input is fine.
    pub fn argmax(&self) -> Result<Tensor> {
        let (_, i) = self.detach().topk(1)?;
        let shape = &i.shape()[..i.rank() - 1];
        i.reshape(shape)
    }
}
