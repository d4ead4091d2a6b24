//! Multi-head scaled dot-product attention with an additive bias: one fused backend call
//! at inference (no `[B, H, L, L]` scores in memory on backends that fuse), tracked ops in
//! training.

use crate::autograd::records;
use crate::{Error, Result, Tensor};

impl Tensor {
    /// `softmax(scale·q·kᵀ + bias)·v` for `q` (self), `k`, `v` `[B, H, L, D]` and a `bias`
    /// broadcastable to `[B, H, L, L]`; returns the heads merged, `[B, L, H·D]`.
    ///
    /// When no operand tracks gradients (or under [`crate::no_grad`]), one
    /// [`crate::backend::Rows::attention`] call; else the same composed of tracked ops (`q` scaled
    /// first, as Hugging Face's BEiT does; the same values up to rounding).
    pub fn attention(&self, k: &Tensor, v: &Tensor, bias: Option<&Tensor>, scale: f64) -> Result<Tensor> {
        const OP: &str = "attention";
        let &[b, h, l, d] = self.shape() else {
            return Err(Error::invalid(OP, format!("q must be [B, H, L, D], got {:?}", self.shape())));
        };
        let operands: Vec<&Tensor> = [Some(self), Some(k), Some(v), bias].into_iter().flatten().collect();
        if records(&operands) {
            let mut scores = self.mul_scalar(scale)?.matmul(&k.t()?)?;
            if let Some(bias) = bias {
                scores = scores.add(bias)?;
            }
            return scores.softmax_last()?.matmul(v)?.permute(&[0, 2, 1, 3])?.reshape(&[b, l, h * d]);
        }
        for t in &operands[1..] {
            self.check_same(t, OP)?;
        }
        self.check_float(OP)?;
        let bias_layout = bias.map(|t| t.layout().broadcast_to(&[b, h, l, l])).transpose()?;
        let bias_view = bias.zip(bias_layout.as_ref()).map(|(t, lay)| t.view_with(lay));
        let out = self.device().backend().attention(self.view(), k.view(), v.view(), bias_view, scale)?;
        Tensor::from_storage(out, &[b, l, h * d], self.device())
    }
}
