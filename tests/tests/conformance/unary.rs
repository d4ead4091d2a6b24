//! Elementwise unary ops and scalar arithmetic (affine, powf). Inputs are `[13, 7]` views
//! of a transposed, NaN-padded buffer, drawn from each op's domain and away from its kinks;
//! GELU also runs on a row of 197 and on a 0-dim input.

use beit_conformance::erf::erf;
use beit_conformance::{op_cases, Array, Gen, Input, OpCase};
use beit_engine::{Result, Tensor};

/// `op(x)` against `f` elementwise, on `x` of shape `[13, 7]` stored transposed and padded.
fn unary(op: fn(&Tensor) -> Result<Tensor>, f: fn(f64) -> f64, x: Array) -> OpCase {
    let x = Input::new(x).transposed().padded();
    OpCase::new(vec![x], move |x| op(&x[0]), move |x| x[0].map(f))
}

/// `[13, 7]` values uniform in `[lo, hi)`.
fn uniform(seed: u64, lo: f64, hi: f64) -> Array {
    Gen::new(seed).uniform(&[13, 7], lo, hi)
}

/// `[13, 7]` values of either sign, magnitude in `[0.05, 2)`: clear of the kink at 0.
fn off_zero(seed: u64) -> Array {
    Gen::new(seed).signed(&[13, 7], 0.05, 2.0)
}

op_cases! {
    neg => unary(Tensor::neg, |x| -x, uniform(1, -2.0, 2.0));
    exp => unary(Tensor::exp, f64::exp, uniform(2, -2.0, 2.0));
    log => unary(Tensor::log, f64::ln, uniform(3, 0.2, 3.0));
    sqrt => unary(Tensor::sqrt, f64::sqrt, uniform(4, 0.2, 3.0));
    tanh => unary(Tensor::tanh, f64::tanh, uniform(5, -3.0, 3.0));
    erf => unary(Tensor::erf, erf, uniform(6, -3.0, 3.0));
    abs => unary(Tensor::abs, f64::abs, off_zero(7));
    relu => unary(Tensor::relu, |x| x.max(0.0), off_zero(8));
    sqr => unary(Tensor::sqr, |x| x * x, uniform(9, -2.0, 2.0));
    recip => unary(Tensor::recip, f64::recip, off_zero(10).map(|x| x + x.signum() * 0.2));
    sigmoid => unary(Tensor::sigmoid, r::sigmoid, uniform(11, -4.0, 4.0));
    gelu => unary(Tensor::gelu, r::gelu, uniform(12, -5.0, 5.0));
    /// `x·1.5 − 0.25`.
    affine => unary(|x| x.affine(1.5, -0.25), |x| x * 1.5 - 0.25, uniform(13, -2.0, 2.0));
    add_scalar => unary(|x| x.add_scalar(0.75), |x| x + 0.75, uniform(14, -2.0, 2.0));
    mul_scalar => unary(|x| x.mul_scalar(-3.0), |x| -3.0 * x, uniform(15, -2.0, 2.0));
    powf => unary(|x| x.powf(2.5), |x| x.powf(2.5), uniform(16, 0.3, 2.0));
    powf_negative => unary(|x| x.powf(-1.5), |x| x.powf(-1.5), uniform(17, 0.3, 2.0));
    /// GELU on one row of 197 (contiguous).
    gelu_197 => {
        let x = Gen::new(18).normal(&[197], 2.0);
        OpCase::new(vec![x.into()], |x| x[0].gelu(), |x| x[0].map(r::gelu))
    };
    /// A 0-dim input and output.
    tanh_0dim => OpCase::new(vec![Array::scalar(0.3).into()], |x| x[0].tanh(), |x| x[0].map(f64::tanh));
}

/// Float64 references of this file's ops, in plain loops (no code shared with the engine),
/// and the shared building blocks of [`beit_conformance::reference`].
mod r {
    pub use beit_conformance::reference::*;

    /// Logistic sigmoid.
    pub fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }
}
