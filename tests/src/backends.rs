//! The backends this build has, and running one case on each of them.

use beit_engine::{DType, Device, Result, Tensor};

/// A conformance case: runs on one device, fails by returning `Err` or panicking.
pub type CaseFn = fn(&Device) -> Result<()>;

/// The CPU device: every build has it, and it holds the float64 references.
pub fn cpu() -> Device {
    beit_backend_cpu::cpu()
}

/// Whether `dev` computes in float64 (required on the CPU, optional elsewhere).
pub fn supports_f64(dev: &Device) -> bool {
    Tensor::ones(&[2], DType::F64, dev).and_then(|t| t.exp()?.sum_all()).is_ok()
}

/// Whether `dev` holds bf16 tensors (casts to and from them; the CPU's Linear takes bf16
/// weights).
pub fn supports_bf16(dev: &Device) -> bool {
    Tensor::ones(&[2], DType::F32, dev).and_then(|t| t.to_dtype(DType::BF16)?.to_dtype(DType::F32)).is_ok()
}

/// The float dtypes a case checks on `dev`: f32 everywhere, f64 where supported.
pub fn float_dtypes(dev: &Device) -> Vec<DType> {
    let mut dtypes = vec![DType::F32];
    if supports_f64(dev) {
        dtypes.push(DType::F64);
    }
    dtypes
}

/// Runs `case` on `dev`; an error fails the test with the case name and device.
pub fn run_on(name: &str, dev: &Device, case: CaseFn) {
    if let Err(e) = case(dev) {
        panic!("{name} on {dev}: {e}");
    }
}

/// Runs `case` on the CPU.
pub fn run_on_cpu(name: &str, case: CaseFn) {
    run_on(name, &cpu(), case);
}

/// CUDA device 0 for `test`: the GPU with the `cuda` feature (`None`, after printing why,
/// when none can be opened), else the simulated device, which must open.
#[cfg(any(feature = "cuda", feature = "cuda-sim"))]
pub fn cuda(test: &str) -> Option<Device> {
    match beit_backend_cuda::open(0) {
        Ok(dev) => Some(dev),
        Err(e) if cfg!(feature = "cuda") => {
            eprintln!("SKIPPED {test} on cuda:0 (no usable GPU: {e})");
            None
        }
        Err(e) => panic!("{test}: the simulated CUDA device does not open: {e}"),
    }
}

/// Runs `case` on CUDA device 0 ([`cuda`]: the GPU, or the simulator in a `cuda-sim` build).
#[cfg(any(feature = "cuda", feature = "cuda-sim"))]
pub fn run_on_cuda(name: &str, case: CaseFn) {
    if let Some(dev) = cuda(name) {
        run_on(name, &dev, case);
    }
}
