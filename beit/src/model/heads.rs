//! The model types of Hugging Face's BEiT: MIM pretraining and image classification heads
//! on [`BeitModel`], and [`Beit`], whichever of the three a checkpoint holds.

use super::{BeitModel, BeitOutput, Inits, LoadOptions, Mode};
use crate::masker::MaskedPatches;
use crate::{Architecture, BeitConfig};
use beit_engine::nn::{LayerNorm, Linear, Module, Param, VarBuilder};
use beit_engine::{Error, Result, Tensor};

/// `BeitForMaskedImageModeling`: final LayerNorm and `lm_head` over patch tokens.
pub struct BeitForMaskedImageModeling {
    /// The encoder (no pooler), under `beit.`.
    pub beit: BeitModel,
    layernorm: LayerNorm,
    lm_head: Linear,
    /// Every parameter and buffer the constructor created.
    params: Vec<Param>,
}

impl BeitForMaskedImageModeling {
    pub(crate) fn new(vb: &VarBuilder, c: &BeitConfig, init: &Inits) -> Result<Self> {
        let mark = vb.mark();
        Ok(BeitForMaskedImageModeling {
            beit: BeitModel::new(&vb.pp("beit"), c, false, init)?,
            layernorm: LayerNorm::new(&vb.pp("layernorm"), c.hidden_size, c.layer_norm_eps)?,
            lm_head: Linear::with_init(&vb.pp("lm_head"), c.hidden_size, c.vocab_size, true, init.weight, init.zero)?,
            params: vb.created_since(mark),
        })
    }

    /// Normalised patch tokens `[B, N, D]` (CLS dropped) and the encoder output.
    fn patch_tokens(&self, pixels: &Tensor, mask: &Tensor, mode: Mode) -> Result<(Tensor, BeitOutput)> {
        let out = self.beit.forward(pixels, Some(mask), mode)?;
        let x = self.layernorm.forward(&out.last_hidden_state)?;
        let n = x.shape()[1] - 1;
        Ok((x.narrow(1, 1, n)?, out))
    }

    /// Logits `[B, N, vocab]` for every patch, as Hugging Face returns them.
    pub fn forward(&self, pixels: &Tensor, mask: &Tensor, mode: Mode) -> Result<(Tensor, BeitOutput)> {
        let (x, out) = self.patch_tokens(pixels, mask, mode)?;
        Ok((self.lm_head.forward(&x)?, out))
    }

    /// Mean cross-entropy over the masked patches: `labels [M]` are their visual tokens, in
    /// the order of `masked.rows` (batch-major then row-major). Only the masked rows go
    /// through `lm_head`.
    pub fn loss(&self, pixels: &Tensor, masked: &MaskedPatches, labels: &Tensor, mode: Mode) -> Result<Tensor> {
        if masked.count() != labels.numel() {
            return Err(Error::invalid("labels", format!("{} labels for {} masked patches", labels.numel(), masked.count())));
        }
        let (x, _) = self.patch_tokens(pixels, &masked.mask, mode)?;
        let (b, n, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let picked = x.reshape(&[b * n, d])?.index_select(0, &masked.rows)?;
        self.lm_head.forward(&picked)?.cross_entropy(labels, 0.0)
    }
}

impl Module for BeitForMaskedImageModeling {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}

/// `BeitForImageClassification`: the pooler output through `classifier`.
pub struct BeitForImageClassification {
    /// The encoder with its pooler, under `beit.`.
    pub beit: BeitModel,
    classifier: Linear,
    /// Every parameter and buffer the constructor created.
    params: Vec<Param>,
}

impl BeitForImageClassification {
    pub(crate) fn new(vb: &VarBuilder, c: &BeitConfig, init: &Inits) -> Result<Self> {
        let mark = vb.mark();
        Ok(BeitForImageClassification {
            beit: BeitModel::new(&vb.pp("beit"), c, true, init)?,
            classifier: Linear::with_init(&vb.pp("classifier"), c.hidden_size, c.num_labels(), true, init.weight, init.zero)?,
            params: vb.created_since(mark),
        })
    }

    /// Class logits `[B, classes]` and the encoder output.
    pub fn forward(&self, pixels: &Tensor, mask: Option<&Tensor>, mode: Mode) -> Result<(Tensor, BeitOutput)> {
        let out = self.beit.forward(pixels, mask, mode)?;
        let pooled = out.pooler_output.as_ref().ok_or_else(|| Error::invalid("classification", "no pooler output"))?;
        Ok((self.classifier.forward(pooled)?, out))
    }
}

impl Module for BeitForImageClassification {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}

/// Whichever BEiT model type a configuration's `architectures` names.
pub enum Beit {
    /// `BeitModel` (with pooler).
    Model(BeitModel),
    /// `BeitForMaskedImageModeling`.
    MaskedImageModeling(BeitForMaskedImageModeling),
    /// `BeitForImageClassification`.
    ImageClassification(BeitForImageClassification),
}

impl Beit {
    /// A model for `config` with BEiT's initialisation (truncated normal, the 1/√(2l)
    /// rescale of each block's output projections, layer scale), for training from scratch.
    pub fn new(config: &BeitConfig, device: &beit_engine::Device, seed: u64) -> Result<Self> {
        Self::build(config, device, &LoadOptions::default(), seed, &Inits::beit(config.initializer_range))
    }

    /// A model for `config` with f32 parameters, Linear and Conv2d weights as `options` say.
    pub(crate) fn build(
        config: &BeitConfig,
        device: &beit_engine::Device,
        options: &LoadOptions,
        seed: u64,
        init: &Inits,
    ) -> Result<Self> {
        config.validate()?;
        let vb = options.builder(device, seed);
        Ok(match config.architecture()? {
            Architecture::BeitModel => Beit::Model(BeitModel::new(&vb, config, true, init)?),
            Architecture::BeitForMaskedImageModeling => {
                Beit::MaskedImageModeling(BeitForMaskedImageModeling::new(&vb, config, init)?)
            }
            Architecture::BeitForImageClassification => {
                Beit::ImageClassification(BeitForImageClassification::new(&vb, config, init)?)
            }
            Architecture::BeitForSemanticSegmentation => {
                return Err(Error::invalid(
                    "config.architectures",
                    "a BeitForSemanticSegmentation model: build or load it with beit::BeitForSemanticSegmentation",
                ))
            }
        })
    }

    /// The encoder.
    pub fn encoder(&self) -> &BeitModel {
        match self {
            Beit::Model(m) => m,
            Beit::MaskedImageModeling(m) => &m.beit,
            Beit::ImageClassification(m) => &m.beit,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BeitConfig {
        self.encoder().config()
    }

    /// Hugging Face's forward: the head's logits (none for `BeitModel`) and the encoder's
    /// output (`last_hidden_state`, `pooler_output`, and `hidden_states` when `mode` asks).
    /// The MIM model needs `mask`; its logits cover every patch.
    pub fn forward(&self, pixels: &Tensor, mask: Option<&Tensor>, mode: Mode) -> Result<(Option<Tensor>, BeitOutput)> {
        Ok(match self {
            Beit::Model(m) => (None, m.forward(pixels, mask, mode)?),
            Beit::MaskedImageModeling(m) => {
                let mask = mask.ok_or_else(|| Error::invalid("bool_masked_pos", "the MIM model needs a mask"))?;
                let (logits, o) = m.forward(pixels, mask, mode)?;
                (Some(logits), o)
            }
            Beit::ImageClassification(m) => {
                let (logits, o) = m.forward(pixels, mask, mode)?;
                (Some(logits), o)
            }
        })
    }
}

impl Module for Beit {
    fn params(&self) -> Vec<Param> {
        match self {
            Beit::Model(m) => m.params(),
            Beit::MaskedImageModeling(m) => m.params(),
            Beit::ImageClassification(m) => m.params(),
        }
    }
}

