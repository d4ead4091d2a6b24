//! The fused AdamW update (`Optim::adamw_step`) against PyTorch's formula in float64 loops:
//! three steps with weight decay and gradient scales (a norm clip's), in every float dtype
//! the backend has.

use beit_conformance::{assert_close, conformance, float_dtypes, Array, Gen};
use beit_engine::nn::Param;
use beit_engine::optim::{AdamW, AdamWConfig, ParamGroup};
use beit_engine::{DType, Tensor};

/// `torch.optim.AdamW` on one parameter for gradients `grads`, each multiplied by its
/// scale first, in f64.
fn reference(p0: &[f64], grads: &[(Array, f64)], lr: f64, c: &AdamWConfig) -> Vec<f64> {
    let (mut p, mut m, mut v) = (p0.to_vec(), vec![0.0; p0.len()], vec![0.0; p0.len()]);
    for (t, (g, scale)) in grads.iter().enumerate() {
        let t = (t + 1) as i32;
        let (bc1, bc2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for i in 0..p.len() {
            let g = g.data[i] * scale;
            p[i] *= 1.0 - lr * c.weight_decay;
            m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g;
            v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
            p[i] -= lr / bc1 * m[i] / (v[i].sqrt() / bc2.sqrt() + c.eps);
        }
    }
    p
}

conformance! {
    /// 3 steps on a `[37, 29]` parameter (grid-stride tail), gradients of Σ p ⊙ g_t scaled
    /// by 1, 0.7 and 0.25 inside the update.
    fn adamw_three_steps(dev: &Device) -> Result<()> {
        let config = AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05 };
        let (shape, lr) = ([37, 29], 1e-2);
        let p0 = Gen::new(1).normal(&shape, 1.0);
        let grads: Vec<Array> = (0..3).map(|t| Gen::new(10 + t).normal(&shape, 0.5)).collect();
        for dtype in float_dtypes(dev) {
            let p0r = p0.rounded(dtype);
            let param = Param::new("w", p0r.to_tensor(dtype, dev)?)?;
            let mut opt = AdamW::new(vec![ParamGroup::new(vec![param.clone()])], config)?;
            let mut used = Vec::new();
            for (g, scale) in grads.iter().zip([1.0, 0.7, 0.25]) {
                let g = g.rounded(dtype);
                let gt: Tensor = g.to_tensor(dtype, dev)?;
                let loss = param.tensor().mul(&gt)?.sum_all()?;
                opt.step_scaled(&loss.backward()?, lr, scale)?;
                used.push((g, scale));
            }
            let want = Array::new(&shape, reference(&p0r.data, &used, lr, &config));
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-6 };
            assert_close(&format!("AdamW in {dtype}"), &Array::from_tensor(&param.tensor())?, &want, tol);
        }
        Ok(())
    }
}
