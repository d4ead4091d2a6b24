//! Gradient checks: analytic gradients from `backward()` against central finite
//! differences, both of the scalar loss `Σ f(x) ⊙ R` for a fixed random `R`, so that every
//! output element weighs in. The analytic loss is taken through a view of `f(x)` with its
//! dims reversed, so that the op's backward receives a non-contiguous incoming gradient.

use crate::{assert_close, Array, Gen};
use beit_engine::{no_grad, DType, Error, Result, Tensor};

/// Step of the central differences (float64 inputs of magnitude ~1).
pub const STEP: f64 = 1e-6;

/// Seed of the output weights `R`: fixed, so that every backend and dtype sees one loss.
const WEIGHT_SEED: u64 = 0x5EED;

/// The output weights `R` for an output of `shape`, uniform in `[-1, 1)`.
pub fn output_weights(shape: &[usize]) -> Array {
    Gen::new(WEIGHT_SEED).uniform(shape, -1.0, 1.0)
}

/// Gradients of `Σ f(x) ⊙ R` with respect to each of `inputs` (float tensors on one device,
/// any layout), by `backward()`; each has its input's shape and dtype.
pub fn analytic_grads(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) -> Result<Vec<Array>> {
    let leaves = inputs.iter().map(|x| x.requires_grad(true)).collect::<Result<Vec<_>>>()?;
    let y = f(&leaves)?;
    let r = output_weights(y.shape()).to_tensor(y.dtype(), y.device())?;
    let reversed: Vec<usize> = (0..y.rank()).rev().collect();
    let grads = y.permute(&reversed)?.mul(&r.permute(&reversed)?)?.sum_all()?.backward()?;
    leaves
        .iter()
        .enumerate()
        .map(|(j, x)| {
            let g = grads
                .get(x)
                .ok_or_else(|| Error::Autograd(format!("gradcheck: no gradient reached input {j} {:?}", x.shape())))?;
            assert_eq!(g.dtype(), x.dtype(), "gradcheck: dtype of the gradient of input {j}");
            Array::from_tensor(g)
        })
        .collect()
}

/// Central differences of `Σ f(x) ⊙ R` with respect to every element of every input.
pub fn numeric_grads(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) -> Result<Vec<Array>> {
    let _no_grad = no_grad();
    let r = output_weights(f(inputs)?.shape()).data;
    let loss = |xs: &[Tensor]| -> Result<f64> { Ok(f(xs)?.to_vec_f64()?.iter().zip(&r).map(|(y, w)| y * w).sum()) };
    let mut out = Vec::with_capacity(inputs.len());
    for (j, x) in inputs.iter().enumerate() {
        let base = Array::from_tensor(x)?;
        let mut xs = inputs.to_vec();
        let mut at = |i: usize, delta: f64| -> Result<f64> {
            let mut moved = base.clone();
            moved.data[i] += delta;
            xs[j] = moved.to_tensor(DType::F64, x.device())?;
            loss(&xs)
        };
        let grad = (0..base.numel()).map(|i| Ok((at(i, STEP)? - at(i, -STEP)?) / (2.0 * STEP))).collect::<Result<_>>()?;
        out.push(Array::new(x.shape(), grad));
    }
    Ok(out)
}

/// Asserts that the analytic gradients of `Σ f(x) ⊙ R` match central differences within
/// `tol · max(1, max |numeric|)`, for float64 `inputs` on any device.
pub fn gradcheck(inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>, tol: f64) -> Result<()> {
    for (j, x) in inputs.iter().enumerate() {
        assert_eq!(x.dtype(), DType::F64, "gradcheck: input {j} must be f64");
    }
    let analytic = analytic_grads(inputs, &f)?;
    let numeric = numeric_grads(inputs, &f)?;
    for (j, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
        assert_close(&format!("gradient of input {j} (analytic vs numeric)"), a, n, tol);
    }
    Ok(())
}
