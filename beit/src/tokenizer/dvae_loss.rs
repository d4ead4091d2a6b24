//! The training loss of a [`Dvae`]: Gumbel-softmax codes, reconstruction, and the KL terms
//! to the uniform prior, for a process alone or one member of a data-parallel group.

use super::Dvae;
use beit_engine::collective::Collective;
use beit_engine::rng::Rng;
use beit_engine::{Device, Error, Result, Tensor};
use std::sync::Arc;

/// The terms of one training loss.
#[derive(Clone, Debug)]
pub struct DvaeLoss {
    /// `recon + w.kl · kl + w.usage · usage`, differentiable.
    pub total: Tensor,
    /// The value of `total`.
    pub value: f64,
    /// Mean squared error of the reconstruction, in mapped pixels.
    pub recon: f64,
    /// Mean KL divergence per position from the uniform prior, in nats.
    pub kl: f64,
    /// KL divergence of the batch's mean posterior from uniform, in nats.
    pub usage: f64,
}

impl Dvae {
    /// The training loss of a batch: Gumbel-softmax codes at `temperature` (noise from
    /// `seed`), reconstruction MSE, plus `weights.kl` times the KL of each position's
    /// posterior to the uniform prior and `weights.usage` times the KL of the batch's mean
    /// posterior to uniform (which keeps the whole codebook in use).
    pub fn loss(&self, pixels: &Tensor, temperature: f64, weights: LossWeights, seed: u64) -> Result<DvaeLoss> {
        self.loss_over(pixels, temperature, weights, seed, None)
    }

    /// [`Self::loss`] of one member's part of a batch split over a data-parallel group:
    /// the Gumbel noise of its samples is the whole batch's, and the codebook-usage term
    /// is the whole batch's (its mean posterior summed over the group), so that the group's
    /// loss and gradients are those of one process on the whole batch.
    pub fn loss_in(&self, pixels: &Tensor, temperature: f64, weights: LossWeights, seed: u64, part: GroupPart) -> Result<DvaeLoss> {
        self.loss_over(pixels, temperature, weights, seed, Some(part))
    }

    fn loss_over(&self, pixels: &Tensor, temperature: f64, weights: LossWeights, seed: u64, part: Option<GroupPart>) -> Result<DvaeLoss> {
        if temperature.is_nan() || temperature <= 0.0 {
            return Err(Error::invalid("dvae", format!("temperature must be positive, got {temperature}")));
        }
        let logits = self.encode(pixels)?;
        let log_v = (self.config().vocab_size as f64).ln();
        let log_q = logits.log_softmax_last()?;
        let q = log_q.exp()?;
        let kl = q.mul(&log_q.add_scalar(log_v)?)?.sum(&[-1], false)?.mean_all()?;
        let (local, dev) = (logits.shape()[0], pixels.device());
        let (q_mean, noise) = match part {
            None => (q.mean(&[0, 1, 2], false)?, gumbel(logits.shape(), seed, dev)?),
            Some(GroupPart { group, first, batch }) => {
                let positions = batch * logits.shape()[1] * logits.shape()[2];
                let q_mean = q.sum(&[0, 1, 2], false)?.all_reduce_sum(group)?.mul_scalar(1.0 / positions as f64)?;
                let mut whole = logits.shape().to_vec();
                whole[0] = batch;
                (q_mean, gumbel(&whole, seed, dev)?.narrow(0, first, local)?)
            }
        };
        let usage = q_mean.mul(&q_mean.log()?.add_scalar(log_v)?)?.sum_all()?;
        let codes = logits.add(&noise.to_dtype(logits.dtype())?)?.mul_scalar(1.0 / temperature)?.softmax_last()?;
        let diff = self.decode(&codes)?.sub(pixels)?;
        let recon = diff.sum_squares_all()?.mul_scalar(1.0 / diff.numel().max(1) as f64)?;
        let total = recon.add(&kl.mul_scalar(weights.kl)?)?.add(&usage.mul_scalar(weights.usage)?)?;
        // One read back for all four values.
        let terms = [&total, &recon, &kl, &usage].into_iter().map(|t| t.detach().reshape(&[1])).collect::<Result<Vec<_>>>()?;
        let values = Tensor::cat(&terms.iter().collect::<Vec<_>>(), 0)?.to_vec_f64()?;
        Ok(DvaeLoss { total, value: values[0], recon: values[1], kl: values[2], usage: values[3] })
    }
}

/// A member's part of a batch a data-parallel group splits, for [`Dvae::loss_in`].
#[derive(Clone, Copy, Debug)]
pub struct GroupPart<'a> {
    /// The group, the one the gradient buckets go through (a training run's
    /// `CommThread`), so that the loss's all-reduces and theirs keep one order.
    pub group: &'a Arc<dyn Collective>,
    /// The position of this member's first sample in the whole batch.
    pub first: usize,
    /// Samples in the whole batch.
    pub batch: usize,
}

/// Weights of the regularisers in [`Dvae::loss`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossWeights {
    /// Per-position KL to the uniform prior.
    pub kl: f64,
    /// KL of the batch-mean posterior to uniform.
    pub usage: f64,
}

/// Standard Gumbel noise `−ln(−ln u)` drawn on the host from `seed`.
fn gumbel(shape: &[usize], seed: u64, device: &Device) -> Result<Tensor> {
    let mut rng = Rng::new(seed);
    let n: usize = shape.iter().product();
    let g: Vec<f32> = (0..n).map(|_| -(-(rng.uniform().max(1e-12)).ln()).ln() as f32).collect();
    Tensor::from_vec(g, shape, device)
}
