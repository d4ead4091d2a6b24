//! Gradients summed over a group in buckets, each sent as soon as the backward pass has
//! completed all of its gradients, and reduced on a communication thread while the
//! backward pass goes on.

use super::{CommThread, Pending};
use crate::nn::Param;
use crate::{Gradients, Result, Tensor, TensorId};
use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

/// Where a data-parallel backward pass spent its communication time, in seconds, as the
/// host sees it: on a GPU (NCCL) the calls only enqueue work on the device's stream.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommTimes {
    /// In the buckets' all-reduces, on the communication thread (overlapping the walk).
    pub all_reduce: f64,
    /// Waiting, after the walk, for the last buckets: the part the walk did not hide.
    pub exposed: f64,
}

/// The trainable parameters cut into buckets of about `bucket_bytes` (PyTorch DDP's 25 MB),
/// last parameter first: the backward pass completes the last layers' gradients first.
#[derive(Debug)]
pub struct GradBuckets {
    params: Vec<Param>,
    /// Bucket `b` holds the parameters `order[buckets[b]]`.
    order: Vec<usize>,
    buckets: Vec<Range<usize>>,
}

impl GradBuckets {
    /// Buckets over `params` of at most `bucket_bytes` each (a larger parameter alone).
    pub fn new(params: &[Param], bucket_bytes: usize) -> Self {
        let order: Vec<usize> = (0..params.len()).rev().collect();
        let mut buckets = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (k, &i) in order.iter().enumerate() {
            let t = params[i].tensor();
            let size = t.numel() * t.dtype().size_in_bytes();
            if k > start && bytes + size > bucket_bytes {
                buckets.push(start..k);
                (start, bytes) = (k, 0);
            }
            bytes += size;
        }
        if start < order.len() {
            buckets.push(start..order.len());
        }
        GradBuckets { params: params.to_vec(), order, buckets }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Back-propagate `loss` and return the gradients, each parameter's summed over
    /// `group` (other leaves keep their own), and the time spent communicating. Every
    /// member must call this with the same parameters. Buckets are sent in order (a bucket
    /// completed early waits for the ones before it), so every member makes the same calls,
    /// also when the backward pass makes its own (a synchronised BatchNorm's) through
    /// `group`. A parameter gets the group's sum when any member computed its gradient;
    /// but a bucket holding a parameter some members do not reach is sent after the walk
    /// on those members and during it on the others, so such a graph must not also make
    /// collectives in its backward pass (the orders would differ).
    pub fn backward(&self, loss: &Tensor, group: &CommThread) -> Result<(Gradients, CommTimes)> {
        let values: Vec<Tensor> = self.params.iter().map(Param::tensor).collect();
        let mut slot: HashMap<TensorId, (usize, usize)> = HashMap::new();
        for (b, range) in self.buckets.iter().enumerate() {
            for (pos, &i) in self.order[range.clone()].iter().enumerate() {
                slot.insert(values[i].id(), (b, pos));
            }
        }
        let mut pending: Vec<Vec<Option<Tensor>>> = self.buckets.iter().map(|r| vec![None; r.len()]).collect();
        let mut left: Vec<usize> = self.buckets.iter().map(Range::len).collect();
        let mut sent: Vec<Pending> = Vec::with_capacity(self.buckets.len());
        // Send the buckets from the next unsent one while complete; with `all`, every one.
        let mut send_ready = |pending: &[Vec<Option<Tensor>>], left: &[usize], all: bool| -> Result<()> {
            while sent.len() < self.buckets.len() && (all || left[sent.len()] == 0) {
                let b = sent.len();
                sent.push(group.start_all_reduce(self.pack(b, &pending[b], &values)?)?);
            }
            Ok(())
        };
        let walked = loss.backward_with(|id, g| {
            let Some(&(b, pos)) = slot.get(&id) else { return Ok(()) };
            pending[b][pos] = Some(g.clone());
            left[b] -= 1;
            if left[b] == 0 {
                send_ready(&pending, &left, false)?;
            }
            Ok(())
        });
        // The buckets holding parameters the walk did not reach.
        let flushed = walked.and_then(|grads| send_ready(&pending, &left, true).map(|()| grads));
        let walked_at = Instant::now();
        let reduced: Vec<Result<(Tensor, f64)>> = sent.into_iter().map(Pending::wait).collect();
        let exposed = walked_at.elapsed().as_secs_f64();
        // A failed all-reduce is the cause of a stopped walk: report it first.
        let reduced = reduced.into_iter().collect::<Result<Vec<_>>>()?;
        let mut grads = flushed?;
        let mut all_reduce = 0.0;
        for (b, (sum, seconds)) in reduced.into_iter().enumerate() {
            all_reduce += seconds;
            let members = &self.order[self.buckets[b].clone()];
            let total: usize = members.iter().map(|&i| values[i].numel()).sum();
            let computed = sum.narrow(0, total, members.len())?.to_vec_f64()?;
            let mut offset = 0;
            for (&i, &count) in members.iter().zip(&computed) {
                let n = values[i].numel();
                if count > 0.5 {
                    grads.insert(&values[i], sum.narrow(0, offset, n)?.reshape(values[i].shape())?);
                }
                offset += n;
            }
        }
        Ok((grads, CommTimes { all_reduce, exposed }))
    }

    /// Bucket `b`'s gradients flattened end to end (zeros for those not computed here),
    /// then one flag per parameter: 1 if this member computed its gradient, else 0.
    fn pack(&self, b: usize, grads: &[Option<Tensor>], values: &[Tensor]) -> Result<Tensor> {
        let members = &self.order[self.buckets[b].clone()];
        let mut parts = members
            .iter()
            .zip(grads)
            .map(|(&i, g)| match g {
                Some(g) => g.reshape(&[g.numel()]),
                None => Tensor::zeros(&[values[i].numel()], values[i].dtype(), values[i].device()),
            })
            .collect::<Result<Vec<_>>>()?;
        let first = &values[members[0]];
        let flags: Vec<f64> = grads.iter().map(|g| if g.is_some() { 1.0 } else { 0.0 }).collect();
        parts.push(Tensor::from_vec(flags, &[members.len()], first.device())?.to_dtype(first.dtype())?);
        Tensor::cat(&parts.iter().collect::<Vec<_>>(), 0)
    }
}
