//! Visual tokenizers: image batches (the tokenizer view) to discrete token ids, BEiT's
//! pretraining targets.

mod dalle;
mod dvae;
mod dvae_loss;
mod dvae_train;

pub use dalle::{DalleConfig, DalleEncoder};
pub use dvae::{Dvae, DvaeConfig, DVAE_MODEL_TYPE};
pub use dvae_loss::{DvaeLoss, GroupPart, LossWeights};
pub use dvae_train::{codebook_usage, evaluate_dvae, train_dvae, DvaeEval, DvaeTrainConfig};

use beit_engine::io::load_safetensors;
use beit_engine::nn::{load_params, Module};
use beit_engine::{Device, Error, Result, Tensor};
use std::path::Path;

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

/// Read and parse `config.json` of the tokenizer folder `dir`; errors name the file.
fn read_config<T: serde::de::DeserializeOwned>(dir: &Path) -> Result<T> {
    let path = dir.join("config.json");
    let text = crate::limits::read_config_text(&path)?;
    serde_json::from_str(&text).map_err(|e| Error::Format { file: path.display().to_string(), msg: e.to_string() })
}

/// Check a tokenizer of `params` parameters (from the sizes of `dir`'s `config.json`,
/// `what`) before building it: `valid` (the config's own checks, memory included) must hold
/// and `model.safetensors` must be large enough to hold it. Errors name the config file.
fn check_folder(dir: &Path, valid: Result<()>, params: u128, what: &str) -> Result<()> {
    let config = dir.join("config.json").display().to_string();
    let named = |e: Error| Error::Format { file: config.clone(), msg: e.to_string() };
    valid.map_err(named)?;
    crate::limits::check_weights_file(&dir.join("model.safetensors"), "tokenizer config", params, what).map_err(named)
}

/// Write `config.json` and `model.safetensors` (the module's state dict) into `dir`,
/// created if missing.
fn save_folder(module: &impl Module, config: &impl serde::Serialize, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.display().to_string(), source })?;
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(config).expect("a config serialises");
    std::fs::write(&path, text).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    module.state_dict().save(dir.join("model.safetensors"), None)
}

/// Load `model.safetensors` of `dir` into `module`; a missing or wrongly shaped weight is an
/// error naming it.
fn load_weights(module: &impl Module, dir: &Path, device: &Device) -> Result<()> {
    let sd = load_safetensors(dir.join("model.safetensors"), device)?;
    load_params(&module.params(), &sd, false)?.require(sd.source(), |_| false)
}

/// Open a tokenizer folder of either kind: a trained [`Dvae`] (`"model_type": "beit-dvae"`
/// in its `config.json`) or a [`DalleEncoder`] (DALL-E's config fields).
pub fn open_tokenizer(dir: impl AsRef<Path>, device: &Device) -> Result<Box<dyn Tokenizer>> {
    let dir = dir.as_ref();
    let value: serde_json::Value = read_config(dir)?;
    if value.get("model_type").and_then(|v| v.as_str()) == Some(DVAE_MODEL_TYPE) {
        Ok(Box::new(Dvae::from_folder(dir, device)?))
    } else {
        Ok(Box::new(DalleEncoder::from_folder(dir, device)?))
    }
}
