//! The sum over a data-parallel group as a differentiable op: what a synchronised
//! BatchNorm's statistics are made of.

use crate::collective::Collective;
use crate::{Result, Tensor};
use std::sync::Arc;

impl Tensor {
    /// The element-wise sum of `self` over `group`, on every member. Its gradient is the
    /// members' gradients of the sum, summed over `group` too, so every member's backward
    /// pass must reach it, in the same order on every member; with gradient buckets,
    /// `group` must be the buckets' [`CommThread`](crate::collective::CommThread).
    pub fn all_reduce_sum(&self, group: &Arc<dyn Collective>) -> Result<Tensor> {
        let sum = group.all_reduce_sum(self)?;
        let group = group.clone();
        Ok(sum.track_as("all_reduce_sum", &[self], move |g, _| Ok(vec![Some(group.all_reduce_sum(g)?)])))
    }
}
