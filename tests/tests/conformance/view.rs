//! Views and copies: cat, narrow, reshape (view and copy paths), permute, transpose,
//! broadcast_as, contiguous.

use beit_conformance::{op_cases, Gen, Input, OpCase};

op_cases! {
    /// Three pieces along dim 1, one a narrowed view and one a transposed view.
    cat_middle => {
        let mut g = Gen::new(1);
        let b = Input::new(g.normal(&[2, 1, 4], 1.0)).padded();
        let c = Input::new(g.normal(&[2, 5, 4], 1.0)).transposed();
        OpCase::new(
            vec![g.normal(&[2, 3, 4], 1.0).into(), b, c],
            |x| beit_engine::Tensor::cat(&[&x[0], &x[1], &x[2]], 1),
            |x| r::cat(&[&x[0], &x[1], &x[2]], 1),
        )
    };
    /// Two pieces along dim 0, one a narrowed view.
    cat_first => {
        let mut g = Gen::new(2);
        let a = Input::new(g.normal(&[3, 7], 1.0)).padded();
        OpCase::new(
            vec![a, g.normal(&[1, 7], 1.0).into()],
            |x| beit_engine::Tensor::cat(&[&x[0], &x[1]], 0),
            |x| r::cat(&[&x[0], &x[1]], 0),
        )
    };
    /// Columns 2..7 of `[4, 9]`.
    narrow => {
        let x = Gen::new(3).normal(&[4, 9], 1.0);
        OpCase::new(vec![x.into()], |x| x[0].narrow(1, 2, 5), |x| r::narrow(&x[0], 1, 2, 5))
    };
    /// Narrowing a transposed view.
    narrow_strided => {
        let x = Input::new(Gen::new(4).normal(&[7, 5], 1.0)).transposed();
        OpCase::new(vec![x], |x| x[0].narrow(0, 1, 3), |x| r::narrow(&x[0], 0, 1, 3))
    };
    /// `[6, 4]` to `[2, 3, 4]` (one dim inferred): a view.
    reshape_view => {
        let x = Gen::new(5).normal(&[6, 4], 1.0);
        OpCase::new(vec![x.into()], |x| x[0].reshape(&[2, usize::MAX, 4]), |x| x[0].reshape(&[2, 3, 4]))
    };
    /// A transposed `[4, 6]` to `[3, 8]`: needs a copy.
    reshape_copy => {
        let x = Input::new(Gen::new(6).normal(&[4, 6], 1.0)).transposed();
        OpCase::new(vec![x], |x| x[0].reshape(&[3, 8]), |x| x[0].reshape(&[3, 8]))
    };
    /// A permuted `[3, 2, 4]` view split to `[3, 2, 2, 2]`: a view with the strides kept.
    reshape_split_strided => {
        let x = Input::new(Gen::new(12).normal(&[3, 2, 4], 1.0)).permuted(&[1, 0, 2]);
        OpCase::new(vec![x], |x| x[0].reshape(&[3, 2, 2, 2]), |x| x[0].reshape(&[3, 2, 2, 2]))
    };
    /// Flatten, unsqueeze and squeeze in a row (reshapes, with a size-1 dim).
    reshape_flatten_squeeze => {
        let x = Input::new(Gen::new(7).normal(&[2, 3, 7], 1.0)).padded();
        OpCase::new(
            vec![x],
            |x| x[0].flatten(0, 1)?.unsqueeze(1)?.squeeze(1)?.unsqueeze(0),
            |x| x[0].reshape(&[1, 6, 7]),
        )
    };
    permute => {
        let x = Gen::new(8).normal(&[2, 3, 4], 1.0);
        OpCase::new(vec![x.into()], |x| x[0].permute(&[2, 0, 1]), |x| x[0].permute(&[2, 0, 1]))
    };
    transpose => {
        let x = Input::new(Gen::new(9).normal(&[2, 3, 4], 1.0)).padded();
        OpCase::new(vec![x], |x| x[0].transpose(0, 2), |x| x[0].transpose(0, 2))
    };
    /// `[3, 1]` to `[2, 3, 4]`.
    broadcast_as => {
        let x = Gen::new(10).normal(&[3, 1], 1.0);
        OpCase::new(vec![x.into()], |x| x[0].broadcast_as(&[2, 3, 4]), |x| x[0].broadcast_to(&[2, 3, 4]))
    };
    /// A contiguous copy of a permuted, narrowed view.
    contiguous => {
        let x = Input::new(Gen::new(11).normal(&[3, 4, 5], 1.0)).permuted(&[1, 2, 0]).padded();
        OpCase::new(
            vec![x],
            |x| {
                let y = x[0].contiguous()?;
                assert!(y.is_contiguous(), "contiguous() gave strides {:?}", y.layout().strides());
                Ok(y)
            },
            |x| x[0].clone(),
        )
    };
}

/// Float64 references of this file's ops, in plain loops (no code shared with the engine),
/// and the shared building blocks of [`beit_conformance::reference`].
mod r {
    pub use beit_conformance::reference::*;
    use beit_conformance::Array;

    /// Entries `start..start + len` of dim `dim`.
    pub fn narrow(x: &Array, dim: usize, start: usize, len: usize) -> Array {
        let indices: Vec<i64> = (start as i64..(start + len) as i64).collect();
        index_select(x, dim, &indices)
    }
}
