//! Visual tokenizers: image batches (the tokenizer view) to discrete token ids, BEiT's
//! pretraining targets.

mod dalle;

pub use dalle::{DalleConfig, DalleEncoder};

use beit_engine::{Result, Tensor};

/// ε of the DALL-E logit-Laplace pixel map.
pub const LOGIT_LAPLACE_EPS: f64 = 0.1;

/// Map `[0, 1]` pixels into the dVAE's range: `x·(1 − 2ε) + ε`.
pub fn map_pixels(x: &Tensor) -> Result<Tensor> {
    x.affine(1.0 - 2.0 * LOGIT_LAPLACE_EPS, LOGIT_LAPLACE_EPS)
}

/// The inverse of [`map_pixels`], clamped to `[0, 1]`.
pub fn unmap_pixels(x: &Tensor) -> Result<Tensor> {
    let y = x.affine(1.0 / (1.0 - 2.0 * LOGIT_LAPLACE_EPS), -LOGIT_LAPLACE_EPS / (1.0 - 2.0 * LOGIT_LAPLACE_EPS))?;
    let (zero, one) = (Tensor::zeros(&[], y.dtype(), y.device())?, Tensor::ones(&[], y.dtype(), y.device())?);
    y.maximum(&zero)?.minimum(&one)
}

/// Image batch → token ids.
pub trait Tokenizer {
    /// Number of distinct tokens.
    fn vocab_size(&self) -> usize;
    /// Expected input side in pixels (e.g. 112 for BEiT's 14×14 targets).
    fn input_size(&self) -> usize;
    /// Logits `[B, vocab, h, w]` of mapped pixels `[B, C, H, W]`.
    fn logits(&self, pixels: &Tensor) -> Result<Tensor>;
    /// Token ids `[B, h, w]` (i64): the argmax of [`Tokenizer::logits`].
    fn tokenize(&self, pixels: &Tensor) -> Result<Tensor> {
        let _guard = beit_engine::no_grad();
        self.logits(pixels)?.permute(&[0, 2, 3, 1])?.contiguous()?.argmax()
    }
}
