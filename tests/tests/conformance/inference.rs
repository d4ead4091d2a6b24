//! The fused inference kernels: a Linear layer with its epilogue (bias, GELU,
//! `residual + layer scale ⊙ ·`) and multi-head attention with an additive bias. The
//! `forward` cases run the fused kernel (inputs that track no gradient); the `gradcheck`
//! cases the tracked composition that training uses.

use beit_conformance::{assert_close, conformance, op_cases, Array, Gen, Input, OpCase, Tol};
use beit_engine::{no_grad, LinearPost, Result, Tensor};

/// Tolerances for the long dot products of these kernels.
const TOL: Tol = Tol { f32: 3e-5, ..Tol::DEFAULT };

/// `x·wᵀ + bias` then the epilogue: inputs x, w, bias, then residual and scale if present.
fn linear(x: Input, w: Input, gelu: bool, residual: bool, scale: bool, seed: u64) -> OpCase {
    let mut g = Gen::new(seed);
    let (n, out_shape) = {
        let (xs, ws) = (&x.values.shape, &w.values.shape);
        (ws[0], [&xs[..xs.len() - 1], &[ws[0]][..]].concat())
    };
    let mut inputs = vec![x, w, g.normal(&[n], 1.0).into()];
    if residual {
        inputs.push(Input::new(g.normal(&out_shape, 1.0)).padded());
    }
    if scale {
        inputs.push(g.normal(&[n], 0.5).into());
    }
    OpCase::new(
        inputs,
        move |t| {
            let post = LinearPost { gelu, residual: residual.then(|| &t[3]), scale: scale.then(|| &t[4]) };
            t[0].linear(&t[1], Some(&t[2]), post)
        },
        move |a| r::linear(&a[0], &a[1], Some(&a[2]), gelu, residual.then(|| &a[3]), scale.then(|| &a[4])),
    )
    .tol(TOL)
}

/// Attention on `[B, H, L, D]` views of `[B, L, H, D]` buffers (the model's head split),
/// with a `[H, L, L]` bias broadcast over the batch.
fn attention(b: usize, h: usize, l: usize, d: usize, bias: bool, seed: u64) -> OpCase {
    let mut g = Gen::new(seed);
    let heads = |g: &mut Gen| Input::new(g.normal(&[b, h, l, d], 1.0)).permuted(&[0, 2, 1, 3]);
    let mut inputs = vec![heads(&mut g), heads(&mut g), heads(&mut g)];
    if bias {
        inputs.push(g.normal(&[h, l, l], 1.0).into());
    }
    let scale = 1.0 / (d as f64).sqrt();
    OpCase::new(
        inputs,
        move |t| t[0].attention(&t[1], &t[2], bias.then(|| &t[3]), scale),
        move |a| r::attention(&a[0], &a[1], &a[2], bias.then(|| &a[3]), scale),
    )
    .tol(TOL)
}

op_cases! {
    /// Bias only, batched rows `[2, 5, 7]`, the weight a transposed view.
    linear_bias => {
        let mut g = Gen::new(1);
        linear(g.normal(&[2, 5, 7], 1.0).into(), Input::new(g.normal(&[6, 7], 1.0)).transposed(), false, false, false, 2)
    };
    /// Bias and GELU (BEiT's MLP), a narrowed input.
    linear_gelu => {
        let mut g = Gen::new(3);
        linear(Input::new(g.normal(&[9, 17], 1.0)).padded(), g.normal(&[33, 17], 0.5).into(), true, false, false, 4)
    };
    /// `residual + scale ⊙ (x·wᵀ + b)` (a block's output projection with layer scale).
    linear_residual_scaled => {
        let mut g = Gen::new(5);
        linear(g.normal(&[3, 4, 18], 1.0).into(), g.normal(&[35, 18], 0.5).into(), false, true, true, 6)
    };
    /// A residual without layer scale, after GELU.
    linear_gelu_residual => {
        let mut g = Gen::new(7);
        linear(g.normal(&[6, 10], 1.0).into(), g.normal(&[12, 10], 0.5).into(), true, true, false, 8)
    };
    /// Two heads of 7 tokens, with a relative position bias.
    attention_bias => attention(2, 2, 7, 5, true, 9);
    /// No bias, one head of 13 tokens.
    attention_plain => attention(1, 1, 13, 4, false, 10);
}

conformance! {
    /// BEiT-Base's shapes at batch 1 through the fused linear: 197 rows, k past one packed
    /// block (300), every epilogue term, against the f64 reference.
    fn linear_large(dev: &Device) -> Result<()> {
        let mut g = Gen::new(11);
        let (x, w) = (g.normal(&[197, 300], 1.0), g.normal(&[800, 300], 0.05));
        let (b, res, s) = (g.normal(&[800], 1.0), g.normal(&[197, 800], 1.0), g.normal(&[800], 0.5));
        let t = |a: &Array| a.to_tensor(beit_engine::DType::F32, dev);
        let (xt, wt, bt, rt, st) = (t(&x)?, t(&w)?, t(&b)?, t(&res)?, t(&s)?);
        let post = LinearPost { gelu: true, residual: Some(&rt), scale: Some(&st) };
        let got = Array::from_tensor(&xt.linear(&wt, Some(&bt), post)?)?;
        let want = r::linear(&x, &w, Some(&b), true, Some(&res), Some(&s));
        assert_close(&format!("linear 197x300x800 on {dev}"), &got, &want, 1e-5);
        Ok(())
    }

    /// bf16 inference: f32 activations against bf16 weights (BEiT's batch-1 rows, k past one
    /// packed block; an odd k, which the CPU's pair GEMM cannot take; and a transposed
    /// weight, which the CPU hands to the composed form),
    /// against the f64 product with the weights rounded to bf16. The activations may be
    /// rounded to bf16 too (the CPU's AVX512_BF16 GEMM does), which moves each output by at
    /// most 2⁻⁹·Σ|x||w|: the bound is 2⁻⁸·Σ|x||w| plus f32 rounding.
    fn linear_bf16_weights(dev: &Device) -> Result<()> {
        use beit_engine::DType;
        if !beit_conformance::supports_bf16(dev) {
            return Ok(());
        }
        for (seed, (m, k, n)) in [(197, 600, 800), (5, 7, 6)].into_iter().enumerate() {
            let mut g = Gen::new(13 + seed as u64);
            let (x, w, b) = (g.normal(&[m, k], 1.0), g.normal(&[n, k], 0.05), g.normal(&[n], 1.0));
            let wb = w.to_tensor(DType::BF16, dev)?;
            // The odd case also runs on a weight stored transposed ([k, n] seen as [n, k]).
            let wb = if k % 2 == 1 { w.transpose(0, 1).to_tensor(DType::BF16, dev)?.t()? } else { wb };
            let rounded = Array::from_tensor(&wb)?;
            let got = Array::from_tensor(&x.to_tensor(DType::F32, dev)?.linear(&wb, Some(&b.to_tensor(DType::F32, dev)?), LinearPost::default())?)?;
            let want = r::linear(&x, &rounded, Some(&b), false, None, None);
            let bound = r::matmul(&x.map(f64::abs), &rounded.map(f64::abs).transpose(0, 1));
            for (i, ((&got, &want), &bound)) in got.data.iter().zip(&want.data).zip(&bound.data).enumerate() {
                let tol = bound / 256.0 + 1e-5 * (1.0 + want.abs());
                assert!((got - want).abs() <= tol, "bf16 linear {m}x{k}x{n} on {dev}: element {i} is {got}, want {want} ± {tol:.2e}");
            }
            assert!(rounded.data.iter().zip(&w.data).any(|(r, w)| r != w), "the weights were rounded");
        }
        Ok(())
    }

    /// Linear weights in the backend's pre-packed inference form (`Tensor::packed_weight`;
    /// a plain copy where the backend has none), f32 and, where the backend takes them,
    /// bf16: they read back exactly, and the fused linear matches the f64 reference over
    /// BEiT's batch-1 rows and a ragged last panel of columns (f32 at 1e-5; bf16 within the
    /// bound of `linear_bf16_weights`).
    fn linear_packed_weights(dev: &Device) -> Result<()> {
        use beit_engine::DType;
        let mut g = Gen::new(17);
        let (x, w, b) = (g.normal(&[197, 300], 1.0), g.normal(&[70, 300], 0.05), g.normal(&[70], 1.0));
        let (xt, bt) = (x.to_tensor(DType::F32, dev)?, b.to_tensor(DType::F32, dev)?);
        let _guard = no_grad();
        for dtype in [DType::F32, DType::BF16] {
            if dtype == DType::BF16 && !beit_conformance::supports_bf16(dev) {
                continue;
            }
            let plain = w.to_tensor(dtype, dev)?;
            let rounded = Array::from_tensor(&plain)?;
            let bound = r::matmul(&x.map(f64::abs), &rounded.map(f64::abs).transpose(0, 1));
            let want = r::linear(&x, &rounded, Some(&b), false, None, None);
            // Packed in the buffer it was loaded into; from a buffer another tensor shares, a
            // transposed one and the first 70 rows of a longer one (copied first).
            let longer = Array::new(&[75, 300], [&w.data[..], &[0.5; 5 * 300][..]].concat());
            let rows = longer.to_tensor(dtype, dev)?.narrow(0, 0, 70)?;
            let transposed = w.transpose(0, 1).to_tensor(dtype, dev)?.t()?;
            let sources = [w.to_tensor(dtype, dev)?, plain.clone(), transposed, rows];
            for packed in sources.into_iter().map(Tensor::packed_weight) {
                let packed = packed?;
                assert_eq!((packed.shape(), packed.dtype()), (plain.shape(), dtype));
                assert_eq!(Array::from_tensor(&packed)?.data, rounded.data, "{dtype} packed weight read back on {dev}");
                let got = Array::from_tensor(&xt.linear(&packed, Some(&bt), LinearPost::default())?)?;
                for (i, ((&got, &want), &bound)) in got.data.iter().zip(&want.data).zip(&bound.data).enumerate() {
                    let slack = if dtype == DType::BF16 { bound / 256.0 } else { 0.0 };
                    let tol = slack + 1e-5 * (1.0 + want.abs());
                    assert!((got - want).abs() <= tol, "{dtype} packed linear on {dev}: element {i} is {got}, want {want} ± {tol:.2e}");
                }
                assert_eq!(Array::from_tensor(&packed.clone().packed_weight()?)?.data, rounded.data, "packing twice on {dev}");
            }
            assert_eq!(Array::from_tensor(&plain)?.data, rounded.data, "the shared buffer is intact on {dev}");
        }
        Ok(())
    }

    /// BEiT-Base's attention shapes (197 tokens, heads of 64) at batch 2, under no_grad, with
    /// the relative position bias, against the f64 reference.
    fn attention_large(dev: &Device) -> Result<()> {
        let mut g = Gen::new(12);
        let (b, h, l, d) = (2, 3, 197, 64);
        let qkv: Vec<Array> = (0..3).map(|_| g.normal(&[b, l, h, d], 1.0)).collect();
        let bias = g.normal(&[h, l, l], 1.0);
        let _guard = no_grad();
        let t = |a: &Array| -> Result<Tensor> { a.to_tensor(beit_engine::DType::F32, dev)?.permute(&[0, 2, 1, 3]) };
        let (q, k, v) = (t(&qkv[0])?, t(&qkv[1])?, t(&qkv[2])?);
        let bt = bias.to_tensor(beit_engine::DType::F32, dev)?;
        let got = Array::from_tensor(&q.attention(&k, &v, Some(&bt), 0.125)?)?;
        let heads = |a: &Array| a.permute(&[0, 2, 1, 3]);
        let want = r::attention(&heads(&qkv[0]), &heads(&qkv[1]), &heads(&qkv[2]), Some(&bias), 0.125);
        assert_close(&format!("attention 2x3x197x64 on {dev}"), &got, &want, 1e-5);
        Ok(())
    }
}

/// Float64 references of this file's ops, in plain loops (no code shared with the engine),
/// and the shared building blocks of [`beit_conformance::reference`].
mod r {
    pub use beit_conformance::reference::*;
    use beit_conformance::Array;

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
}
