//! Run-time device choice.

use crate::{Backend, Error, Result};
use std::sync::Arc;

/// What a device string names: `cpu`, `cuda` (= `cuda:0`) or `cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The host CPU.
    Cpu,
    /// CUDA device by ordinal.
    Cuda(usize),
}

impl DeviceSpec {
    /// Parse a device string; errors name the string.
    pub fn parse(spec: &str) -> Result<Self> {
        let s = spec.trim().to_ascii_lowercase();
        if s == "cpu" {
            return Ok(DeviceSpec::Cpu);
        }
        if s == "cuda" || s == "gpu" {
            return Ok(DeviceSpec::Cuda(0));
        }
        if let Some(n) = s.strip_prefix("cuda:") {
            return n.parse().map(DeviceSpec::Cuda).map_err(|_| Error::Device {
                spec: spec.to_string(),
                msg: "expected `cuda:N` with N a device ordinal".into(),
            });
        }
        Err(Error::Device { spec: spec.to_string(), msg: "unknown device; expected `cpu`, `cuda` or `cuda:N`".into() })
    }
}

/// A device: a shared handle to a backend. Cheap to clone.
#[derive(Clone)]
pub struct Device(Arc<dyn Backend>);

impl Device {
    /// Wrap a backend.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Device(backend)
    }

    /// The backend behind the device.
    pub fn backend(&self) -> &dyn Backend {
        &*self.0
    }

    /// The device's name, e.g. `cpu`.
    pub fn name(&self) -> String {
        self.0.name()
    }

    /// Whether two handles name the same device.
    pub fn same(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.name() == other.name()
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Device({})", self.name())
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}
