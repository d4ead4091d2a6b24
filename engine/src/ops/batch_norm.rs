//! Batch normalisation over the channels of NCHW tensors, composed from reductions and
//! broadcast elementwise ops (so its backward is theirs).

use crate::collective::Collective;
use crate::{Error, Result, Tensor};
use std::sync::Arc;

/// What [`Tensor::batch_norm_train`] returns besides the output.
pub struct BatchStats {
    /// Per-channel mean of the batch, `[C]`.
    pub mean: Tensor,
    /// Per-channel biased variance of the batch, `[C]`.
    pub var: Tensor,
    /// Elements per channel (`B·H·W`, over the group when synchronised), for the unbiased
    /// running variance.
    pub count: usize,
}

impl Tensor {
    fn check_bn(&self, op: &'static str, per_channel: &[Option<&Tensor>]) -> Result<usize> {
        self.check_float(op)?;
        if self.rank() < 2 {
            return Err(Error::invalid(op, format!("expects [B, C, ...], got {:?}", self.shape())));
        }
        let c = self.shape()[1];
        for p in per_channel.iter().flatten() {
            self.check_same(p, op)?;
            if p.shape() != [c] {
                return Err(Error::ShapeMismatch { op, lhs: self.shape().to_vec(), rhs: p.shape().to_vec() });
            }
        }
        Ok(c)
    }

    /// `[C]` seen as `[1, C, 1, ...]` against `self`.
    fn per_channel(&self, v: &Tensor) -> Result<Tensor> {
        let mut shape = vec![1; self.rank()];
        shape[1] = v.numel();
        v.reshape(&shape)
    }

    /// Inference BatchNorm: `(x − mean)/√(var + eps) · weight + bias` per channel (dim 1),
    /// with given statistics (the running ones); all of `[C]`.
    pub fn batch_norm_eval(
        &self,
        mean: &Tensor,
        var: &Tensor,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        self.check_bn("batch_norm", &[Some(mean), Some(var), weight, bias])?;
        let mut scale = var.add_scalar(eps)?.powf(-0.5)?;
        if let Some(w) = weight {
            scale = scale.mul(w)?;
        }
        let mut shift = mean.mul(&scale)?.neg()?;
        if let Some(b) = bias {
            shift = shift.add(b)?;
        }
        self.mul(&self.per_channel(&scale)?)?.add(&self.per_channel(&shift)?)
    }

    /// Training BatchNorm: normalise each channel (dim 1) by the batch's own mean and biased
    /// variance over every other dim, then `· weight + bias`. Also returns those statistics
    /// (for the running averages).
    pub fn batch_norm_train(&self, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<(Tensor, BatchStats)> {
        self.batch_norm_over(weight, bias, eps, None)
    }

    /// [`Tensor::batch_norm_train`] by the statistics of the whole `group`'s batch, every
    /// member's samples (SyncBN): three all-reduces forward (the count, the sums, the
    /// squared deviations) and two backward, which every member makes in the same order. In
    /// training with gradient buckets, `group` must be the buckets' [`CommThread`], so that
    /// these calls queue with theirs.
    ///
    /// [`CommThread`]: crate::collective::CommThread
    pub fn batch_norm_train_in(&self, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64, group: &Arc<dyn Collective>) -> Result<(Tensor, BatchStats)> {
        self.batch_norm_over(weight, bias, eps, Some(group))
    }

    fn batch_norm_over(&self, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64, group: Option<&Arc<dyn Collective>>) -> Result<(Tensor, BatchStats)> {
        let c = self.check_bn("batch_norm", &[weight, bias])?;
        let dims: Vec<isize> = (0..self.rank() as isize).filter(|&d| d != 1).collect();
        let local = self.numel() / c.max(1);
        // Per-channel sums `[1, C, 1, ...]` (over every other dim), over the group too.
        let over_group = |s: Tensor| match group {
            Some(g) => s.all_reduce_sum(g),
            None => Ok(s),
        };
        let count = match group {
            Some(g) => g.all_reduce_sum(&Tensor::from_vec(vec![local as i64], &[1], self.device())?)?.to_scalar()? as usize,
            None => local,
        };
        if count < 2 {
            return Err(Error::invalid(
                "batch_norm",
                format!("training needs more than one value per channel, got input {:?}", self.shape()),
            ));
        }
        let mean = over_group(self.sum(&dims, true)?)?.mul_scalar(1.0 / count as f64)?;
        let centred = self.sub(&mean)?;
        let var = over_group(centred.sum_squares(&dims, true)?)?.mul_scalar(1.0 / count as f64)?;
        let mut y = centred.mul(&var.add_scalar(eps)?.powf(-0.5)?)?;
        if let Some(w) = weight {
            y = y.mul(&self.per_channel(w)?)?;
        }
        if let Some(b) = bias {
            y = y.add(&self.per_channel(b)?)?;
        }
        let stats = BatchStats { mean: mean.reshape(&[c])?, var: var.reshape(&[c])?, count };
        Ok((y, stats))
    }
}
