//! The convolution family: patch embedding (stride = kernel), conv2d with stride and
//! padding (and the 1x1 fast path), im2col, 2x2 max pooling, against direct loops.

use beit_conformance::reference::{self as r, Conv};
use beit_conformance::{op_cases, Array, Gen, Input, OpCase};

/// `conv2d(x, w, b)` for `x [2, c, h, w]`, `w [o, c, kh, kw]` and a bias `[o]`.
fn conv2d(seed: u64, x: [usize; 4], w: [usize; 4], stride: (usize, usize), padding: (usize, usize)) -> OpCase {
    let mut g = Gen::new(seed);
    let (xv, wv, bv) = (g.normal(&x, 1.0), g.normal(&w, 0.5), g.normal(&[w[0]], 1.0));
    OpCase::new(
        vec![Input::new(xv).padded(), wv.into(), bv.into()],
        move |x| x[0].conv2d(&x[1], Some(&x[2]), stride, padding),
        move |x| r::conv2d(&x[0], &x[1], Some(&x[2]), stride, padding),
    )
}

op_cases! {
    /// BEiT's patch embedding at small scale: `[2, 3, 8, 8]`, patch 4, 5 channels out.
    patchify_conv => {
        let mut g = Gen::new(1);
        OpCase::new(
            vec![g.normal(&[2, 3, 8, 8], 1.0).into(), g.normal(&[5, 3, 4, 4], 0.5).into(), g.normal(&[5], 1.0).into()],
            |x| x[0].patchify_conv(&x[1], Some(&x[2]), 4),
            |x| r::patchify(&x[0], &x[1], Some(&x[2]), 4),
        )
    };
    /// Patch 1 (every pixel a token), no bias, a narrowed input view.
    patchify_conv_patch_1 => {
        let mut g = Gen::new(2);
        OpCase::new(
            vec![Input::new(g.normal(&[1, 2, 3, 5], 1.0)).padded(), g.normal(&[4, 2, 1, 1], 0.5).into()],
            |x| x[0].patchify_conv(&x[1], None, 1),
            |x| r::patchify(&x[0], &x[1], None, 1),
        )
    };
    /// 3x3, stride 2, padding 1 on an odd `7x7` input.
    conv2d_stride_padding => conv2d(3, [2, 3, 7, 7], [4, 3, 3, 3], (2, 2), (1, 1));
    /// A rectangular `2x3` kernel, stride (1, 2), padding (0, 1).
    conv2d_rectangular => conv2d(4, [2, 2, 5, 6], [3, 2, 2, 3], (1, 2), (0, 1));
    /// 1x1 (the channels-last matmul path).
    conv2d_1x1 => conv2d(5, [2, 3, 5, 5], [4, 3, 1, 1], (1, 1), (0, 0));
    /// 1x1 with stride 2 (the im2col path).
    conv2d_1x1_stride_2 => conv2d(6, [2, 3, 5, 5], [4, 3, 1, 1], (2, 2), (0, 0));
    /// im2col with a `3x2` kernel, stride (2, 1), padding (1, 0).
    unfold2d => {
        let x = Input::new(Gen::new(7).normal(&[2, 2, 5, 6], 1.0)).padded();
        let geom = Conv { kernel: (3, 2), stride: (2, 1), padding: (1, 0) };
        OpCase::new(
            vec![x],
            move |x| x[0].unfold2d(geom.kernel, geom.stride, geom.padding),
            move |x| r::unfold2d(&x[0], geom),
        )
    };
    /// Odd `7x6` input (the last row is dropped), a permuted NCHW view.
    max_pool2x2 => {
        let x = Input::new(Gen::new(8).normal(&[2, 3, 7, 6], 1.0)).permuted(&[1, 0, 2, 3]);
        OpCase::new(vec![x], |x| x[0].max_pool2x2(), |x| r::max_pool2x2(&x[0]))
    };
    /// A single 2x2 window per channel.
    max_pool2x2_single => {
        let x: Array = Gen::new(9).normal(&[1, 2, 2, 2], 1.0);
        OpCase::new(vec![x.into()], |x| x[0].max_pool2x2(), |x| r::max_pool2x2(&x[0]))
    };
}
