//! beit-backend-cuda: the CUDA implementation of [`beit_engine::Backend`], one kernel family
//! per file of the family's name (`memory.rs`, `elementwise.rs`, ..., as the engine's).
//!
//! With the crate's `cuda` feature (turned on by `beit/cuda`, `beit-cli/cuda` and
//! `beit-conformance/cuda`): one primary context and one non-blocking stream per device
//! (`cust`), a caching allocator, kernels in `kernels/*.cu` compiled to PTX by the build
//! script and loaded once, and matmul through cuBLAS loaded at run time (or the built-in
//! tiled GEMM kernel when cuBLAS is absent). Building needs nvcc and a `libcuda.so` to link
//! against: `source scripts/cuda-env.sh` provides both on any Linux machine.
//!
//! With the `cuda-sim` feature the same kernels are compiled by the host C++ compiler and
//! run on CPU threads, one fiber per CUDA thread, behind the same allocator and launch code
//! (`sim.rs`): device `cuda-sim:N`, no GPU, nvcc or libcuda needed. Without `cuda`, [`open`]
//! opens the simulated device; [`open_sim`] always does.
//!
//! With `cuda`, `Nccl` sums gradients over GPUs for data-parallel training, through NCCL
//! loaded at run time (`nccl.rs`, `nccl_lib.rs`).
//!
//! Without either feature the crate builds without CUDA and [`open`] reports that it is not
//! compiled in.
#![warn(missing_docs)]

/// Declares the modules that exist with either feature.
macro_rules! device_modules {
    ($($m:ident),*) => { $(#[cfg(any(feature = "cuda", feature = "cuda-sim"))] mod $m;)* };
}
device_modules!(alloc, blas, conv, driver, elementwise, geometry, gpu, index, loss, matmul, memory, optim, random, reduce, rows);
#[cfg(feature = "cuda")]
mod cust_driver;
#[cfg(feature = "cuda")]
mod nccl;
#[cfg(feature = "cuda")]
mod nccl_lib;
#[cfg(feature = "cuda-sim")]
mod sim;

#[cfg(any(feature = "cuda", feature = "cuda-sim"))]
pub use {alloc::CudaStorage, gpu::CudaBackend};
#[cfg(feature = "cuda")]
pub use nccl::Nccl;

use beit_engine::{Device, Result};
#[cfg(not(any(feature = "cuda", feature = "cuda-sim")))]
use beit_engine::Error;

/// Open CUDA device `ordinal` (one shared backend per device for the whole process): the
/// GPU with the `cuda` feature, else the simulated device of [`open_sim`].
#[cfg(any(feature = "cuda", feature = "cuda-sim"))]
pub fn open(ordinal: usize) -> Result<Device> {
    Ok(Device::new(backend_of(ordinal, !cfg!(feature = "cuda"))?))
}

/// Open simulated CUDA device `ordinal` (`cuda-sim:N`): the kernels run on CPU threads.
#[cfg(feature = "cuda-sim")]
pub fn open_sim(ordinal: usize) -> Result<Device> {
    Ok(Device::new(backend_of(ordinal, true)?))
}

/// The shared backend of device `ordinal` (simulated or not), created on first use.
#[cfg(any(feature = "cuda", feature = "cuda-sim"))]
fn backend_of(ordinal: usize, sim: bool) -> Result<std::sync::Arc<CudaBackend>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    /// Open backends by (ordinal, simulated).
    type Open = Mutex<HashMap<(usize, bool), Arc<CudaBackend>>>;
    static OPEN: OnceLock<Open> = OnceLock::new();
    let mut open = OPEN.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(b) = open.get(&(ordinal, sim)) {
        return Ok(b.clone());
    }
    let driver = new_driver(ordinal, sim)?;
    let gemm = blas::Gemm::new(driver.blas_stream());
    let backend = Arc::new(CudaBackend { alloc: Arc::new(alloc::Allocator::new(driver.clone())), driver, gemm });
    open.insert((ordinal, sim), backend.clone());
    Ok(backend)
}

/// The driver of device `ordinal`: simulated, or the GPU's.
#[cfg(any(feature = "cuda", feature = "cuda-sim"))]
fn new_driver(ordinal: usize, sim: bool) -> Result<std::sync::Arc<dyn driver::Driver>> {
    #[cfg(feature = "cuda-sim")]
    if sim {
        return Ok(std::sync::Arc::new(sim::SimDriver::new(ordinal)?));
    }
    #[cfg(feature = "cuda")]
    {
        let _ = sim;
        Ok(std::sync::Arc::new(cust_driver::CustDriver::new(ordinal)?))
    }
    #[cfg(not(feature = "cuda"))]
    unreachable!("without the `cuda` feature every device is simulated (sim = {sim})")
}

/// Which GEMM device `ordinal` runs (cuBLAS or the built-in kernel) and whether TF32 is on.
#[cfg(any(feature = "cuda", feature = "cuda-sim"))]
pub fn describe(ordinal: usize) -> Result<String> {
    Ok(format!("{:?}", backend_of(ordinal, !cfg!(feature = "cuda"))?))
}

/// Turn TF32 tensor-core math for f32 matmuls on device `ordinal` on or off (default off,
/// or on with `BEIT_CUDA_TF32=1`).
#[cfg(any(feature = "cuda", feature = "cuda-sim"))]
pub fn set_tf32(ordinal: usize, on: bool) -> Result<()> {
    backend_of(ordinal, !cfg!(feature = "cuda"))?.gemm.set_tf32(on);
    Ok(())
}

/// Without the `cuda` or `cuda-sim` feature: an error saying how to get the backend.
#[cfg(not(any(feature = "cuda", feature = "cuda-sim")))]
pub fn open(ordinal: usize) -> Result<Device> {
    Err(Error::Device {
        spec: format!("cuda:{ordinal}"),
        msg: "this build has no CUDA backend; rebuild with `--features cuda` (see README, Building with CUDA)".into(),
    })
}
