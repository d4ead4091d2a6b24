//! Training recipes as serde structs (JSON or TOML files), with BEiT's defaults and
//! overrides by key (`--set key=value` and the CLI's named flags).

use super::runner::Plan;
use beit_engine::optim::{AdamWConfig, Schedule};
use beit_engine::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What a run writes, whatever it trains: checkpoints, metrics and a plot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunFiles {
    /// Folder of checkpoints (`None`: none are written).
    pub checkpoint_dir: Option<PathBuf>,
    /// Write a checkpoint every this many steps (0: only at the end and on interruption).
    pub checkpoint_every: u64,
    /// Checkpoints kept (older ones are deleted).
    pub keep_last: usize,
    /// JSON Lines file the metrics are appended to.
    pub metrics: Option<PathBuf>,
    /// PNG of the loss (and evaluation) curves, drawn at the end.
    pub plot: Option<PathBuf>,
}

impl Default for RunFiles {
    fn default() -> Self {
        RunFiles { checkpoint_dir: None, checkpoint_every: 0, keep_last: 3, metrics: None, plot: None }
    }
}

impl RunFiles {
    /// Check `keep_last`.
    pub fn validate(&self) -> Result<()> {
        if self.keep_last == 0 {
            return Err(Error::invalid("training config", "`keep_last` must be at least 1"));
        }
        Ok(())
    }
}

/// What every run of a BEiT model shares: optimisation, schedule, checkpoints and logs.
/// (Unknown keys are refused by [`load_config`] and [`apply_overrides`]: serde cannot deny
/// them through `flatten`.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Seed of every random draw (shuffles, masks, augmentations, drop path).
    pub seed: u64,
    /// Passes over the data.
    pub epochs: u64,
    /// Samples per step.
    pub batch_size: usize,
    /// Learning rate per 256 samples: the peak rate is `base_lr · batch_size / 256`.
    pub base_lr: f64,
    /// Final learning rate of the cosine decay.
    pub min_lr: f64,
    /// Linear warmup length in epochs (fractions allowed).
    pub warmup_epochs: f64,
    /// AdamW weight decay (biases, norms, tokens, position tables and layer-scale gammas get none).
    pub weight_decay: f64,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Clip the global gradient norm to this value (`None`: no clipping).
    pub clip_grad: Option<f64>,
    /// Stochastic depth rate of the last block.
    pub drop_path: f64,
    /// Non-finite losses in a row that stop the run.
    pub max_bad_steps: u32,
    /// Checkpoints, metrics and plot.
    #[serde(flatten)]
    pub files: RunFiles,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 0,
            epochs: 800,
            batch_size: 2048,
            base_lr: 1.5e-3,
            min_lr: 1e-5,
            warmup_epochs: 10.0,
            weight_decay: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            clip_grad: Some(3.0),
            drop_path: 0.1,
            max_bad_steps: 5,
            files: RunFiles::default(),
        }
    }
}

impl TrainConfig {
    /// The peak learning rate: `base_lr · batch_size / 256`.
    pub fn lr(&self) -> f64 {
        self.base_lr * self.batch_size as f64 / 256.0
    }

    /// Check the values that would otherwise fail deep inside a run.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: &str| Err(Error::invalid("training config", format!("`{field}` {msg}")));
        if self.batch_size == 0 {
            return bad("batch_size", "must be positive");
        }
        if self.epochs == 0 {
            return bad("epochs", "must be positive");
        }
        if !(self.base_lr.is_finite() && self.base_lr >= 0.0 && self.min_lr.is_finite() && self.min_lr >= 0.0) {
            return bad("base_lr/min_lr", "must be finite and non-negative");
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return bad("warmup_epochs", "must be finite and non-negative");
        }
        if !(0.0..1.0).contains(&self.drop_path) {
            return bad("drop_path", "must be in [0, 1)");
        }
        if self.clip_grad.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return bad("clip_grad", "must be positive");
        }
        if self.max_bad_steps == 0 {
            return bad("max_bad_steps", "must be at least 1");
        }
        self.files.validate()
    }

    /// The run over `samples` training samples: `epochs` of `samples / batch_size` steps,
    /// linear warmup then cosine decay from [`TrainConfig::lr`] to `min_lr`.
    pub(crate) fn plan(&self, kind: &'static str, samples: usize) -> Result<Plan<'_>> {
        self.validate()?;
        let steps_per_epoch = (samples / self.batch_size) as u64;
        if steps_per_epoch == 0 {
            return Err(Error::invalid("training data", format!("fewer samples than one batch of {} ({samples})", self.batch_size)));
        }
        let total_steps = self.epochs.saturating_mul(steps_per_epoch);
        let warmup_steps = ((self.warmup_epochs * steps_per_epoch as f64).round() as u64).min(total_steps);
        let schedule = Schedule::WarmupCosine { base: self.lr(), final_value: self.min_lr, warmup_start: 0.0, warmup_steps, total_steps };
        Ok(Plan {
            kind,
            seed: self.seed,
            batch: self.batch_size,
            steps_per_epoch,
            total_steps,
            schedule,
            adam: AdamWConfig { beta1: self.beta1, beta2: self.beta2, eps: self.eps, weight_decay: self.weight_decay },
            clip_grad: self.clip_grad,
            max_bad_steps: self.max_bad_steps,
            files: &self.files,
        })
    }
}

/// MIM pretraining: BEiT-Base's recipe (800 epochs, batch 2048, lr 1.5e-3 per 256, warmup
/// 10 epochs, weight decay 0.05, clip 3.0, drop path 0.1, layer scale 0.1, shared relative
/// position bias).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PretrainConfig {
    /// Optimisation, schedule, checkpoints and logs.
    #[serde(flatten)]
    pub train: TrainConfig,
    /// Layer-scale init of a fresh model (0: off).
    pub layer_scale: f64,
    /// Masked patches per image as a fraction of the grid (BEiT: 75/196).
    pub mask_ratio: f64,
    /// Smallest masking block in patches.
    pub mask_min_patches: usize,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        PretrainConfig { train: TrainConfig::default(), layer_scale: 0.1, mask_ratio: 75.0 / 196.0, mask_min_patches: 16 }
    }
}

/// Fine-tuning for classification: BEiT-Base's recipe (layer decay 0.65, label smoothing
/// 0.1, warmup 20 of 100 epochs, weight decay 0.05, drop path 0.1, no clipping).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FinetuneConfig {
    /// Optimisation, schedule, checkpoints and logs.
    #[serde(flatten)]
    pub train: TrainConfig,
    /// Layer-wise learning-rate decay: layer `id` trains at `decay^(L+1-id)`.
    pub layer_decay: f64,
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        let train = TrainConfig {
            epochs: 100,
            batch_size: 1024,
            base_lr: 1e-3,
            min_lr: 1e-6,
            warmup_epochs: 20.0,
            clip_grad: None,
            ..TrainConfig::default()
        };
        FinetuneConfig { train, layer_decay: 0.65, label_smoothing: 0.1 }
    }
}

/// Read a config from a `.json` or `.toml` file; unknown keys are errors naming the file
/// and the key (checked here: serde cannot deny unknown keys through `flatten`).
pub fn load_config<T: Serialize + DeserializeOwned + Default>(path: &Path) -> Result<T> {
    let file = path.display().to_string();
    let text = crate::limits::read_config_text(path)?;
    let bad = |msg: String| Error::Format { file: file.clone(), msg };
    let value: serde_json::Value = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?,
        Some("toml") => toml::from_str(&text).map_err(|e| bad(e.to_string()))?,
        _ => return Err(bad("expected a .json or .toml config file".into())),
    };
    let known = serde_json::to_value(T::default()).map_err(|e| bad(e.to_string()))?;
    let Some(map) = value.as_object() else { return Err(bad("expected a table of settings".into())) };
    if let Some(key) = map.keys().find(|k| known.get(k.as_str()).is_none()) {
        return Err(bad(format!("unknown key `{key}`")));
    }
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

/// Set `key = value` pairs on a config: each value is parsed as JSON (numbers, booleans,
/// `null`), else taken as a string. An unknown key or a value of the wrong type is an
/// error naming the key.
pub fn apply_overrides<T: Serialize + DeserializeOwned>(config: &T, overrides: &[(String, String)]) -> Result<T> {
    let err = |msg: String| Error::invalid("config override", msg);
    let mut value = serde_json::to_value(config).map_err(|e| err(e.to_string()))?;
    for (key, raw) in overrides {
        let Some(slot) = value.get_mut(key.as_str()) else {
            return Err(err(format!("unknown key `{key}`")));
        };
        *slot = serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.clone()));
        serde_json::from_value::<T>(value.clone()).map_err(|e| err(format!("`{key}` = {raw}: {e}")))?;
    }
    serde_json::from_value(value).map_err(|e| err(e.to_string()))
}
