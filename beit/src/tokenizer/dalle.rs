//! The DALL-E dVAE encoder (openai's `dall_e/encoder.py`): a 7×7 input conv, groups of
//! residual blocks (identity path a 1×1 conv when the width changes; residual path ReLU +
//! 3×3, ReLU + 3×3, ReLU + 3×3, ReLU + 1×1 at a quarter width, scaled by 1/n_layers²), 2×2
//! max-pool between groups, then ReLU + 1×1 conv to the vocabulary.

use super::Tokenizer;
use beit_engine::nn::{Init, Module, Param, VarBuilder};
use beit_engine::{DType, Device, Error, Result, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Sizes of the encoder (`config.json` of a tokenizer folder).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DalleConfig {
    /// Groups of blocks (widths n_hid·1, 2, 4, 8, ...).
    pub group_count: usize,
    /// Width of the first group.
    pub n_hid: usize,
    /// Residual blocks per group.
    pub n_blk_per_group: usize,
    /// Image channels.
    pub input_channels: usize,
    /// Number of tokens.
    pub vocab_size: usize,
}

/// Most groups a [`DalleConfig`] may have (widths double per group; DALL-E has 4).
pub const MAX_DALLE_GROUPS: usize = 16;

impl DalleConfig {
    /// Check the sizes: all positive, at most `MAX_DALLE_GROUPS` groups, the weights within
    /// [`crate::limits::model_bytes_limit`].
    pub fn validate(&self) -> Result<()> {
        let c = self;
        if c.group_count == 0 || c.n_blk_per_group == 0 || c.n_hid == 0 || c.vocab_size == 0 || c.input_channels == 0 {
            return Err(Error::invalid("dalle config", format!("all sizes must be positive: {c:?}")));
        }
        if c.group_count > MAX_DALLE_GROUPS {
            return Err(Error::invalid("dalle config", format!("group_count {} is above {MAX_DALLE_GROUPS}", c.group_count)));
        }
        crate::limits::check_model_bytes("dalle config", c.num_params().saturating_mul(4), &c.sizes())
    }

    /// The sizes that make up [`DalleConfig::num_params`], for error messages.
    fn sizes(&self) -> String {
        format!("group_count {} × n_blk_per_group {} of width n_hid {}", self.group_count, self.n_blk_per_group, self.n_hid)
    }

    /// Parameters of the encoder (saturating, so that any sizes give a number).
    pub fn num_params(&self) -> u128 {
        let c = self;
        let m = |xs: &[u128]| xs.iter().fold(1u128, |a, &x| a.saturating_mul(x));
        let n = c.n_hid as u128;
        let width = |g: usize| n.saturating_mul(1 << g.min(MAX_DALLE_GROUPS));
        let mut total = m(&[c.input_channels as u128, n, 49]).saturating_add(n);
        for g in 0..c.group_count.min(MAX_DALLE_GROUPS) {
            let (w, prev) = (width(g), width(g.saturating_sub(1)));
            let hid = w / 4;
            let res = m(&[prev, hid, 9]).saturating_add(m(&[hid, hid, 18])).saturating_add(m(&[hid, w])).saturating_add(3 * hid + w);
            let first = res.saturating_add(if prev != w { m(&[prev, w]).saturating_add(w) } else { 0 });
            let rest = m(&[w, hid, 9]).saturating_add(m(&[hid, hid, 18])).saturating_add(m(&[hid, w])).saturating_add(3 * hid + w);
            total = total.saturating_add(first).saturating_add(m(&[rest, (c.n_blk_per_group as u128).saturating_sub(1)]));
        }
        let vocab = c.vocab_size as u128;
        total.saturating_add(m(&[width(c.group_count.saturating_sub(1)), vocab])).saturating_add(vocab)
    }
}

impl Default for DalleConfig {
    fn default() -> Self {
        DalleConfig { group_count: 4, n_hid: 256, n_blk_per_group: 2, input_channels: 3, vocab_size: 8192 }
    }
}

/// A convolution with DALL-E's parameter names `w` and `b` and "same" padding.
struct Conv {
    w: Param,
    b: Param,
    pad: usize,
}

impl Conv {
    fn new(vb: &VarBuilder, n_in: usize, n_out: usize, kw: usize) -> Result<Self> {
        let std = 1.0 / ((n_in * kw * kw) as f64).sqrt();
        Ok(Conv { w: vb.param("w", &[n_out, n_in, kw, kw], Init::Normal { std })?, b: vb.param("b", &[n_out], Init::Const(0.0))?, pad: (kw - 1) / 2 })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.w.tensor(), Some(&self.b.tensor()), (1, 1), (self.pad, self.pad))
    }
}

struct Block {
    id_path: Option<Conv>,
    res: [Conv; 4],
    post_gain: f64,
}

impl Block {
    fn new(vb: &VarBuilder, n_in: usize, n_out: usize, n_layers: usize) -> Result<Self> {
        let hid = n_out / 4;
        let r = vb.pp("res_path");
        Ok(Block {
            id_path: (n_in != n_out).then(|| Conv::new(&vb.pp("id_path"), n_in, n_out, 1)).transpose()?,
            res: [
                Conv::new(&r.pp("conv_1"), n_in, hid, 3)?,
                Conv::new(&r.pp("conv_2"), hid, hid, 3)?,
                Conv::new(&r.pp("conv_3"), hid, hid, 3)?,
                Conv::new(&r.pp("conv_4"), hid, n_out, 1)?,
            ],
            post_gain: 1.0 / (n_layers * n_layers) as f64,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for conv in &self.res {
            h = conv.forward(&h.relu()?)?;
        }
        let id = match &self.id_path {
            Some(c) => c.forward(x)?,
            None => x.clone(),
        };
        id.add(&h.mul_scalar(self.post_gain)?)
    }
}

/// The DALL-E dVAE encoder as a [`Tokenizer`].
pub struct DalleEncoder {
    config: DalleConfig,
    input: Conv,
    groups: Vec<Vec<Block>>,
    output: Conv,
    /// Every parameter the constructor created.
    params: Vec<Param>,
}

impl DalleEncoder {
    /// A randomly initialised encoder (the package's init: normal, std 1/√fan_in).
    pub fn new(config: DalleConfig, device: &Device, seed: u64) -> Result<Self> {
        let c = config;
        c.validate()?;
        let vb = VarBuilder::new(device, DType::F32, seed).pp("blocks");
        let n_layers = c.group_count * c.n_blk_per_group;
        let width = |g: usize| c.n_hid << g;
        let groups = (0..c.group_count)
            .map(|g| {
                (0..c.n_blk_per_group)
                    .map(|i| {
                        let n_in = if i == 0 { width(g.saturating_sub(1)) } else { width(g) };
                        Block::new(&vb.pp(format!("group_{}.block_{}", g + 1, i + 1)), n_in, width(g), n_layers)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        Ok(DalleEncoder {
            config,
            input: Conv::new(&vb.pp("input"), c.input_channels, c.n_hid, 7)?,
            groups,
            output: Conv::new(&vb.pp("output.conv"), width(c.group_count - 1), c.vocab_size, 1)?,
            params: vb.created_since(0),
        })
    }

    /// Load a tokenizer folder: `config.json` (group_count, n_hid, n_blk_per_group,
    /// input_channels, vocab_size) and `model.safetensors` with the package's parameter names.
    pub fn from_folder(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config: DalleConfig = super::read_config(dir)?;
        super::check_folder(dir, config.validate(), config.num_params(), &config.sizes())?;
        let enc = Self::new(config, device, 0)?;
        super::load_weights(&enc, dir, device)?;
        Ok(enc)
    }

    /// Write a folder that [`DalleEncoder::from_folder`] loads: `config.json` and
    /// `model.safetensors` in `dir` (created if missing).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        super::save_folder(self, &self.config, dir.as_ref())
    }

    /// The sizes.
    pub fn config(&self) -> &DalleConfig {
        &self.config
    }
}

impl Module for DalleEncoder {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}

impl Tokenizer for DalleEncoder {
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn input_size(&self) -> usize {
        112
    }

    fn logits(&self, pixels: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let down = 1usize << (c.group_count - 1);
        let [_, ch, h, w] = *pixels.shape() else {
            return Err(Error::invalid("tokenizer", format!("expects [B, {}, H, W] pixels, got {:?}", c.input_channels, pixels.shape())));
        };
        if ch != c.input_channels || h % down != 0 || w % down != 0 || h == 0 || w == 0 {
            return Err(Error::invalid(
                "tokenizer",
                format!("expects [B, {}, H, W] with H and W multiples of {down} (e.g. 112), got {:?}", c.input_channels, pixels.shape()),
            ));
        }
        let mut x = self.input.forward(pixels)?;
        for (g, blocks) in self.groups.iter().enumerate() {
            for b in blocks {
                x = b.forward(&x)?;
            }
            if g + 1 < self.groups.len() {
                x = x.max_pool2x2()?;
            }
        }
        self.output.forward(&x.relu()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beit_engine::io::load_safetensors;
    use std::path::PathBuf;

    fn fixture(case: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dalle").join(case)
    }

    #[test]
    fn matches_the_dall_e_package_logits_and_ids() {
        let dev = beit_backend_cpu::cpu();
        for case in ["tiny_1blk", "small_2blk"] {
            let enc = DalleEncoder::from_folder(fixture(case), &dev).unwrap();
            let inputs = load_safetensors(fixture(case).join("inputs.safetensors"), &dev).unwrap();
            let expected = load_safetensors(fixture(case).join("expected.safetensors"), &dev).unwrap();
            let pixels = inputs.get("pixels").unwrap();
            let logits = enc.logits(&pixels).unwrap();
            let want = expected.get("logits").unwrap();
            assert_eq!(logits.shape(), want.shape());
            let (a, b) = (logits.to_vec_f64().unwrap(), want.to_vec_f64().unwrap());
            let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
            assert!(err <= 2e-4, "{case}: max abs error {err:e}");
            assert_eq!(enc.config().num_params(), enc.num_params() as u128, "{case}");
            let ids = enc.tokenize(&pixels).unwrap().to_vec::<i64>().unwrap();
            assert_eq!(ids, expected.get("token_ids").unwrap().to_vec::<i64>().unwrap(), "{case}");
        }
    }

    #[test]
    fn bad_weights_and_inputs_are_named() {
        let dev = beit_backend_cpu::cpu();
        let tmp = tempfile::tempdir().unwrap();
        let src = fixture("tiny_1blk");
        std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
        let sd = load_safetensors(src.join("model.safetensors"), &dev).unwrap();
        let mut kept = beit_engine::io::StateDict::new();
        for (n, t) in sd.tensors().unwrap() {
            if n != "blocks.group_2.block_1.id_path.w" {
                kept.insert(n, t);
            }
        }
        kept.save(tmp.path().join("model.safetensors"), None).unwrap();
        let err = DalleEncoder::from_folder(tmp.path(), &dev).err().unwrap().to_string();
        assert!(err.contains("blocks.group_2.block_1.id_path.w"), "{err}");
        let enc = DalleEncoder::from_folder(&src, &dev).unwrap();
        let err = enc.logits(&Tensor::zeros(&[1, 3, 30, 30], DType::F32, &dev).unwrap()).unwrap_err().to_string();
        assert!(err.contains("multiples of 8"), "{err}");
    }
}
