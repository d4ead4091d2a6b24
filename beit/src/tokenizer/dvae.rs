//! A discrete VAE users can train themselves (for images the DALL-E weights do not suit, such
//! as the built-in 8×8 digits): a convolutional encoder to per-position logits over the
//! vocabulary, a decoder from (relaxed) one-hot codes back to pixels, trained with the
//! Gumbel-softmax relaxation, a KL term to the uniform prior and a reconstruction loss.
//!
//! Encoder: 3×3 conv, then per downsampling stage ReLU + 3×3 conv + 2×2 max-pool, then
//! ReLU + 3×3 conv, ReLU + a per-position linear map to the vocabulary. Decoder: the
//! codebook (a per-position linear map from the vocabulary), ReLU + 3×3 conv, per stage 2×
//! nearest upsampling + ReLU + 3×3 conv, then ReLU + 1×1 conv to the image channels and a
//! sigmoid. Inputs
//! and outputs are DALL-E-mapped pixels ([`super::map_pixels`]).

use super::Tokenizer;
use beit_engine::nn::{Conv2d, Conv2dConfig, Linear, Module, Param, VarBuilder};
use beit_engine::{DType, Device, Error, Result, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The `model_type` a dVAE folder's `config.json` carries.
pub const DVAE_MODEL_TYPE: &str = "beit-dvae";

/// Sizes of a [`Dvae`] (`config.json` of its folder, with `"model_type": "beit-dvae"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DvaeConfig {
    /// Always [`DVAE_MODEL_TYPE`].
    pub model_type: String,
    /// Image channels.
    pub input_channels: usize,
    /// Input side in pixels.
    pub image_size: usize,
    /// Width of the convolutions.
    pub hidden: usize,
    /// Number of 2× downsampling stages: tokens form a `(image_size / 2^downsample)²` grid.
    pub downsample: usize,
    /// Number of tokens.
    pub vocab_size: usize,
}

impl DvaeConfig {
    /// The built-in digits' tokenizer: 16×16 inputs, an 8×8 grid of 512 tokens.
    pub fn digits() -> Self {
        DvaeConfig { model_type: DVAE_MODEL_TYPE.into(), input_channels: 3, image_size: 16, hidden: 64, downsample: 1, vocab_size: 512 }
    }

    /// Check the sizes: all positive, the image divisible by the downsampling and at most
    /// [`crate::preprocess::MAX_PIXELS`], the weights within [`crate::limits::model_bytes_limit`].
    pub fn validate(&self) -> Result<()> {
        let c = self;
        let bad = |msg: String| Err(Error::invalid("dvae config", msg));
        if c.model_type != DVAE_MODEL_TYPE {
            return bad(format!("model_type must be \"{DVAE_MODEL_TYPE}\", got {:?}", c.model_type));
        }
        if c.input_channels == 0 || c.image_size == 0 || c.hidden == 0 || c.vocab_size < 2 {
            return bad(format!("sizes must be positive and the vocabulary at least 2: {c:?}"));
        }
        if c.downsample > 8 || !c.image_size.is_multiple_of(1 << c.downsample) {
            return bad(format!("image_size {} is not a multiple of 2^downsample = 2^{}", c.image_size, c.downsample));
        }
        if (c.image_size as u128).pow(2) > crate::preprocess::MAX_PIXELS as u128 {
            return bad(format!("image_size {} gives more than {} input pixels", c.image_size, crate::preprocess::MAX_PIXELS));
        }
        crate::limits::check_model_bytes("dvae config", c.num_params().saturating_mul(4), &c.sizes())
    }

    /// The sizes that make up [`DvaeConfig::num_params`], for error messages.
    fn sizes(&self) -> String {
        format!("hidden {} with vocab_size {}", self.hidden, self.vocab_size)
    }

    /// Parameters of the dVAE (saturating, so that any sizes give a number).
    pub fn num_params(&self) -> u128 {
        let m = |xs: &[usize]| xs.iter().fold(1u128, |a, &x| a.saturating_mul(x as u128));
        let (c, h, v) = (self.input_channels, self.hidden, self.vocab_size);
        let conv3 = m(&[h, h, 9]).saturating_add(h as u128);
        let convs = m(&[2]).saturating_mul(conv3).saturating_mul(self.downsample as u128 + 1);
        let ends = m(&[c, h, 9]).saturating_add(m(&[h, c])).saturating_add(m(&[2, h, v])).saturating_add(h as u128 + v as u128 + c as u128);
        convs.saturating_add(ends)
    }

    /// Side of the token grid.
    pub fn grid(&self) -> usize {
        self.image_size >> self.downsample
    }
}

/// The trainable dVAE: encoder, codebook and decoder.
pub struct Dvae {
    config: DvaeConfig,
    enc_in: Conv2d,
    enc_down: Vec<Conv2d>,
    enc_mid: Conv2d,
    enc_out: Linear,
    codebook: Linear,
    dec_mid: Conv2d,
    dec_up: Vec<Conv2d>,
    dec_out: Conv2d,
    /// Every parameter and buffer the constructor created.
    params: Vec<Param>,
}

impl Dvae {
    /// A freshly initialised dVAE (PyTorch's default init).
    pub fn new(vb: &VarBuilder, config: DvaeConfig) -> Result<Self> {
        config.validate()?;
        let mark = vb.mark();
        let (c, h, v) = (config.input_channels, config.hidden, config.vocab_size);
        let conv3 = |vb: &VarBuilder, i: usize, o: usize| Conv2d::new(vb, i, o, Conv2dConfig::new(3).padding(1));
        let (e, d) = (vb.pp("encoder"), vb.pp("decoder"));
        Ok(Dvae {
            enc_in: conv3(&e.pp("input"), c, h)?,
            enc_down: (0..config.downsample).map(|i| conv3(&e.pp(format!("down.{i}")), h, h)).collect::<Result<_>>()?,
            enc_mid: conv3(&e.pp("mid"), h, h)?,
            enc_out: Linear::new(&e.pp("output"), h, v, true)?,
            codebook: Linear::new(&d.pp("codebook"), v, h, false)?,
            dec_mid: conv3(&d.pp("mid"), h, h)?,
            dec_up: (0..config.downsample).map(|i| conv3(&d.pp(format!("up.{i}")), h, h)).collect::<Result<_>>()?,
            dec_out: Conv2d::new(&d.pp("output"), h, c, Conv2dConfig::new(1))?,
            config,
            params: vb.created_since(mark),
        })
    }

    /// Load a folder written by [`Dvae::save`].
    pub fn from_folder(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config: DvaeConfig = super::read_config(dir)?;
        super::check_folder(dir, config.validate(), config.num_params(), &config.sizes())?;
        let model = Self::new(&VarBuilder::new(device, DType::F32, 0), config)?;
        super::load_weights(&model, dir, device)?;
        Ok(model)
    }

    /// Write `config.json` and `model.safetensors` into `dir` (created if missing).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        super::save_folder(self, &self.config, dir.as_ref())
    }

    /// The sizes.
    pub fn config(&self) -> &DvaeConfig {
        &self.config
    }

    /// Check that `pixels` is `[B, C, S, S]` with this model's channels and size.
    fn check_input(&self, pixels: &Tensor) -> Result<()> {
        let c = &self.config;
        let ok = matches!(*pixels.shape(), [b, ch, h, w] if b > 0 && ch == c.input_channels && h == c.image_size && w == c.image_size);
        if ok {
            Ok(())
        } else {
            let s = c.image_size;
            Err(Error::invalid("dvae", format!("expects mapped pixels [B, {}, {s}, {s}], got {:?}", c.input_channels, pixels.shape())))
        }
    }

    /// Encoder logits, channels last: `[B, h, w, vocab]`.
    pub fn encode(&self, pixels: &Tensor) -> Result<Tensor> {
        self.check_input(pixels)?;
        let mut x = self.enc_in.forward(pixels)?;
        for conv in &self.enc_down {
            x = conv.forward(&x.relu()?)?.max_pool2x2()?;
        }
        let x = self.enc_mid.forward(&x.relu()?)?.relu()?;
        self.enc_out.forward(&x.permute(&[0, 2, 3, 1])?)
    }

    /// Pixels `[B, C, S, S]` from codes `[B, h, w, vocab]` (one-hot or relaxed).
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let mut x = self.codebook.forward(codes)?.permute(&[0, 3, 1, 2])?.contiguous()?;
        x = self.dec_mid.forward(&x.relu()?)?;
        for conv in &self.dec_up {
            x = conv.forward(&upsample2(&x)?.relu()?)?;
        }
        self.dec_out.forward(&x.relu()?)?.sigmoid()
    }

    /// Decode token ids `[B, h, w]` (i64).
    pub fn decode_ids(&self, ids: &Tensor) -> Result<Tensor> {
        self.decode(&one_hot(ids, self.config.vocab_size)?)
    }

}

impl Module for Dvae {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}

impl Tokenizer for Dvae {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn input_size(&self) -> usize {
        self.config.image_size
    }

    fn logits(&self, pixels: &Tensor) -> Result<Tensor> {
        self.encode(pixels)?.permute(&[0, 3, 1, 2])?.contiguous()
    }

    fn tokenize(&self, pixels: &Tensor) -> Result<Tensor> {
        let _guard = beit_engine::no_grad();
        self.encode(pixels)?.argmax()
    }
}

/// 2× nearest-neighbour upsampling of `[B, C, H, W]` (a broadcast, so its backward sums).
fn upsample2(x: &Tensor) -> Result<Tensor> {
    let &[b, c, h, w] = x.shape() else { unreachable!("decoder activations are 4-D") };
    x.reshape(&[b, c, h, 1, w, 1])?.broadcast_as(&[b, c, h, 2, w, 2])?.contiguous()?.reshape(&[b, c, 2 * h, 2 * w])
}

/// One-hot f32 codes `[.., vocab]` of i64 ids.
fn one_hot(ids: &Tensor, vocab: usize) -> Result<Tensor> {
    let values = ids.to_vec::<i64>()?;
    let mut out = vec![0f32; values.len() * vocab];
    for (i, &v) in values.iter().enumerate() {
        let v = usize::try_from(v).ok().filter(|&v| v < vocab).ok_or_else(|| Error::invalid("token ids", format!("id {v} outside the vocabulary of {vocab}")))?;
        out[i * vocab + v] = 1.0;
    }
    let mut shape = ids.shape().to_vec();
    shape.push(vocab);
    Tensor::from_vec(out, &shape, ids.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{open_tokenizer, LossWeights};
    use beit_engine::rng::Rng;

    fn tiny(dtype: DType) -> Dvae {
        let config = DvaeConfig { image_size: 8, hidden: 4, downsample: 2, vocab_size: 6, ..DvaeConfig::digits() };
        Dvae::new(&VarBuilder::new(&beit_backend_cpu::cpu(), dtype, 3), config).unwrap()
    }

    fn pixels(dtype: DType) -> Tensor {
        let mut rng = Rng::new(7);
        Tensor::rand_uniform(&[2, 3, 8, 8], 0.1, 0.9, dtype, &mut rng, &beit_backend_cpu::cpu()).unwrap()
    }

    #[test]
    fn upsampling_and_one_hot_match_loops() {
        let dev = beit_backend_cpu::cpu();
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let up = upsample2(&Tensor::from_vec(x.clone(), &[1, 2, 2, 3], &dev).unwrap()).unwrap();
        assert_eq!(up.shape(), &[1, 2, 4, 6]);
        let want: Vec<f32> = (0..2).flat_map(|c| (0..4).flat_map(move |i| (0..6).map(move |j| (c * 6 + (i / 2) * 3 + j / 2) as f32))).collect();
        assert_eq!(up.to_vec::<f32>().unwrap(), want);
        let ids = Tensor::from_vec(vec![2i64, 0, 1], &[3], &dev).unwrap();
        assert_eq!(one_hot(&ids, 3).unwrap().to_vec::<f32>().unwrap(), [0., 0., 1., 1., 0., 0., 0., 1., 0.]);
        let bad = Tensor::from_vec(vec![3i64], &[1], &dev).unwrap();
        assert!(one_hot(&bad, 3).unwrap_err().to_string().contains("id 3 outside the vocabulary of 3"));
    }

    /// The whole loss (Gumbel-softmax, both KL terms, decoder) against central differences
    /// in f64, for a few entries of every parameter.
    #[test]
    fn loss_gradients_match_finite_differences() {
        let model = tiny(DType::F64);
        let x = pixels(DType::F64);
        let weights = LossWeights { kl: 0.3, usage: 0.2 };
        let loss = |m: &Dvae| m.loss(&x, 0.7, weights, 11).unwrap();
        let grads = loss(&model).total.backward().unwrap();
        let h = 1e-6;
        for p in model.trainable_params() {
            let g = grads.get(&p.tensor()).unwrap().to_vec_f64().unwrap();
            let base = p.tensor().to_vec_f64().unwrap();
            for i in [0, base.len() / 2, base.len() - 1] {
                let at = |d: f64| {
                    let mut v = base.clone();
                    v[i] += d;
                    p.set(Tensor::from_vec(v, &p.shape(), &p.device()).unwrap()).unwrap();
                    loss(&model).total.to_scalar().unwrap()
                };
                let numeric = (at(h) - at(-h)) / (2.0 * h);
                p.set(Tensor::from_vec(base.clone(), &p.shape(), &p.device()).unwrap()).unwrap();
                assert!((numeric - g[i]).abs() <= 1e-6 + 1e-4 * numeric.abs(), "{}[{i}]: {numeric} vs {}", p.name(), g[i]);
            }
        }
    }

    #[test]
    fn saves_loads_and_names_bad_weights_and_inputs() {
        let dev = beit_backend_cpu::cpu();
        let model = tiny(DType::F32);
        let x = pixels(DType::F32);
        let tmp = tempfile::tempdir().unwrap();
        model.save(tmp.path()).unwrap();
        assert_eq!(model.config().num_params(), model.num_params() as u128);
        let loaded = open_tokenizer(tmp.path(), &dev).unwrap();
        assert_eq!((loaded.vocab_size(), loaded.input_size()), (6, 8));
        assert_eq!(loaded.logits(&x).unwrap().to_vec::<f32>().unwrap(), model.logits(&x).unwrap().to_vec::<f32>().unwrap());
        let ids = loaded.tokenize(&x).unwrap();
        assert_eq!(ids.shape(), &[2, 2, 2]);
        assert_eq!(model.decode_ids(&ids).unwrap().shape(), &[2, 3, 8, 8]);
        let err = model.logits(&pixels(DType::F32).narrow(2, 0, 4).unwrap()).unwrap_err().to_string();
        assert!(err.contains("[B, 3, 8, 8]"), "{err}");
        // A weight of the wrong shape, then a missing weight, are named.
        let mut sd = model.state_dict();
        sd.insert("decoder.codebook.weight", Tensor::zeros(&[4, 5], DType::F32, &dev).unwrap());
        sd.save(tmp.path().join("model.safetensors"), None).unwrap();
        let err = open_tokenizer(tmp.path(), &dev).err().unwrap().to_string();
        assert!(err.contains("decoder.codebook.weight"), "{err}");
        let mut kept = beit_engine::io::StateDict::new();
        for (n, t) in model.state_dict().tensors().unwrap() {
            if n != "encoder.mid.bias" {
                kept.insert(n, t);
            }
        }
        kept.save(tmp.path().join("model.safetensors"), None).unwrap();
        let err = open_tokenizer(tmp.path(), &dev).err().unwrap().to_string();
        assert!(err.contains("encoder.mid.bias"), "{err}");
        std::fs::write(tmp.path().join("config.json"), r#"{"model_type": "beit-dvae", "image_size": 8}"#).unwrap();
        let err = open_tokenizer(tmp.path(), &dev).err().unwrap().to_string();
        assert!(err.contains("config.json") && err.contains("input_channels"), "{err}");
    }
}
