//! Global gradient-norm clipping.

use crate::nn::Param;
use crate::{Error, Gradients, Result, Tensor};

/// Scale the gradients of `params` so that their global L2 norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when the norm exceeds
/// `max_norm`) and return the norm before clipping. Parameters without a gradient are
/// skipped. A NaN or infinite norm is an [`Error::NonFinite`] naming the first parameter
/// whose gradient is not finite, and leaves the gradients unchanged, so that a diverged
/// step cannot silently reach the weights.
///
/// The squared norms are summed on the device: one host synchronisation per call (per
/// run of parameters sharing a device and dtype), not one per parameter.
pub fn clip_grad_norm(grads: &mut Gradients, params: &[Param], max_norm: f64) -> Result<f64> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(Error::invalid("clip_grad_norm", format!("max_norm must be positive and finite, got {max_norm}")));
    }
    let _guard = crate::no_grad();
    let mut with_grad = Vec::new();
    let (mut total, mut acc): (f64, Option<Tensor>) = (0.0, None);
    for p in params {
        let t = p.tensor();
        let Some(g) = grads.get(&t) else { continue };
        let sq = g.sqr()?.sum_all()?;
        acc = Some(match acc {
            Some(a) if a.dtype() == sq.dtype() && a.device().same(sq.device()) => a.add(&sq)?,
            Some(a) => {
                total += a.to_scalar()?;
                sq
            }
            None => sq,
        });
        with_grad.push((p, t));
    }
    if let Some(a) = acc {
        total += a.to_scalar()?;
    }
    let norm = total.sqrt();
    if !norm.is_finite() {
        for (p, t) in &with_grad {
            let sq = grads.get(t).map(|g| g.sqr()?.sum_all()?.to_scalar()).transpose()?;
            if sq.is_some_and(|s| !s.is_finite()) {
                return Err(Error::NonFinite(format!("the gradient of `{}` (global norm {norm})", p.name())));
            }
        }
        return Err(Error::NonFinite(format!("the global gradient norm ({norm})")));
    }
    let scale = max_norm / (norm + 1e-6);
    if scale < 1.0 {
        for (_, t) in &with_grad {
            if let Some(g) = grads.remove(t) {
                grads.insert(t, g.mul_scalar(scale)?);
            }
        }
    }
    Ok(norm)
}
