//! `BeitForSemanticSegmentation` (Hugging Face layout): four encoder outputs reshaped to
//! maps, a feature pyramid (4x, 2x, 1x, ½x), the UperNet decode head (or SETR-PUP) and the
//! auxiliary FCN head; loading and saving Hugging Face folders; the loss.

use super::pretrained::{resize_positions, save_folder};
use super::seg_heads::{FcnHead, SetrPupHead, UperHead};
use super::{BeitModel, Inits, LoadOptions, Mode};
use crate::{Architecture, BeitConfig, SegHead};
use beit_engine::io::load_safetensors;
use beit_engine::collective::Collective;
use beit_engine::nn::{load_params, BatchNorm2d, ConvTranspose2d, LoadReport, Module, NormStats, Param, VarBuilder};
use beit_engine::{CmpOp, DType, Device, Error, Result, Tensor, IGNORE_INDEX};
use std::path::Path;
use std::sync::Arc;

/// The feature pyramid on the four patch-grid maps: `fpn1` = ConvT 2x2/2 → BatchNorm →
/// GELU → ConvT 2x2/2 (4x), `fpn2` = ConvT 2x2/2 (2x), identity, 2x2 max pooling (½x).
struct Fpn {
    up1: ConvTranspose2d,
    bn: BatchNorm2d,
    up2: ConvTranspose2d,
    fpn2: ConvTranspose2d,
    /// Every parameter and buffer the constructor created.
    params: Vec<Param>,
}

impl Fpn {
    fn new(vb: &VarBuilder, d: usize) -> Result<Self> {
        let mark = vb.mark();
        Ok(Fpn {
            up1: ConvTranspose2d::new(&vb.pp("fpn1.0"), d, d, 2, 2)?,
            bn: BatchNorm2d::new(&vb.pp("fpn1.1"), d)?,
            up2: ConvTranspose2d::new(&vb.pp("fpn1.3"), d, d, 2, 2)?,
            fpn2: ConvTranspose2d::new(&vb.pp("fpn2.0"), d, d, 2, 2)?,
            params: vb.created_since(mark),
        })
    }

    fn forward(&self, maps: &[Tensor], stats: NormStats) -> Result<Vec<Tensor>> {
        let up = self.up2.forward(&self.bn.forward(&self.up1.forward(&maps[0])?, stats)?.gelu()?)?;
        Ok(vec![up, self.fpn2.forward(&maps[1])?, maps[2].clone(), maps[3].max_pool2x2()?])
    }
}

impl Module for Fpn {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}

enum DecodeHead {
    Uper(Box<UperHead>),
    SetrPup(SetrPupHead),
}

/// What [`BeitForSemanticSegmentation::forward`] returns.
pub struct SegOutput {
    /// `[B, classes, h, w]`: at ¼ of the input with patch 16 (UperNet), full size (SETR-PUP).
    pub logits: Tensor,
    /// `[B, classes, H/p, W/p]` from the auxiliary head, when the model has one.
    pub auxiliary_logits: Option<Tensor>,
    /// With [`Mode::hidden_states`]: the encoder's embeddings and block outputs `[B, N+1, D]`.
    pub hidden_states: Vec<Tensor>,
}

/// BEiT for semantic segmentation, with Hugging Face's parameter names (`beit.*`, `fpn1.*`,
/// `fpn2.*`, `decode_head.*`, `auxiliary_head.*`; BatchNorm running statistics included).
pub struct BeitForSemanticSegmentation {
    /// The encoder (no pooler), under `beit.`.
    pub beit: BeitModel,
    fpn: Option<Fpn>,
    decode_head: DecodeHead,
    auxiliary_head: Option<FcnHead>,
    /// Every parameter and buffer the constructor created.
    params: Vec<Param>,
}

impl BeitForSemanticSegmentation {
    /// A model for `config` (architecture `BeitForSemanticSegmentation`): the encoder with
    /// BEiT's init, the heads with PyTorch's defaults, for training from scratch.
    pub fn new(config: &BeitConfig, device: &Device, seed: u64) -> Result<Self> {
        Self::build(config, device, &LoadOptions::default(), seed, &Inits::beit(config.initializer_range))
    }

    /// A model for `c` with f32 parameters, Linear and Conv2d weights as `options` say.
    fn build(c: &BeitConfig, device: &Device, options: &LoadOptions, seed: u64, init: &Inits) -> Result<Self> {
        c.validate()?;
        if c.architecture()? != Architecture::BeitForSemanticSegmentation {
            return Err(Error::invalid(
                "config.architectures",
                format!("{:?} is not BeitForSemanticSegmentation", c.architectures),
            ));
        }
        let vb = options.builder(device, seed);
        let uper = c.seg_head == SegHead::Uper;
        Ok(BeitForSemanticSegmentation {
            beit: BeitModel::new(&vb.pp("beit"), c, false, init)?,
            fpn: uper.then(|| Fpn::new(&vb, c.hidden_size)).transpose()?,
            decode_head: if uper {
                DecodeHead::Uper(Box::new(UperHead::new(&vb.pp("decode_head"), c)?))
            } else {
                DecodeHead::SetrPup(SetrPupHead::new(&vb.pp("decode_head"), c)?)
            },
            auxiliary_head: c.use_auxiliary_head.then(|| FcnHead::new(&vb.pp("auxiliary_head"), c)).transpose()?,
            params: vb.created_since(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BeitConfig {
        self.beit.config()
    }

    /// Load a Hugging Face folder (`config.json` + `model.safetensors`). Position tables
    /// are resized when the checkpoint's grid differs; a missing or misshapen tensor is an
    /// error naming it; unused tensors are reported.
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<(Self, LoadReport)> {
        Self::from_pretrained_with(dir, device, LoadOptions::default())
    }

    /// [`BeitForSemanticSegmentation::from_pretrained`] with `options`: at another input
    /// resolution, the position tables are interpolated to the new patch grid (Hugging
    /// Face's `interpolate_pos_encoding=True`, done once at load); with a bf16
    /// `weight_dtype`, the Linear and Conv2d weights of the encoder and the heads (not the
    /// FPN's transposed convolutions) are converted once as they are loaded (bf16 inference).
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, options: LoadOptions) -> Result<(Self, LoadReport)> {
        options.check()?;
        let dir = dir.as_ref();
        let mut config = BeitConfig::from_file(dir.join("config.json"))?;
        if let Some(size) = options.image_size {
            config.image_size = size;
        }
        let weights = dir.join("model.safetensors");
        let mut sd = load_safetensors(&weights, device)?;
        let model = Self::build(&config, device, &options, 0, &Inits::for_loading())?;
        let params = model.params();
        resize_positions(&params, config.grid(), &mut sd)?;
        let mut report = load_params(&params, &sd, false)?;
        report.require(&weights.display().to_string(), |_| false)?;
        report.unexpected.retain(|n| !n.ends_with("relative_position_index"));
        Ok((model, report))
    }

    /// A model for `config` whose encoder starts from the BEiT checkpoint in `dir` (a
    /// pretraining, classification or plain encoder folder, keys with or without `beit.`),
    /// the heads freshly initialised: BEiT's fine-tuning recipe. Position tables are resized
    /// to `config`'s grid, and a shared relative position bias table is copied into every
    /// layer when `config` wants per-layer tables. A missing block tensor is an error; the
    /// report lists the other missing tensors (e.g. a final LayerNorm the segmentation
    /// features do not use) and the unused ones (the checkpoint's head).
    pub fn from_pretrained_encoder(dir: impl AsRef<Path>, config: &BeitConfig, device: &Device, seed: u64) -> Result<(Self, LoadReport)> {
        let model = Self::new(config, device, seed)?;
        let weights = dir.as_ref().join("model.safetensors");
        let file = weights.display().to_string();
        let sd = load_safetensors(&weights, device)?;
        let mut sd = if sd.names().any(|n| n.starts_with("beit.")) { sd } else { sd.add_prefix("beit")? };
        let shared = "beit.encoder.relative_position_bias.relative_position_bias_table";
        if sd.contains(shared) && config.use_relative_position_bias && !config.use_shared_relative_position_bias {
            let table = sd.get(shared)?;
            for i in 0..config.num_hidden_layers {
                let name = format!("beit.encoder.layer.{i}.attention.attention.relative_position_bias.relative_position_bias_table");
                sd.insert(name, table.clone());
            }
        }
        let encoder = model.beit.params();
        resize_positions(&encoder, config.grid(), &mut sd)?;
        let mut report = load_params(&encoder, &sd, false)?;
        report.require(&file, |n| !n.starts_with("beit.encoder.") && !n.starts_with("beit.embeddings."))?;
        report.unexpected.retain(|n| !n.ends_with("relative_position_index") && n != shared);
        Ok((model, report))
    }

    /// Write `config.json` and `model.safetensors` into `dir`, loadable by Hugging Face
    /// (a SETR-PUP model only by beit-rs).
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        save_folder(dir.as_ref(), self.config(), &self.state_dict())
    }

    /// The four encoder outputs named by `out_indices` as `[B, D, H/p, W/p]` maps, and the
    /// hidden states when `mode` asks for them.
    fn feature_maps(&self, pixels: &Tensor, mode: Mode) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
        let c = self.config();
        let [b, _, h, w] = *pixels.shape() else {
            return Err(Error::invalid("pixel_values", format!("expects [B, C, H, W], got {:?}", pixels.shape())));
        };
        let (gh, gw) = (h / c.patch_size, w / c.patch_size);
        let hidden = self.beit.forward(pixels, None, mode.with_hidden_states())?.hidden_states;
        let indices = c.out_indices.as_deref().unwrap_or_default();
        let maps = indices
            .iter()
            .map(|&i| {
                // Hugging Face reads hidden_states[i - 1]; Python's index -1 for i = 0.
                let x = &hidden[(i + hidden.len() - 1) % hidden.len()];
                let tokens = x.narrow(1, 1, gh * gw)?;
                tokens.transpose(1, 2)?.reshape(&[b, c.hidden_size, gh, gw])
            })
            .collect::<Result<_>>()?;
        Ok((maps, if mode.hidden_states { hidden } else { Vec::new() }))
    }

    /// Logits (and auxiliary logits) for `pixels [B, C, H, W]`. `mode.train` switches
    /// BatchNorm to batch statistics (updating the running ones) and enables drop path.
    pub fn forward(&self, pixels: &Tensor, mode: Mode) -> Result<SegOutput> {
        self.forward_in(pixels, mode, None)
    }

    /// [`Self::forward`] on one member's shard of a data-parallel `group`'s batch: in
    /// training, BatchNorm normalises by the whole batch's statistics (SyncBN), as one
    /// process on that batch would. `group` is the one the gradient buckets go through (a
    /// training run's `CommThread`), so that the statistics' all-reduces queue with theirs.
    pub fn forward_in(&self, pixels: &Tensor, mode: Mode, group: Option<&Arc<dyn Collective>>) -> Result<SegOutput> {
        let stats = NormStats::of(mode.train, group);
        let (maps, hidden_states) = self.feature_maps(pixels, mode)?;
        let features = match &self.fpn {
            Some(fpn) => fpn.forward(&maps, stats)?,
            None => maps,
        };
        let logits = match &self.decode_head {
            DecodeHead::Uper(h) => h.forward(&features, stats)?,
            DecodeHead::SetrPup(h) => h.forward(&features, stats)?,
        };
        let auxiliary_logits = self.auxiliary_head.as_ref().map(|h| h.forward(&features, stats)).transpose()?;
        Ok(SegOutput { logits, auxiliary_logits, hidden_states })
    }

    /// Hugging Face's loss: both logits upsampled bilinearly to the size of `labels [B, H, W]`
    /// (integer class ids), cross-entropy skipping `semantic_loss_ignore_index`, main +
    /// `auxiliary_loss_weight` · auxiliary.
    pub fn loss(&self, out: &SegOutput, labels: &Tensor) -> Result<Tensor> {
        let ignore = self.config().semantic_loss_ignore_index;
        let main = pixel_cross_entropy(&out.logits, labels, ignore)?;
        match &out.auxiliary_logits {
            Some(aux) => {
                let weight = self.config().auxiliary_loss_weight;
                main.add(&pixel_cross_entropy(aux, labels, ignore)?.mul_scalar(weight)?)
            }
            None => Ok(main),
        }
    }

    /// Class ids `[B, H, W]` (i64) at the input's resolution: logits upsampled bilinearly
    /// to `(H, W)`, argmax over classes (Hugging Face's post-processing).
    pub fn predict(&self, pixels: &Tensor) -> Result<Tensor> {
        let _guard = beit_engine::no_grad();
        let (h, w) = (pixels.shape()[2], pixels.shape()[3]);
        let logits = self.forward(pixels, Mode::eval())?.logits;
        logits.upsample_bilinear2d((h, w))?.permute(&[0, 2, 3, 1])?.argmax()
    }
}

/// Mean cross-entropy of `logits [B, C, h, w]`, upsampled to `labels [B, H, W]`, over the
/// pixels whose label is not `ignore`.
pub fn pixel_cross_entropy(logits: &Tensor, labels: &Tensor, ignore: i64) -> Result<Tensor> {
    let [b, c, _, _] = *logits.shape() else {
        return Err(Error::invalid("segmentation loss", format!("logits must be [B, C, h, w], got {:?}", logits.shape())));
    };
    let [lb, h, w] = *labels.shape() else {
        return Err(Error::invalid("labels", format!("must be [B, H, W], got {:?}", labels.shape())));
    };
    if lb != b {
        return Err(Error::ShapeMismatch { op: "segmentation loss", lhs: logits.shape().to_vec(), rhs: labels.shape().to_vec() });
    }
    let rows = logits.upsample_bilinear2d((h, w))?.permute(&[0, 2, 3, 1])?.reshape(&[b * h * w, c])?;
    let targets = labels.to_dtype(DType::I64)?.reshape(&[b * h * w])?;
    let skip = targets.compare(&Tensor::full(ignore as f64, &[], DType::I64, targets.device())?, CmpOp::Eq)?;
    let targets = skip.where_cond(&Tensor::full(IGNORE_INDEX as f64, &[], DType::I64, targets.device())?, &targets)?;
    rows.cross_entropy(&targets, 0.0)
}

impl Module for BeitForSemanticSegmentation {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}
