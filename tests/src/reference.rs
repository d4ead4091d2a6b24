//! Float64 references of the engine's ops, in plain loops over [`Array`]s. They share no
//! code with the engine or any backend (the error function is this crate's own, [`crate::erf`]),
//! so that a backend bug cannot hide in its reference.

use crate::array::broadcast_shape;
use crate::erf::normal_cdf;
use crate::Array;
use beit_engine::IGNORE_INDEX;

/// Batched matmul `[..., m, k] @ [..., k, n]`, batch dims broadcast.
pub fn matmul(a: &Array, b: &Array) -> Array {
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, n) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 1]);
    assert_eq!(k, b.shape[rb - 2], "reference matmul: inner dims");
    let batch = broadcast_shape(&a.shape[..ra - 2], &b.shape[..rb - 2]);
    let a = a.broadcast_to(&[&batch[..], &[m, k]].concat());
    let b = b.broadcast_to(&[&batch[..], &[k, n]].concat());
    let count: usize = batch.iter().product();
    let mut out = vec![0.0; count * m * n];
    for p in 0..count {
        let (x, y) = (&a.data[p * m * k..], &b.data[p * k * n..]);
        for i in 0..m {
            for j in 0..n {
                out[(p * m + i) * n + j] = (0..k).map(|l| x[i * k + l] * y[l * n + j]).sum();
            }
        }
    }
    Array::new(&[&batch[..], &[m, n]].concat(), out)
}

/// Sum over `dims`.
pub fn sum(x: &Array, dims: &[usize], keepdim: bool) -> Array {
    x.fold(dims, keepdim, 0.0, |a, b| a + b)
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

/// Logistic sigmoid.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// GELU, erf form: x·Φ(x).
pub fn gelu(x: f64) -> f64 {
    x * normal_cdf(x)
}

/// `log Σ exp(row)`, shifted by the row maximum.
fn log_sum_exp(row: &[f64]) -> f64 {
    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + row.iter().map(|&v| (v - m).exp()).sum::<f64>().ln()
}

/// Softmax over the last dim.
pub fn softmax_last(x: &Array) -> Array {
    x.map_rows(|row| {
        let lse = log_sum_exp(row);
        row.iter().map(|&v| (v - lse).exp()).collect()
    })
}

/// Log-softmax over the last dim.
pub fn log_softmax_last(x: &Array) -> Array {
    x.map_rows(|row| {
        let lse = log_sum_exp(row);
        row.iter().map(|&v| v - lse).collect()
    })
}

/// LayerNorm over the last dim (biased variance), then `· weight + bias` where given.
pub fn layer_norm(x: &Array, weight: Option<&Array>, bias: Option<&Array>, eps: f64) -> Array {
    x.map_rows(|row| {
        let d = row.len() as f64;
        let mu = row.iter().sum::<f64>() / d;
        let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d;
        let rstd = 1.0 / (var + eps).sqrt();
        row.iter()
            .enumerate()
            .map(|(j, &v)| {
                let w = weight.map_or(1.0, |w| w.data[j]);
                let b = bias.map_or(0.0, |b| b.data[j]);
                (v - mu) * rstd * w + b
            })
            .collect()
    })
}

/// Mean over the rows whose target is not [`IGNORE_INDEX`] of the label-smoothed
/// cross-entropy `(1 − s)·(−log p[target]) + s·mean_c(−log p[c])`; NaN when no row counts.
pub fn cross_entropy(logits: &Array, targets: &[i64], smoothing: f64) -> Array {
    let mut total = 0.0;
    let mut count = 0;
    for (row, &t) in logits.rows().zip(targets) {
        if t == IGNORE_INDEX {
            continue;
        }
        let lse = log_sum_exp(row);
        let nll = lse - row[t as usize];
        let smooth = lse - row.iter().sum::<f64>() / row.len() as f64;
        total += (1.0 - smoothing) * nll + smoothing * smooth;
        count += 1;
    }
    Array::scalar(if count == 0 { f64::NAN } else { total / count as f64 })
}

/// The shape of `x` with dim `dim` set to `len`, and the sizes before and after `dim`.
fn split_at(x: &Array, dim: usize, len: usize) -> (Vec<usize>, usize, usize) {
    let mut shape = x.shape.clone();
    shape[dim] = len;
    let outer = x.shape[..dim].iter().product();
    let inner = x.shape[dim + 1..].iter().product();
    (shape, outer, inner)
}

/// Entries of `x` along `dim` at `indices`.
pub fn index_select(x: &Array, dim: usize, indices: &[i64]) -> Array {
    let (shape, outer, inner) = split_at(x, dim, indices.len());
    let d = x.shape[dim];
    let mut out = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for &i in indices {
            let start = (o * d + i as usize) * inner;
            out.extend_from_slice(&x.data[start..start + inner]);
        }
    }
    Array::new(&shape, out)
}

/// `x` with `src` added at `indices` along `dim` (repeats accumulate).
pub fn index_add(x: &Array, dim: usize, indices: &[i64], src: &Array) -> Array {
    let (_, outer, inner) = split_at(x, dim, indices.len());
    let d = x.shape[dim];
    let mut out = x.clone();
    for o in 0..outer {
        for (p, &i) in indices.iter().enumerate() {
            for e in 0..inner {
                out.data[(o * d + i as usize) * inner + e] += src.data[(o * indices.len() + p) * inner + e];
            }
        }
    }
    out
}

/// Concatenation along `dim`.
pub fn cat(xs: &[&Array], dim: usize) -> Array {
    let total = xs.iter().map(|x| x.shape[dim]).sum();
    let (shape, outer, inner) = split_at(xs[0], dim, total);
    let mut out = Vec::with_capacity(shape.iter().product());
    for o in 0..outer {
        for x in xs {
            let run = x.shape[dim] * inner;
            out.extend_from_slice(&x.data[o * run..(o + 1) * run]);
        }
    }
    Array::new(&shape, out)
}

/// Entries `start..start + len` of dim `dim`.
pub fn narrow(x: &Array, dim: usize, start: usize, len: usize) -> Array {
    let indices: Vec<i64> = (start as i64..(start + len) as i64).collect();
    index_select(x, dim, &indices)
}

/// `cond != 0 ? on_true : on_false`, all three broadcast.
pub fn where_cond(cond: &Array, on_true: &Array, on_false: &Array) -> Array {
    let shape = broadcast_shape(&cond.shape, &broadcast_shape(&on_true.shape, &on_false.shape));
    let (c, t, f) = (cond.broadcast_to(&shape), on_true.broadcast_to(&shape), on_false.broadcast_to(&shape));
    let data = (0..c.numel()).map(|i| if c.data[i] != 0.0 { t.data[i] } else { f.data[i] }).collect();
    Array::new(&shape, data)
}

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

/// The `k` largest entries of each last-dim row, descending, with their indices.
pub fn topk_last(x: &Array, k: usize) -> (Array, Vec<i64>) {
    let mut shape = x.shape.clone();
    *shape.last_mut().expect("topk of a 0-dim array") = k;
    let (mut values, mut indices) = (Vec::new(), Vec::new());
    for row in x.rows() {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        for &i in &order[..k] {
            values.push(row[i]);
            indices.push(i as i64);
        }
    }
    (Array::new(&shape, values), indices)
}

/// The dropout keep-mask of the backend contract: element `i` is `1/keep` when
/// `rng::uniform(seed, i) < keep`, else 0.
pub fn keep_mask(shape: &[usize], keep: f64, seed: u64) -> Array {
    let n = shape.iter().product::<usize>() as u64;
    Array::new(shape, (0..n).map(|i| if beit_engine::rng::uniform(seed, i) < keep { 1.0 / keep } else { 0.0 }).collect())
}

/// A Linear layer and its epilogue: `y = x·wᵀ + bias`, then GELU, then `residual + scale ⊙ y`
/// (`x [..., k]`, `w [n, k]`).
pub fn linear(x: &Array, w: &Array, bias: Option<&Array>, gelu_after: bool, residual: Option<&Array>, scale: Option<&Array>) -> Array {
    let mut y = matmul(x, &w.transpose(0, 1));
    if let Some(b) = bias {
        y = y.zip(&b.broadcast_to(&y.shape), |v, b| v + b);
    }
    if gelu_after {
        y = y.map(gelu);
    }
    if let Some(r) = residual {
        if let Some(s) = scale {
            y = y.zip(&s.broadcast_to(&y.shape), |v, s| v * s);
        }
        y = r.zip(&y, |r, v| r + v);
    }
    y
}

/// Multi-head attention: `softmax(scale·q·kᵀ + bias)·v` for `[B, H, L, D]` operands and a
/// bias broadcast to `[B, H, L, L]`; the heads merged, `[B, L, H·D]`.
pub fn attention(q: &Array, k: &Array, v: &Array, bias: Option<&Array>, scale: f64) -> Array {
    let &[b, h, l, d] = q.shape.as_slice() else { panic!("reference attention: q must be [B, H, L, D]") };
    let mut s = matmul(q, &k.transpose(2, 3)).map(|x| x * scale);
    if let Some(bias) = bias {
        s = s.zip(&bias.broadcast_to(&s.shape), |x, b| x + b);
    }
    matmul(&softmax_last(&s), v).permute(&[0, 2, 1, 3]).reshape(&[b, l, h * d])
}
