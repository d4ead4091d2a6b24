//! Fused LayerNorm over the last dim.

use crate::{Error, Result, Tensor};

impl Tensor {
    /// LayerNorm over the last dim with optional affine `weight`/`bias` of shape `[D]`.
    pub fn layer_norm(&self, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        self.check_float("layer_norm")?;
        let d = *self.shape().last().ok_or_else(|| Error::invalid("layer_norm", "input is 0-dim"))?;
        for p in weight.iter().chain(bias.iter()) {
            self.check_same(p, "layer_norm")?;
            if p.shape() != [d] {
                return Err(Error::ShapeMismatch { op: "layer_norm", lhs: self.shape().to_vec(), rhs: p.shape().to_vec() });
            }
        }
        let backend = self.device().backend();
        let (y, mean, rstd) = backend.layer_norm(self.view(), weight.map(|w| w.view()), bias.map(|b| b.view()), eps)?;
        let rows = self.numel() / d.max(1);
        let mean = Tensor::from_storage(mean, &[rows], self.device())?;
        let rstd = Tensor::from_storage(rstd, &[rows], self.device())?;
        let (x, w) = (self.clone(), weight.cloned());
        let mut parents = vec![self];
        parents.extend(weight);
        parents.extend(bias);
        let has_bias = bias.is_some();
        Tensor::from_op(y, self.shape(), self.device(), "layer_norm", &parents, move |g, _| {
            let backend = x.device().backend();
            let (dx, dw, db) =
                backend.layer_norm_backward(x.view(), w.as_ref().map(|w| w.view()), mean.view(), rstd.view(), g.view())?;
            let dev = x.device();
            let mut grads = vec![Some(Tensor::from_storage(dx, x.shape(), dev)?)];
            if let Some(dw) = dw {
                grads.push(Some(Tensor::from_storage(dw, &[d], dev)?));
                if has_bias {
                    let db = db.ok_or_else(|| Error::Autograd("layer_norm backward gave no bias gradient".into()))?;
                    grads.push(Some(Tensor::from_storage(db, &[d], dev)?));
                }
            } else if has_bias {
                // Bias without weight: its gradient is the row sum of dy.
                grads.push(Some(g.reshape(&[rows, d])?.sum(&[0], false)?));
            }
            Ok(grads)
        })
    }
}
