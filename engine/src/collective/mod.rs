//! Collective communication for data-parallel training: every member of a group (a process
//! under `mpirun`, a GPU, a thread) holds the whole model, computes the gradients of its
//! shard of each batch, and the group sums them ([`GradBuckets`]) so that every member
//! takes the same optimiser step.
//!
//! Implementations: [`Single`] (one process alone), [`LocalGroup`] (threads of one
//! process), `beit-mpi` (processes on one or many machines).

mod buckets;
mod comm_thread;
mod local;

pub use buckets::{CommTimes, GradBuckets};
pub use comm_thread::{CommThread, Pending};
pub use local::LocalGroup;

use crate::{Result, Tensor};
use std::fmt::Debug;

/// A group training one model data-parallel. Every member must make the same calls in the
/// same order, with tensors of the same shape and dtype.
pub trait Collective: Send + Sync + Debug {
    /// This member's index, `0..world_size()`.
    fn rank(&self) -> usize;
    /// Number of members.
    fn world_size(&self) -> usize;
    /// The element-wise sum of `t` (f32, f64 or i64) over the group, on every member, on
    /// `t`'s device. Every member must get the same bits, or the members' weights drift
    /// apart: [`LocalGroup`] adds in rank order once for all; MPI's all-reduce gives one
    /// result everywhere as the standard advises (Open MPI's and MPICH's algorithms do).
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor>;
    /// Member `root`'s `t`, on every member.
    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor>;
    /// Return once every member has called it.
    fn barrier(&self) -> Result<()>;
    /// End the group because this member cannot go on (`why` says what failed), so that
    /// the others fail instead of waiting for it forever. MPI ends every process of the
    /// run (`MPI_Abort`): this may not return.
    fn abort(&self, why: &str);
}

/// A process alone: rank 0 of 1, every collective the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
    fn broadcast(&self, t: &Tensor, _root: usize) -> Result<Tensor> {
        Ok(t.clone())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn abort(&self, _why: &str) {}
}

/// Check that `root` is a member of `group` (for implementations' broadcasts).
pub fn check_root(group: &dyn Collective, root: usize) -> Result<()> {
    if root >= group.world_size() {
        return Err(crate::Error::invalid("broadcast", format!("root {root} outside a group of {}", group.world_size())));
    }
    Ok(())
}

/// The error of a sum over a group of `dtype` tensors, which implementations do not add
/// (they sum f32, f64 and i64).
pub fn not_summable(op: &'static str, dtype: crate::DType) -> crate::Error {
    crate::Error::invalid(op, format!("cannot sum {dtype:?} tensors (f32, f64 or i64)"))
}
