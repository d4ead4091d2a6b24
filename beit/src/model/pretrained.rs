//! Hugging Face folders: `config.json` + `model.safetensors`, loaded with keys with or
//! without the `beit.` prefix (or from timm's layout, converted), and saved back in
//! Hugging Face's layout.

use super::{heads::Beit, resize_pos_embed, resize_rel_pos_table, timm, timm_config, timm_preprocess, Inits, LoadOptions};
use crate::preprocess::ImageProcessor;
use crate::BeitConfig;
use beit_engine::io::{load_safetensors, StateDict};
use beit_engine::nn::{load_params, LoadReport, Module, Param};
use beit_engine::{Device, Error, Result};
use std::path::Path;

impl Beit {
    /// Load a Hugging Face BEiT folder. Returns the model and what the checkpoint held that
    /// the model does not use (e.g. another head's weights); a missing or misshapen tensor
    /// is an error naming the key (and both shapes).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: &Device) -> Result<(Beit, LoadReport)> {
        Self::from_pretrained_with(dir, device, LoadOptions::default())
    }

    /// [`Beit::from_pretrained`] with `options`: at another input resolution (e.g.
    /// fine-tuning at 384 from a 224 checkpoint), relative position bias tables and absolute
    /// position embeddings are interpolated to the new patch grid; with a bf16
    /// `weight_dtype`, each Linear weight is converted once as it is loaded (bf16 inference).
    pub fn from_pretrained_with(dir: impl AsRef<Path>, device: &Device, options: LoadOptions) -> Result<(Beit, LoadReport)> {
        options.check()?;
        let (mut config, sd) = read_folder(dir.as_ref(), device)?;
        if let Some(size) = options.image_size {
            config.image_size = size;
        }
        let model = Beit::build(&config, device, &options, 0, &Inits::for_loading())?;
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
        report.require(&source, |_| false)?;
        report.unexpected.retain(|n| !n.ends_with("relative_position_index"));
        Ok(report)
    }

    /// Write `config.json` and `model.safetensors` into `dir` (created if needed), loadable
    /// by Hugging Face's `from_pretrained`.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<()> {
        save_folder(dir.as_ref(), self.config(), &self.state_dict())
    }
}

/// Read a model folder's `config.json` and `model.safetensors` (mapped, read lazily) as a
/// Hugging Face config and state dict: a Hugging Face folder as it is, a timm one (timm's
/// `config.json` and/or timm's state-dict names) converted. Errors name the file.
pub fn read_folder(dir: &Path, device: &Device) -> Result<(BeitConfig, StateDict)> {
    let config_file = dir.join("config.json");
    let text = crate::limits::read_config_text(&config_file)?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Format { file: config_file.display().to_string(), msg: e.to_string() })?;
    let timm_config = timm::is_timm_config(&json);
    let hf_config = if timm_config { None } else { Some(BeitConfig::from_file(&config_file)?) };
    let sd = load_safetensors(dir.join("model.safetensors"), device)?;
    let timm_layout = timm::is_timm_layout(&sd);
    let config = match hf_config {
        Some(c) => c,
        None if timm_layout => timm_config::config_from_timm(&json, &sd, &config_file.display().to_string())?,
        None => {
            let msg = "config.json is timm's but the weights are not in timm's layout (no `patch_embed.proj.weight`)";
            return Err(Error::Format { file: sd.source().to_string(), msg: msg.into() });
        }
    };
    let sd = if timm_layout { timm::to_hf_layout(sd, &config)? } else { sd };
    Ok((config, sd))
}

/// The preprocessing of a model folder: its `preprocessor_config.json` when it has one, else
/// what the `pretrained_cfg` of a timm `config.json` says (timm's eval transform), else
/// [`ImageProcessor::default`]. Errors name the file and the field.
pub fn folder_image_processor(dir: &Path) -> Result<ImageProcessor> {
    let config_file = dir.join("config.json");
    if !dir.join("preprocessor_config.json").is_file() && config_file.is_file() {
        let text = crate::limits::read_config_text(&config_file)?;
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if timm::is_timm_config(&json) {
            if let Some(p) = timm_preprocess::image_processor(&json, &config_file.display().to_string())? {
                return Ok(p);
            }
        }
    }
    ImageProcessor::from_folder(dir)
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
