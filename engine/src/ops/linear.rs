//! A Linear layer and the terms that follow it in a transformer block (bias, GELU,
//! `residual + layer-scale ⊙ ·`): one fused backend call at inference, tracked ops in training.

use crate::autograd::records;
use crate::{Epilogue, Error, Result, Tensor};

/// What [`Tensor::linear`] applies after `x·wᵀ + bias`, in this order: GELU, then
/// `residual + scale ⊙ y`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinearPost<'a> {
    /// GELU (erf form).
    pub gelu: bool,
    /// Added last; the output's shape.
    pub residual: Option<&'a Tensor>,
    /// `[n]`, multiplies `y` before the residual is added; needs `residual`.
    pub scale: Option<&'a Tensor>,
}

impl Tensor {
    /// `self [..., k] · wᵀ + bias` for a weight `w [n, k]` and `bias [n]`, then `post`.
    ///
    /// When no operand tracks gradients (or under [`crate::no_grad`]), one
    /// [`crate::backend::Matmul::linear`] call; else the same composed of tracked ops (the same
    /// values up to rounding). A bf16 `w` against an f32 `self` is bf16 inference, with f32
    /// accumulation: the CPU widens `w` to f32 inside its GEMM or multiplies with
    /// `vdpbf16ps` (rounding `self` to bf16), whichever is faster there; other backends
    /// cast `w` to f32.
    pub fn linear(&self, w: &Tensor, bias: Option<&Tensor>, post: LinearPost) -> Result<Tensor> {
        const OP: &str = "linear";
        if post.scale.is_some() && post.residual.is_none() {
            return Err(Error::invalid(OP, "a scale needs a residual"));
        }
        let operands: Vec<&Tensor> = [Some(self), Some(w), bias, post.residual, post.scale].into_iter().flatten().collect();
        let tracked = records(&operands);
        let (r, ws) = (self.rank(), w.shape());
        let out_shape = match (r, ws) {
            (1.., &[n, k]) if self.shape()[r - 1] == k => [&self.shape()[..r - 1], &[n][..]].concat(),
            _ => return Err(Error::ShapeMismatch { op: OP, lhs: self.shape().to_vec(), rhs: ws.to_vec() }),
        };
        crate::checks::weight_dtype(OP, self.dtype(), w.dtype())?;
        // A residual of another shape broadcasts: the composed form handles it.
        if tracked || post.residual.is_some_and(|t| t.shape() != out_shape.as_slice()) {
            let mut y = self.matmul(&w.to_dtype(self.dtype())?.t()?)?;
            if let Some(b) = bias {
                y = y.add(b)?;
            }
            if post.gelu {
                y = y.gelu()?;
            }
            if let Some(res) = post.residual {
                if let Some(s) = post.scale {
                    y = y.mul(s)?;
                }
                y = res.add(&y)?;
            }
            return Ok(y);
        }
        if !self.device().same(w.device()) {
            return Err(Error::DeviceMismatch { op: OP, lhs: self.device().name(), rhs: w.device().name() });
        }
        for t in &operands[2..] {
            self.check_same(t, OP)?;
        }
        self.check_float(OP)?;
        let (k, n) = (ws[1], ws[0]);
        let rows = self.numel() / k.max(1);
        let x = self.reshape(&[rows, k])?;
        let res = post.residual.map(|t| t.reshape(&[rows, n])).transpose()?;
        let epi = Epilogue {
            bias: bias.map(Tensor::view),
            gelu: post.gelu,
            residual: res.as_ref().map(Tensor::view),
            scale: post.scale.map(Tensor::view),
        };
        let out = self.device().backend().linear(x.view(), w.view(), &epi)?;
        Tensor::from_storage(out, &out_shape, self.device())
    }

    /// This Linear weight `[n, k]` in its backend's pre-packed form for inference
    /// ([`crate::backend::Matmul::pack_weight`]; the CPU's: the panels of its GEMM, made once here
    /// instead of on every [`Tensor::linear`] call): the same values, not tracked; only
    /// `linear` without gradients and reading it back ([`Tensor::to_host`] and what uses it)
    /// are sure to accept it. The backend packs a buffer of the tensor's own, which it may
    /// replace: `self`'s, when no other tensor shares it and it holds just this matrix, else
    /// a contiguous copy. Where the backend has no such form, that buffer (detached); `self`
    /// detached when it is not a matrix or is packed already.
    pub fn packed_weight(self) -> Result<Tensor> {
        let &[n, k] = self.shape() else { return Ok(self.detach()) };
        let mut t = self.detach();
        drop(self);
        if t.view().storage.is_packed() {
            return Ok(t);
        }
        if t.storage_mut().is_none_or(|s| s.len() != n * k) {
            t = t.contiguous_copy()?;
        }
        let device = t.device().clone();
        let storage = t.storage_mut().ok_or_else(|| Error::invalid("packed_weight", "a fresh copy is still shared"))?;
        match device.backend().pack_weight(storage, n, k)? {
            Some(packed) => Tensor::from_storage(packed, &[n, k], &device),
            None => Ok(t),
        }
    }
}
