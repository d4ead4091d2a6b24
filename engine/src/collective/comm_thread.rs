//! A group whose collectives run on one communication thread, in the order they were
//! started: gradient buckets all-reduced while the backward pass goes on, and the blocking
//! calls the pass itself makes (a synchronised BatchNorm's), keep one order on every member.

use super::Collective;
use crate::{Error, Result, Tensor};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// A call for the communication thread.
type Job = Box<dyn FnOnce(&dyn Collective) + Send>;

/// `group` behind one communication thread. Every call, blocking or not, joins one queue in
/// the order the calling threads make them; a member that starts its calls from one thread
/// (the training loop's) therefore makes them in the same order as the other members.
#[derive(Debug)]
pub struct CommThread {
    group: Arc<dyn Collective>,
    jobs: Option<Sender<Job>>,
    worker: Option<JoinHandle<()>>,
}

/// An all-reduce started by [`CommThread::start_all_reduce`].
#[derive(Debug)]
pub struct Pending(Receiver<Result<(Tensor, f64)>>);

impl Pending {
    /// Wait for the sum, and the seconds the communication thread spent on it.
    pub fn wait(self) -> Result<(Tensor, f64)> {
        self.0.recv().map_err(|_| stopped())?
    }
}

fn stopped() -> Error {
    Error::invalid("collective", "the communication thread stopped")
}

impl CommThread {
    /// Start the communication thread of `group`.
    pub fn new(group: Arc<dyn Collective>) -> Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let inner = group.clone();
        let worker = std::thread::Builder::new()
            .name(format!("comm-{}", group.rank()))
            .spawn(move || queue.into_iter().for_each(|job| job(&*inner)))
            .map_err(|e| Error::invalid("collective", format!("cannot start the communication thread: {e}")))?;
        Ok(CommThread { group, jobs: Some(jobs), worker: Some(worker) })
    }

    /// Queue `call` and return where its result arrives.
    fn queue<T: Send + 'static>(&self, call: impl FnOnce(&dyn Collective) -> Result<T> + Send + 'static) -> Result<Receiver<Result<T>>> {
        let (reply, result) = mpsc::channel();
        let job: Job = Box::new(move |g| {
            let _ = reply.send(call(g));
        });
        self.jobs.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())?;
        Ok(result)
    }

    /// Run `call` on the communication thread, after every call queued before it.
    fn call<T: Send + 'static>(&self, call: impl FnOnce(&dyn Collective) -> Result<T> + Send + 'static) -> Result<T> {
        self.queue(call)?.recv().map_err(|_| stopped())?
    }

    /// Queue the sum of `t` over the group and return at once.
    pub fn start_all_reduce(&self, t: Tensor) -> Result<Pending> {
        let started = self.queue(move |g| {
            let at = Instant::now();
            let sum = g.all_reduce_sum(&t)?;
            Ok((sum, at.elapsed().as_secs_f64()))
        })?;
        Ok(Pending(started))
    }
}

impl Collective for CommThread {
    fn rank(&self) -> usize {
        self.group.rank()
    }
    fn world_size(&self) -> usize {
        self.group.world_size()
    }
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        Ok(self.start_all_reduce(t.clone())?.wait()?.0)
    }
    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        let t = t.clone();
        self.call(move |g| g.broadcast(&t, root))
    }
    fn barrier(&self) -> Result<()> {
        self.call(|g| g.barrier())
    }
    /// Straight to the group, not queued: the communication thread may be waiting in a
    /// call the other members will never make.
    fn abort(&self, why: &str) {
        self.group.abort(why)
    }
}

impl Drop for CommThread {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
