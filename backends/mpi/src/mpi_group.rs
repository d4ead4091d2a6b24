//! [`Mpi`]: `MPI_COMM_WORLD` as a [`Collective`], through the `mpi` crate.

use beit_engine::collective::{check_root, not_summable, Collective};
use beit_engine::{DType, Error, HostData, Result, Tensor};
use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;
use std::fmt;
use std::sync::{Mutex, MutexGuard, TryLockError};

/// The group of every process of an MPI run (`MPI_COMM_WORLD`): one member per process.
///
/// Any thread may call it, one call at a time (a mutex serialises them; MPI runs at
/// `MPI_THREAD_SERIALIZED`). MPI is finalised when the value is dropped, which should happen
/// on the thread that called [`Mpi::init`]; MPI cannot be initialised again afterwards.
///
/// Every member must make the same calls in the same order with tensors of the same shape
/// and dtype. Each call first compares the members' element counts and dtypes (one small
/// all-reduce), so a mismatch is an error on every member rather than a hang or a
/// truncation. MPI's own failures (a member dying) abort the run, as MPI does by default.
pub struct Mpi {
    /// Declared before `_universe` so that it is dropped before MPI is finalised.
    world: Mutex<World>,
    rank: usize,
    size: usize,
    _universe: Universe,
}

/// The world communicator, sent between threads only inside [`Mpi`]'s mutex.
struct World(SimpleCommunicator);

// SAFETY: MPI was initialised at MPI_THREAD_SERIALIZED or above, which allows MPI calls from
// any thread provided no two are concurrent; the communicator is only reached through the
// mutex in `Mpi`, which makes them so. The handle itself is a plain id valid on every thread.
unsafe impl Send for World {}

impl fmt::Debug for Mpi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mpi").field("rank", &self.rank).field("size", &self.size).finish_non_exhaustive()
    }
}

impl Mpi {
    /// Initialise MPI (`MPI_Init_thread` at `MPI_THREAD_SERIALIZED`) and join the world
    /// group. Fails if MPI is or was already initialised in this process, or if the library
    /// grants less than serialised threading. Started without a launcher, the process is
    /// rank 0 of 1.
    pub fn init() -> Result<Mpi> {
        let (universe, granted) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| Error::invalid("Mpi::init", "MPI is already initialised in this process (or was, and was finalised)"))?;
        if !matches!(granted, Threading::Serialized | Threading::Multiple) {
            let msg = format!("the MPI library grants {granted:?} threading; beit needs Serialized (MPI calls from several threads, one at a time)");
            return Err(Error::invalid("Mpi::init", msg));
        }
        let world = universe.world();
        let count = |what: &str, n: i32| {
            usize::try_from(n).map_err(|_| Error::invalid("Mpi::init", format!("MPI reports a {what} of {n}")))
        };
        let (rank, size) = (count("rank", world.rank())?, count("size", world.size())?);
        Ok(Mpi { world: Mutex::new(World(world)), rank, size, _universe: universe })
    }

    /// The communicator, for one call.
    fn world(&self, op: &'static str) -> Result<MutexGuard<'_, World>> {
        self.world.lock().map_err(|_| Error::invalid(op, "a thread panicked during an MPI call"))
    }
}

impl World {
    /// Check that every member downloaded its tensor (`host`) and passed one dtype and
    /// element count, and (if `sums`) a dtype MPI can sum: the same verdict on every
    /// member, so all fail or none does (a member alone failing would leave the rest
    /// waiting in MPI). Returns this member's data.
    fn agree(&self, op: &'static str, t: &Tensor, host: Result<HostData>, sums: bool) -> Result<HostData> {
        let numel = i64::try_from(t.numel()).unwrap_or(i64::MAX);
        let dtype = t.dtype() as i64;
        let failed = i64::from(host.is_err());
        let bad = i64::from(sums && !matches!(t.dtype(), DType::F32 | DType::F64 | DType::I64));
        // Maxima; the negated entries give the minima: [n, -n, dtype, -dtype, failed, bad].
        let mine = [numel, -numel, dtype, -dtype, failed, bad];
        let mut all = [0i64; 6];
        self.0.all_reduce_into(&mine[..], &mut all[..], SystemOperation::max());
        let [max_n, neg_min_n, max_dtype, neg_min_dtype, any_failed, any_bad] = all;
        let host = host?;
        if any_failed != 0 {
            return Err(Error::invalid(op, "another member failed to read its tensor"));
        }
        if bad != 0 {
            return Err(not_summable(op, t.dtype()));
        }
        if any_bad != 0 {
            return Err(Error::invalid(op, "another member passed a dtype that cannot be summed (f32, f64 or i64)"));
        }
        if max_dtype != -neg_min_dtype {
            let msg = format!("members passed different dtypes (this one {:?}): every member must pass the same", t.dtype());
            return Err(Error::invalid(op, msg));
        }
        if max_n != -neg_min_n {
            let msg = format!("members passed between {} and {max_n} elements (this one {:?}): every member must pass the same shape", -neg_min_n, t.shape());
            return Err(Error::invalid(op, msg));
        }
        if max_n > i64::from(i32::MAX) {
            return Err(Error::invalid(op, format!("{max_n} elements: MPI counts stop at {} (split the tensor)", i32::MAX)));
        }
        Ok(host)
    }

    /// The element-wise sum of `v` over the group.
    fn sum<T: Equivalence + Copy + Default>(&self, v: &[T]) -> Vec<T> {
        let mut out = vec![T::default(); v.len()];
        self.0.all_reduce_into(v, &mut out[..], SystemOperation::sum());
        out
    }

    /// Overwrite `v` with `root`'s.
    fn broadcast<T: Equivalence>(&self, v: &mut [T], root: i32) {
        self.0.process_at_rank(root).broadcast_into(v);
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        const OP: &str = "all_reduce_sum";
        let world = self.world(OP)?;
        let sum = match world.agree(OP, t, t.to_host(), true)? {
            HostData::F32(v) => HostData::F32(world.sum(&v)),
            HostData::F64(v) => HostData::F64(world.sum(&v)),
            HostData::I64(v) => HostData::I64(world.sum(&v)),
            other => return Err(not_summable(OP, other.dtype())),
        };
        drop(world);
        Tensor::from_host_owned(sum, t.shape(), t.device())
    }

    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        const OP: &str = "broadcast";
        check_root(self, root)?;
        let root = i32::try_from(root).map_err(|_| Error::invalid(OP, format!("root {root} is not an MPI rank")))?;
        let world = self.world(OP)?;
        let mut data = world.agree(OP, t, t.to_host(), false)?;
        match &mut data {
            HostData::F32(v) => world.broadcast(v, root),
            HostData::F64(v) => world.broadcast(v, root),
            HostData::I64(v) => world.broadcast(v, root),
            HostData::U32(v) => world.broadcast(v, root),
            HostData::U8(v) | HostData::Bool(v) => world.broadcast(v, root),
            HostData::BF16(v) => {
                let mut bits: Vec<u16> = v.iter().map(|x| x.to_bits()).collect();
                world.broadcast(&mut bits, root);
                *v = bits.into_iter().map(half::bf16::from_bits).collect();
            }
        }
        drop(world);
        Tensor::from_host_owned(data, t.shape(), t.device())
    }

    fn barrier(&self) -> Result<()> {
        self.world("barrier")?.0.barrier();
        Ok(())
    }

    /// `MPI_Abort` with exit code 1: every process of the run ends (the caller logs `why`
    /// first; MPI prints which rank aborted). When another thread holds the communicator,
    /// waiting in a call the other members may never make, it aborts through a handle of
    /// its own rather than wait for it.
    fn abort(&self, _why: &str) {
        match self.world.try_lock() {
            Ok(world) => world.0.abort(1),
            Err(TryLockError::Poisoned(p)) => p.into_inner().0.abort(1),
            Err(TryLockError::WouldBlock) => SimpleCommunicator::world().abort(1),
        }
    }
}
