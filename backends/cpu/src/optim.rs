//! The fused AdamW update (PyTorch semantics, decoupled weight decay), with a gradient scale.

use crate::CpuBackend;
use crate::scalar::Real;
use crate::storage::{float_dispatch, slice_mut, Src};
use crate::strided::PAR_CHUNK;
use beit_engine::backend::Optim;
use beit_engine::{AdamWStep, BackendStorage, Result, View};
use rayon::prelude::*;

impl Optim for CpuBackend {
    /// One AdamW step in place on `param`, `m` and `v` (one dtype and length each).
    fn adamw_step(&self, param: &mut dyn BackendStorage,
        grad: View,
        m: &mut dyn BackendStorage,
        v: &mut dyn BackendStorage,
        hp: &AdamWStep,
    ) -> Result<()> {
        const OP: &str = "adamw_step";
        beit_engine::checks::adamw_buffers(OP, param, grad, m, v, hp)?;
        let dtype = param.dtype();
        float_dispatch!(OP, dtype, T => {
            let g = Src::<T>::new(OP, grad)?.contiguous();
            let (p, m, v) = (slice_mut::<T>(OP, param)?, slice_mut::<T>(OP, m)?, slice_mut::<T>(OP, v)?);
            update(p, &g, m, v, hp);
            Ok(())
        })
    }
}


fn update<T: Real>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], hp: &AdamWStep) {
    let t = hp.step as f64;
    let decay = T::of(1.0 - hp.lr * hp.weight_decay);
    let (b1, b2) = (T::of(hp.beta1), T::of(hp.beta2));
    let (one_b1, one_b2) = (T::of(1.0 - hp.beta1), T::of(1.0 - hp.beta2));
    let step_size = T::of(hp.lr / (1.0 - hp.beta1.powf(t)));
    let bc2_sqrt = T::of((1.0 - hp.beta2.powf(t)).sqrt());
    let eps = T::of(hp.eps);
    let scale = T::of(hp.grad_scale);
    p.par_chunks_mut(PAR_CHUNK)
        .zip(m.par_chunks_mut(PAR_CHUNK))
        .zip(v.par_chunks_mut(PAR_CHUNK))
        .zip(g.par_chunks(PAR_CHUNK))
        .for_each(|(((p, m), v), g)| {
            for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                let g = g * scale;
                *m = b1 * *m + one_b1 * g;
                *v = b2 * *v + one_b2 * g * g;
                *p = *p * decay - step_size * *m / (v.sqrt() / bc2_sqrt + eps);
            }
        });
}

#[cfg(test)]
mod tests {
    use crate::testutil::{assert_close, host, vals, Tt, B};
    use crate::CpuStorage;
    use beit_engine::backend::prelude::*;
    use beit_engine::{AdamWStep, DType, Error};

    #[test]
    fn two_steps_match_the_reference_formula() {
        for (dtype, tol) in [(DType::F64, 1e-14), (DType::F32, 1e-6)] {
            let n = 40_000; // more than one parallel task
            let mut p = Tt::rand(DType::F64, &[n], 1).vals();
            let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
            let (mut ps, mut ms, mut vs) =
                (CpuStorage::new(host(dtype, &p)), CpuStorage::new(host(dtype, &m)), CpuStorage::new(host(dtype, &v)));
            for step in 1..=2 {
                let hp = AdamWStep { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05, step, grad_scale: 0.7 };
                let g = Tt::rand(dtype, &[200, n / 200], 1 + step).permute(&[1, 0]);
                for (i, gi) in g.vals().into_iter().enumerate() {
                    let gi = gi * hp.grad_scale;
                    p[i] -= hp.lr * hp.weight_decay * p[i];
                    m[i] = hp.beta1 * m[i] + (1.0 - hp.beta1) * gi;
                    v[i] = hp.beta2 * v[i] + (1.0 - hp.beta2) * gi * gi;
                    let (mh, vh) =
                        (m[i] / (1.0 - hp.beta1.powi(step as i32)), v[i] / (1.0 - hp.beta2.powi(step as i32)));
                    p[i] -= hp.lr * mh / (vh.sqrt() + hp.eps);
                }
                B.adamw_step(&mut ps, g.view(), &mut ms, &mut vs, &hp).unwrap();
            }
            let all = |s: &CpuStorage| s.data().to_f64_vec();
            assert_close(&all(&ps), &p, tol);
            assert_close(&all(&ms), &m, tol);
            assert_close(&all(&vs), &v, tol);
        }
    }

    #[test]
    fn mismatches_are_errors() {
        let hp = AdamWStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 1, grad_scale: 1.0 };
        let g = Tt::rand(DType::F32, &[3], 1);
        let mk = |d, n| CpuStorage::new(host(d, &vec![0.0; n]));
        let (mut p, mut m, mut v) = (mk(DType::F32, 3), mk(DType::F32, 3), mk(DType::F64, 3));
        assert!(matches!(B.adamw_step(&mut p, g.view(), &mut m, &mut v, &hp), Err(Error::DTypeMismatch { .. })));
        let mut v = mk(DType::F32, 4);
        assert!(matches!(B.adamw_step(&mut p, g.view(), &mut m, &mut v, &hp), Err(Error::ShapeMismatch { .. })));
        let mut v = mk(DType::F32, 3);
        let zero = AdamWStep { step: 0, ..hp };
        assert!(matches!(B.adamw_step(&mut p, g.view(), &mut m, &mut v, &zero), Err(Error::Invalid { .. })));
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            let scaled = AdamWStep { grad_scale: bad, ..hp };
            assert!(matches!(B.adamw_step(&mut p, g.view(), &mut m, &mut v, &scaled), Err(Error::Invalid { .. })));
        }
        B.adamw_step(&mut p, g.view(), &mut m, &mut v, &hp).unwrap();
        assert!(vals(&(Box::new(p) as beit_engine::StorageBox)).iter().all(|x| x.abs() > 0.0));
    }
}
