//! The convolution family: patch embedding (stride = kernel), conv2d with stride and
//! padding (and the 1x1 fast path), im2col, 2x2 max pooling, against direct loops.

use beit_conformance::gradcheck::analytic_grads;
use beit_conformance::{assert_close, conformance, cpu, op_cases, Array, DType, Device, Gen, Input, OpCase, Result, Tensor};

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
    /// 3x3, stride 1, padding 1 (UperNet's and the dVAE's; the input gradient is a
    /// convolution with the flipped kernel).
    conv2d_3x3_same => conv2d(10, [2, 5, 9, 11], [6, 5, 3, 3], (1, 1), (1, 1));
    /// 7x7, padding 3 (the DALL-E encoder's input convolution).
    conv2d_7x7 => conv2d(11, [2, 3, 9, 8], [4, 3, 7, 7], (1, 1), (3, 3));
    /// 3x3 without padding on a non-square input.
    conv2d_valid => conv2d(12, [2, 4, 6, 9], [3, 4, 3, 3], (1, 1), (0, 0));
    /// 1x1 (the image itself is the GEMM operand).
    conv2d_1x1 => conv2d(5, [2, 3, 5, 5], [4, 3, 1, 1], (1, 1), (0, 0));
    /// 1x1 with stride 2.
    conv2d_1x1_stride_2 => conv2d(6, [2, 3, 5, 5], [4, 3, 1, 1], (2, 2), (0, 0));
    /// im2col with a `3x2` kernel, stride (2, 1), padding (1, 0).
    unfold2d => {
        let x = Input::new(Gen::new(7).normal(&[2, 2, 5, 6], 1.0)).padded();
        let geom = r::Conv { kernel: (3, 2), stride: (2, 1), padding: (1, 0) };
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

/// `conv2d` in f32 on `dev` against the f64 reference (forward) and the CPU's f64 gradients
/// (backward), for `x [2, c, h, w]`, `w [o, c, k, k]` and a bias.
fn conv2d_large(dev: &Device, seed: u64, x: [usize; 4], w: [usize; 4], padding: usize) -> Result<()> {
    let mut g = Gen::new(seed);
    let (xv, wv, bv) = (g.normal(&x, 1.0), g.normal(&w, 0.1), g.normal(&[w[0]], 1.0));
    let pad = (padding, padding);
    let f = move |t: &[Tensor]| t[0].conv2d(&t[1], Some(&t[2]), (1, 1), pad);
    let on = |d: &Device, dtype: DType| -> Result<Vec<Tensor>> {
        [&xv, &wv, &bv].iter().map(|a| a.to_tensor(dtype, d)).collect()
    };
    let name = format!("conv2d {x:?} * {w:?} on {dev}");
    let got = Array::from_tensor(&f(&on(dev, DType::F32)?)?)?;
    let rounded: Vec<Array> = [&xv, &wv, &bv].iter().map(|a| a.rounded(DType::F32)).collect();
    assert_close(&name, &got, &r::conv2d(&rounded[0], &rounded[1], Some(&rounded[2]), (1, 1), pad), 1e-5);
    let want = analytic_grads(&on(&cpu(), DType::F64)?, f)?;
    let grads = analytic_grads(&on(dev, DType::F32)?, f)?;
    for (j, (got, want)) in grads.iter().zip(&want).enumerate() {
        assert_close(&format!("{name}: f32 gradient of input {j} vs f64 on cpu"), got, want, 1e-4);
    }
    Ok(())
}

conformance! {
    /// A 3x3 convolution across the GEMM's blocks: 900 pixels (two column blocks, a ragged
    /// panel), 360 taps (two depth blocks), 30 output channels (a ragged row tile).
    fn conv2d_3x3_large(dev: &Device) -> Result<()> {
        conv2d_large(dev, 13, [2, 40, 20, 45], [30, 40, 3, 3], 1)
    }

    /// A 1x1 convolution of the same size: the image and its transpose as GEMM operands.
    fn conv2d_1x1_large(dev: &Device) -> Result<()> {
        conv2d_large(dev, 14, [2, 300, 10, 90], [20, 300, 1, 1], 0)
    }

    /// bf16 inference: f32 images against bf16 weights (3x3 across the GEMM's blocks, and
    /// 1x1), against the f64 convolution with the weights rounded to bf16; widening is exact,
    /// so the f32 tolerance holds. With gradients tracked, the weight is cast to f32 first:
    /// the same values, and the input's gradient is that of the convolution with an f32
    /// copy of the rounded weights.
    fn conv2d_bf16_weights(dev: &Device) -> Result<()> {
        if !beit_conformance::supports_bf16(dev) {
            return Ok(());
        }
        for (seed, (x, w, pad)) in [([2, 40, 20, 45], [30, 40, 3, 3], 1), ([2, 50, 7, 9], [20, 50, 1, 1], 0)].into_iter().enumerate() {
            let mut g = Gen::new(15 + seed as u64);
            let (xv, wv, bv) = (g.normal(&x, 1.0), g.normal(&w, 0.1), g.normal(&[w[0]], 1.0));
            let (xt, bt) = (xv.to_tensor(DType::F32, dev)?, bv.to_tensor(DType::F32, dev)?);
            let wb = wv.to_tensor(DType::BF16, dev)?;
            let rounded = Array::from_tensor(&wb)?;
            assert!(rounded.data.iter().zip(&wv.data).any(|(r, w)| r != w), "the weights were rounded");
            let want = r::conv2d(&xv.rounded(DType::F32), &rounded, Some(&bv.rounded(DType::F32)), (1, 1), (pad, pad));
            let name = format!("conv2d {x:?} * bf16 {w:?} on {dev}");
            let fused = {
                let _guard = beit_engine::no_grad();
                xt.conv2d(&wb, Some(&bt), (1, 1), (pad, pad))?
            };
            assert_close(&name, &Array::from_tensor(&fused)?, &want, 1e-5);
            let xg = xt.requires_grad(true)?;
            let tracked = xg.conv2d(&wb, Some(&bt), (1, 1), (pad, pad))?;
            assert_close(&format!("{name}, tracked"), &Array::from_tensor(&tracked)?, &want, 1e-5);
            let dx = |w: &Tensor| -> Result<Array> {
                let grads = xg.conv2d(w, Some(&bt), (1, 1), (pad, pad))?.sum(&[0, 1, 2, 3], false)?.backward()?;
                Array::from_tensor(grads.get(&xg).expect("the input has a gradient"))
            };
            assert_close(&format!("{name}: input gradient"), &dx(&wb)?, &dx(&wb.to_dtype(DType::F32)?)?, 1e-6);
        }
        Ok(())
    }
}

/// A 3×3 convolution large enough for the CPU's Winograd path (256 channels in and out,
/// 256 tiles; its input gradient too): values and gradients as `conv2d_3x3_large`'s. On the
/// CPU only, as the case is too large for the simulated CUDA device.
#[test]
fn conv2d_3x3_winograd_on_cpu() -> Result<()> {
    conv2d_large(&cpu(), 16, [1, 256, 32, 32], [256, 256, 3, 3], 1)
}

/// Float64 references of this file's ops, in plain loops (no code shared with the engine).
mod r {
    use beit_conformance::Array;

    /// Geometry of a reference convolution: kernel, stride, padding as (height, width).
    #[derive(Clone, Copy, Debug)]
    pub struct Conv {
        /// Kernel size.
        pub kernel: (usize, usize),
        /// Stride.
        pub stride: (usize, usize),
        /// Zero padding on both sides.
        pub padding: (usize, usize),
    }

    impl Conv {
        fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
            (
                (h + 2 * self.padding.0 - self.kernel.0) / self.stride.0 + 1,
                (w + 2 * self.padding.1 - self.kernel.1) / self.stride.1 + 1,
            )
        }

        /// The input value under kernel tap `(i, j)` of output pixel `(oy, ox)`, 0 in the padding.
        fn tap(&self, x: &Array, (b, c): (usize, usize), (oy, ox): (usize, usize), (i, j): (usize, usize)) -> f64 {
            let y = (oy * self.stride.0 + i) as isize - self.padding.0 as isize;
            let z = (ox * self.stride.1 + j) as isize - self.padding.1 as isize;
            let (h, w) = (x.shape[2] as isize, x.shape[3] as isize);
            if y < 0 || z < 0 || y >= h || z >= w {
                0.0
            } else {
                x.at(&[b, c, y as usize, z as usize])
            }
        }
    }

    /// Direct 2-D convolution: NCHW `x`, OIHW `weight`, optional bias `[O]` → `[B, O, oh, ow]`.
    pub fn conv2d(x: &Array, weight: &Array, bias: Option<&Array>, stride: (usize, usize), padding: (usize, usize)) -> Array {
        let [b, c, h, w] = x.shape[..] else { panic!("reference conv2d: x {:?}", x.shape) };
        let [o, _, kh, kw] = weight.shape[..] else { panic!("reference conv2d: weight {:?}", weight.shape) };
        let conv = Conv { kernel: (kh, kw), stride, padding };
        let (oh, ow) = conv.out_size(h, w);
        let mut out = Vec::with_capacity(b * o * oh * ow);
        for n in 0..b {
            for f in 0..o {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = bias.map_or(0.0, |bias| bias.data[f]);
                        for ch in 0..c {
                            for i in 0..kh {
                                for j in 0..kw {
                                    acc += weight.at(&[f, ch, i, j]) * conv.tap(x, (n, ch), (oy, ox), (i, j));
                                }
                            }
                        }
                        out.push(acc);
                    }
                }
            }
        }
        Array::new(&[b, o, oh, ow], out)
    }

    /// im2col: `[B, oh·ow, C·kh·kw]`, each row one output pixel's receptive field in
    /// (channel, kernel row, kernel column) order.
    pub fn unfold2d(x: &Array, conv: Conv) -> Array {
        let [b, c, h, w] = x.shape[..] else { panic!("reference unfold2d: x {:?}", x.shape) };
        let (oh, ow) = conv.out_size(h, w);
        let (kh, kw) = conv.kernel;
        let mut out = Vec::with_capacity(b * oh * ow * c * kh * kw);
        for n in 0..b {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..c {
                        for i in 0..kh {
                            for j in 0..kw {
                                out.push(conv.tap(x, (n, ch), (oy, ox), (i, j)));
                            }
                        }
                    }
                }
            }
        }
        Array::new(&[b, oh * ow, c * kh * kw], out)
    }

    /// Patch embedding: the stride-`patch` convolution as `[B, (H/p)·(W/p), O]` tokens.
    pub fn patchify(x: &Array, weight: &Array, bias: Option<&Array>, patch: usize) -> Array {
        let y = conv2d(x, weight, bias, (patch, patch), (0, 0));
        let [b, o, gh, gw] = y.shape[..] else { unreachable!("conv2d output is 4-D") };
        y.reshape(&[b, o, gh * gw]).transpose(1, 2)
    }

    /// 2x2 max pooling, stride 2, floor mode.
    pub fn max_pool2x2(x: &Array) -> Array {
        let [b, c, h, w] = x.shape[..] else { panic!("reference max_pool2x2: x {:?}", x.shape) };
        let (oh, ow) = (h / 2, w / 2);
        let mut out = Vec::with_capacity(b * c * oh * ow);
        for n in 0..b {
            for ch in 0..c {
                for y in 0..oh {
                    for z in 0..ow {
                        let taps = [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(i, j)| x.at(&[n, ch, 2 * y + i, 2 * z + j]));
                        out.push(taps.into_iter().fold(f64::NEG_INFINITY, f64::max));
                    }
                }
            }
        }
        Array::new(&[b, c, oh, ow], out)
    }
}
