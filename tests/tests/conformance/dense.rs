//! Dense-prediction ops of the segmentation heads: transposed convolution (GEMM + col2im),
//! BatchNorm (inference and training statistics, and the layer's running averages),
//! adaptive average pooling and bilinear resizing, against direct loops.

use beit_conformance::{assert_close, assert_err, conformance, op_cases, Array, Gen, Input, OpCase, Tol};
use beit_engine::nn::{BatchNorm2d, Module, NormStats, VarBuilder};
use beit_engine::{DType, Tensor};

/// `conv_transpose2d(x, w, b)` for `x [2, c, h, w]`, `w [c, o, kh, kw]`, optional bias `[o]`.
fn conv_transpose(seed: u64, x: [usize; 4], w: [usize; 4], stride: (usize, usize), padding: (usize, usize), bias: bool) -> OpCase {
    let mut g = Gen::new(seed);
    let mut inputs = vec![Input::new(g.normal(&x, 1.0)).padded(), g.normal(&w, 0.5).into()];
    if bias {
        inputs.push(g.normal(&[w[1]], 1.0).into());
    }
    OpCase::new(
        inputs,
        move |x| x[0].conv_transpose2d(&x[1], x.get(2), stride, padding),
        move |x| r::conv_transpose2d(&x[0], &x[1], x.get(2), stride, padding),
    )
}

/// Pooling of `[2, 3, h, w]` to `size`.
fn pool(seed: u64, hw: (usize, usize), size: (usize, usize)) -> OpCase {
    let x = Input::new(Gen::new(seed).normal(&[2, 3, hw.0, hw.1], 1.0)).padded();
    OpCase::new(vec![x], move |x| x[0].adaptive_avg_pool2d(size), move |x| r::adaptive_avg_pool2d(&x[0], size))
}

/// Bilinear resize of a `[2, 3, h, w]` view stored channels-first to `size`.
fn bilinear(seed: u64, hw: (usize, usize), size: (usize, usize)) -> OpCase {
    let x = Input::new(Gen::new(seed).normal(&[2, 3, hw.0, hw.1], 1.0)).permuted(&[1, 0, 2, 3]);
    OpCase::new(vec![x], move |x| x[0].upsample_bilinear2d(size), move |x| r::upsample_bilinear2d(&x[0], size))
}

op_cases! {
    /// The FPN's upsampler: kernel 2, stride 2 (no overlap), with bias.
    conv_transpose2d_k2_s2 => conv_transpose(1, [2, 3, 3, 4], [3, 4, 2, 2], (2, 2), (0, 0), true);
    /// Overlapping patches: kernel 3x2, stride (2, 1), padding (1, 0), no bias.
    conv_transpose2d_overlap_padding => conv_transpose(2, [2, 2, 4, 3], [2, 3, 3, 2], (2, 1), (1, 0), false);
    /// Inference BatchNorm with given statistics; gradients reach all five inputs.
    batch_norm_eval => {
        let mut g = Gen::new(3);
        let x = Input::new(g.normal(&[2, 3, 4, 5], 2.0)).padded();
        let (mean, var) = (g.normal(&[3], 1.0), g.uniform(&[3], 0.5, 2.0));
        let (w, b) = (g.normal(&[3], 1.0), g.normal(&[3], 1.0));
        OpCase::new(
            vec![x, mean.into(), var.into(), w.into(), b.into()],
            |x| x[0].batch_norm_eval(&x[1], &x[2], Some(&x[3]), Some(&x[4]), 1e-5),
            |x| r::batch_norm(&x[0], &x[1].data, &x[2].data, &x[3], &x[4], 1e-5),
        )
    };
    /// Training BatchNorm: the batch's own statistics, differentiated through.
    batch_norm_train => {
        let mut g = Gen::new(4);
        let x = Input::new(g.normal(&[3, 2, 3, 4], 1.5)).permuted(&[0, 1, 3, 2]);
        OpCase::new(
            vec![x, g.normal(&[2], 1.0).into(), g.normal(&[2], 1.0).into()],
            |x| Ok(x[0].batch_norm_train(Some(&x[1]), Some(&x[2]), 1e-5)?.0),
            |x| {
                let (mean, var) = r::channel_stats(&x[0]);
                r::batch_norm(&x[0], &mean, &var, &x[1], &x[2], 1e-5)
            },
        )
        .tol(Tol { grad_f32: 1e-3, ..Tol::DEFAULT })
    };
    /// Pooling down to uneven windows (`5x7` to `3x2`).
    adaptive_avg_pool2d_down => pool(5, (5, 7), (3, 2));
    /// Pooling up (`4x4` to `6x6`: overlapping windows, PSP's scale 6 on a small map).
    adaptive_avg_pool2d_up => pool(6, (4, 4), (6, 6));
    /// Global pooling (PSP's scale 1).
    adaptive_avg_pool2d_global => pool(7, (3, 5), (1, 1));
    /// Upsampling by uneven factors (`3x4` to `7x9`).
    upsample_bilinear2d_up => bilinear(8, (3, 4), (7, 9));
    /// Downsampling (`8x6` to `3x4`).
    upsample_bilinear2d_down => bilinear(9, (8, 6), (3, 4));
    /// From a single pixel (PSP's scale 1 back to the map).
    upsample_bilinear2d_from_1x1 => bilinear(10, (1, 1), (3, 2));
}

conformance! {
    /// `BatchNorm2d` in training moves its running mean and unbiased variance by momentum
    /// 0.1 and counts the batches; in inference it normalises by the running statistics.
    fn batch_norm2d_running_stats(dev: &Device) -> Result<()> {
        let x = Gen::new(11).normal(&[2, 3, 2, 3], 2.0).map(|v| v + 1.0);
        let bn = BatchNorm2d::new(&VarBuilder::new(dev, DType::F64, 0), 3)?;
        bn.forward(&x.to_tensor(DType::F64, dev)?, NormStats::Batch)?;
        let y = bn.forward(&x.to_tensor(DType::F64, dev)?, NormStats::Batch)?;
        let (mean, var) = r::channel_stats(&x);
        let n = 12.0;
        // Two updates from (0, 1) towards the same statistics.
        let after2 = |start: f64, target: f64| (start * 0.9 + 0.1 * target) * 0.9 + 0.1 * target;
        let want_mean: Vec<f64> = mean.iter().map(|&m| after2(0.0, m)).collect();
        let want_var: Vec<f64> = var.iter().map(|&v| after2(1.0, v * n / (n - 1.0))).collect();
        let sd = bn.state_dict();
        let got = |k: &str| Array::from_tensor(&sd.get(k).unwrap()).unwrap();
        assert_close("running_mean", &got("running_mean"), &Array::new(&[3], want_mean.clone()), 1e-12);
        assert_close("running_var", &got("running_var"), &Array::new(&[3], want_var.clone()), 1e-12);
        assert_eq!(sd.get("num_batches_tracked")?.to_vec::<i64>()?, vec![2]);
        let (ones, zeros) = (Array::full(&[3], 1.0), Array::full(&[3], 0.0));
        assert_close("train output", &Array::from_tensor(&y)?, &r::batch_norm(&x, &mean, &var, &ones, &zeros, 1e-5), 1e-10);
        let eval = bn.forward(&x.to_tensor(DType::F64, dev)?, NormStats::Running)?;
        let want = r::batch_norm(&x, &want_mean, &want_var, &ones, &zeros, 1e-5);
        assert_close("eval output", &Array::from_tensor(&eval)?, &want, 1e-10);
        assert_eq!(bn.trainable_params().len(), 2);
        Ok(())
    }

    /// Bad shapes are errors naming the op and the shapes.
    fn dense_ops_reject_bad_input(dev: &Device) -> Result<()> {
        let t = |shape: &[usize]| Tensor::zeros(shape, DType::F32, dev);
        let x = t(&[2, 3, 4, 4])?;
        assert_err(x.conv_transpose2d(&t(&[4, 5, 2, 2])?, None, (2, 2), (0, 0)), &["conv_transpose2d", "[2, 3, 4, 4]", "[4, 5, 2, 2]"]);
        assert_err(x.conv_transpose2d(&t(&[3, 5, 2])?, None, (2, 2), (0, 0)), &["conv_transpose2d", "[C, O, kh, kw]"]);
        assert_err(x.conv_transpose2d(&t(&[3, 5, 2, 2])?, None, (2, 2), (4, 4)), &["padding"]);
        assert_err(t(&[2, 9, 12])?.fold2d((3, 4, 4), (2, 2), (2, 2), (0, 0)), &["fold2d", "[2, 4, 12]"]);
        assert_err(t(&[1, 3, 1, 1])?.batch_norm_train(None, None, 1e-5), &["batch_norm", "more than one value"]);
        assert_err(x.batch_norm_eval(&t(&[4])?, &t(&[3])?, None, None, 1e-5), &["batch_norm", "[4]"]);
        assert_err(t(&[3, 4, 4])?.adaptive_avg_pool2d((2, 2)), &["adaptive_avg_pool2d", "NCHW"]);
        assert_err(x.upsample_bilinear2d((0, 3)), &["upsample_bilinear2d", "0x3"]);
        Ok(())
    }
}

/// Float64 references of this file's ops, in plain loops written from PyTorch's documented
/// formulas (no code shared with the engine).
mod r {
    use beit_conformance::Array;

    /// Transposed convolution by scattering: `out[b, o, y·s − p + i, x·s − p + j] += x[b, c, y, x] ·
    /// w[c, o, i, j]`, plus `bias[o]`; `weight` is `[C, O, kh, kw]`.
    pub fn conv_transpose2d(x: &Array, weight: &Array, bias: Option<&Array>, stride: (usize, usize), padding: (usize, usize)) -> Array {
        let [b, c, h, w] = x.shape[..] else { panic!("reference conv_transpose2d: x {:?}", x.shape) };
        let [_, o, kh, kw] = weight.shape[..] else { panic!("reference conv_transpose2d: weight {:?}", weight.shape) };
        let oh = (h - 1) * stride.0 + kh - 2 * padding.0;
        let ow = (w - 1) * stride.1 + kw - 2 * padding.1;
        let mut out = vec![0.0; b * o * oh * ow];
        for n in 0..b {
            for f in 0..o {
                let plane = &mut out[(n * o + f) * oh * ow..][..oh * ow];
                plane.iter_mut().for_each(|v| *v = bias.map_or(0.0, |bias| bias.data[f]));
                for ch in 0..c {
                    for y in 0..h {
                        for z in 0..w {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let oy = (y * stride.0 + i) as isize - padding.0 as isize;
                                    let ox = (z * stride.1 + j) as isize - padding.1 as isize;
                                    if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                        continue;
                                    }
                                    plane[oy as usize * ow + ox as usize] += x.at(&[n, ch, y, z]) * weight.at(&[ch, f, i, j]);
                                }
                            }
                        }
                    }
                }
            }
        }
        Array::new(&[b, o, oh, ow], out)
    }

    /// Per-channel mean and biased variance of NCHW `x`.
    pub fn channel_stats(x: &Array) -> (Vec<f64>, Vec<f64>) {
        let [b, c, h, w] = x.shape[..] else { panic!("reference channel_stats: x {:?}", x.shape) };
        let n = (b * h * w) as f64;
        let values = |ch: usize| (0..b).flat_map(move |i| (0..h * w).map(move |p| (i, p))).map(move |(i, p)| (i, ch, p));
        let mut means = Vec::new();
        let mut vars = Vec::new();
        for ch in 0..c {
            let at = |(i, ch, p): (usize, usize, usize)| x.data[(i * c + ch) * h * w + p];
            let mean = values(ch).map(at).sum::<f64>() / n;
            let var = values(ch).map(|v| (at(v) - mean).powi(2)).sum::<f64>() / n;
            means.push(mean);
            vars.push(var);
        }
        (means, vars)
    }

    /// `(x − mean[c]) / √(var[c] + eps) · weight[c] + bias[c]` over NCHW `x`.
    pub fn batch_norm(x: &Array, mean: &[f64], var: &[f64], weight: &Array, bias: &Array, eps: f64) -> Array {
        let [_, c, h, w] = x.shape[..] else { panic!("reference batch_norm: x {:?}", x.shape) };
        let data = x
            .data
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let ch = i / (h * w) % c;
                (v - mean[ch]) / (var[ch] + eps).sqrt() * weight.data[ch] + bias.data[ch]
            })
            .collect();
        Array::new(&x.shape, data)
    }

    /// Resample each `[H, W]` plane of NCHW `x` to `[oh, ow]` with `value(plane, y, x)`.
    fn per_plane(x: &Array, (oh, ow): (usize, usize), value: impl Fn(&[f64], usize, usize) -> f64) -> Array {
        let [b, c, h, w] = x.shape[..] else { panic!("reference resample: x {:?}", x.shape) };
        let mut out = Vec::with_capacity(b * c * oh * ow);
        for plane in x.data.chunks(h * w) {
            for y in 0..oh {
                for z in 0..ow {
                    out.push(value(plane, y, z));
                }
            }
        }
        Array::new(&[b, c, oh, ow], out)
    }

    /// Adaptive average pooling: output `(i, j)` is the mean of rows `floor(i·H/oh) ..
    /// ceil((i+1)·H/oh)` and columns likewise.
    pub fn adaptive_avg_pool2d(x: &Array, size: (usize, usize)) -> Array {
        let (h, w) = (x.shape[2], x.shape[3]);
        let window = |i: usize, n: usize, o: usize| (i * n / o, ((i + 1) * n).div_ceil(o));
        per_plane(x, size, |plane, i, j| {
            let ((y0, y1), (x0, x1)) = (window(i, h, size.0), window(j, w, size.1));
            let sum: f64 = (y0..y1).flat_map(|y| (x0..x1).map(move |z| (y, z))).map(|(y, z)| plane[y * w + z]).sum();
            sum / ((y1 - y0) * (x1 - x0)) as f64
        })
    }

    /// Bilinear resize with `align_corners=False`: source coordinate `(o + ½)·in/out − ½`,
    /// clamped at 0, neighbours clamped to the last row/column.
    pub fn upsample_bilinear2d(x: &Array, size: (usize, usize)) -> Array {
        let (h, w) = (x.shape[2], x.shape[3]);
        let source = |o: usize, n: usize, out: usize| {
            let s = ((o as f64 + 0.5) * n as f64 / out as f64 - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(n - 1);
            let i1 = (i0 + 1).min(n - 1);
            (i0, i1, s - i0 as f64)
        };
        per_plane(x, size, |plane, i, j| {
            let (y0, y1, ty) = source(i, h, size.0);
            let (x0, x1, tx) = source(j, w, size.1);
            let row = |y: usize| plane[y * w + x0] * (1.0 - tx) + plane[y * w + x1] * tx;
            row(y0) * (1.0 - ty) + row(y1) * ty
        })
    }
}
