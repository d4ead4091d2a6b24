//! The loop every run shares: learning-rate schedule, non-finite loss skipping, gradient
//! clipping, AdamW, metrics (observer + JSON Lines), checkpoints, interruption and resume,
//! alone or data-parallel in a group ([`super::RunControl::group`]).

use super::checkpoint::{save_checkpoint, Checkpoint, TrainState};
use super::plot::plot_curves;
use super::{Evaluation, Observer, RunControl, RunFiles, StepMetrics, Summary};
use super::parallel::DataParallel;
use beit_engine::collective::Collective;
use beit_engine::nn::Param;
use beit_engine::optim::{clip_factor, grad_norm as global_norm, AdamW, AdamWConfig, ParamGroup, Schedule};
use beit_engine::{Error, Result, Tensor};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// How a run optimises and what it writes, built by each trainer from its recipe
/// ([`super::TrainConfig::plan`], the dVAE's config).
pub(crate) struct Plan<'a> {
    /// `pretrain`, `finetune`, `segmentation` or `dvae`: a checkpoint resumes only its kind.
    pub(crate) kind: &'static str,
    /// Seed of the run's random streams (a resumed run must have the same).
    pub(crate) seed: u64,
    /// Samples per step, over the whole group.
    pub(crate) batch: usize,
    /// Steps per pass over the data.
    pub(crate) steps_per_epoch: u64,
    /// Steps of the whole run.
    pub(crate) total_steps: u64,
    /// Learning rate by step (before the groups' scales).
    pub(crate) schedule: Schedule,
    /// AdamW's betas, ε and default weight decay.
    pub(crate) adam: AdamWConfig,
    /// Global gradient-norm clip.
    pub(crate) clip_grad: Option<f64>,
    /// Non-finite steps in a row that stop the run.
    pub(crate) max_bad_steps: u32,
    /// Checkpoints, metrics, plot.
    pub(crate) files: &'a RunFiles,
}

/// What a trainer's step closure computes: the loss to minimise, the samples it saw, how
/// many terms the loss is the mean of (samples, or masked patches: a group weighs each
/// member's loss by its share of the terms), and other values worth logging with the step
/// (finite ones are kept in [`StepMetrics::parts`]; a member's own in a group).
pub(crate) struct StepLoss {
    pub(crate) loss: Tensor,
    pub(crate) samples: usize,
    pub(crate) terms: usize,
    pub(crate) parts: Vec<(&'static str, f64)>,
}

impl StepLoss {
    /// A loss averaged over `samples` samples, with nothing else to log.
    pub(crate) fn new(loss: Tensor, samples: usize) -> Self {
        StepLoss { loss, samples, terms: samples, parts: Vec::new() }
    }
}

/// One run in progress.
pub(crate) struct Runner<'a> {
    plan: Plan<'a>,
    model_config: serde_json::Value,
    params: Vec<Param>,
    trainable: Vec<Param>,
    opt: AdamW,
    state: TrainState,
    control: &'a RunControl,
    last_checkpoint: Option<PathBuf>,
    parallel: DataParallel,
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
    /// Set up the optimiser for `params` (all of the model's, buffers included, for
    /// checkpoints) in `groups`, resuming from `control.resume`; `model_config` is stored in
    /// every checkpoint.
    pub(crate) fn new(plan: Plan<'a>, model_config: &impl Serialize, params: Vec<Param>, groups: Vec<ParamGroup>, control: &'a RunControl) -> Result<Self> {
        plan.files.validate()?;
        plan.schedule.validate()?;
        if plan.steps_per_epoch == 0 || plan.max_bad_steps == 0 {
            return Err(Error::invalid(plan.kind, "a run needs steps in an epoch and max_bad_steps of at least 1"));
        }
        let model_config = serde_json::to_value(model_config).map_err(|e| Error::invalid("checkpoint config", e.to_string()))?;
        let trainable: Vec<Param> = groups.iter().flat_map(|g| g.params.clone()).collect();
        let mut opt = AdamW::new(groups, plan.adam)?;
        let parallel = DataParallel::new(control, plan.kind, plan.batch, &params, &trainable)?;
        let mut state = TrainState { kind: plan.kind.into(), step: 0, epoch: 0, batch_in_epoch: 0, seed: plan.seed, bad_streak: 0 };
        let mut resume = || -> Result<()> {
            if let Some(ck) = &control.resume {
                Self::check_resumable(&plan, ck)?;
                ck.restore(&params, &mut opt)?;
                state = ck.state.clone();
            }
            parallel.start(&params, state.step)?;
            match &plan.files.metrics {
                Some(path) if parallel.writes() => truncate_metrics(path, &state),
                _ => Ok(()),
            }
        };
        resume().map_err(|e| parallel.fail(e))?;
        Ok(Runner { plan, model_config, params, trainable, opt, state, control, last_checkpoint: None, parallel })
    }

    fn check_resumable(plan: &Plan, ck: &Checkpoint) -> Result<()> {
        ck.expect_kind(plan.kind)?;
        if ck.state.seed != plan.seed {
            return Err(Error::invalid("--resume", format!("the checkpoint's seed is {}, the config's {}: exact resume needs the same seed", ck.state.seed, plan.seed)));
        }
        Ok(())
    }

    /// The run's group, for the collectives of its steps (see [`DataParallel::group`]).
    pub(crate) fn group(&self) -> Option<Arc<dyn Collective>> {
        self.parallel.group()
    }

    /// The step the run starts (or resumes) at.
    pub(crate) fn start_step(&self) -> u64 {
        self.state.step
    }

    fn save(&mut self, obs: &mut dyn Observer) -> Result<()> {
        let files = self.plan.files;
        let Some(dir) = files.checkpoint_dir.as_ref().filter(|_| self.parallel.writes()) else { return Ok(()) };
        if self.last_checkpoint.as_ref().is_some_and(|p| *p == super::checkpoint::checkpoint_path(dir, self.state.step)) {
            return Ok(());
        }
        let path = save_checkpoint(dir, &self.params, &self.opt, &self.model_config, &self.state, files.keep_last)?;
        obs.checkpoint(&path);
        self.last_checkpoint = Some(path);
        Ok(())
    }

    /// Run to the end (or to `control.stop_at_step`, or until `control.stop` is raised).
    /// `loss` computes the loss of the step `state.step` (batch `state.batch_in_epoch` of
    /// `state.epoch`); `after_epoch` may evaluate. In a group, an error ends the group.
    pub(crate) fn run(
        mut self,
        obs: &mut dyn Observer,
        loss: impl FnMut(&TrainState) -> Result<StepLoss>,
        after_epoch: impl FnMut(u64) -> Result<Option<Evaluation>>,
    ) -> Result<Summary> {
        self.run_steps(obs, loss, after_epoch).map_err(|e| self.parallel.fail(e))
    }

    fn run_steps(
        &mut self,
        obs: &mut dyn Observer,
        mut loss: impl FnMut(&TrainState) -> Result<StepLoss>,
        mut after_epoch: impl FnMut(u64) -> Result<Option<Evaluation>>,
    ) -> Result<Summary> {
        let files = self.plan.files;
        // Only member 0 writes the metrics.
        let metrics = files.metrics.as_ref().filter(|_| self.parallel.writes());
        let total = self.plan.total_steps;
        let end = self.control.stop_at_step.map_or(total, |s| s.min(total));
        obs.start(self.state.step, total);
        let mut summary = Summary::default();
        while self.state.step < end {
            let stop = self.control.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
            if self.parallel.stop_requested(stop)? {
                summary.interrupted = true;
                obs.warn(&format!("interrupted at step {}; saving a checkpoint", self.state.step));
                break;
            }
            let m = self.step(obs, &mut loss)?;
            summary.skipped += u64::from(m.skipped);
            if !m.skipped {
                summary.final_loss = Some(m.loss);
            }
            if let Some(path) = metrics {
                append_jsonl(path, &m)?;
            }
            obs.step(&m, total);
            summary.history.push(m);
            if self.state.batch_in_epoch == 0 {
                if let Some(e) = after_epoch(self.state.epoch - 1)? {
                    if let Some(path) = metrics {
                        append_jsonl(path, &e)?;
                    }
                    obs.eval(&e);
                    summary.evals.push(e);
                }
            }
            if files.checkpoint_every > 0 && self.state.step.is_multiple_of(files.checkpoint_every) {
                self.save(obs)?;
            }
        }
        self.save(obs)?;
        summary.steps = self.state.step;
        summary.checkpoint = self.last_checkpoint.clone();
        if let Some(png) = files.plot.as_ref().filter(|_| self.parallel.writes()) {
            let (steps, evals) = match metrics {
                Some(path) if self.state.step > summary.history.len() as u64 => super::read_metrics(path)?,
                _ => (summary.history.clone(), summary.evals.clone()),
            };
            plot_curves(png, &format!("{} loss", self.plan.kind), &steps, &evals)?;
        }
        obs.finish();
        Ok(summary)
    }

    /// One step: forward, skip on a non-finite loss or gradient (leaving the parameters and
    /// buffers as they were), clip, update.
    fn step(&mut self, obs: &mut dyn Observer, loss: &mut impl FnMut(&TrainState) -> Result<StepLoss>) -> Result<StepMetrics> {
        let started = Instant::now();
        let step = self.state.step;
        let lr = self.plan.schedule.at(step);
        // Buffers the forward may move (BatchNorm's running statistics), to put back if the
        // step is skipped: `set` replaces a value, so these handles are the old values.
        let buffers: Vec<(&Param, Tensor, u64)> = self.params.iter().filter(|p| !p.is_trainable()).map(|p| (p, p.tensor(), p.version())).collect();
        let StepLoss { loss: loss_t, samples, terms, mut parts } = loss(&self.state)?;
        let (value, samples, share) = self.parallel.combine(loss_t.to_scalar()?, samples, terms)?;
        let mut grad_norm = None;
        let mut problem = (!value.is_finite()).then(|| format!("non-finite loss {value}"));
        if problem.is_none() {
            let (grads, comm) = self.parallel.backward(&loss_t, share)?;
            if let Some(comm) = comm {
                parts.extend([("all_reduce_s", comm.all_reduce), ("all_reduce_exposed_s", comm.exposed)]);
            }
            match global_norm(&grads, &self.trainable) {
                Ok(norm) => {
                    grad_norm = Some(norm);
                    // The clip is applied inside AdamW's update, not by scaling every gradient first.
                    let scale = self.plan.clip_grad.map_or(Ok(1.0), |max| clip_factor(norm, max))?;
                    self.opt.step_scaled(&grads, lr, scale)?;
                }
                Err(Error::NonFinite(what)) => problem = Some(format!("non-finite value in {what}")),
                Err(e) => return Err(e),
            }
        }
        self.state.step += 1;
        let per_epoch = self.plan.steps_per_epoch;
        (self.state.epoch, self.state.batch_in_epoch) = (self.state.step / per_epoch, self.state.step % per_epoch);
        if let Some(what) = &problem {
            for (p, old, version) in buffers {
                if p.version() != version {
                    p.set(old)?;
                }
            }
            self.state.bad_streak += 1;
            obs.warn(&format!("step {step}: {what}; step skipped (no update)"));
            if self.state.bad_streak >= self.plan.max_bad_steps {
                let last = self.last_checkpoint.as_ref().map_or("none written".to_string(), |p| p.display().to_string());
                return Err(Error::NonFinite(format!(
                    "the training loss: {} bad steps in a row (up to step {step}, limit max_bad_steps = {}); stopped, last good checkpoint: {last}",
                    self.state.bad_streak, self.plan.max_bad_steps
                )));
            }
        } else {
            self.state.bad_streak = 0;
        }
        let secs = started.elapsed().as_secs_f64();
        Ok(StepMetrics {
            step,
            epoch: step / per_epoch,
            loss: value,
            lr,
            grad_norm,
            samples_per_sec: samples as f64 / secs.max(1e-9),
            skipped: problem.is_some(),
            parts: parts.into_iter().filter(|(_, v)| v.is_finite()).map(|(k, v)| (k.to_string(), v)).collect(),
        })
    }
}

