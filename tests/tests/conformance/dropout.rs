//! Seeded dropout and drop-path: the mask is the backend contract's (`uniform(seed, i) <
//! keep`, identical on every backend and dtype), its statistics are right, the same seed
//! gives the same mask, and the backward is the same mask times the incoming gradient.

use beit_conformance::gradcheck::{analytic_grads, output_weights};
use beit_conformance::{assert_close, conformance, cpu, float_dtypes, op_cases, Array, Gen, Input, OpCase};
use beit_engine::{DType, Device, Result, Tensor};

/// The seed of every mask here.
const SEED: u64 = 0xD0D0;

/// Dropout (one draw per element) or drop-path (one draw per sample along dim 0).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Dropout,
    DropPath,
}

impl Kind {
    fn apply(self, x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
        match self {
            Kind::Dropout => x.dropout(p, seed),
            Kind::DropPath => x.drop_path(p, seed),
        }
    }

    /// The shape of the mask for an input of `shape`.
    fn mask_shape(self, shape: &[usize]) -> Vec<usize> {
        match self {
            Kind::Dropout => shape.to_vec(),
            Kind::DropPath => [&shape[..1], &vec![1; shape.len() - 1][..]].concat(),
        }
    }

    /// The scaled mask the op multiplies by, broadcast to `shape`, read off the op itself.
    fn mask(self, dev: &Device, dtype: DType, shape: &[usize], p: f64, seed: u64) -> Result<Array> {
        Array::from_tensor(&self.apply(&Tensor::ones(shape, dtype, dev)?, p, seed)?)
    }

    /// `x ⊙ mask` against the contract's mask, and finite differences (the mask is fixed by
    /// the seed, so the op is linear in `x`).
    fn case(self, x: Input, p: f64) -> OpCase {
        let mask = r::keep_mask(&self.mask_shape(&x.values.shape), 1.0 - p, SEED);
        OpCase::new(vec![x], move |x| self.apply(&x[0], p, SEED), move |x| x[0].zip(&mask, |a, m| a * m))
    }

    /// Mask statistics on `shape` (whose dim 0 holds the draws for drop-path): every value is
    /// 0 or 1/keep, drop-path masks are constant per sample, and the kept fraction is within
    /// `slack` of `1 − p`.
    fn check_statistics(self, dev: &Device, shape: &[usize], p: f64, slack: f64) -> Result<()> {
        for dtype in float_dtypes(dev) {
            let mask = self.mask(dev, dtype, shape, p, SEED)?;
            let scale = Array::scalar(1.0 / (1.0 - p)).rounded(dtype).data[0];
            assert!(mask.data.iter().all(|&m| m == 0.0 || m == scale), "{self:?}: values other than 0 and {scale}");
            if let Kind::DropPath = self {
                let per_sample = mask.numel() / shape[0];
                let constant = mask.data.chunks(per_sample).all(|s| s.iter().all(|&m| m == s[0]));
                assert!(constant, "{self:?}: mask varies inside a sample");
            }
            let kept = mask.data.iter().filter(|&&m| m != 0.0).count() as f64 / mask.numel() as f64;
            assert!((kept - (1.0 - p)).abs() <= slack, "{self:?} in {dtype}: kept fraction {kept}, expected {}", 1.0 - p);
        }
        Ok(())
    }

    /// The same seed gives the same mask (on this device, in every dtype, and as on the
    /// CPU); another seed gives another.
    fn check_seeding(self, dev: &Device, shape: &[usize], p: f64) -> Result<()> {
        let cpu_mask = self.mask(&cpu(), DType::F64, shape, p, SEED)?;
        for dtype in float_dtypes(dev) {
            let mask = self.mask(dev, dtype, shape, p, SEED)?;
            assert_eq!(mask, self.mask(dev, dtype, shape, p, SEED)?, "{self:?}: same seed, different mask");
            assert_close(&format!("{self:?} mask in {dtype} vs cpu"), &mask, &cpu_mask, 1e-6);
            assert_ne!(mask, self.mask(dev, dtype, shape, p, SEED + 1)?, "{self:?}: another seed, same mask");
        }
        Ok(())
    }

    /// The gradient of `Σ op(x) ⊙ R` is `mask ⊙ R`, with the mask of the same seed.
    fn check_backward(self, dev: &Device, x: &Array, p: f64) -> Result<()> {
        for dtype in float_dtypes(dev) {
            let grads = analytic_grads(&[x.to_tensor(dtype, dev)?], |x| self.apply(&x[0], p, SEED))?;
            let mask = self.mask(dev, dtype, &x.shape, p, SEED)?;
            let want = mask.zip(&output_weights(&x.shape).rounded(dtype), |m, r| m * r);
            assert_close(&format!("{self:?} gradient in {dtype}"), &grads[0], &want, 1e-6);
        }
        Ok(())
    }
}

op_cases! {
    /// p = 0.3 on a transposed `[7, 13]` view.
    dropout => Kind::Dropout.case(Input::new(Gen::new(1).normal(&[7, 13], 1.0)).transposed(), 0.3);
    /// p = 0.5 over 6 samples of `[3, 5]`.
    drop_path => Kind::DropPath.case(Input::new(Gen::new(2).normal(&[6, 3, 5], 1.0)).padded(), 0.5);
}

conformance! {
    /// 4096 draws at p = 0.25: kept fraction within 0.03 (4.4 σ) of 0.75.
    fn dropout_statistics(dev: &Device) -> Result<()> {
        Kind::Dropout.check_statistics(dev, &[64, 64], 0.25, 0.03)
    }

    /// 4096 samples at p = 0.2: kept fraction within 0.03 (4.8 σ) of 0.8.
    fn drop_path_statistics(dev: &Device) -> Result<()> {
        Kind::DropPath.check_statistics(dev, &[4096, 2, 3], 0.2, 0.03)
    }

    fn dropout_seeding(dev: &Device) -> Result<()> {
        Kind::Dropout.check_seeding(dev, &[5, 197], 0.4)
    }

    fn drop_path_seeding(dev: &Device) -> Result<()> {
        Kind::DropPath.check_seeding(dev, &[64, 7], 0.4)
    }

    fn dropout_backward_is_mask(dev: &Device) -> Result<()> {
        Kind::Dropout.check_backward(dev, &Gen::new(3).normal(&[9, 11], 1.0), 0.3)
    }

    fn drop_path_backward_is_mask(dev: &Device) -> Result<()> {
        Kind::DropPath.check_backward(dev, &Gen::new(4).normal(&[16, 3, 2], 1.0), 0.3)
    }

    /// p = 0 is the identity, for both.
    fn drop_zero_is_identity(dev: &Device) -> Result<()> {
        let x = Gen::new(5).normal(&[4, 5], 1.0);
        for kind in [Kind::Dropout, Kind::DropPath] {
            let y = kind.apply(&x.to_tensor(DType::F32, dev)?, 0.0, SEED)?;
            assert_close(&format!("{kind:?} with p = 0"), &Array::from_tensor(&y)?, &x.rounded(DType::F32), 0.0);
        }
        Ok(())
    }
}

/// Float64 references of this file's ops, in plain loops (no code shared with the engine).
mod r {
    use beit_conformance::Array;

    /// The dropout keep-mask of the backend contract: element `i` is `1/keep` when
    /// `rng::uniform(seed, i) < keep`, else 0.
    pub fn keep_mask(shape: &[usize], keep: f64, seed: u64) -> Array {
        let n = shape.iter().product::<usize>() as u64;
        Array::new(shape, (0..n).map(|i| if beit_engine::rng::uniform(seed, i) < keep { 1.0 / keep } else { 0.0 }).collect())
    }
}
