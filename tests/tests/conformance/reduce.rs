//! Reductions over dims: sum, mean, max, min (with and without keepdim, negative dims,
//! down to a 0-dim result), on permuted and narrowed inputs.

use beit_conformance::{op_cases, reference as r, Gen, Input, OpCase};

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
    /// A `[1, 7, 1]` input: size-1 dims reduced and kept.
    min_size_one => {
        let x = Gen::new(12).normal(&[1, 7, 1], 1.0);
        OpCase::new(vec![x.into()], |x| x[0].min(&[0, 1], false), |x| r::min(&x[0], &[0, 1], false))
    };
}
