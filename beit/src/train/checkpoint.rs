//! Training checkpoints: one safetensors file holding the model (`model.*`), the AdamW
//! moments (`optim.*`) and, in its metadata, the model config and the [`TrainState`]
//! (step, data position, seed of every random stream). Written atomically (temp file,
//! fsync, rename, fsync of the folder), so a kill or a full disk mid-write leaves the
//! previous checkpoint the newest; the last `keep` are kept.

use beit_engine::io::{load_safetensors, StateDict};
use beit_engine::nn::{load_params, Param};
use beit_engine::optim::AdamW;
use beit_engine::{Device, Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a run stands. Every random draw is a function of `seed` and the step (or epoch
/// and sample index), so this is the complete state of the run's randomness.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainState {
    /// `pretrain`, `finetune`, `segmentation` or `dvae`.
    pub kind: String,
    /// Optimiser steps taken (skipped non-finite steps included).
    pub step: u64,
    /// Epoch of the next batch.
    pub epoch: u64,
    /// Position of the next batch within its epoch.
    pub batch_in_epoch: u64,
    /// Seed of the run's random streams.
    pub seed: u64,
    /// Non-finite losses in a row so far.
    pub bad_streak: u32,
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// The file it was read from.
    pub file: PathBuf,
    /// The model's configuration as written ([`Checkpoint::model_config`] reads it).
    pub config: serde_json::Value,
    /// Where the run stood.
    pub state: TrainState,
    /// Model tensors by parameter name.
    pub model: StateDict,
    /// Optimiser tensors (`optim.*`).
    pub optim: StateDict,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.display().to_string(), source }
}

fn fsync(path: &Path) -> Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(io_err(path))
}

/// The checkpoint file of `step` in `dir`.
pub fn checkpoint_path(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("checkpoint-{step:08}.safetensors"))
}

/// The checkpoints in `dir`, oldest first.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(step) = name.strip_prefix("checkpoint-").and_then(|s| s.strip_suffix(".safetensors")).and_then(|s| s.parse().ok()) {
            out.push((step, path));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// Delete what a process killed while writing a checkpoint into `dir` left behind: our
/// `checkpoint-*.safetensors.tmp` and the safetensors writer's `.tmpXXXXXX` files. Complete
/// checkpoints are only ever renamed into place, so these never hold the newest state.
fn remove_leftovers(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = name.starts_with("checkpoint-") && name.ends_with(".safetensors.tmp");
        let writers = name.len() == 10 && name.starts_with(".tmp") && name[4..].bytes().all(|b| b.is_ascii_alphanumeric());
        if (ours || writers) && path.is_file() {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// Save the model `params`, the optimiser and `state` into `dir`, then delete all but the
/// newest `keep` checkpoints. Returns the new file.
pub fn save_checkpoint(dir: &Path, params: &[Param], opt: &AdamW, config: &impl Serialize, state: &TrainState, keep: usize) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut sd = opt.state_dict()?;
    for p in params {
        sd.insert(format!("model.{}", p.name()), p.tensor().detach());
    }
    let json = |v: serde_json::Result<String>| v.map_err(|e| Error::invalid("checkpoint", e.to_string()));
    let meta: HashMap<String, String> = [
        ("format".to_string(), "beit-rs-checkpoint".to_string()),
        ("config".to_string(), json(serde_json::to_string(config))?),
        ("train_state".to_string(), json(serde_json::to_string(state))?),
    ]
    .into_iter()
    .collect();
    let path = checkpoint_path(dir, state.step);
    remove_leftovers(dir)?;
    let tmp = path.with_extension("safetensors.tmp");
    let written = sd.save(&tmp, Some(&meta)).and_then(|_| fsync(&tmp)).and_then(|_| std::fs::rename(&tmp, &path).map_err(io_err(&path)));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        let previous = match list_checkpoints(dir)?.pop() {
            Some(p) => format!("the previous checkpoint {} is intact: free space, then resume with --resume {}", p.display(), dir.display()),
            None => "no earlier checkpoint exists".to_string(),
        };
        return Err(Error::Format { file: path.display().to_string(), msg: format!("not written ({e}); {previous}") });
    }
    fsync(dir)?;
    let all = list_checkpoints(dir)?;
    for old in &all[..all.len().saturating_sub(keep)] {
        std::fs::remove_file(old).map_err(io_err(old))?;
    }
    Ok(path)
}

/// Load a checkpoint file, or the newest checkpoint of a folder.
pub fn load_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint> {
    let file = if path.is_dir() {
        list_checkpoints(path)?.pop().ok_or_else(|| Error::Format { file: path.display().to_string(), msg: "no checkpoint-*.safetensors in this folder".into() })?
    } else {
        path.to_path_buf()
    };
    let tensors = load_safetensors(&file, device)?;
    let bad = |msg: String| Error::Format { file: file.display().to_string(), msg };
    let meta = tensors.metadata().cloned().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some("beit-rs-checkpoint") {
        return Err(bad("not a beit-rs training checkpoint (metadata `format` missing)".into()));
    }
    let field = |key: &str| meta.get(key).ok_or_else(|| bad(format!("metadata `{key}` missing")));
    let config = serde_json::from_str(field("config")?).map_err(|e| bad(format!("metadata `config`: {e}")))?;
    let state = serde_json::from_str(field("train_state")?).map_err(|e| bad(format!("metadata `train_state`: {e}")))?;
    let (mut model, mut optim) = (StateDict::new(), StateDict::new());
    for (name, t) in tensors.tensors()? {
        match name.strip_prefix("model.") {
            Some(param) => model.insert(param, t),
            None => optim.insert(name, t),
        }
    }
    Ok(Checkpoint { file, config, state, model, optim })
}

impl Checkpoint {
    /// An error unless this is a checkpoint of a `kind` run (`pretrain`, `finetune`,
    /// `segmentation`, `dvae`).
    pub fn expect_kind(&self, kind: &str) -> Result<()> {
        if self.state.kind != kind {
            return Err(Error::invalid("--resume", format!("{} is from a {} run, not {kind}", self.file.display(), self.state.kind)));
        }
        Ok(())
    }

    /// The model's configuration: a [`crate::BeitConfig`] for BEiT runs, a
    /// [`crate::tokenizer::DvaeConfig`] for `dvae` runs. A mismatch is an error naming the file.
    pub fn model_config<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.config).map_err(|e| Error::Format {
            file: self.file.display().to_string(),
            msg: format!("the `{}` checkpoint's model config: {e}", self.state.kind),
        })
    }

    /// Restore the model `params` (strictly: every one present, nothing extra) and the
    /// optimiser moments.
    pub fn restore(&self, params: &[Param], opt: &mut AdamW) -> Result<()> {
        load_params(params, &self.model, true)?;
        opt.load_state_dict(&self.optim)
    }
}
