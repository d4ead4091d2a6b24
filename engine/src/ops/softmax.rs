//! Fused softmax over the last dim.

use crate::{Result, Tensor};

impl Tensor {
    /// Softmax over the last dim (one fused kernel, stable).
    pub fn softmax_last(&self) -> Result<Tensor> {
        self.check_float("softmax_last")?;
        let out = self.device().backend().softmax_last(self.view())?;
        let y = Tensor::from_storage(out, self.shape(), self.device())?;
        let saved = y.clone();
        Ok(y.track_as("softmax_last", &[self], move |g, _| {
            let dx = saved.device().backend().softmax_last_backward(saved.view(), g.view())?;
            Ok(vec![Some(Tensor::from_storage(dx, saved.shape(), saved.device())?)])
        }))
    }

    /// Log-softmax over the last dim: `x − max − log Σ exp(x − max)`.
    pub fn log_softmax_last(&self) -> Result<Tensor> {
        let m = self.detach().max(&[-1], true)?;
        let shifted = self.sub(&m)?;
        shifted.sub(&shifted.exp()?.sum(&[-1], true)?.log()?)
    }
}
