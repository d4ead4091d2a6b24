//! A group whose members are threads of one process, meeting in shared memory: for tests
//! of data-parallel training without MPI, and for one process driving several devices.

use super::{check_root, Collective};
use crate::{Error, HostData, Result, Tensor};
use std::sync::{Arc, Condvar, Mutex};

/// One member of a group of threads ([`LocalGroup::new`] makes all of them). A member
/// that stops calling must [`Collective::abort`], or the others wait for it forever.
#[derive(Debug)]
pub struct LocalGroup {
    rank: usize,
    shared: Arc<Shared>,
}

/// What every member of one call gets: the combined value, or why there is none.
type Outcome = std::result::Result<HostData, String>;

#[derive(Debug)]
struct Shared {
    size: usize,
    round: Mutex<Round>,
    changed: Condvar,
}

/// The call in progress: which it is, each member's input, then the output until all have
/// taken it; and why the group was aborted, once it is.
#[derive(Debug)]
struct Round {
    op: Option<&'static str>,
    inputs: Vec<Option<HostData>>,
    output: Option<Arc<Outcome>>,
    taken: usize,
    aborted: Option<String>,
}

impl LocalGroup {
    /// The `size` members of a new group, rank 0 first; move each to its thread.
    pub fn new(size: usize) -> Vec<LocalGroup> {
        let round = Round { op: None, inputs: (0..size).map(|_| None).collect(), output: None, taken: 0, aborted: None };
        let shared = Arc::new(Shared { size, round: Mutex::new(round), changed: Condvar::new() });
        (0..size).map(|rank| LocalGroup { rank, shared: shared.clone() }).collect()
    }

    /// Give `data`, wait for every member's, and return `combine` of them (in rank order),
    /// computed once by the last member to arrive.
    fn exchange(&self, op: &'static str, data: HostData, combine: impl FnOnce(Vec<HostData>) -> Outcome) -> Result<HostData> {
        let poisoned = |_| Error::invalid(op, "a member of the local group panicked");
        let s = &*self.shared;
        let aborted = |why: &String| Error::invalid(op, format!("the group was aborted ({why})"));
        let mut r = s.round.lock().map_err(poisoned)?;
        while r.output.is_some() && r.aborted.is_none() {
            r = s.changed.wait(r).map_err(poisoned)?;
        }
        if let Some(why) = &r.aborted {
            return Err(aborted(why));
        }
        if let Some(other) = r.op.filter(|&o| o != op) {
            let why = format!("member {} called {op} while others called {other}", self.rank);
            r.aborted = Some(why.clone());
            s.changed.notify_all();
            return Err(Error::invalid(op, why));
        }
        r.op = Some(op);
        r.inputs[self.rank] = Some(data);
        if r.inputs.iter().all(Option::is_some) {
            let inputs = r.inputs.iter_mut().map(|i| i.take().expect("checked above")).collect();
            (r.output, r.op) = (Some(Arc::new(combine(inputs))), None);
            s.changed.notify_all();
        }
        while r.output.is_none() && r.aborted.is_none() {
            r = s.changed.wait(r).map_err(poisoned)?;
        }
        if let (None, Some(why)) = (&r.output, &r.aborted) {
            return Err(aborted(why));
        }
        let out = r.output.clone().expect("checked above");
        r.taken += 1;
        if r.taken == s.size {
            (r.output, r.taken) = (None, 0);
            s.changed.notify_all();
        }
        drop(r);
        (*out).clone().map_err(|msg| Error::invalid(op, msg))
    }
}

/// `a += b` element-wise, for the summable dtypes of one length.
fn add_into(a: &mut HostData, b: &HostData) -> std::result::Result<(), String> {
    fn add<T: Copy + std::ops::AddAssign>(a: &mut [T], b: &[T]) {
        a.iter_mut().zip(b).for_each(|(x, &y)| *x += y);
    }
    if a.len() != b.len() {
        return Err(format!("members gave {} and {} elements", a.len(), b.len()));
    }
    match (a, b) {
        (HostData::F32(a), HostData::F32(b)) => add(a, b),
        (HostData::F64(a), HostData::F64(b)) => add(a, b),
        (HostData::I64(a), HostData::I64(b)) => add(a, b),
        (a, b) => return Err(format!("cannot sum {:?} with {:?} (f32, f64 or i64, the same on every member)", a.dtype(), b.dtype())),
    }
    Ok(())
}

impl Collective for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        let sum = self.exchange("all_reduce_sum", t.to_host()?, |inputs| {
            let mut inputs = inputs.into_iter();
            let mut acc = inputs.next().expect("a group has a member");
            inputs.try_for_each(|x| add_into(&mut acc, &x))?;
            Ok(acc)
        })?;
        Tensor::from_host_owned(sum, t.shape(), t.device())
    }

    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        check_root(self, root)?;
        let shape = t.shape().to_vec();
        let data = self.exchange("broadcast", t.to_host()?, move |mut inputs| Ok(inputs.swap_remove(root)))?;
        if data.len() != shape.iter().product::<usize>() || data.dtype() != t.dtype() {
            return Err(Error::invalid("broadcast", format!("root sent {} {:?} values for a {:?} {shape:?} tensor", data.len(), data.dtype(), t.dtype())));
        }
        Tensor::from_host_owned(data, &shape, t.device())
    }

    fn barrier(&self) -> Result<()> {
        self.exchange("barrier", HostData::U8(Vec::new()), |_| Ok(HostData::U8(Vec::new()))).map(drop)
    }

    fn abort(&self, why: &str) {
        let mut r = self.shared.round.lock().unwrap_or_else(|p| p.into_inner());
        r.aborted.get_or_insert_with(|| format!("member {}: {why}", self.rank));
        self.shared.changed.notify_all();
    }
}
