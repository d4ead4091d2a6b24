//! Random buffers from the engine's counter-based generator (kernels/random.cu), the same
//! as every backend's.

use crate::alloc::boxed;
use crate::driver::{args, Grid};
use crate::gpu::{float, suffix, CudaBackend};
use beit_engine::backend::Random;
use beit_engine::rng::mix64;
use beit_engine::{checks, DType, Result, StorageBox};

impl CudaBackend {
}

impl Random for CudaBackend {
    /// Element `i` is `1/keep` when `uniform(seed, i) < keep`, else 0.
    fn bernoulli_scaled(&self, dtype: DType, len: usize, keep: f64, seed: u64) -> Result<StorageBox> {
        const OP: &str = "bernoulli_scaled";
        checks::keep_probability(OP, keep)?;
        float(OP, dtype)?;
        let out = self.alloc(dtype, len)?;
        if len > 0 {
            let (n, mixed, o) = (len as i64, mix64(seed), out.at(0));
            let name = format!("bernoulli_scaled_{}", suffix(dtype));
            // SAFETY: out holds `len` elements of dtype; the scale has the kernel's float type.
            unsafe {
                if dtype == DType::F32 {
                    self.driver.launch("random", &name, Grid::elements(len), &args![n, keep, mixed, (1.0 / keep) as f32, o])?
                } else {
                    self.driver.launch("random", &name, Grid::elements(len), &args![n, keep, mixed, 1.0 / keep, o])?
                }
            }
        }
        Ok(boxed(out))
    }
}
