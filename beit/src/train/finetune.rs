//! Fine-tuning for classification: a classifier built from a pretrained encoder (mean
//! pooling, per-layer relative position bias copied from the shared table), layer-wise
//! learning-rate decay, label smoothing; and evaluation with top-1/top-5 and a confusion
//! matrix.

use super::data::{Batches, ClassifyData, ClassifyTransform};
use super::groups::param_groups;
use super::{EvalMetrics, Evaluation, FinetuneConfig, Observer, RunControl, Runner, StepLoss, Summary, TrainState};
use crate::data::{LoaderConfig, Shard};
use crate::model::{BeitForImageClassification, Mode};
use crate::{Beit, BeitConfig};
use beit_engine::collective::Collective;
use beit_engine::io::StateDict;
use beit_engine::nn::{load_params, Module};
use beit_engine::rng::mix64;
use beit_engine::{Device, Error, Result, Tensor};
use std::sync::Arc;

const SHARED_TABLE: &str = "beit.encoder.relative_position_bias.relative_position_bias_table";

/// A classifier for `classes` initialised from a pretrained encoder: `weights` are the
/// pretrained model's tensors (Hugging Face names, with or without `beit.`; the MIM head's
/// are ignored) and `pretrained` its config. The classifier uses mean pooling and one
/// relative position bias per layer, each a copy of the shared table when the pretrained
/// model has one (as unilm and Hugging Face convert checkpoints); `drop_path` is its
/// stochastic depth. The head and the pooler's LayerNorm are freshly initialised from `seed`.
pub fn classifier_from_pretrained(
    weights: StateDict,
    pretrained: &BeitConfig,
    classes: &[String],
    drop_path: f64,
    seed: u64,
    device: &Device,
) -> Result<BeitForImageClassification> {
    if classes.is_empty() {
        return Err(Error::invalid("fine-tuning", "no classes"));
    }
    let uses_relpos = pretrained.use_relative_position_bias || pretrained.use_shared_relative_position_bias;
    let config = BeitConfig {
        architectures: vec!["BeitForImageClassification".into()],
        use_mask_token: false,
        use_mean_pooling: true,
        use_relative_position_bias: uses_relpos,
        use_shared_relative_position_bias: false,
        drop_path_rate: drop_path,
        num_labels: Some(classes.len()),
        id2label: classes.iter().enumerate().map(|(i, c)| (i.to_string(), c.clone())).collect(),
        ..pretrained.clone()
    };
    let Beit::ImageClassification(model) = Beit::new(&config, device, seed)? else {
        unreachable!("the config names BeitForImageClassification")
    };
    let source = weights.source().to_string();
    let prefixed = weights.names().any(|n| n.starts_with("beit."));
    // A classification checkpoint's own head (of any class count) is not carried over.
    let mut sd = weights.map_names(|n| {
        let n = if prefixed || !n.starts_with("embeddings.") && !n.starts_with("encoder.") { n.to_string() } else { format!("beit.{n}") };
        (!n.starts_with("classifier.")).then_some(n)
    })?;
    if sd.contains(SHARED_TABLE) {
        let table = sd.get(SHARED_TABLE)?;
        for p in model.params() {
            if p.name().starts_with("beit.encoder.layer.") && p.name().ends_with("relative_position_bias_table") {
                sd.insert(p.name(), table.clone());
            }
        }
    }
    let fresh = |n: &str| n.starts_with("classifier.") || n.starts_with("beit.pooler.");
    load_params(&model.params(), &sd, false)?.require(&source, fresh)?;
    Ok(model)
}

/// Fine-tune `model` on `train` with `cfg`, evaluating on `eval` after every epoch.
pub fn finetune(
    model: &BeitForImageClassification,
    train: &ClassifyData,
    eval: Option<&ClassifyData>,
    cfg: &FinetuneConfig,
    control: &RunControl,
    obs: &mut dyn Observer,
) -> Result<Summary> {
    cfg.train.validate()?;
    let c = model.beit.config().clone();
    let tc = &cfg.train;
    if train.classes().len() != c.num_labels() {
        return Err(Error::invalid("fine-tuning data", format!("{} classes for a head of {}", train.classes().len(), c.num_labels())));
    }
    if !((0.0..1.0).contains(&cfg.label_smoothing) && cfg.layer_decay > 0.0 && cfg.layer_decay <= 1.0) {
        return Err(Error::invalid("finetune config", "`label_smoothing` must be in [0, 1) and `layer_decay` in (0, 1]"));
    }
    let groups = param_groups(model.trainable_params(), c.num_hidden_layers, cfg.layer_decay, tc.weight_decay);
    let runner = Runner::new(tc.plan("finetune", train.len())?, &c, model.params(), groups, control)?;
    let device = model.params()[0].device();
    let shard = control.shard()?;
    let mut batches = match train {
        ClassifyData::Memory { images, labels, .. } => Batches::memory(vec![images], Some(labels), tc.batch_size, tc.seed, shard),
        ClassifyData::Folder { folder, size } => {
            let t = ClassifyTransform { size: *size, train: true };
            let config = LoaderConfig { epochs: tc.epochs, seed: tc.seed, skip: runner.start_step(), shard, ..LoaderConfig::new(tc.batch_size) };
            Batches::folder(folder, t, vec![*size as usize], config, &device)
        }
    };
    let step_loss = |state: &TrainState| -> Result<StepLoss> {
        let b = batches.next(state)?;
        let labels = Tensor::from_vec(b.labels.clone(), &[b.labels.len()], &device)?;
        let seed = mix64(tc.seed ^ mix64(state.step.wrapping_add(0xF17E)));
        let (logits, _) = model.forward(&b.views[0], None, Mode::train(seed).from_sample(shard.part(tc.batch_size).start))?;
        Ok(StepLoss::new(logits.cross_entropy(&labels, cfg.label_smoothing)?, b.labels.len()))
    };
    let group = runner.group();
    let after_epoch = |epoch: u64| -> Result<Option<Evaluation>> {
        let Some(data) = eval else { return Ok(None) };
        Ok(Some(Evaluation::Classification(EvalMetrics { epoch: Some(epoch), ..evaluate_over(model, data, tc.batch_size, group.as_ref())? })))
    };
    runner.run(obs, step_loss, after_epoch)
}

/// Accuracy of `model` on `data` in batches of `batch`: loss, top-1, top-5, confusion.
pub fn evaluate(model: &BeitForImageClassification, data: &ClassifyData, batch: usize) -> Result<EvalMetrics> {
    evaluate_over(model, data, batch, None)
}

/// [`evaluate`] by the members of a data-parallel `group`, each on its part of `data`:
/// every member gets the metrics of the whole.
pub fn evaluate_in(model: &BeitForImageClassification, data: &ClassifyData, batch: usize, group: &Arc<dyn Collective>) -> Result<EvalMetrics> {
    evaluate_over(model, data, batch, Some(group))
}

fn evaluate_over(model: &BeitForImageClassification, data: &ClassifyData, batch: usize, group: Option<&Arc<dyn Collective>>) -> Result<EvalMetrics> {
    let _guard = beit_engine::no_grad();
    let classes = model.beit.config().num_labels();
    if data.classes().len() != classes {
        return Err(Error::invalid("evaluation data", format!("{} classes for a head of {classes}", data.classes().len())));
    }
    let device = model.params()[0].device();
    let batch = batch.max(1);
    let mut m = EvalMetrics { confusion: vec![vec![0; classes]; classes], ..EvalMetrics::default() };
    let (mut loss_sum, mut top1, mut top5) = (0.0, 0u64, 0u64);
    let mut score = |images: &Tensor, labels: &[i64]| -> Result<()> {
        let (logits, _) = model.forward(images, None, Mode::eval())?;
        let targets = Tensor::from_vec(labels.to_vec(), &[labels.len()], &device)?;
        loss_sum += logits.cross_entropy(&targets, 0.0)?.to_scalar()? * labels.len() as f64;
        let k = classes.min(5);
        let (_, idx) = logits.topk(k)?;
        let idx: Vec<i64> = idx.to_vec()?;
        for (row, &y) in idx.chunks(k).zip(labels) {
            top1 += u64::from(row[0] == y);
            top5 += u64::from(row.contains(&y));
            m.confusion[y as usize][row[0] as usize] += 1;
        }
        m.samples += labels.len();
        Ok(())
    };
    let part = Shard::of(group.map(|g| &**g))?.part(data.len());
    match data {
        ClassifyData::Memory { images, labels, .. } => {
            for start in part.clone().step_by(batch) {
                let n = batch.min(part.end - start);
                score(&images.narrow(0, start, n)?, &labels[start..start + n])?;
            }
        }
        ClassifyData::Folder { folder, size } => {
            // One image a batch, from this member's part of the loader's order.
            let config = LoaderConfig { skip: part.start as u64, ..LoaderConfig::new(1) };
            let mut batches = Batches::folder(folder, ClassifyTransform { size: *size, train: false }, vec![*size as usize], config, &device);
            let mut state = TrainState { kind: "eval".into(), step: 0, epoch: 0, batch_in_epoch: 0, seed: 0, bad_streak: 0 };
            let (mut images, mut labels) = (Vec::new(), Vec::new());
            for i in part {
                state.step = i as u64;
                let Ok(b) = batches.next(&state) else { continue };
                images.push(b.views[0].clone());
                labels.extend(b.labels);
                if images.len() == batch {
                    score(&Tensor::cat(&images.iter().collect::<Vec<_>>(), 0)?, &labels)?;
                    (images, labels) = (Vec::new(), Vec::new());
                }
            }
            if !images.is_empty() {
                score(&Tensor::cat(&images.iter().collect::<Vec<_>>(), 0)?, &labels)?;
            }
        }
    }
    if let Some(g) = group {
        let mut sums = vec![loss_sum, top1 as f64, top5 as f64, m.samples as f64];
        sums.extend(m.confusion.iter().flatten().map(|&n| n as f64));
        let sums = g.all_reduce_sum(&Tensor::from_vec(sums, &[4 + classes * classes], &device)?)?.to_vec::<f64>()?;
        (loss_sum, top1, top5, m.samples) = (sums[0], sums[1] as u64, sums[2] as u64, sums[3] as usize);
        for (n, &sum) in m.confusion.iter_mut().flatten().zip(&sums[4..]) {
            *n = sum as u64;
        }
    }
    if m.samples == 0 {
        return Err(Error::invalid("evaluation data", "no image could be evaluated"));
    }
    let n = m.samples as f64;
    (m.loss, m.top1, m.top5) = (loss_sum / n, top1 as f64 / n, top5 as f64 / n);
    Ok(m)
}
