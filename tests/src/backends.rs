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

/// Runs `case` on CUDA device 0; without a usable GPU, prints why and passes.
#[cfg(feature = "cuda")]
pub fn run_on_cuda(name: &str, case: CaseFn) {
    match beit_backend_cuda::open(0) {
        Ok(dev) => run_on(name, &dev, case),
        Err(e) => eprintln!("SKIPPED {name} on cuda:0 (no usable GPU: {e})"),
    }
}
