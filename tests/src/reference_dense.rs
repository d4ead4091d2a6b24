//! Float64 references of the dense-prediction ops (segmentation heads): transposed
//! convolution, batch normalisation, adaptive average pooling and bilinear resizing, in
//! plain loops written from PyTorch's documented formulas (no code shared with the engine).

use crate::Array;

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
