//! Training and evaluating a [`Dvae`]: AdamW with warmup + cosine, the Gumbel temperature
//! annealed exponentially over the run, through the training loop every run shares
//! (checkpoints, resume, non-finite losses skipped); evaluation reports the reconstruction
//! error next to the best constant image's, and codebook usage.

use super::{unmap_pixels, Dvae, GroupPart, LossWeights, Tokenizer};
use crate::train::{Observer, Plan, RunControl, RunFiles, Runner, StepLoss, Summary, TrainState};
use beit_engine::nn::Module;
use beit_engine::optim::{AdamWConfig, ParamGroup, Schedule};
use beit_engine::rng::mix64;
use beit_engine::{no_grad, Error, Result, Tensor};
use serde::{Deserialize, Serialize};

/// How [`train_dvae`] trains. Every field has a default tuned on the built-in digits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DvaeTrainConfig {
    /// Optimiser steps.
    pub steps: u64,
    /// Images per step.
    pub batch: usize,
    /// Peak learning rate (5% linear warmup, then cosine to 1% of it).
    pub lr: f64,
    /// AdamW weight decay on the weights (not the biases).
    pub weight_decay: f64,
    /// Weight of each position's KL divergence to the uniform prior.
    pub kl_weight: f64,
    /// Weight of the batch-mean posterior's KL divergence to uniform (codebook usage).
    pub usage_weight: f64,
    /// Gumbel-softmax temperature at the first step ...
    pub temperature_start: f64,
    /// ... and at the last (exponential in between).
    pub temperature_end: f64,
    /// Global gradient-norm clip.
    pub clip_grad: f64,
    /// Non-finite losses in a row that stop the run.
    pub max_bad_steps: u32,
    /// Seed of the Gumbel noise.
    pub seed: u64,
}

impl Default for DvaeTrainConfig {
    fn default() -> Self {
        DvaeTrainConfig {
            steps: 400,
            batch: 64,
            lr: 2e-3,
            weight_decay: 1e-4,
            kl_weight: 1e-3,
            usage_weight: 0.1,
            temperature_start: 1.0,
            temperature_end: 1.0 / 16.0,
            clip_grad: 1.0,
            max_bad_steps: 5,
            seed: 0,
        }
    }
}

impl DvaeTrainConfig {
    /// Check ranges: positive steps, batch, learning rate and temperatures.
    pub fn validate(&self) -> Result<()> {
        let c = self;
        let ok = c.steps > 0
            && c.batch > 0
            && c.lr > 0.0
            && c.weight_decay >= 0.0
            && c.kl_weight >= 0.0
            && c.usage_weight >= 0.0
            && c.temperature_start > 0.0
            && c.temperature_end > 0.0
            && c.clip_grad > 0.0;
        if ok && [c.lr, c.weight_decay, c.kl_weight, c.usage_weight, c.temperature_start, c.temperature_end, c.clip_grad].iter().all(|v| v.is_finite()) {
            Ok(())
        } else {
            Err(Error::invalid("dvae training", format!("steps, batch, lr, temperatures and clip must be positive and finite: {c:?}")))
        }
    }

    /// The Gumbel temperature at 0-based `step`.
    pub fn temperature(&self, step: u64) -> f64 {
        let t = if self.steps > 1 { step.min(self.steps - 1) as f64 / (self.steps - 1) as f64 } else { 1.0 };
        self.temperature_start * (self.temperature_end / self.temperature_start).powf(t)
    }

    /// The learning-rate schedule.
    pub fn schedule(&self) -> Schedule {
        Schedule::WarmupCosine { base: self.lr, final_value: self.lr * 0.01, warmup_start: 0.0, warmup_steps: self.steps / 20, total_steps: self.steps }
    }
}

/// Train `model` for `cfg.steps` steps through the loop every run shares (checkpoints with
/// the [`super::DvaeConfig`], exact resume, non-finite steps skipped up to
/// `cfg.max_bad_steps` in a row, metrics with the step's `recon`, `kl`, `usage` and
/// `temperature`, Ctrl-C), writing what `files` says. `batch(state)` gives the mapped pixels
/// `[B, C, S, S]` of step `state.step` and must depend only on it (and the seed) for a
/// resumed run to see the same data; `samples` is the training set's size, which sets the
/// epoch the metrics report. In a data-parallel group (`control.group`) every member gets
/// the whole batch from `batch` and trains on its part of it, as [`Dvae::loss_in`] (so
/// each member also draws the whole batch's Gumbel noise).
pub fn train_dvae(
    model: &Dvae,
    cfg: &DvaeTrainConfig,
    files: &RunFiles,
    samples: usize,
    mut batch: impl FnMut(&TrainState) -> Result<Tensor>,
    control: &RunControl,
    obs: &mut dyn Observer,
) -> Result<Summary> {
    cfg.validate()?;
    let m = model.config();
    let input = crate::limits::f32_bytes(&[cfg.batch, m.input_channels, m.image_size, m.image_size]);
    crate::limits::check_model_bytes("dvae training batch", input, &format!("a batch of {} images of {}²", cfg.batch, m.image_size))?;
    let (decay, no_decay): (Vec<_>, Vec<_>) = model.trainable_params().into_iter().partition(|p| p.shape().len() > 1);
    let groups = vec![ParamGroup::new(decay).weight_decay(cfg.weight_decay), ParamGroup::new(no_decay).weight_decay(0.0)];
    let plan = Plan {
        kind: "dvae",
        seed: cfg.seed,
        batch: cfg.batch,
        steps_per_epoch: (samples / cfg.batch).max(1) as u64,
        total_steps: cfg.steps,
        schedule: cfg.schedule(),
        adam: AdamWConfig::default(),
        clip_grad: Some(cfg.clip_grad),
        max_bad_steps: cfg.max_bad_steps,
        files,
    };
    let runner = Runner::new(plan, m, model.params(), groups, control)?;
    let weights = LossWeights { kl: cfg.kl_weight, usage: cfg.usage_weight };
    let (group, shard) = (runner.group(), control.shard()?);
    let step_loss = |state: &TrainState| -> Result<StepLoss> {
        let (pixels, temperature, seed) = (batch(state)?, cfg.temperature(state.step), mix64(cfg.seed ^ mix64(state.step)));
        let (loss, samples) = match &group {
            None => (model.loss(&pixels, temperature, weights, seed)?, pixels.shape()[0]),
            Some(group) => {
                // Every member has the whole batch (a folder's may be short of unreadable
                // images: the parts need not be equal, but none may be empty).
                let whole = pixels.shape()[0];
                let mine = shard.part(whole);
                if mine.is_empty() {
                    return Err(Error::invalid("dvae training", format!("step {}: a batch of {whole} images cannot be split over {} members", state.step, shard.world())));
                }
                let part = GroupPart { group, first: mine.start, batch: whole };
                (model.loss_in(&pixels.narrow(0, mine.start, mine.len())?, temperature, weights, seed, part)?, mine.len())
            }
        };
        let parts = vec![("recon", loss.recon), ("kl", loss.kl), ("usage", loss.usage), ("temperature", temperature)];
        Ok(StepLoss { loss: loss.total, samples, terms: samples, parts })
    };
    runner.run(obs, step_loss, |_| Ok(None))
}

/// How well a [`Dvae`] tokenizes and reconstructs held-out images. Errors are mean squared
/// errors in `[0, 1]` pixels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DvaeEval {
    /// Images evaluated.
    pub images: usize,
    /// Error of decoding the argmax tokens.
    pub recon_mse: f64,
    /// Error of the mean held-out image (the best constant prediction).
    pub mean_image_mse: f64,
    /// `exp` of the entropy of the token histogram.
    pub perplexity: f64,
    /// Distinct tokens used.
    pub codes_used: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Token histogram (length `vocab_size`).
    #[serde(skip)]
    pub histogram: Vec<u64>,
}

impl DvaeEval {
    /// Share of the vocabulary used.
    pub fn used_share(&self) -> f64 {
        self.codes_used as f64 / self.vocab_size as f64
    }
}

/// Evaluate `model` on batches of mapped pixels.
pub fn evaluate_dvae(model: &Dvae, batches: impl IntoIterator<Item = Result<Tensor>>) -> Result<DvaeEval> {
    let _guard = no_grad();
    let vocab = model.vocab_size();
    let mut histogram = vec![0u64; vocab];
    let (mut images, mut sq_err) = (0usize, 0.0);
    let (mut sum, mut sum_sq) = (Vec::<f64>::new(), Vec::<f64>::new());
    for pixels in batches {
        let pixels = pixels?;
        let ids = model.tokenize(&pixels)?;
        for id in ids.to_vec::<i64>()? {
            histogram[id as usize] += 1;
        }
        let truth = unmap_pixels(&pixels)?;
        sq_err += unmap_pixels(&model.decode_ids(&ids)?)?.sub(&truth)?.sum_squares_all()?.to_scalar()?;
        let b = pixels.shape()[0];
        let truth = truth.to_vec_f64()?;
        let per = truth.len() / b;
        sum.resize(per, 0.0);
        sum_sq.resize(per, 0.0);
        for img in truth.chunks_exact(per) {
            for (j, &v) in img.iter().enumerate() {
                sum[j] += v;
                sum_sq[j] += v * v;
            }
        }
        images += b;
    }
    if images == 0 {
        return Err(Error::invalid("dvae evaluation", "no images to evaluate"));
    }
    let n = images as f64;
    let values = n * sum.len() as f64;
    let mean_image_mse = sum.iter().zip(&sum_sq).map(|(s, q)| q - s * s / n).sum::<f64>() / values;
    let (perplexity, codes_used) = codebook_usage(&histogram);
    Ok(DvaeEval {
        images,
        recon_mse: sq_err / values,
        mean_image_mse,
        perplexity,
        codes_used,
        vocab_size: vocab,
        histogram,
    })
}

/// Perplexity (`exp` of the entropy) of a token histogram, and the number of tokens used.
pub fn codebook_usage(histogram: &[u64]) -> (f64, usize) {
    let total: u64 = histogram.iter().sum();
    let entropy: f64 = histogram.iter().filter(|&&c| c > 0).map(|&c| c as f64 / total as f64).map(|p| -p * p.ln()).sum();
    (entropy.exp(), histogram.iter().filter(|&&c| c > 0).count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Digits;
    use crate::tokenizer::DvaeConfig;
    use crate::train::Quiet;
    use beit_engine::nn::VarBuilder;
    use beit_engine::DType;

    #[test]
    fn codebook_usage_is_the_histogram_perplexity() {
        let (p, used) = codebook_usage(&[5, 0, 5, 5, 5, 0]);
        assert!((p - 4.0).abs() < 1e-12 && used == 4, "{p} {used}");
        // Two codes at 3:1: exp(−¾ln¾ − ¼ln¼).
        let (p, _) = codebook_usage(&[3, 1]);
        assert!((p - (-(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln())).exp()).abs() < 1e-12);
    }

    #[test]
    fn the_temperature_anneals_exponentially() {
        let c = DvaeTrainConfig { steps: 5, temperature_start: 1.0, temperature_end: 1.0 / 16.0, ..DvaeTrainConfig::default() };
        let t: Vec<f64> = (0..6).map(|s| c.temperature(s)).collect();
        for (got, want) in t.iter().zip([1.0, 0.5, 0.25, 0.125, 0.0625, 0.0625]) {
            assert!((got - want).abs() < 1e-12, "{t:?}");
        }
        assert!(DvaeTrainConfig { batch: 0, ..c.clone() }.validate().is_err());
        assert!(DvaeTrainConfig { temperature_end: f64::NAN, ..c }.validate().unwrap_err().to_string().contains("temperature"));
    }

    /// A short run on the digits: held-out reconstructions beat the mean image and many codes
    /// are in use. (The full-size run, `beit tokenizer train`, is reported in the notes.)
    #[test]
    fn learns_the_digits() {
        let dev = beit_backend_cpu::cpu();
        let digits = Digits::load().unwrap();
        let (train, test) = digits.split();
        let config = DvaeConfig { hidden: 32, vocab_size: 128, ..DvaeConfig::digits() };
        let model = Dvae::new(&VarBuilder::new(&dev, DType::F32, 1), config).unwrap();
        let cfg = DvaeTrainConfig { steps: 120, batch: 32, lr: 4e-3, ..DvaeTrainConfig::default() };
        let batch = |s: &TrainState| digits.tokenizer_batch(&train[(s.step as usize * 32) % (train.len() - 32)..][..32], 16, &dev);
        let summary = train_dvae(&model, &cfg, &RunFiles::default(), train.len(), batch, &RunControl::default(), &mut Quiet).unwrap();
        assert_eq!((summary.steps, summary.skipped), (120, 0));
        assert!(summary.history.iter().all(|m| m.parts.len() == 4), "recon, kl, usage and temperature logged");
        assert_eq!(summary.history[119].parts["temperature"], cfg.temperature(119));
        let eval = evaluate_dvae(&model, test.chunks(100).map(|c| digits.tokenizer_batch(c, 16, &dev))).unwrap();
        assert_eq!(eval.images, 297);
        assert!(eval.recon_mse < 0.5 * eval.mean_image_mse, "{eval:?}");
        assert!(eval.codes_used >= 32, "{eval:?}");
        assert!(eval.perplexity > 8.0 && eval.perplexity <= eval.codes_used as f64, "{eval:?}");
    }

    #[test]
    fn non_finite_losses_skip_then_stop() {
        let dev = beit_backend_cpu::cpu();
        let config = DvaeConfig { hidden: 8, vocab_size: 16, ..DvaeConfig::digits() };
        let model = Dvae::new(&VarBuilder::new(&dev, DType::F32, 1), config).unwrap();
        let before = model.state_dict().get("encoder.input.weight").unwrap().to_vec::<f32>().unwrap();
        let cfg = DvaeTrainConfig { max_bad_steps: 3, ..DvaeTrainConfig::default() };
        let poisoned = |_: &TrainState| Tensor::full(f64::NAN, &[2, 3, 16, 16], DType::F32, &dev);
        let control = RunControl { stop_at_step: Some(2), ..RunControl::default() };
        let s = train_dvae(&model, &cfg, &RunFiles::default(), 64, poisoned, &control, &mut Quiet).unwrap();
        assert_eq!(s.skipped, 2);
        assert!(s.history.iter().all(|m| m.skipped && !m.parts.contains_key("recon")), "non-finite parts are left out: {:?}", s.history);
        let after = model.state_dict().get("encoder.input.weight").unwrap().to_vec::<f32>().unwrap();
        assert_eq!(before, after, "skipped steps leave the weights alone");
        let err = train_dvae(&model, &cfg, &RunFiles::default(), 64, poisoned, &RunControl::default(), &mut Quiet).unwrap_err().to_string();
        assert!(err.contains("3 bad steps in a row"), "{err}");
    }
}
