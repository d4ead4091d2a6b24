//! Resampling NCHW maps along H and W with PyTorch's semantics: adaptive average pooling
//! and bilinear interpolation (`align_corners=False`). Each is a product with a constant
//! `[out, in]` matrix per axis, `Mh · x · Mwᵀ`, so their backward is the matmul's.

use crate::{Error, Result, Tensor};

/// Interpolation kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interp {
    /// Linear, two taps.
    Bilinear,
    /// Cubic convolution (A = −0.75, PyTorch's), four taps, edges clamped.
    Bicubic,
}

/// Taps `(index, weight)` for output position `o` along an axis of `n_in` → `n_out`, as
/// PyTorch's `interpolate(size=..., align_corners=False)` (the same index may repeat at
/// the edges).
pub fn interp_taps(o: usize, n_in: usize, n_out: usize, mode: Interp) -> Vec<(usize, f64)> {
    let scale = n_in as f64 / n_out as f64;
    let src = (o as f64 + 0.5) * scale - 0.5;
    let clamp = |i: isize| i.clamp(0, n_in as isize - 1) as usize;
    match mode {
        Interp::Bilinear => {
            let src = src.max(0.0);
            let i0 = src.floor() as isize;
            let t = src - i0 as f64;
            vec![(clamp(i0), 1.0 - t), (clamp(i0 + 1), t)]
        }
        Interp::Bicubic => {
            const A: f64 = -0.75;
            let near = |x: f64| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
            let far = |x: f64| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
            let i0 = src.floor() as isize;
            let t = src - i0 as f64;
            let w = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
            (0..4).map(|k| (clamp(i0 - 1 + k as isize), w[k])).collect()
        }
    }
}

/// The `[n_out, n_in]` matrix of `interp_taps` along one axis.
fn interp_matrix(n_in: usize, n_out: usize, mode: Interp) -> Vec<f64> {
    let mut m = vec![0.0; n_out * n_in];
    for o in 0..n_out {
        for (i, w) in interp_taps(o, n_in, n_out, mode) {
            m[o * n_in + i] += w;
        }
    }
    m
}

/// The `[n_out, n_in]` adaptive average pooling matrix: output `o` averages inputs
/// `floor(o·n_in/n_out) .. ceil((o+1)·n_in/n_out)`.
fn pool_matrix(n_in: usize, n_out: usize) -> Vec<f64> {
    let mut m = vec![0.0; n_out * n_in];
    for o in 0..n_out {
        let start = o * n_in / n_out;
        let end = ((o + 1) * n_in).div_ceil(n_out);
        for i in start..end {
            m[o * n_in + i] = 1.0 / (end - start) as f64;
        }
    }
    m
}

impl Tensor {
    /// `Mh · self · Mwᵀ` for NCHW `self` and per-axis matrices built by `matrix(n_in, n_out)`.
    fn resample2d(&self, op: &'static str, (oh, ow): (usize, usize), matrix: impl Fn(usize, usize) -> Vec<f64>) -> Result<Tensor> {
        self.check_float(op)?;
        let [_, _, h, w] = *self.shape() else {
            return Err(Error::invalid(op, format!("expects NCHW input, got {:?}", self.shape())));
        };
        if h == 0 || w == 0 || oh == 0 || ow == 0 {
            return Err(Error::invalid(op, format!("cannot resample {:?} to {oh}x{ow}", self.shape())));
        }
        let constant = |n_in, n_out| -> Result<Tensor> {
            Tensor::from_vec(matrix(n_in, n_out), &[n_out, n_in], self.device())?.to_dtype(self.dtype())
        };
        // Both resamplings are the identity at the same size.
        let x = if oh == h { self.clone() } else { constant(h, oh)?.matmul(self)? };
        if ow == w {
            Ok(x)
        } else {
            x.matmul(&constant(w, ow)?.t()?)
        }
    }

    /// Adaptive average pooling of NCHW `self` to `(oh, ow)` (PyTorch's
    /// `adaptive_avg_pool2d`: window `floor(i·H/o) .. ceil((i+1)·H/o)`; windows overlap
    /// when the output is larger than the input).
    pub fn adaptive_avg_pool2d(&self, size: (usize, usize)) -> Result<Tensor> {
        self.resample2d("adaptive_avg_pool2d", size, pool_matrix)
    }

    /// Bilinear resize of NCHW `self` to `(oh, ow)` with PyTorch's
    /// `interpolate(size=..., mode="bilinear", align_corners=False)`.
    pub fn upsample_bilinear2d(&self, size: (usize, usize)) -> Result<Tensor> {
        self.resample2d("upsample_bilinear2d", size, |n_in, n_out| interp_matrix(n_in, n_out, Interp::Bilinear))
    }
}
