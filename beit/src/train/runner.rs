//! The loop every run shares: learning-rate schedule, non-finite loss skipping, gradient
//! clipping, AdamW, metrics (observer + JSON Lines), checkpoints, interruption and resume.

use super::checkpoint::{save_checkpoint, Checkpoint, TrainState};
use super::plot::plot_curves;
use super::{EvalMetrics, Observer, RunControl, StepMetrics, Summary, TrainConfig};
use crate::BeitConfig;
use beit_engine::nn::Param;
use beit_engine::optim::{clip_grad_norm, AdamW, AdamWConfig, ParamGroup, Schedule};
use beit_engine::{Error, Result, Tensor};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// One run in progress.
pub(crate) struct Runner<'a> {
    kind: &'static str,
    cfg: &'a TrainConfig,
    model_config: BeitConfig,
    params: Vec<Param>,
    trainable: Vec<Param>,
    opt: AdamW,
    schedule: Schedule,
    steps_per_epoch: u64,
    state: TrainState,
    control: &'a RunControl,
    last_checkpoint: Option<PathBuf>,
}

/// Append one JSON object as a line to `path`.
fn append_jsonl(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let line = serde_json::to_string(value).map_err(|e| Error::invalid("metrics", e.to_string()))?;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    writeln!(f, "{line}").map_err(io)
}

/// Keep in the metrics file at `path` only the records of steps before `state.step` (and
/// of evaluations before `state.epoch`): what a run resuming at `state` has already done.
/// A kill after the last checkpoint leaves later records, which the resumed run writes
/// again; a torn last line is dropped. A fresh run starts the file empty.
fn truncate_metrics(path: &Path, state: &TrainState) -> Result<()> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::Io { path: file, source }),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut kept = String::new();
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => return Err(Error::Format { file, msg: format!("line {}: {e}", i + 1) }),
        };
        let before = match (v.get("step"), v.get("epoch")) {
            (Some(step), _) => step.as_u64().is_some_and(|s| s < state.step),
            (None, Some(epoch)) => epoch.as_u64().is_none_or(|e| e < state.epoch),
            (None, None) => true,
        };
        if before {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    let tmp = path.with_extension("jsonl.tmp");
    let io = |source| Error::Io { path: file.clone(), source };
    std::fs::write(&tmp, kept).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

impl<'a> Runner<'a> {
    /// Set up the optimiser and schedule for `params` (all of the model's, buffers
    /// included, for checkpoints) in `groups`, resuming from `control.resume`.
    pub(crate) fn new(
        kind: &'static str,
        cfg: &'a TrainConfig,
        model_config: BeitConfig,
        params: Vec<Param>,
        groups: Vec<ParamGroup>,
        steps_per_epoch: u64,
        control: &'a RunControl,
    ) -> Result<Self> {
        cfg.validate()?;
        if steps_per_epoch == 0 {
            return Err(Error::invalid("training data", format!("fewer samples than one batch of {}", cfg.batch_size)));
        }
        let trainable: Vec<Param> = groups.iter().flat_map(|g| g.params.clone()).collect();
        let adam = AdamWConfig { beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weight_decay: cfg.weight_decay };
        let mut opt = AdamW::new(groups, adam)?;
        let total = cfg.epochs * steps_per_epoch;
        let warmup = ((cfg.warmup_epochs * steps_per_epoch as f64).round() as u64).min(total);
        let schedule = Schedule::WarmupCosine { base: cfg.lr(), final_value: cfg.min_lr, warmup_start: 0.0, warmup_steps: warmup, total_steps: total };
        schedule.validate()?;
        let mut state = TrainState { kind: kind.into(), step: 0, epoch: 0, batch_in_epoch: 0, seed: cfg.seed, bad_streak: 0 };
        if let Some(ck) = &control.resume {
            Self::check_resumable(kind, cfg, ck)?;
            ck.restore(&params, &mut opt)?;
            state = ck.state.clone();
        }
        if let Some(path) = &cfg.metrics {
            truncate_metrics(path, &state)?;
        }
        Ok(Runner { kind, cfg, model_config, params, trainable, opt, schedule, steps_per_epoch, state, control, last_checkpoint: None })
    }

    fn check_resumable(kind: &str, cfg: &TrainConfig, ck: &Checkpoint) -> Result<()> {
        let err = |msg: String| Error::invalid("--resume", msg);
        if ck.state.kind != kind {
            return Err(err(format!("the checkpoint is from a {} run, not {kind}", ck.state.kind)));
        }
        if ck.state.seed != cfg.seed {
            return Err(err(format!("the checkpoint's seed is {}, the config's {}: exact resume needs the same seed", ck.state.seed, cfg.seed)));
        }
        Ok(())
    }

    /// Steps of the whole run.
    pub(crate) fn total_steps(&self) -> u64 {
        self.cfg.epochs * self.steps_per_epoch
    }

    /// The step the run starts (or resumes) at.
    pub(crate) fn start_step(&self) -> u64 {
        self.state.step
    }

    fn save(&mut self, obs: &mut dyn Observer) -> Result<()> {
        let Some(dir) = &self.cfg.checkpoint_dir else { return Ok(()) };
        if self.last_checkpoint.as_ref().is_some_and(|p| *p == super::checkpoint::checkpoint_path(dir, self.state.step)) {
            return Ok(());
        }
        let path = save_checkpoint(dir, &self.params, &self.opt, &self.model_config, &self.state, self.cfg.keep_last)?;
        obs.checkpoint(&path);
        self.last_checkpoint = Some(path);
        Ok(())
    }

    /// Run to the end (or to `control.stop_at_step`, or until `control.stop` is raised).
    /// `loss` computes the loss of the step `state.step` (batch `state.batch_in_epoch` of
    /// `state.epoch`) and the number of samples; `after_epoch` may evaluate.
    pub(crate) fn run(
        mut self,
        obs: &mut dyn Observer,
        mut loss: impl FnMut(&TrainState) -> Result<(Tensor, usize)>,
        mut after_epoch: impl FnMut(u64) -> Result<Option<EvalMetrics>>,
    ) -> Result<Summary> {
        let total = self.total_steps();
        let end = self.control.stop_at_step.map_or(total, |s| s.min(total));
        obs.start(self.state.step, total);
        let mut summary = Summary::default();
        while self.state.step < end {
            if self.control.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                summary.interrupted = true;
                obs.warn(&format!("interrupted at step {}; saving a checkpoint", self.state.step));
                break;
            }
            let m = self.step(obs, &mut loss)?;
            summary.skipped += u64::from(m.skipped);
            if !m.skipped {
                summary.final_loss = Some(m.loss);
            }
            if let Some(path) = &self.cfg.metrics {
                append_jsonl(path, &m)?;
            }
            obs.step(&m, total);
            summary.history.push(m);
            if self.state.batch_in_epoch == 0 {
                if let Some(e) = after_epoch(self.state.epoch - 1)? {
                    if let Some(path) = &self.cfg.metrics {
                        append_jsonl(path, &e)?;
                    }
                    obs.eval(&e);
                    summary.evals.push(e);
                }
            }
            if self.cfg.checkpoint_every > 0 && self.state.step.is_multiple_of(self.cfg.checkpoint_every) {
                self.save(obs)?;
            }
        }
        self.save(obs)?;
        summary.steps = self.state.step;
        summary.checkpoint = self.last_checkpoint.clone();
        if let Some(png) = &self.cfg.plot {
            let (steps, evals) = match &self.cfg.metrics {
                Some(path) if self.state.step > summary.history.len() as u64 => super::read_metrics(path)?,
                _ => (summary.history.clone(), summary.evals.clone()),
            };
            plot_curves(png, &format!("{} loss", self.kind), &steps, &evals)?;
        }
        obs.finish();
        Ok(summary)
    }

    /// One step: forward, skip on a non-finite loss or gradient, clip, update.
    fn step(&mut self, obs: &mut dyn Observer, loss: &mut impl FnMut(&TrainState) -> Result<(Tensor, usize)>) -> Result<StepMetrics> {
        let started = Instant::now();
        let step = self.state.step;
        let lr = self.schedule.at(step);
        let (loss_t, samples) = loss(&self.state)?;
        let value = loss_t.to_scalar()?;
        let mut grad_norm = None;
        let mut problem = (!value.is_finite()).then(|| format!("non-finite loss {value}"));
        if problem.is_none() {
            let mut grads = loss_t.backward()?;
            match clip_grad_norm(&mut grads, &self.trainable, self.cfg.clip_grad.unwrap_or(f64::MAX)) {
                Ok(norm) => grad_norm = Some(norm),
                Err(Error::NonFinite(what)) => problem = Some(format!("non-finite value in {what}")),
                Err(e) => return Err(e),
            }
            if problem.is_none() {
                self.opt.step(&grads, lr)?;
            }
        }
        self.state.step += 1;
        self.state.epoch = self.state.step / self.steps_per_epoch;
        self.state.batch_in_epoch = self.state.step % self.steps_per_epoch;
        if let Some(what) = &problem {
            self.state.bad_streak += 1;
            obs.warn(&format!("step {step}: {what}; step skipped (no update)"));
            if self.state.bad_streak >= self.cfg.max_bad_steps {
                let last = self.last_checkpoint.as_ref().map_or("none written".to_string(), |p| p.display().to_string());
                return Err(Error::NonFinite(format!(
                    "the training loss: {} bad steps in a row (up to step {step}, limit max_bad_steps = {}); stopped, last good checkpoint: {last}",
                    self.state.bad_streak, self.cfg.max_bad_steps
                )));
            }
        } else {
            self.state.bad_streak = 0;
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(StepMetrics {
            step,
            epoch: step / self.steps_per_epoch,
            loss: value,
            lr,
            grad_norm,
            samples_per_sec: samples as f64 / secs.max(1e-9),
            skipped: problem.is_some(),
        })
    }
}
