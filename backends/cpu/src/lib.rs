//! beit-backend-cpu: the CPU implementation of [`beit_engine::Backend`], one kernel family
//! per file of the family's name (`memory.rs`, `elementwise.rs`, `reduce.rs`, `index.rs`,
//! `matmul.rs`, `rows.rs`, `loss.rs`, `conv.rs`, `optim.rs`, `random.rs`).
//!
//! Buffers are plain vectors ([`CpuStorage`]), recycled through a bounded pool when dropped;
//! kernels read arbitrary strided views and write fresh row-major buffers, in parallel on
//! rayon's global pool. Matmul, Linear layers and convolutions run on our GEMM (`gemm/`,
//! AVX-512 or AVX2 + FMA) where the CPU has it, else on `matrixmultiply`'s, one
//! single-threaded call per rayon task (`blocks.rs`; on our GEMM, the threads of one product
//! first pack the operand they share together, `gemm/threads.rs`); Linear weights may be
//! pre-packed for inference (`packed.rs`).
#![warn(missing_docs)]

mod attention;
mod blocks;
mod conv;
mod conv2d;
mod elementwise;
mod erf;
mod fastmath;
mod gemm;
mod index;
#[cfg(target_arch = "x86_64")]
mod lanes;
mod linear;
mod loss;
mod matmul;
mod memory;
mod norm;
mod optim;
mod packed;
mod pool;
mod random;
mod reduce;
mod rows;
mod scalar;
mod storage;
mod strided;
mod vmath;
mod winograd;
#[cfg(test)]
mod testutil;

pub use linear::{bf16_linear, Bf16Linear};
pub use pool::release_pool;
pub use storage::CpuStorage;

use beit_engine::Device;
use std::sync::{Arc, OnceLock};

/// The CPU backend. Stateless: every instance behaves the same; use [`cpu`] for the shared device.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuBackend;

/// The process-wide CPU device (one shared [`CpuBackend`]).
pub fn cpu() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(|| Device::new(Arc::new(CpuBackend))).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use beit_engine::{HostData, Layout, View};

    #[test]
    fn one_shared_device_named_cpu() {
        let (a, b) = (cpu(), cpu());
        assert!(a.same(&b));
        assert_eq!(a.name(), "cpu");
        let data = HostData::U32(vec![1, 2, 3]);
        let s = a.backend().from_host(&data).unwrap();
        let l = Layout::contiguous(&[3]);
        assert_eq!(a.backend().to_host(View { storage: &*s, layout: &l }).unwrap(), data);
    }
}
