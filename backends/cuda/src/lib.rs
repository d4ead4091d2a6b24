//! beit-backend-cuda: the CUDA implementation of [`beit_engine::Backend`].
//!
//! With the crate's `cuda` feature (turned on by `beit/cuda`, `beit-cli/cuda` and
//! `beit-conformance/cuda`): one primary context and one non-blocking stream per device
//! (`cust`), a caching allocator, kernels in `kernels/*.cu` compiled to PTX by the build
//! script and loaded once, and matmul through cuBLAS loaded at run time (or the built-in
//! tiled GEMM kernel when cuBLAS is absent). Building needs nvcc and a `libcuda.so` to link
//! against: `source scripts/cuda-env.sh` provides both on any Linux machine. Without the
//! feature the crate builds without CUDA and [`open`] reports that it is not compiled in.
#![warn(missing_docs)]

/// Declares the modules that only exist with the `cuda` feature.
macro_rules! cuda_modules {
    ($($m:ident),*) => { $(#[cfg(feature = "cuda")] mod $m;)* };
}
cuda_modules!(alloc, backend, blas, conv, driver, elementwise, geometry, gpu, index, loss, matmul, optim, reduce, rows);

#[cfg(feature = "cuda")]
pub use {alloc::CudaStorage, gpu::CudaBackend};

use beit_engine::{Device, Result};
#[cfg(not(feature = "cuda"))]
use beit_engine::Error;

/// Open CUDA device `ordinal` (one shared backend per device for the whole process).
#[cfg(feature = "cuda")]
pub fn open(ordinal: usize) -> Result<Device> {
    Ok(Device::new(backend_of(ordinal)?))
}

/// The shared backend of device `ordinal`, created on first use.
#[cfg(feature = "cuda")]
fn backend_of(ordinal: usize) -> Result<std::sync::Arc<CudaBackend>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static OPEN: OnceLock<Mutex<HashMap<usize, Arc<CudaBackend>>>> = OnceLock::new();
    let mut open = OPEN.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(b) = open.get(&ordinal) {
        return Ok(b.clone());
    }
    let driver = Arc::new(driver::Driver::new(ordinal)?);
    let gemm = blas::Gemm::new(driver.stream().cast());
    let backend = Arc::new(CudaBackend { alloc: Arc::new(alloc::Allocator::new(driver.clone())), driver, gemm });
    open.insert(ordinal, backend.clone());
    Ok(backend)
}

/// Which GEMM device `ordinal` runs (cuBLAS or the built-in kernel) and whether TF32 is on.
#[cfg(feature = "cuda")]
pub fn describe(ordinal: usize) -> Result<String> {
    Ok(format!("{:?}", backend_of(ordinal)?))
}

/// Turn TF32 tensor-core math for f32 matmuls on device `ordinal` on or off (default off,
/// or on with `BEIT_CUDA_TF32=1`).
#[cfg(feature = "cuda")]
pub fn set_tf32(ordinal: usize, on: bool) -> Result<()> {
    backend_of(ordinal)?.gemm.set_tf32(on);
    Ok(())
}

/// Without the `cuda` feature: an error saying how to get the backend.
#[cfg(not(feature = "cuda"))]
pub fn open(ordinal: usize) -> Result<Device> {
    Err(Error::Device {
        spec: format!("cuda:{ordinal}"),
        msg: "this build has no CUDA backend; rebuild with `--features cuda` (see README, Building with CUDA)".into(),
    })
}
