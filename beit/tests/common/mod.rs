//! Helpers of the training tests: a tiny model, a fixed tokenizer, digits.
#![allow(dead_code)] // each test crate uses a part

use beit::engine::nn::Module;
use beit::engine::rng::Rng;
use beit::engine::{DType, Device, Result, Tensor};
use beit::tokenizer::Tokenizer;
use beit::train::PretrainData;
use beit::BeitConfig;

pub mod group;

/// Tokens from a fixed random patch projection: kernel = stride = 4 px.
pub struct PatchTokenizer {
    weight: Tensor,
}

impl PatchTokenizer {
    /// A projection to `vocab` tokens.
    pub fn new(vocab: usize, device: &Device) -> Self {
        PatchTokenizer { weight: Tensor::randn(&[vocab, 3, 4, 4], 1.0, DType::F32, &mut Rng::new(5), device).unwrap() }
    }
}

impl Tokenizer for PatchTokenizer {
    fn vocab_size(&self) -> usize {
        self.weight.shape()[0]
    }
    fn input_size(&self) -> usize {
        8
    }
    fn logits(&self, pixels: &Tensor) -> Result<Tensor> {
        pixels.conv2d(&self.weight, None, (4, 4), (0, 0))
    }
}

/// A 2-layer, 16-wide BEiT on 8 px images of 4 px patches, 8 visual tokens.
pub fn tiny_config() -> BeitConfig {
    BeitConfig {
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        image_size: 8,
        patch_size: 4,
        vocab_size: 8,
        ..BeitConfig::default()
    }
}

/// The first `n` digits, both views at 8 px.
pub fn digits_data(n: usize, device: &Device) -> PretrainData {
    let d = beit::data::Digits::load().unwrap();
    PretrainData::digits(&d, &(0..n).collect::<Vec<_>>(), 8, 8, device).unwrap()
}

/// Every parameter and buffer of `m`, by name (as f32).
pub fn weights(m: &impl Module) -> Vec<(String, Vec<f32>)> {
    m.params().iter().map(|p| (p.name().to_string(), p.tensor().to_vec_f64().unwrap().into_iter().map(|v| v as f32).collect())).collect()
}
