//! [`Nccl`]: a [`Collective`] over NCCL, one member per GPU, for data-parallel training on
//! CUDA devices. Tensors stay on the GPU: every call is enqueued on the device's stream, in
//! order with the kernels that produced its input and those that read its output.

use crate::alloc::{boxed, CudaStorage};
use crate::gpu::CudaBackend;
use crate::nccl_lib::{nccl, CommHandle, NcclLib, NcclResult, StreamHandle, UniqueId, UNIQUE_ID_BYTES};
use crate::nccl_lib::{NCCL_FLOAT32, NCCL_FLOAT64, NCCL_INT64, NCCL_SUM, NCCL_UINT8};
use beit_engine::collective::{check_root, not_summable, Collective};
use beit_engine::{DType, Device, Error, Result, Tensor};
use std::ffi::{c_int, c_void};
use std::fmt;
use std::sync::{Arc, Mutex};

/// One member of an NCCL communicator, on one CUDA device of this backend.
///
/// NCCL is loaded at run time ([`Nccl::library`]). Build a group with [`Nccl::over`] (the id
/// travels through another group, e.g. MPI), or with [`Nccl::unique_id`] on rank 0, the id
/// sent to the others by any means, and [`Nccl::new`] on every member.
///
/// Every member must make the same calls in the same order with tensors of the same shape
/// and dtype (NCCL does not check: a mismatch hangs or mixes data). Calls are serialised by
/// a mutex, so any thread may make them. The communicator is destroyed when the value is
/// dropped.
pub struct Nccl {
    comm: Mutex<Comm>,
    rank: usize,
    size: usize,
    device: Device,
    backend: Arc<CudaBackend>,
    lib: &'static NcclLib,
    /// The group the id came through ([`Nccl::over`]), ended with this one.
    bootstrap: Option<Arc<dyn Collective>>,
}

/// The communicator and the stream its operations are enqueued on; `aborted` once
/// [`Collective::abort`] has ended it.
struct Comm {
    handle: CommHandle,
    stream: StreamHandle,
    aborted: bool,
}

// SAFETY: an NCCL communicator may be used from any thread, one call at a time (NCCL's
// thread-safety rule); `Comm` is only reached through the mutex in `Nccl`, which makes the
// calls so. The stream is the backend's, which lives as long as the process's backend.
unsafe impl Send for Comm {}

impl fmt::Debug for Nccl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nccl")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .field("device", &self.device.name())
            .field("library", &self.lib.name)
            .finish()
    }
}

/// The GPU backend behind `device`, which must be `cuda:N` of this build (not simulated).
fn gpu_backend(device: &Device) -> Result<Arc<CudaBackend>> {
    let name = device.name();
    let not_gpu = || Error::Device { spec: name.clone(), msg: "NCCL runs on a CUDA GPU device (`cuda:N`)".into() };
    let ordinal = name.strip_prefix("cuda:").and_then(|n| n.parse().ok()).ok_or_else(not_gpu)?;
    let backend = crate::backend_of(ordinal, false)?;
    if !std::ptr::addr_eq(device.backend(), Arc::as_ptr(&backend)) {
        return Err(not_gpu());
    }
    Ok(backend)
}

/// `v` as a C `int` for NCCL, or an error naming `what`.
fn c_int_of(op: &'static str, what: &str, v: usize) -> Result<c_int> {
    c_int::try_from(v).map_err(|_| Error::invalid(op, format!("{what} {v} does not fit NCCL's int")))
}

impl Nccl {
    /// Which NCCL library this process uses (loading it on first use): the file's name, or
    /// an error naming every file tried (`$BEIT_NCCL`, `libnccl.so.2`, `libnccl.so`).
    pub fn library() -> Result<String> {
        Ok(nccl()?.name.clone())
    }

    /// A fresh communicator id (`ncclGetUniqueId`): rank 0 makes it and every member passes
    /// it to [`Nccl::new`].
    pub fn unique_id() -> Result<[u8; UNIQUE_ID_BYTES]> {
        let lib = nccl()?;
        let mut id = UniqueId { internal: [0; UNIQUE_ID_BYTES] };
        // SAFETY: `id` is a writable ncclUniqueId.
        lib.check("nccl", "ncclGetUniqueId", unsafe { (lib.get_unique_id)(&mut id) })?;
        Ok(id.internal)
    }

    /// Join communicator `id` as member `rank` of `size` on `device` (`ncclCommInitRank`),
    /// which must be a CUDA GPU of this backend. Returns once all `size` members have joined.
    pub fn new(device: &Device, rank: usize, size: usize, id: [u8; UNIQUE_ID_BYTES]) -> Result<Nccl> {
        const OP: &str = "Nccl::new";
        if rank >= size {
            return Err(Error::invalid(OP, format!("rank {rank} outside a group of {size}")));
        }
        let (c_rank, c_size) = (c_int_of(OP, "rank", rank)?, c_int_of(OP, "group size", size)?);
        let backend = gpu_backend(device)?;
        let lib = nccl()?;
        let stream = backend.driver.blas_stream().ok_or_else(|| Error::Device {
            spec: device.name(),
            msg: "the device has no CUDA stream for NCCL".into(),
        })?;
        // NCCL binds the communicator to the device current on this thread.
        backend.driver.enter()?;
        let mut handle: CommHandle = std::ptr::null_mut();
        // SAFETY: `handle` is a writable ncclComm_t; the id is passed by value as nccl.h declares.
        let r = unsafe { (lib.comm_init_rank)(&mut handle, c_size, UniqueId { internal: id }, c_rank) };
        lib.check(&device.name(), "ncclCommInitRank", r)?;
        Ok(Nccl { comm: Mutex::new(Comm { handle, stream, aborted: false }), rank, size, device: device.clone(), backend, lib, bootstrap: None })
    }

    /// cuda:`ordinal` when NCCL can run there, or why not (no usable GPU, no NCCL
    /// library): what a check of a group decides to skip on.
    pub fn available(ordinal: usize) -> std::result::Result<Device, String> {
        let device = crate::open(ordinal).map_err(|e| format!("no usable GPU: {e}"))?;
        Nccl::library().map_err(|e| format!("no NCCL: {e}"))?;
        Ok(device)
    }

    /// A group of every member of `bootstrap`, each on its own `device`, with `bootstrap`'s
    /// ranks: rank 0 makes the id ([`Nccl::unique_id`]) and `bootstrap` broadcasts it (as a
    /// U8 tensor on `device`). Every member first says whether it could load NCCL and use
    /// `device` (one sum over `bootstrap`), so a failure is an error on every member rather
    /// than the others waiting in `ncclCommInitRank`. The group keeps `bootstrap` (MPI stays
    /// initialised while it lives) and ends it too on [`Collective::abort`], so that the
    /// other processes end as well rather than wait in NCCL.
    pub fn over(bootstrap: Arc<dyn Collective>, device: &Device) -> Result<Nccl> {
        let (rank, size) = (bootstrap.rank(), bootstrap.world_size());
        let make_id = || if rank == 0 { Nccl::unique_id() } else { nccl().map(|_| [0; UNIQUE_ID_BYTES]) };
        let mine = gpu_backend(device).and_then(|_| make_id());
        let failed = Tensor::from_vec(vec![i64::from(mine.is_err())], &[1], device)?;
        let failed = bootstrap.all_reduce_sum(&failed)?.to_vec::<i64>()?[0];
        let mine = mine?;
        if failed > 0 {
            let msg = format!("{failed} member(s) of the group could not load NCCL or use their device");
            return Err(Error::invalid("Nccl::over", msg));
        }
        let id = Tensor::from_vec(mine.to_vec(), &[UNIQUE_ID_BYTES], device)?;
        let id = bootstrap.broadcast(&id, 0)?.to_vec::<u8>()?;
        let id = id.try_into().map_err(|v: Vec<u8>| {
            Error::invalid("Nccl::over", format!("received an id of {} bytes, not {UNIQUE_ID_BYTES}", v.len()))
        })?;
        let mut group = Nccl::new(device, rank, size, id)?;
        group.bootstrap = Some(bootstrap);
        Ok(group)
    }

    /// Error unless `t` is on this member's device.
    fn check_device(&self, op: &'static str, t: &Tensor) -> Result<()> {
        if !t.device().same(&self.device) {
            let rhs = format!("{} (the NCCL group's device)", self.device.name());
            return Err(Error::DeviceMismatch { op, lhs: t.device().name(), rhs });
        }
        Ok(())
    }

    /// Run `call` (an NCCL function named `what`) on the communicator and the device's
    /// stream, with the device current on this thread.
    fn call(&self, what: &str, call: impl FnOnce(CommHandle, StreamHandle) -> NcclResult) -> Result<()> {
        let comm = self.comm.lock().unwrap_or_else(|p| p.into_inner());
        if comm.aborted {
            return Err(Error::invalid("nccl", format!("{what} on an aborted NCCL group")));
        }
        self.backend.driver.enter()?;
        self.lib.check(&self.device.name(), what, call(comm.handle, comm.stream))
    }

    /// A fresh buffer for `t`'s elements.
    fn output_for(&self, t: &Tensor) -> Result<CudaStorage> {
        self.backend.alloc(t.dtype(), t.numel())
    }
}

impl Collective for Nccl {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor> {
        const OP: &str = "all_reduce_sum";
        self.check_device(OP, t)?;
        let dtype = match t.dtype() {
            DType::F32 => NCCL_FLOAT32,
            DType::F64 => NCCL_FLOAT64,
            DType::I64 => NCCL_INT64,
            other => return Err(not_summable(OP, other)),
        };
        let src = self.backend.contiguous(OP, t.view())?;
        let out = self.output_for(t)?;
        if t.numel() > 0 {
            let (send, recv, n) = (src.ptr as *const c_void, out.at(0) as *mut c_void, t.numel());
            // SAFETY: `send` and `recv` address `n` elements of `dtype` on this device, live
            // until the stream has run the call (the allocator reuses buffers in stream order).
            let reduce = |comm, stream| unsafe { (self.lib.all_reduce)(send, recv, n, dtype, NCCL_SUM, comm, stream) };
            self.call("ncclAllReduce", reduce)?;
        }
        Tensor::from_storage(boxed(out), t.shape(), t.device())
    }

    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor> {
        const OP: &str = "broadcast";
        check_root(self, root)?;
        self.check_device(OP, t)?;
        let c_root = c_int_of(OP, "root", root)?;
        let out = self.output_for(t)?;
        // Only the root's data is read; the others receive into the fresh buffer.
        let src = if self.rank == root { Some(self.backend.contiguous(OP, t.view())?) } else { None };
        let bytes = t.numel() * t.dtype().size_in_bytes();
        if bytes > 0 {
            let recv = out.at(0) as *mut c_void;
            let send = src.as_ref().map_or(recv.cast_const(), |c| c.ptr as *const c_void);
            // SAFETY: `send` (read on the root only) and `recv` address `bytes` bytes on this
            // device, live until the stream has run the call.
            let copy = |comm, stream| unsafe { (self.lib.broadcast)(send, recv, bytes, NCCL_UINT8, c_root, comm, stream) };
            self.call("ncclBroadcast", copy)?;
        }
        Tensor::from_storage(boxed(out), t.shape(), t.device())
    }

    fn barrier(&self) -> Result<()> {
        let one = self.backend.full_impl(DType::F32, 1, 0.0)?;
        let p = one.at(0) as *mut c_void;
        // SAFETY: `p` addresses one f32 of a live buffer on this device; in place.
        let reduce = |comm, stream| unsafe { (self.lib.all_reduce)(p, p, 1, NCCL_FLOAT32, NCCL_SUM, comm, stream) };
        self.call("ncclAllReduce", reduce)?;
        self.backend.driver.synchronize()
    }

    /// `ncclCommAbort`: this member's pending and later calls fail; the others' fail once
    /// NCCL sees the member gone (a group bootstrapped over MPI ends with MPI's abort).
    /// `ncclCommAbort`, then the abort of the group the id came through (MPI's ends every
    /// process of the run).
    fn abort(&self, why: &str) {
        {
            let mut comm = self.comm.lock().unwrap_or_else(|p| p.into_inner());
            if !std::mem::replace(&mut comm.aborted, true) {
                // SAFETY: the handle came from ncclCommInitRank; `aborted` keeps it from being
                // used (or destroyed) again.
                let _ = unsafe { (self.lib.comm_abort)(comm.handle) };
            }
        }
        if let Some(bootstrap) = &self.bootstrap {
            bootstrap.abort(why);
        }
    }
}

impl Drop for Nccl {
    fn drop(&mut self) {
        let comm = self.comm.get_mut().unwrap_or_else(|p| p.into_inner());
        if comm.aborted {
            return;
        }
        // Errors here only leak the communicator of a group that is going away.
        let _ = self.backend.driver.synchronize();
        // SAFETY: the handle came from ncclCommInitRank and is not used after this call.
        let _ = unsafe { (self.lib.comm_destroy)(comm.handle) };
    }
}
