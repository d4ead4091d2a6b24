//! Gradients summed over a group in buckets, each sent as soon as the backward pass has
//! completed all of its gradients, and reduced on a communication thread while the
//! backward pass goes on.

use super::Collective;
use crate::nn::Param;
use crate::{Error, Gradients, Result, Tensor, TensorId};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::mpsc;
use std::time::Instant;

/// Where a data-parallel backward pass spent its communication time, in seconds, as the
/// host sees it: on a GPU (NCCL) the calls only enqueue work on the device's stream.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CommTimes {
    /// In all-reduces, on the communication thread (overlapping the walk).
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
    /// completed early waits for the ones before it), so every member makes the same calls;
    /// a parameter gets the group's sum when any member computed its gradient.
    pub fn backward(&self, loss: &Tensor, group: &dyn Collective) -> Result<(Gradients, CommTimes)> {
        let values: Vec<Tensor> = self.params.iter().map(Param::tensor).collect();
        let mut slot: HashMap<TensorId, (usize, usize)> = HashMap::new();
        for (b, range) in self.buckets.iter().enumerate() {
            for (pos, &i) in self.order[range.clone()].iter().enumerate() {
                slot.insert(values[i].id(), (b, pos));
            }
        }
        let mut pending: Vec<Vec<Option<Tensor>>> = self.buckets.iter().map(|r| vec![None; r.len()]).collect();
        let mut left: Vec<usize> = self.buckets.iter().map(Range::len).collect();
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(usize, Tensor)>();
            let comm = scope.spawn(move || {
                let mut seconds = 0.0;
                let mut reduce = |(b, packed): (usize, Tensor)| -> Result<(usize, Tensor)> {
                    let started = Instant::now();
                    let sum = group.all_reduce_sum(&packed)?;
                    seconds += started.elapsed().as_secs_f64();
                    Ok((b, sum))
                };
                let sums = rx.into_iter().map(&mut reduce).collect::<Result<Vec<_>>>();
                sums.map(|s| (s, seconds))
            });
            // The next bucket to send; with `until`, send up to it, complete or not.
            let mut next = 0;
            let mut send_ready = |pending: &[Vec<Option<Tensor>>], left: &[usize], until: Option<usize>| -> Result<()> {
                while next < self.buckets.len() && (left[next] == 0 || until.is_some_and(|u| next < u)) {
                    let packed = self.pack(next, &pending[next], &values)?;
                    tx.send((next, packed)).map_err(|_| Error::invalid("all_reduce_sum", "the communication thread stopped"))?;
                    next += 1;
                }
                Ok(())
            };
            let walked = loss.backward_with(|id, g| {
                let Some(&(b, pos)) = slot.get(&id) else { return Ok(()) };
                pending[b][pos] = Some(g.clone());
                left[b] -= 1;
                if left[b] == 0 {
                    send_ready(&pending, &left, None)?;
                }
                Ok(())
            });
            // The buckets holding parameters the walk did not reach.
            let flushed = walked.and_then(|grads| send_ready(&pending, &left, Some(self.buckets.len())).map(|()| grads));
            drop(tx);
            let walked_at = Instant::now();
            let reduced = comm.join().map_err(|_| Error::invalid("all_reduce_sum", "the communication thread panicked"))?;
            let exposed = walked_at.elapsed().as_secs_f64();
            // A failed all-reduce is the cause of a stopped walk: report it first.
            let (reduced, all_reduce) = reduced?;
            let mut grads = flushed?;
            for (b, sum) in reduced {
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
        })
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
