//! MIM pretraining: tokenizer view → visual tokens (no gradient), blockwise masks, the
//! encoder with mask tokens, `lm_head` on the masked positions, cross-entropy.

use super::data::{Batches, PretrainData};
use super::groups::param_groups;
use super::{Observer, PretrainConfig, RunControl, Runner, StepLoss, Summary};
use crate::data::LoaderConfig;
use crate::masker::{BlockwiseMasker, Mask, MaskedPatches, Masker};
use crate::model::{BeitForMaskedImageModeling, Mode};
use crate::tokenizer::Tokenizer;
use crate::BeitConfig;
use beit_engine::nn::Module;
use beit_engine::rng::{mix64, Rng};
use beit_engine::{Error, Result, Tensor};

/// `base` set up for pretraining with `cfg`: the MIM head, a mask token, one shared
/// relative position bias, `cfg`'s layer scale and drop path.
pub fn pretrain_model_config(base: &BeitConfig, cfg: &PretrainConfig) -> BeitConfig {
    BeitConfig {
        architectures: vec!["BeitForMaskedImageModeling".into()],
        use_mask_token: true,
        use_shared_relative_position_bias: true,
        use_relative_position_bias: false,
        layer_scale_init_value: cfg.layer_scale,
        drop_path_rate: cfg.train.drop_path,
        ..base.clone()
    }
}

/// The seed of step `step`'s drop path; sample `i`'s mask uses [`sample_seed`].
fn step_seed(seed: u64, step: u64) -> u64 {
    mix64(seed ^ mix64(step.wrapping_add(0x5EED)))
}

fn sample_seed(seed: u64, step: u64, i: usize) -> u64 {
    mix64(step_seed(seed, step) ^ mix64(i as u64 + 1))
}

/// Visual tokens `[B, N]` of a tokenizer view, checked against the model's `patches`.
fn tokens(tokenizer: &dyn Tokenizer, view: &Tensor, patches: usize) -> Result<Tensor> {
    let t = tokenizer.tokenize(view)?;
    let per_image = t.numel() / t.shape()[0].max(1);
    if per_image != patches {
        return Err(Error::invalid(
            "tokenizer",
            format!("{:?} token ids for a model with {patches} patches per image: the tokenizer view must match the patch grid", &t.shape()[1..]),
        ));
    }
    t.reshape(&[t.shape()[0], patches])
}

/// Pretrain `model` on `data` with targets from `tokenizer`. Returns when the run ends,
/// is interrupted, or reaches `control.stop_at_step`; a checkpoint is written then (and
/// every `checkpoint_every` steps) when `checkpoint_dir` is set.
pub fn pretrain(
    model: &BeitForMaskedImageModeling,
    tokenizer: &dyn Tokenizer,
    data: &PretrainData,
    cfg: &PretrainConfig,
    control: &RunControl,
    obs: &mut dyn Observer,
) -> Result<Summary> {
    cfg.train.validate()?;
    let c = model.beit.config().clone();
    let grid = c.grid();
    let patches = grid.0 * grid.1;
    if !(cfg.mask_ratio > 0.0 && cfg.mask_ratio <= 1.0) {
        return Err(Error::invalid("pretrain config", format!("`mask_ratio` {} not in (0, 1]", cfg.mask_ratio)));
    }
    let target = ((patches as f64 * cfg.mask_ratio).round() as usize).clamp(1, patches);
    let masker = BlockwiseMasker::new(grid, target, cfg.mask_min_patches.min(target), None, 0.3)?;
    let tc = &cfg.train;
    let groups = param_groups(model.trainable_params(), c.num_hidden_layers, 1.0, tc.weight_decay);
    let runner = Runner::new(tc.plan("pretrain", data.len())?, &c, model.params(), groups, control)?;
    let device = model.params()[0].device();
    let shard = control.shard()?;
    // In memory, the targets do not change between epochs: tokenize once (i64 ids, batched
    // beside the images).
    let memory_tokens = match data {
        PretrainData::Memory { tokenizer_view, .. } => {
            let n = tokenizer_view.shape()[0];
            let chunks = (0..n).step_by(tc.batch_size).map(|s| tokens(tokenizer, &tokenizer_view.narrow(0, s, tc.batch_size.min(n - s))?, patches));
            let chunks = chunks.collect::<Result<Vec<_>>>()?;
            Some(Tensor::cat(&chunks.iter().collect::<Vec<_>>(), 0)?)
        }
        PretrainData::Folder { transform, .. } => {
            if transform.size as usize != c.image_size {
                return Err(Error::invalid("pretrain data", format!("model view of {} px for a model of {} px", transform.size, c.image_size)));
            }
            None
        }
    };
    let mut batches = match (data, &memory_tokens) {
        (PretrainData::Memory { images, .. }, Some(t)) => Batches::memory(vec![images, t], None, tc.batch_size, tc.seed, shard),
        (PretrainData::Folder { folder, transform }, _) => {
            let sizes = vec![transform.size as usize, transform.tokenizer_size as usize];
            let config = LoaderConfig { epochs: tc.epochs, seed: tc.seed, skip: runner.start_step(), shard, ..LoaderConfig::new(tc.batch_size) };
            Batches::folder(folder, transform.clone(), sizes, config, &device)
        }
        (PretrainData::Memory { .. }, None) => unreachable!("memory data always has tokens"),
    };
    let step_loss = |state: &super::TrainState| -> Result<StepLoss> {
        let batch = batches.next(state)?;
        let b = batch.views[0].shape()[0];
        let ids = if memory_tokens.is_some() { batch.views[1].clone() } else { tokens(tokenizer, &batch.views[1], patches)? };
        // Masks and drop path of the whole batch's samples `first..first + b`.
        let first = shard.part(tc.batch_size).start;
        let masks: Vec<Mask> = (0..b).map(|i| masker.sample(&mut Rng::new(sample_seed(tc.seed, state.step, first + i)))).collect();
        let masked = MaskedPatches::from_masks(&masks, &device)?;
        // The targets: the ids of the masked patches, picked on the device.
        let labels = ids.reshape(&[b * patches])?.index_select(0, &masked.rows)?;
        let loss = model.loss(&batch.views[0], &masked, &labels, Mode::train(step_seed(tc.seed, state.step)).from_sample(first))?;
        Ok(StepLoss { terms: labels.numel(), ..StepLoss::new(loss, b) })
    };
    runner.run(obs, step_loss, |_| Ok(None))
}
