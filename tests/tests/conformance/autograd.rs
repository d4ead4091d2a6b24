//! The tape itself, on top of the ops: gradients accumulate over reused tensors, tied
//! extrema share their gradient, and grad mode switches recording off.

use beit_conformance::gradcheck::{analytic_grads, output_weights};
use beit_conformance::{assert_close, conformance, float_dtypes, op_cases, Array, Gen, OpCase};
use beit_engine::{no_grad, DType, Result, Tensor};

/// A reduction over dim 1, by name, with the gradient share of each element of the row.
type Extremum = (&'static str, fn(&Tensor) -> Result<Tensor>, [f64; 8]);

op_cases! {
    /// A reused leaf and a reused intermediate: `y = eˣ; y·y + y·x`.
    reuse_accumulates => OpCase::new(
        vec![Gen::new(1).normal(&[5, 7], 0.5).into()],
        |x| {
            let y = x[0].exp()?;
            y.mul(&y)?.add(&y.mul(&x[0])?)
        },
        |x| x[0].map(|v| (2.0 * v).exp() + v * v.exp()),
    );
}

conformance! {
    /// `max` and `min` over a row with a tie split the gradient evenly between the tied
    /// entries (finite differences are one-sided there, so this is checked exactly).
    fn extremum_ties_share_gradient(dev: &Device) -> Result<()> {
        let x = Array::new(&[2, 4], vec![1.0, 3.0, 3.0, 2.0, -1.0, 0.5, -1.0, -1.0]);
        let ops: [Extremum; 2] = [
            ("max", |x| x.max(&[1], false), [0.0, 0.5, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0]),
            ("min", |x| x.min(&[1], false), [1.0, 0.0, 0.0, 0.0, 1.0 / 3.0, 0.0, 1.0 / 3.0, 1.0 / 3.0]),
        ];
        for dtype in float_dtypes(dev) {
            for (name, op, share) in ops {
                let grads = analytic_grads(&[x.to_tensor(dtype, dev)?], |x| op(&x[0]))?;
                let r = output_weights(&[2]).rounded(dtype);
                let want = Array::new(&[2, 4], share.iter().enumerate().map(|(i, s)| s * r.data[i / 4]).collect());
                assert_close(&format!("{name} gradient in {dtype}"), &grads[0], &want, 1e-6);
            }
        }
        Ok(())
    }

    /// Under `no_grad`, and after `detach`, results do not track gradients.
    fn no_grad_and_detach(dev: &Device) -> Result<()> {
        let x = Gen::new(2).normal(&[3, 4], 1.0).to_tensor(DType::F32, dev)?.requires_grad(true)?;
        assert!(x.exp()?.tracks_grad());
        assert!(!x.detach().exp()?.tracks_grad());
        let _guard = no_grad();
        assert!(!x.exp()?.matmul(&x.t()?)?.tracks_grad());
        Ok(())
    }
}
