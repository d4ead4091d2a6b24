//! Global gradient-norm clipping: the norm ([`grad_norm`]), the factor it calls for
//! ([`clip_factor`]), and both applied to the gradients ([`clip_grad_norm`]). A training
//! loop can instead pass the factor to [`super::AdamW::step_scaled`], which applies it inside
//! the update, without a scaled copy of every gradient.

use crate::nn::Param;
use crate::{Error, Gradients, Result, Tensor};

/// The global L2 norm of the gradients of `params` (those without one are skipped). A NaN
/// or infinite norm is an [`Error::NonFinite`] naming the first parameter whose gradient is
/// not finite, so that a diverged step cannot silently reach the weights.
///
/// Each gradient's squares are summed on its device without a squared copy
/// ([`Tensor::sum_squares_all`]): one host synchronisation per call (per run of parameters
/// sharing a device and dtype), not one per parameter.
pub fn grad_norm(grads: &Gradients, params: &[Param]) -> Result<f64> {
    let _guard = crate::no_grad();
    let with_grad: Vec<(&Param, &Tensor)> = params.iter().filter_map(|p| grads.get(&p.tensor()).map(|g| (p, g))).collect();
    let (mut total, mut acc): (f64, Option<Tensor>) = (0.0, None);
    for (_, g) in &with_grad {
        let sq = g.sum_squares_all()?;
        acc = Some(match acc {
            Some(a) if a.dtype() == sq.dtype() && a.device().same(sq.device()) => a.add(&sq)?,
            Some(a) => {
                total += a.to_scalar()?;
                sq
            }
            None => sq,
        });
    }
    if let Some(a) = acc {
        total += a.to_scalar()?;
    }
    let norm = total.sqrt();
    if norm.is_finite() {
        return Ok(norm);
    }
    for (p, g) in &with_grad {
        if !g.sum_squares_all()?.to_scalar()?.is_finite() {
            return Err(Error::NonFinite(format!("the gradient of `{}` (global norm {norm})", p.name())));
        }
    }
    Err(Error::NonFinite(format!("the global gradient norm ({norm})")))
}

/// The factor that brings gradients of global norm `norm` to at most `max_norm`
/// (PyTorch's `clip_grad_norm_`: `max_norm / (norm + 1e-6)` when that is below 1, else 1).
/// `norm` must be finite and non-negative (a non-finite one calls for skipping the step,
/// which no factor does), `max_norm` positive and finite.
pub fn clip_factor(norm: f64, max_norm: f64) -> Result<f64> {
    const OP: &str = "clip_factor";
    check_max_norm(OP, max_norm)?;
    if !(norm.is_finite() && norm >= 0.0) {
        return Err(Error::invalid(OP, format!("the gradient norm must be finite and non-negative, got {norm}")));
    }
    Ok((max_norm / (norm + 1e-6)).min(1.0))
}

/// `max_norm` is positive and finite.
fn check_max_norm(op: &'static str, max_norm: f64) -> Result<()> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(Error::invalid(op, format!("max_norm must be positive and finite, got {max_norm}")));
    }
    Ok(())
}

/// Scale the gradients of `params` so that their global L2 norm is at most `max_norm`
/// ([`clip_factor`] of [`grad_norm`], with its errors; the gradients are unchanged on an
/// error) and return the norm before clipping.
pub fn clip_grad_norm(grads: &mut Gradients, params: &[Param], max_norm: f64) -> Result<f64> {
    check_max_norm("clip_grad_norm", max_norm)?;
    let norm = grad_norm(grads, params)?;
    let scale = clip_factor(norm, max_norm)?;
    if scale < 1.0 {
        let _guard = crate::no_grad();
        for p in params {
            let t = p.tensor();
            if let Some(g) = grads.remove(&t) {
                grads.insert(&t, g.mul_scalar(scale)?);
            }
        }
    }
    Ok(norm)
}
