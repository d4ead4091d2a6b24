//! What the Runner does as a member of a data-parallel group that a process alone does not
//! (docs/ARCHITECTURE.md, "Data parallelism"): start from member 0's weights, agree on
//! stops, weigh the members' losses, sum the gradients, and end the group on an error.

use super::RunControl;
use beit_engine::collective::{Collective, CommThread, CommTimes, GradBuckets};
use beit_engine::nn::Param;
use beit_engine::{Device, Error, Gradients, Result, Tensor};
use std::sync::Arc;

/// Gradient buckets of about 25 MB, PyTorch DDP's default.
const BUCKET_BYTES: usize = 25 << 20;

/// The run's group behind its communication thread, or none for a process alone (a group
/// of one member goes through the collectives like any group: that is how a collective is
/// checked against a lone run).
pub(crate) struct DataParallel {
    group: Option<Arc<CommThread>>,
    device: Device,
    buckets: GradBuckets,
}

/// The device the parameters live on.
fn params_device(params: &[Param]) -> Result<Device> {
    params.first().map(Param::device).ok_or_else(|| Error::invalid("training", "the model has no parameters"))
}

impl DataParallel {
    /// The group of `control` for a `kind` run of global batch `batch` over `params` (on
    /// one device), of which `trainable` are trained.
    pub(crate) fn new(control: &RunControl, kind: &'static str, batch: usize, params: &[Param], trainable: &[Param]) -> Result<Self> {
        let shard = control.shard()?;
        if !batch.is_multiple_of(shard.world()) {
            return Err(Error::invalid(kind, format!("`batch_size` {batch} is not a multiple of the {} members of the group", shard.world())));
        }
        let group = control.group.clone().map(CommThread::new).transpose()?.map(Arc::new);
        Ok(DataParallel { group, device: params_device(params)?, buckets: GradBuckets::new(trainable, BUCKET_BYTES) })
    }

    /// The group, for the collectives a step makes itself (a synchronised BatchNorm's):
    /// they queue behind the gradient buckets, in the same order on every member.
    pub(crate) fn group(&self) -> Option<Arc<dyn Collective>> {
        self.group.clone().map(|g| g as Arc<dyn Collective>)
    }

    /// Whether this process writes checkpoints, metrics and plots: alone, or member 0.
    pub(crate) fn writes(&self) -> bool {
        self.group.as_ref().is_none_or(|g| g.rank() == 0)
    }

    /// Member 0's weights on every member (whatever each initialised or loaded), and every
    /// member at member 0's `step`.
    pub(crate) fn start(&self, params: &[Param], step: u64) -> Result<()> {
        let Some(g) = &self.group else { return Ok(()) };
        for p in params {
            p.set(g.broadcast(&p.tensor(), 0)?)?;
        }
        let first = g.broadcast(&Tensor::from_vec(vec![step as i64], &[1], &self.device)?, 0)?.to_scalar()? as u64;
        let differ = Tensor::from_vec(vec![i64::from(first != step)], &[1], &self.device)?;
        if g.all_reduce_sum(&differ)?.to_scalar()? > 0.0 {
            let which = if first != step { format!("member {} resumes at step {step}", g.rank()) } else { "another member resumes elsewhere".into() };
            return Err(Error::invalid("--resume", format!("{which}, member 0 at step {first}: every member must load the same checkpoint")));
        }
        Ok(())
    }

    /// Whether to stop before the next step: `local` (this member's Ctrl-C), raised on any member.
    pub(crate) fn stop_requested(&self, local: bool) -> Result<bool> {
        let Some(g) = &self.group else { return Ok(local) };
        let flag = Tensor::from_vec(vec![i64::from(local)], &[1], &self.device)?;
        Ok(g.all_reduce_sum(&flag)?.to_scalar()? > 0.0)
    }

    /// The step's loss and samples over the group, and this member's share of the terms
    /// the group's loss averages (1 alone): the group's loss is the sum over members of
    /// their mean loss times their share, the mean over all the group's terms. A member
    /// without terms (a shard of ignored pixels) adds nothing, its NaN mean included.
    pub(crate) fn combine(&self, loss: f64, samples: usize, terms: usize) -> Result<(f64, usize, f64)> {
        let Some(g) = &self.group else { return Ok((loss, samples, 1.0)) };
        let weighed = if terms == 0 { 0.0 } else { loss * terms as f64 };
        let mine = Tensor::from_vec(vec![terms as f64, weighed, samples as f64], &[3], &self.device)?;
        let sum = g.all_reduce_sum(&mine)?.to_vec::<f64>()?;
        Ok((sum[1] / sum[0], sum[2] as usize, terms as f64 / sum[0]))
    }

    /// The gradients of the group's loss: alone, of `loss`; in a group, of `share · loss`,
    /// summed over the members bucket by bucket as the backward pass completes them, with
    /// the time that took.
    pub(crate) fn backward(&self, loss: &Tensor, share: f64) -> Result<(Gradients, Option<CommTimes>)> {
        let Some(g) = &self.group else { return Ok((loss.backward()?, None)) };
        let (grads, times) = self.buckets.backward(&loss.mul_scalar(share)?, g)?;
        Ok((grads, Some(times)))
    }

    /// `e`, after ending the group (logged first: MPI's abort ends this process too), so
    /// that the other members fail instead of waiting for this one.
    pub(crate) fn fail(&self, e: Error) -> Error {
        if let Some(g) = &self.group {
            tracing::error!("member {} of {}: {e}; ending the group", g.rank(), g.world_size());
            g.abort(&e.to_string());
        }
        e
    }
}
