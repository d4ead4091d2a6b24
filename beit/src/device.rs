//! Opening a device by name (`cpu`, `cuda:N`) across the backends this build has.

pub use beit_backend_cpu::{bf16_linear, Bf16Linear};
use beit_engine::collective::Collective;
use beit_engine::{Device, DeviceSpec, Result};
use std::sync::Arc;
#[cfg(not(feature = "cuda"))]
use beit_engine::Error;

/// Open the device named by `spec`. In a build without the `cuda` feature, `cuda:N` is an
/// error that says how to get it.
pub fn open_device(spec: &str) -> Result<Device> {
    match DeviceSpec::parse(spec)? {
        DeviceSpec::Cpu => Ok(beit_backend_cpu::cpu()),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(n) => beit_backend_cuda::open(n),
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => Err(Error::Device {
            spec: spec.to_string(),
            msg: "this build has no CUDA backend; rebuild with `--features cuda`".into(),
        }),
    }
}

/// The group a data-parallel run on `device` trains in, given the group of its processes
/// (`processes`, e.g. MPI's): on a CUDA GPU, NCCL (its id sent through `processes`), which
/// sums the gradients where they are; otherwise `processes` itself.
pub fn device_group(processes: Arc<dyn Collective>, device: &Device) -> Result<Arc<dyn Collective>> {
    #[cfg(feature = "cuda")]
    if matches!(DeviceSpec::parse(&device.name())?, DeviceSpec::Cuda(_)) {
        return Ok(Arc::new(beit_backend_cuda::Nccl::over(processes, device)?));
    }
    let _ = device;
    Ok(processes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings() {
        assert_eq!(open_device("cpu").unwrap().name(), "cpu");
        let err = open_device("tpu:0").unwrap_err().to_string();
        assert!(err.contains("tpu:0"), "{err}");
        #[cfg(not(feature = "cuda"))]
        {
            let err = open_device("cuda:0").unwrap_err().to_string();
            assert!(err.contains("cuda:0") && err.contains("--features cuda"), "{err}");
        }
    }
}
