//! BEiT configuration: Hugging Face `config.json` with Hugging Face's defaults, presets,
//! and validation whose errors name the field.

use beit_engine::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

mod size;

/// The model heads this crate builds, chosen from `architectures`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// Encoder (+ pooler) only.
    BeitModel,
    /// Encoder + final LayerNorm + `lm_head` over patch tokens (pretraining).
    BeitForMaskedImageModeling,
    /// Encoder + pooler + `classifier`.
    BeitForImageClassification,
    /// Encoder + feature pyramid + UperNet (or SETR-PUP) decode head + auxiliary FCN head;
    /// built by [`crate::BeitForSemanticSegmentation`].
    BeitForSemanticSegmentation,
}

impl Architecture {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "BeitModel" => Ok(Architecture::BeitModel),
            "BeitForMaskedImageModeling" => Ok(Architecture::BeitForMaskedImageModeling),
            "BeitForImageClassification" => Ok(Architecture::BeitForImageClassification),
            "BeitForSemanticSegmentation" => Ok(Architecture::BeitForSemanticSegmentation),
            other => Err(Error::invalid(
                "config.architectures",
                format!(
                    "unsupported architecture `{other}` (supported: BeitModel, BeitForMaskedImageModeling, \
                     BeitForImageClassification, BeitForSemanticSegmentation)"
                ),
            )),
        }
    }
}

/// A BEiT configuration (field names and defaults as Hugging Face's `BeitConfig`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BeitConfig {
    /// `model_type`; must be `beit` when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
    /// Model classes the checkpoint was saved from.
    pub architectures: Vec<String>,
    /// Visual-token vocabulary (MIM head width).
    pub vocab_size: usize,
    /// Token width D.
    pub hidden_size: usize,
    /// Number of blocks.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// MLP hidden width.
    pub intermediate_size: usize,
    /// MLP activation; only `gelu` (erf form) is supported.
    pub hidden_act: String,
    /// Dropout after projections (training only).
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities (training only).
    pub attention_probs_dropout_prob: f64,
    /// Std of the normal initialisation.
    pub initializer_range: f64,
    /// LayerNorm epsilon (Hugging Face default 1e-12).
    pub layer_norm_eps: f64,
    /// Input side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Whether the embeddings have a mask token.
    pub use_mask_token: bool,
    /// Learned absolute position embeddings.
    pub use_absolute_position_embeddings: bool,
    /// One relative position bias table per layer.
    pub use_relative_position_bias: bool,
    /// One relative position bias table shared by all layers.
    pub use_shared_relative_position_bias: bool,
    /// Initial value of the layer-scale vectors; 0 disables layer scale.
    pub layer_scale_init_value: f64,
    /// Stochastic depth rate of the last block (linear from 0).
    pub drop_path_rate: f64,
    /// Pool by mean of patch tokens + LayerNorm (else the CLS token after the final LayerNorm).
    pub use_mean_pooling: bool,
    /// Class names by id (classification).
    pub id2label: BTreeMap<String, String>,
    /// Number of classes; defaults to the size of `id2label`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<usize>,
    /// Segmentation: the four encoder outputs feeding the feature pyramid, as Hugging Face
    /// reads them: entry `i` takes `hidden_states[i − 1]` (0 = embeddings, so `0` itself
    /// wraps to the last block, as Python's index −1). Older configs call it
    /// `segmentation_indices`.
    #[serde(alias = "segmentation_indices", skip_serializing_if = "Option::is_none")]
    pub out_indices: Option<Vec<usize>>,
    /// Segmentation: adaptive pooling sizes of the PSP module.
    pub pool_scales: Vec<usize>,
    /// Segmentation: whether the auxiliary FCN head is built (and weighs in the loss).
    pub use_auxiliary_head: bool,
    /// Segmentation: weight of the auxiliary head's loss.
    pub auxiliary_loss_weight: f64,
    /// Segmentation: width of the auxiliary FCN head (and of the SETR-PUP head).
    pub auxiliary_channels: usize,
    /// Segmentation: number of 3x3 conv blocks of the auxiliary head.
    pub auxiliary_num_convs: usize,
    /// Segmentation: whether the auxiliary head concatenates its input before classifying.
    pub auxiliary_concat_input: bool,
    /// Segmentation: label value the loss and the metrics skip.
    pub semantic_loss_ignore_index: i64,
    /// Segmentation decode head (a beit-rs extension; Hugging Face knows only UperNet).
    #[serde(skip_serializing_if = "SegHead::is_uper")]
    pub seg_head: SegHead,
}

/// Which decode head a segmentation model has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegHead {
    /// Hugging Face's UperNet head on a four-level feature pyramid.
    #[default]
    Uper,
    /// SETR's progressive upsampling head on the last selected feature (BEiT paper, Table 3).
    SetrPup,
}

impl SegHead {
    fn is_uper(&self) -> bool {
        *self == SegHead::Uper
    }
}

impl Default for BeitConfig {
    fn default() -> Self {
        BeitConfig {
            model_type: None,
            architectures: Vec::new(),
            vocab_size: 8192,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            use_mask_token: false,
            use_absolute_position_embeddings: false,
            use_relative_position_bias: false,
            use_shared_relative_position_bias: false,
            layer_scale_init_value: 0.1,
            drop_path_rate: 0.1,
            use_mean_pooling: true,
            id2label: BTreeMap::new(),
            num_labels: None,
            out_indices: None,
            pool_scales: vec![1, 2, 3, 6],
            use_auxiliary_head: true,
            auxiliary_loss_weight: 0.4,
            auxiliary_channels: 256,
            auxiliary_num_convs: 1,
            auxiliary_concat_input: false,
            semantic_loss_ignore_index: 255,
            seg_head: SegHead::Uper,
        }
    }
}

fn field(name: &'static str, msg: impl Into<String>) -> Error {
    Error::Invalid { op: name, msg: msg.into() }
}

impl BeitConfig {
    /// Read and validate a `config.json`; errors name the file and the field. A config whose
    /// model would not fit in memory is refused, and so is one claiming more encoder than the
    /// `model.safetensors` beside it can hold ([`BeitConfig::check_weights_file`]), before
    /// anything is built.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = crate::limits::read_config_text(path)?;
        let config = Self::from_json(&text).map_err(|e| Error::Format { file: file.clone(), msg: e.to_string() })?;
        config.check_weights_file(&path.with_file_name("model.safetensors")).map_err(|e| Error::Format { file, msg: e.to_string() })?;
        Ok(config)
    }

    /// Parse and validate config JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let c: BeitConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            field("config.json", format!("field `{}`: {}", e.path(), e.inner()))
        })?;
        c.validate()?;
        Ok(c)
    }

    /// BEiT-Base/16 (86M) at `image_size` 224 or 384, as pretrained (shared relative
    /// position bias, mask token, layer scale 0.1).
    pub fn base(image_size: usize) -> Self {
        BeitConfig {
            image_size,
            use_mask_token: true,
            use_shared_relative_position_bias: true,
            architectures: vec!["BeitForMaskedImageModeling".into()],
            ..Default::default()
        }
    }

    /// BEiT-Large/16 (304M): 24 layers, 1024 wide, 16 heads, layer scale 1e-5.
    pub fn large(image_size: usize) -> Self {
        BeitConfig {
            hidden_size: 1024,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            intermediate_size: 4096,
            layer_scale_init_value: 1e-5,
            ..Self::base(image_size)
        }
    }

    /// Check every field; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.model_type {
            if t != "beit" {
                return Err(field("config.model_type", format!("`{t}` is not a BEiT config (expected `beit`)")));
            }
        }
        for (name, v) in [
            ("config.hidden_size", self.hidden_size),
            ("config.num_hidden_layers", self.num_hidden_layers),
            ("config.num_attention_heads", self.num_attention_heads),
            ("config.intermediate_size", self.intermediate_size),
            ("config.image_size", self.image_size),
            ("config.patch_size", self.patch_size),
            ("config.num_channels", self.num_channels),
            ("config.vocab_size", self.vocab_size),
        ] {
            if v == 0 {
                return Err(field(name, "must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(field(
                "config.num_attention_heads",
                format!("hidden_size {} is not divisible by {} heads", self.hidden_size, self.num_attention_heads),
            ));
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(field(
                "config.patch_size",
                format!("image_size {} is not divisible by patch_size {}", self.image_size, self.patch_size),
            ));
        }
        if self.hidden_act != "gelu" {
            return Err(field("config.hidden_act", format!("`{}` is not supported (only `gelu`)", self.hidden_act)));
        }
        for (name, p) in [
            ("config.drop_path_rate", self.drop_path_rate),
            ("config.hidden_dropout_prob", self.hidden_dropout_prob),
            ("config.attention_probs_dropout_prob", self.attention_probs_dropout_prob),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(field(name, format!("{p} is not in [0, 1)")));
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(field("config.layer_norm_eps", format!("{} must be positive", self.layer_norm_eps)));
        }
        if !self.layer_scale_init_value.is_finite() || self.layer_scale_init_value < 0.0 {
            return Err(field("config.layer_scale_init_value", "must be finite and >= 0"));
        }
        if let (Some(n), false) = (self.num_labels, self.id2label.is_empty()) {
            if n != self.id2label.len() {
                return Err(field("config.num_labels", format!("{n} but id2label has {}", self.id2label.len())));
            }
        }
        if self.architecture()? == Architecture::BeitForSemanticSegmentation {
            self.validate_segmentation()?;
        }
        self.check_sizes()
    }

    fn validate_segmentation(&self) -> Result<()> {
        let layers = self.num_hidden_layers;
        match self.out_indices.as_deref() {
            Some(idx) if idx.len() == 4 && idx.iter().all(|&i| i <= layers) => {}
            other => {
                return Err(field(
                    "config.out_indices",
                    format!("segmentation needs 4 encoder outputs in 0..={layers}, got {other:?}"),
                ))
            }
        }
        if self.pool_scales.is_empty() || self.pool_scales.contains(&0) {
            return Err(field("config.pool_scales", format!("{:?} must be non-empty and positive", self.pool_scales)));
        }
        if self.use_auxiliary_head || self.seg_head == SegHead::SetrPup {
            if self.auxiliary_channels == 0 {
                return Err(field("config.auxiliary_channels", "must be positive"));
            }
            if !self.auxiliary_loss_weight.is_finite() {
                return Err(field("config.auxiliary_loss_weight", "must be finite"));
            }
        }
        if self.num_labels() < 2 {
            return Err(field("config.num_labels", "segmentation needs at least 2 classes"));
        }
        Ok(())
    }

    /// The head to build: the first entry of `architectures` (BeitModel when empty).
    pub fn architecture(&self) -> Result<Architecture> {
        self.architectures.first().map_or(Ok(Architecture::BeitModel), |a| Architecture::parse(a))
    }

    /// Number of classes of the classification head.
    pub fn num_labels(&self) -> usize {
        self.num_labels.unwrap_or(if self.id2label.is_empty() { 2 } else { self.id2label.len() })
    }

    /// The label of class `id` (or `LABEL_{id}`).
    pub fn label(&self, id: usize) -> String {
        self.id2label.get(&id.to_string()).cloned().unwrap_or_else(|| format!("LABEL_{id}"))
    }

    /// Patch grid (rows, columns) at the configured image size.
    pub fn grid(&self) -> (usize, usize) {
        (self.image_size / self.patch_size, self.image_size / self.patch_size)
    }

    /// Head dim.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_presets_and_field_errors() {
        let c = BeitConfig::from_json(r#"{"model_type": "beit", "hidden_size": 384, "num_attention_heads": 6}"#).unwrap();
        assert_eq!((c.layer_norm_eps, c.num_hidden_layers, c.head_dim()), (1e-12, 12, 64));
        assert_eq!(BeitConfig::large(384).grid(), (24, 24));
        let err = |j: &str| BeitConfig::from_json(j).unwrap_err().to_string();
        assert!(err(r#"{"hidden_size": 100}"#).contains("config.num_attention_heads"));
        assert!(err(r#"{"model_type": "vit"}"#).contains("not a BEiT config"));
        assert!(err(r#"{"architectures": ["BeitBackbone"]}"#).contains("unsupported architecture"));
        let seg = |extra: &str| format!(r#"{{"architectures": ["BeitForSemanticSegmentation"], "num_hidden_layers": 4{extra}}}"#);
        assert!(err(&seg("")).contains("config.out_indices"));
        assert!(err(&seg(r#", "out_indices": [1, 2, 3, 5]"#)).contains("0..=4"));
        assert!(err(&seg(r#", "out_indices": [1, 2, 3, 4], "pool_scales": [1, 0]"#)).contains("config.pool_scales"));
        let c = BeitConfig::from_json(&seg(r#", "segmentation_indices": [0, 1, 2, 3], "seg_head": "setr_pup""#)).unwrap();
        assert_eq!((c.out_indices, c.seg_head, c.semantic_loss_ignore_index), (Some(vec![0, 1, 2, 3]), SegHead::SetrPup, 255));
        assert!(err(r#"{"patch_size": 15}"#).contains("config.patch_size"));
        assert!(err(r#"{"hidden_act": "relu"}"#).contains("config.hidden_act"));
        assert!(err(r#"{"hidden_size": "big"}"#).contains("hidden_size"));
    }
}
