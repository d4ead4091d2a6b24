//! [`BatchNorm2d`]: per-channel normalisation with running statistics.

use super::{Init, Module, Param, VarBuilder};
use crate::collective::Collective;
use crate::{no_grad, DType, Result, Tensor};
use std::sync::Arc;

/// The statistics a [`BatchNorm2d`] normalises by.
#[derive(Clone, Copy, Debug, Default)]
pub enum NormStats<'a> {
    /// The running ones (inference).
    #[default]
    Running,
    /// The batch's own, moving the running ones (training).
    Batch,
    /// Those of the whole group's batch, every member's samples (SyncBN, for data-parallel
    /// training), moving the running ones alike on every member.
    Group(&'a Arc<dyn Collective>),
}

impl<'a> NormStats<'a> {
    /// `Running` for inference, else the batch's, over `group` when there is one.
    pub fn of(train: bool, group: Option<&'a Arc<dyn Collective>>) -> Self {
        match (train, group) {
            (false, _) => NormStats::Running,
            (true, None) => NormStats::Batch,
            (true, Some(g)) => NormStats::Group(g),
        }
    }
}

/// BatchNorm over the channels of NCHW maps, named as `torch.nn.BatchNorm2d`'s: trainable
/// `weight`/`bias [C]`, buffers `running_mean`, `running_var [C]` and `num_batches_tracked`
/// (i64, 0-dim). Training normalises by the batch's statistics and moves the running ones
/// by `momentum` (the variance unbiased, as PyTorch); inference uses the running ones.
#[derive(Clone, Debug)]
pub struct BatchNorm2d {
    weight: Param,
    bias: Param,
    running_mean: Param,
    running_var: Param,
    num_batches_tracked: Param,
    eps: f64,
    momentum: f64,
}

impl BatchNorm2d {
    /// PyTorch's defaults: eps 1e-5, momentum 0.1, weight 1, bias 0, running mean 0 and var 1.
    pub fn new(vb: &VarBuilder, channels: usize) -> Result<Self> {
        let dev = vb.device();
        Ok(BatchNorm2d {
            weight: vb.param("weight", &[channels], Init::Const(1.0))?,
            bias: vb.param("bias", &[channels], Init::Const(0.0))?,
            running_mean: vb.buffer("running_mean", &Tensor::zeros(&[channels], vb.dtype(), dev)?)?,
            running_var: vb.buffer("running_var", &Tensor::ones(&[channels], vb.dtype(), dev)?)?,
            num_batches_tracked: vb.buffer("num_batches_tracked", &Tensor::zeros(&[], DType::I64, dev)?)?,
            eps: 1e-5,
            momentum: 0.1,
        })
    }

    /// The running mean, `[C]`.
    pub fn running_mean(&self) -> &Param {
        &self.running_mean
    }

    /// The running (unbiased) variance, `[C]`.
    pub fn running_var(&self) -> &Param {
        &self.running_var
    }

    /// Normalise `x [B, C, H, W]` by `stats`; the batch's (or group's) also update the
    /// running ones.
    pub fn forward(&self, x: &Tensor, stats: NormStats) -> Result<Tensor> {
        let (w, b) = (self.weight.tensor(), self.bias.tensor());
        let (y, stats) = match stats {
            NormStats::Running => {
                let (mean, var) = (self.running_mean.tensor(), self.running_var.tensor());
                return x.batch_norm_eval(&mean, &var, Some(&w), Some(&b), self.eps);
            }
            NormStats::Batch => x.batch_norm_train(Some(&w), Some(&b), self.eps)?,
            NormStats::Group(g) => x.batch_norm_train_in(Some(&w), Some(&b), self.eps, g)?,
        };
        let _guard = no_grad();
        let m = self.momentum;
        let unbiased = stats.var.detach().mul_scalar(stats.count as f64 / (stats.count - 1) as f64)?;
        let mean = self.running_mean.tensor().mul_scalar(1.0 - m)?.add(&stats.mean.detach().mul_scalar(m)?)?;
        let var = self.running_var.tensor().mul_scalar(1.0 - m)?.add(&unbiased.mul_scalar(m)?)?;
        self.running_mean.set(mean.to_dtype(self.running_mean.dtype())?)?;
        self.running_var.set(var.to_dtype(self.running_var.dtype())?)?;
        let tracked = self.num_batches_tracked.tensor();
        self.num_batches_tracked.set(tracked.add(&Tensor::ones(&[], DType::I64, tracked.device())?)?)?;
        Ok(y)
    }
}

impl Module for BatchNorm2d {
    fn params(&self) -> Vec<Param> {
        [&self.weight, &self.bias, &self.running_mean, &self.running_var, &self.num_batches_tracked]
            .into_iter()
            .cloned()
            .collect()
    }
}
