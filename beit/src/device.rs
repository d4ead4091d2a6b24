//! Opening a device by name (`cpu`, `cuda:N`) across the backends this build has.

pub use beit_backend_cpu::{bf16_linear, Bf16Linear};
use beit_engine::{Device, DeviceSpec, Result};
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
