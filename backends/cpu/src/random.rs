//! Dropout masks from the engine's counter-based generator.

use crate::CpuBackend;
use crate::scalar::Real;
use crate::storage::{boxed, float_dispatch};
use crate::strided::par_rows;
use beit_engine::backend::Random;
use beit_engine::rng::uniform;
use beit_engine::{DType, Result, StorageBox};

impl Random for CpuBackend {
    /// Element `i` is `1/keep` when `uniform(seed, i) < keep`, else 0.
    fn bernoulli_scaled(&self, dtype: DType, len: usize, keep: f64, seed: u64) -> Result<StorageBox> {
        const OP: &str = "bernoulli_scaled";
        beit_engine::checks::keep_probability(OP, keep)?;
        float_dispatch!(OP, dtype, T => Ok(boxed(dtype, mask::<T>(len, keep, seed))))
    }
}


fn mask<T: Real>(len: usize, keep: f64, seed: u64) -> Vec<T> {
    let scale = T::of(1.0 / keep);
    let mut out = vec![T::zero(); len];
    par_rows(&mut out, 1, |i, x| {
        if uniform(seed, i as u64) < keep {
            x[0] = scale;
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use crate::testutil::{vals, B};
    use beit_engine::rng::uniform;
    use beit_engine::backend::prelude::*;
    use beit_engine::{DType, Error};

    #[test]
    fn mask_follows_the_counter_based_generator() {
        let (n, keep, seed) = (100_003, 0.9, 42);
        for dtype in [DType::F32, DType::F64] {
            let got = vals(&B.bernoulli_scaled(dtype, n, keep, seed).unwrap());
            let scale = if dtype == DType::F32 { (1.0 / keep) as f32 as f64 } else { 1.0 / keep };
            for (i, &g) in got.iter().enumerate() {
                assert_eq!(g, if uniform(seed, i as u64) < keep { scale } else { 0.0 }, "element {i}");
            }
            let kept = got.iter().filter(|&&g| g > 0.0).count() as f64 / n as f64;
            assert!((kept - keep).abs() < 0.01);
        }
        assert_eq!(vals(&B.bernoulli_scaled(DType::F32, 5, 1.0, 1).unwrap()), [1.0; 5]);
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            assert!(matches!(B.bernoulli_scaled(DType::F32, 5, bad, 1), Err(Error::Invalid { .. })));
        }
        assert!(matches!(B.bernoulli_scaled(DType::I64, 5, 0.5, 1), Err(Error::DType { .. })));
    }
}
