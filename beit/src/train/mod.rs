//! Training: MIM pretraining ([`pretrain`]), fine-tuning for classification
//! ([`finetune`]) and evaluation ([`evaluate`]), with checkpoints that resume exactly,
//! metrics as JSON Lines, a PNG curve, and an [`Observer`] for progress. Segmentation
//! ([`crate::segmentation::finetune`]) and the dVAE ([`crate::tokenizer::train_dvae`])
//! train through the same loop.
//!
//! Every random draw derives from the run's seed and a counter (step, epoch, sample
//! index): a checkpoint's step is the whole state of the run's randomness.

mod checkpoint;
mod config;
mod data;
mod finetune;
mod parallel;
mod groups;
mod plot;
mod pretrain;
mod runner;

pub(crate) use data::EpochPicks;
pub(crate) use runner::{Plan, Runner, StepLoss};
pub use checkpoint::{checkpoint_path, list_checkpoints, load_checkpoint, save_checkpoint, Checkpoint, TrainState};
pub use crate::data::Shard;
pub use config::{apply_overrides, load_config, FinetuneConfig, PretrainConfig, RunFiles, TrainConfig};
pub use data::{ClassifyData, ClassifyTransform, PretrainData};
pub use finetune::{classifier_from_pretrained, evaluate, evaluate_in, finetune};
pub use groups::{layer_id, no_weight_decay, param_groups};
pub use plot::plot_curves;
pub use pretrain::{pretrain, pretrain_model_config};

use beit_engine::collective::Collective;
use beit_engine::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What one optimiser step did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// The step (0-based).
    pub step: u64,
    /// Its epoch.
    pub epoch: u64,
    /// The loss (non-finite when skipped; written as `null`).
    #[serde(deserialize_with = "null_as_nan")]
    pub loss: f64,
    /// The learning rate (before per-group scales).
    pub lr: f64,
    /// Global gradient norm before clipping (`None` when skipped before backward).
    pub grad_norm: Option<f64>,
    /// Throughput of the step.
    pub samples_per_sec: f64,
    /// The step had a non-finite loss or gradient and changed nothing.
    pub skipped: bool,
    /// Other finite values of the step, by name (the dVAE's: `recon`, `kl`, `usage`,
    /// `temperature`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parts: BTreeMap<String, f64>,
}

/// Classification quality on a data set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Epoch after which it was measured (`None`: standalone evaluation).
    pub epoch: Option<u64>,
    /// Mean cross-entropy (no smoothing).
    pub loss: f64,
    /// Top-1 accuracy in [0, 1].
    pub top1: f64,
    /// Top-5 accuracy in [0, 1] (top-k with k = classes when fewer than 5).
    pub top5: f64,
    /// Samples evaluated.
    pub samples: usize,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

/// Segmentation quality on a data set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SegEvalMetrics {
    /// Epoch after which it was measured (`None`: standalone evaluation).
    pub epoch: Option<u64>,
    /// Mean IoU over the classes present (NaN when none is; written as `null`).
    #[serde(deserialize_with = "null_as_nan")]
    pub mean_iou: f64,
    /// Share of the labelled pixels predicted right.
    #[serde(deserialize_with = "null_as_nan")]
    pub pixel_accuracy: f64,
    /// Images evaluated.
    pub samples: usize,
}

/// What a run measured on held-out data after an epoch: one record of the metrics file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Evaluation {
    /// A classifier's loss, top-1 and top-5.
    Classification(EvalMetrics),
    /// A segmentation model's mIoU and pixel accuracy.
    Segmentation(SegEvalMetrics),
}

impl Evaluation {
    /// The epoch after which it was measured.
    pub fn epoch(&self) -> Option<u64> {
        match self {
            Evaluation::Classification(m) => m.epoch,
            Evaluation::Segmentation(m) => m.epoch,
        }
    }

    /// The two scores in [0, 1] a curve shows, with their names: top-1 and top-5
    /// accuracy, or mIoU and pixel accuracy.
    pub fn scores(&self) -> [(&'static str, f64); 2] {
        match self {
            Evaluation::Classification(m) => [("top-1", m.top1), ("top-5", m.top5)],
            Evaluation::Segmentation(m) => [("mIoU", m.mean_iou), ("pixel acc", m.pixel_accuracy)],
        }
    }
}

/// Receives a run's progress (progress bars, the demo's printout).
pub trait Observer {
    /// The run starts at `first_step` of `total_steps`.
    fn start(&mut self, _first_step: u64, _total_steps: u64) {}
    /// A step finished.
    fn step(&mut self, _metrics: &StepMetrics, _total_steps: u64) {}
    /// An evaluation finished.
    fn eval(&mut self, _metrics: &Evaluation) {}
    /// Something went wrong but the run continues (a skipped step).
    fn warn(&mut self, message: &str) {
        tracing::warn!("{message}");
    }
    /// A checkpoint was written.
    fn checkpoint(&mut self, _path: &Path) {}
    /// The run ended.
    fn finish(&mut self) {}
}

/// An observer that prints warnings only.
pub struct Quiet;

impl Observer for Quiet {}

/// How a run is driven from outside: resume, interruption, a partial run, data parallelism.
#[derive(Default)]
pub struct RunControl {
    /// Continue from this checkpoint (same config and seed; any group size that divides
    /// the batch). Every member of a group loads it.
    pub resume: Option<Checkpoint>,
    /// Raised (e.g. by Ctrl-C): save a checkpoint and return before the next step. In a
    /// group, a raise on any member stops every member at the same step.
    pub stop: Option<Arc<AtomicBool>>,
    /// Stop (with a checkpoint) when this step is reached.
    pub stop_at_step: Option<u64>,
    /// Train data-parallel in this group: each member computes its shard of every batch
    /// (the config's `batch_size` is the global batch) and the gradients are summed over
    /// the group; member 0 writes the checkpoints, metrics and plot. None: this process alone.
    pub group: Option<Arc<dyn Collective>>,
}

impl RunControl {
    /// This member's shard of every batch.
    pub(crate) fn shard(&self) -> Result<Shard> {
        Shard::of(self.group.as_deref())
    }
}

/// The outcome of a run.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Steps done in total (including those before a resume).
    pub steps: u64,
    /// The last finite loss of this invocation.
    pub final_loss: Option<f64>,
    /// Steps skipped for non-finite values in this invocation.
    pub skipped: u64,
    /// Stopped by [`RunControl::stop`].
    pub interrupted: bool,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// This invocation's steps.
    pub history: Vec<StepMetrics>,
    /// This invocation's evaluations.
    pub evals: Vec<Evaluation>,
}

/// JSON has no NaN: serde_json writes it as `null`; read that back as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Read a metrics JSON Lines file back: its steps and evaluations.
pub fn read_metrics(path: &Path) -> Result<(Vec<StepMetrics>, Vec<Evaluation>)> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: file.clone(), source })?;
    let (mut steps, mut evals) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |e: serde_json::Error| Error::Format { file: file.clone(), msg: format!("line {}: {e}", i + 1) };
        let v: serde_json::Value = serde_json::from_str(line).map_err(bad)?;
        if v.get("step").is_some() {
            steps.push(serde_json::from_value(v).map_err(bad)?);
        } else {
            evals.push(serde_json::from_value(v).map_err(bad)?);
        }
    }
    Ok((steps, evals))
}
