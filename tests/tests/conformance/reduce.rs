//! Reductions over dims: sum, mean, max, min, sum of squares (with and without keepdim,
//! negative dims, down to a 0-dim result), on permuted and narrowed inputs.

use beit_conformance::{assert_close, conformance, float_dtypes, op_cases, Array, Gen, Input, OpCase};
use beit_engine::Result;

/// A `[3, 4, 5]` input stored with its dims permuted.
fn permuted(seed: u64) -> Input {
    Input::new(Gen::new(seed).normal(&[3, 4, 5], 1.0)).permuted(&[2, 0, 1])
}

/// A `[4, 7, 3]` input that is a narrowed view.
fn padded(seed: u64) -> Input {
    Input::new(Gen::new(seed).normal(&[4, 7, 3], 1.0)).padded()
}

op_cases! {
    /// Dims 0 and 2 of a permuted `[3, 4, 5]`, dropped.
    sum_dims => OpCase::new(vec![permuted(1)], |x| x[0].sum(&[0, 2], false), |x| r::sum(&x[0], &[0, 2], false));
    /// The last dim (as −1), kept.
    sum_last_keepdim => OpCase::new(vec![padded(2)], |x| x[0].sum(&[-1], true), |x| r::sum(&x[0], &[2], true));
    /// Everything, to a 0-dim result.
    sum_all => OpCase::new(vec![permuted(3)], |x| x[0].sum_all(), |x| r::sum(&x[0], &[0, 1, 2], false));
    /// Rows of 197, kept.
    mean_197 => {
        let x = Gen::new(4).normal(&[3, 197], 1.0);
        OpCase::new(vec![x.into()], |x| x[0].mean(&[1], true), |x| r::mean(&x[0], &[1], true))
    };
    mean_dims => OpCase::new(vec![padded(5)], |x| x[0].mean(&[0, -1], false), |x| r::mean(&x[0], &[0, 2], false));
    /// Everything, to a 0-dim result.
    mean_all => OpCase::new(vec![padded(6)], |x| x[0].mean_all(), |x| r::mean(&x[0], &[0, 1, 2], false));
    max_dim => OpCase::new(vec![padded(7)], |x| x[0].max(&[1], false), |x| r::max(&x[0], &[1], false));
    max_dims_keepdim => OpCase::new(vec![permuted(8)], |x| x[0].max(&[0, 2], true), |x| r::max(&x[0], &[0, 2], true));
    /// Everything, to a 0-dim result.
    max_all => OpCase::new(vec![permuted(9)], |x| x[0].max(&[0, 1, 2], false), |x| r::max(&x[0], &[0, 1, 2], false));
    min_dim => OpCase::new(vec![permuted(10)], |x| x[0].min(&[-2], false), |x| r::min(&x[0], &[1], false));
    min_dims_keepdim => OpCase::new(vec![padded(11)], |x| x[0].min(&[2, 0], true), |x| r::min(&x[0], &[0, 2], true));
    /// A bias gradient: the 40 rows of `[40, 70]` summed (the column kernel, with every one
    /// of its 8 row lanes busy and a partial last tile of columns).
    sum_rows_of_wide => {
        let x = Gen::new(13).normal(&[40, 70], 1.0);
        OpCase::new(vec![x.into()], |x| x[0].sum(&[0], false), |x| r::sum(&x[0], &[0], false))
    };
    /// Max over the 12 rows of a transposed `[50, 12]`, i.e. a `[12, 50]` view (column kernel).
    max_rows_of_transposed => {
        let x = Input::new(Gen::new(14).normal(&[12, 50], 1.0)).transposed();
        OpCase::new(vec![x], |x| x[0].max(&[0], true), |x| r::max(&x[0], &[0], true))
    };
    /// Σ x² over dims 0 and 2 of a permuted `[3, 4, 5]`, dropped.
    sum_squares_dims => OpCase::new(vec![permuted(15)], |x| x[0].sum_squares(&[0, 2], false), |x| r::sum_squares(&x[0], &[0, 2], false));
    /// Σ x² of everything, to a 0-dim result.
    sum_squares_all => OpCase::new(vec![padded(16)], |x| x[0].sum_squares_all(), |x| r::sum_squares(&x[0], &[0, 1, 2], false));
    /// Σ x² over the 40 rows of `[40, 70]`, kept (the column kernel).
    sum_squares_rows_of_wide => {
        let x = Gen::new(17).normal(&[40, 70], 1.0);
        OpCase::new(vec![x.into()], |x| x[0].sum_squares(&[0], true), |x| r::sum_squares(&x[0], &[0], true))
    };
    /// A `[1, 7, 1]` input: size-1 dims reduced and kept.
    min_size_one => {
        let x = Gen::new(12).normal(&[1, 7, 1], 1.0);
        OpCase::new(vec![x.into()], |x| x[0].min(&[0, 1], false), |x| r::min(&x[0], &[0, 1], false))
    };
}

conformance! {
    /// Long runs (2^17 elements, the two-pass split on GPUs): sum, mean, max and sum of
    /// squares of all, and a sum of each of two rows, against float64 sums (forward only: finite differences over
    /// 2^17 inputs would take minutes; the reduction gradients are checked above).
    fn long_runs(dev: &Device) -> Result<()> {
        let x = Gen::new(15).normal(&[2, 1 << 16], 1.0);
        for dtype in float_dtypes(dev) {
            let xr = x.rounded(dtype);
            let t = xr.to_tensor(dtype, dev)?;
            let tol = if dtype == beit_engine::DType::F64 { 1e-12 } else { 1e-5 };
            let check = |what: &str, got: beit_engine::Tensor, want: Array| -> Result<()> {
                assert_close(&format!("{what} ({dtype})"), &Array::from_tensor(&got)?, &want, tol);
                Ok(())
            };
            check("sum_all", t.sum_all()?, r::sum(&xr, &[0, 1], false))?;
            check("mean_all", t.mean_all()?, r::mean(&xr, &[0, 1], false))?;
            check("max_all", t.max(&[0, 1], false)?, r::max(&xr, &[0, 1], false))?;
            check("row sums", t.sum(&[1], false)?, r::sum(&xr, &[1], false))?;
            check("sum_squares_all", t.sum_squares_all()?, r::sum_squares(&xr, &[0, 1], false))?;
        }
        Ok(())
    }
}

/// Float64 references of this file's ops, in plain loops (no code shared with the engine).
mod r {
    use beit_conformance::Array;

    /// Sum over `dims`.
    pub fn sum(x: &Array, dims: &[usize], keepdim: bool) -> Array {
        x.fold(dims, keepdim, 0.0, |a, b| a + b)
    }

    /// Sum of squares over `dims`.
    pub fn sum_squares(x: &Array, dims: &[usize], keepdim: bool) -> Array {
        x.fold(dims, keepdim, 0.0, |a, b| a + b * b)
    }

    /// Mean over `dims`.
    pub fn mean(x: &Array, dims: &[usize], keepdim: bool) -> Array {
        let count: usize = dims.iter().map(|&d| x.shape[d]).product();
        sum(x, dims, keepdim).map(|s| s / count as f64)
    }

    /// Maximum over `dims`.
    pub fn max(x: &Array, dims: &[usize], keepdim: bool) -> Array {
        x.fold(dims, keepdim, f64::NEG_INFINITY, f64::max)
    }

    /// Minimum over `dims`.
    pub fn min(x: &Array, dims: &[usize], keepdim: bool) -> Array {
        x.fold(dims, keepdim, f64::INFINITY, f64::min)
    }
}
