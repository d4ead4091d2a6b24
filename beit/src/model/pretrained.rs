//! Hugging Face folders: `config.json` + `model.safetensors`, loaded with keys with or
//! without the `beit.` prefix, and saved back in the same layout.

use super::{heads::Beit, resize_pos_embed, resize_rel_pos_table, Inits};
use crate::BeitConfig;
use beit_engine::io::{load_safetensors, StateDict};
use beit_engine::nn::{load_params, LoadReport, Module, Param};
use beit_engine::{DType, Device, Error, Result};
use std::path::Path;

impl Beit {
    /// Load a Hugging Face BEiT folder. Returns the model and what the checkpoint held that
    /// the model does not use (e.g. another head's weights); a missing or misshapen tensor
    /// is an error naming the key (and both shapes).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<(Beit, LoadReport)> {
        Self::from_pretrained_at(dir, device, None)
    }

    /// [`Beit::from_pretrained`] at another input resolution (e.g. fine-tuning at 384 from a
    /// 224 checkpoint): relative position bias tables and absolute position embeddings are
    /// interpolated to the new patch grid.
    pub fn from_pretrained_at(dir: impl AsRef<Path>, device: &Device, image_size: Option<usize>) -> Result<(Beit, LoadReport)> {
        let dir = dir.as_ref();
        let mut config = BeitConfig::from_file(dir.join("config.json"))?;
        if let Some(size) = image_size {
            config.image_size = size;
        }
        let weights = dir.join("model.safetensors");
        let sd = load_safetensors(&weights, device)?;
        let model = Beit::build(&config, device, DType::F32, 0, &Inits::for_loading())?;
        let report = model.load_hf_state_dict(sd)?;
        Ok((model, report))
    }

    /// Load a state dict whose keys may carry a `beit.` prefix the model lacks, or lack one
    /// the model has. Unused keys are reported; missing ones are an error.
    pub fn load_hf_state_dict(&self, sd: StateDict) -> Result<LoadReport> {
        let source = sd.source().to_string();
        let wants_prefix = !matches!(self, Beit::Model(_));
        let has_prefix = sd.names().any(|n| n.starts_with("beit."));
        let mut sd = match (wants_prefix, has_prefix) {
            (true, false) => sd.add_prefix("beit")?,
            (false, true) => sd.map_names(|n| Some(n.strip_prefix("beit.").unwrap_or(n).to_string()))?,
            _ => sd,
        };
        resize_positions(&self.params(), self.config().grid(), &mut sd)?;
        let mut report = load_params(&self.params(), &sd, false)?;
        if let Some(name) = report.missing.first() {
            return Err(Error::MissingTensor { file: source, name: name.clone() });
        }
        report.unexpected.retain(|n| !n.ends_with("relative_position_index"));
        Ok(report)
    }

    /// Write `config.json` and `model.safetensors` into `dir` (created if needed), loadable
    /// by Hugging Face's `from_pretrained`.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        save_folder(dir.as_ref(), self.config(), &self.state_dict())
    }
}

/// Interpolate the position tables of `sd` whose size differs from `params`' (a model
/// at patch `grid`): relative position bias tables and absolute position embeddings.
pub(crate) fn resize_positions(params: &[Param], grid: (usize, usize), sd: &mut StateDict) -> Result<()> {
    for p in params {
        let name = p.name();
        let Some(shape) = sd.shape(name) else { continue };
        if shape == p.shape().as_slice() {
            continue;
        }
        let resized = if name.ends_with("relative_position_bias_table") {
            resize_rel_pos_table(&sd.get(name)?, grid, name)?
        } else if name.ends_with("embeddings.position_embeddings") {
            resize_pos_embed(&sd.get(name)?, grid, name)?
        } else {
            continue;
        };
        sd.insert(name, resized);
    }
    Ok(())
}

/// Write `config` (with `model_type`) as `config.json` and `sd` as `model.safetensors`
/// into `dir` (created if needed).
pub(crate) fn save_folder(dir: &Path, config: &BeitConfig, sd: &StateDict) -> Result<()> {
    let io = |source| Error::Io { path: dir.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut config = serde_json::to_value(config).map_err(|e| Error::invalid("save_pretrained", e.to_string()))?;
    config["model_type"] = "beit".into();
    let text = serde_json::to_string_pretty(&config).map_err(|e| Error::invalid("save_pretrained", e.to_string()))?;
    std::fs::write(dir.join("config.json"), text).map_err(io)?;
    let meta = [("format".to_string(), "pt".to_string())].into_iter().collect();
    sd.save(dir.join("model.safetensors"), Some(&meta))
}
