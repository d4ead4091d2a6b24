//! Segmentation training and evaluation as a library: [`SegMetrics`] (mIoU, pixel
//! accuracy from a confusion matrix), [`finetune`] (the shared training loop with BEiT's
//! parameter groups) and [`evaluate`] over a [`SegDataset`] (in a data-parallel group,
//! [`evaluate_in`]).

use crate::data::{seg_batch, SegDataset, Shard};
use crate::model::{BeitForSemanticSegmentation, Mode};
use crate::train::{param_groups, EpochPicks, Evaluation, FinetuneConfig, Observer, RunControl, Runner, SegEvalMetrics, StepLoss, Summary, TrainState};
use beit_engine::collective::Collective;
use beit_engine::nn::Module;
use beit_engine::rng::mix64;
use beit_engine::{CmpOp, DType, Device, Error, Result, Tensor};
use std::sync::Arc;

/// A confusion matrix over `classes`, skipping one ignore label.
#[derive(Clone, Debug, PartialEq)]
pub struct SegMetrics {
    classes: usize,
    ignore: i64,
    /// `confusion[truth · classes + predicted]`.
    confusion: Vec<u64>,
}

impl SegMetrics {
    /// An empty matrix; pixels labelled `ignore` are skipped.
    pub fn new(classes: usize, ignore: i64) -> Self {
        SegMetrics { classes, ignore, confusion: vec![0; classes * classes] }
    }

    /// Count predictions against labels (same length); a label or prediction outside
    /// `0..classes` (other than `ignore`) is an error.
    pub fn update(&mut self, predicted: &[i64], labels: &[i64]) -> Result<()> {
        if predicted.len() != labels.len() {
            return Err(Error::invalid("SegMetrics", format!("{} predictions for {} labels", predicted.len(), labels.len())));
        }
        let c = self.classes as i64;
        for (&p, &t) in predicted.iter().zip(labels) {
            if t == self.ignore {
                continue;
            }
            if !(0..c).contains(&t) || !(0..c).contains(&p) {
                return Err(Error::invalid("SegMetrics", format!("label {t} or prediction {p} outside 0..{c}")));
            }
            self.confusion[(t * c + p) as usize] += 1;
        }
        Ok(())
    }

    fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.confusion[truth * self.classes + predicted]
    }

    /// IoU per class, `None` for a class absent from both labels and predictions.
    pub fn per_class_iou(&self) -> Vec<Option<f64>> {
        (0..self.classes)
            .map(|k| {
                let tp = self.count(k, k);
                let truth: u64 = (0..self.classes).map(|j| self.count(k, j)).sum();
                let predicted: u64 = (0..self.classes).map(|j| self.count(j, k)).sum();
                let union = truth + predicted - tp;
                (union > 0).then(|| tp as f64 / union as f64)
            })
            .collect()
    }

    /// Mean IoU over the classes that occur (labels or predictions), as mmseg's nanmean.
    pub fn mean_iou(&self) -> f64 {
        let ious: Vec<f64> = self.per_class_iou().into_iter().flatten().collect();
        if ious.is_empty() {
            f64::NAN
        } else {
            ious.iter().sum::<f64>() / ious.len() as f64
        }
    }

    /// Fraction of counted pixels predicted right.
    pub fn pixel_accuracy(&self) -> f64 {
        let total: u64 = self.confusion.iter().sum();
        let right: u64 = (0..self.classes).map(|k| self.count(k, k)).sum();
        right as f64 / total as f64
    }

    /// Metrics of always predicting the most frequent labelled class (the trivial baseline).
    pub fn majority_baseline(&self) -> SegMetrics {
        let c = self.classes;
        let per_class: Vec<u64> = (0..c).map(|k| (0..c).map(|j| self.count(k, j)).sum()).collect();
        let major = (0..c).max_by_key(|&k| per_class[k]).unwrap_or(0);
        let mut out = SegMetrics::new(c, self.ignore);
        for (k, &n) in per_class.iter().enumerate() {
            out.confusion[k * c + major] = n;
        }
        out
    }
}

/// Fine-tune `model` on `train` with `cfg` through the loop every run shares
/// (checkpoints, exact resume, non-finite steps skipped, metrics, Ctrl-C), evaluating on
/// `val` after every epoch: BEiT's layer-wise lr decay and weight-decay exemptions
/// ([`crate::train::param_groups`]), the batches of each epoch a seeded shuffle of `train`,
/// drop path seeded by the step. `cfg.label_smoothing` does not apply to segmentation.
pub fn finetune(
    model: &BeitForSemanticSegmentation,
    train: &dyn SegDataset,
    val: Option<&dyn SegDataset>,
    cfg: &FinetuneConfig,
    control: &RunControl,
    obs: &mut dyn Observer,
) -> Result<Summary> {
    let c = model.config().clone();
    let tc = &cfg.train;
    if !(cfg.layer_decay > 0.0 && cfg.layer_decay <= 1.0) {
        return Err(Error::invalid("finetune config", "`layer_decay` must be in (0, 1]"));
    }
    for (what, ds) in [("training", Some(train)), ("validation", val)] {
        if let Some(ds) = ds.filter(|ds| ds.size() != c.image_size) {
            return Err(Error::invalid("segmentation data", format!("{what} images of {} px for a model of {} px", ds.size(), c.image_size)));
        }
    }
    let groups = param_groups(model.trainable_params(), c.num_hidden_layers, cfg.layer_decay, tc.weight_decay);
    let runner = Runner::new(tc.plan("segmentation", train.len())?, &c, model.params(), groups, control)?;
    let device = model.params()[0].device();
    let mut picks = EpochPicks::new(train.len(), tc.batch_size, tc.seed);
    let shard = control.shard()?;
    let group = runner.group();
    let step_loss = |state: &TrainState| -> Result<StepLoss> {
        let picks = picks.of(state);
        let mine = shard.part(picks.len());
        let (pixels, labels) = seg_batch(train, &picks[mine.clone()], &device)?;
        let mode = Mode::train(mix64(tc.seed ^ mix64(state.step.wrapping_add(0x5E6)))).from_sample(mine.start);
        let out = model.forward_in(&pixels, mode, group.as_ref())?;
        // The loss averages the labelled pixels (a group weighs members by them), counted
        // on the device.
        let ignore = Tensor::scalar(c.semantic_loss_ignore_index as f64, DType::I64, &device)?;
        let labelled = labels.compare(&ignore, CmpOp::Ne)?.to_dtype(DType::F32)?.sum_all()?.to_scalar()? as usize;
        Ok(StepLoss { terms: labelled, ..StepLoss::new(model.loss(&out, &labels)?, mine.len()) })
    };
    let after_epoch = |epoch: u64| -> Result<Option<Evaluation>> {
        let Some(val) = val else { return Ok(None) };
        let m = evaluate_over(model, val, tc.batch_size, &device, group.as_ref())?;
        Ok(Some(Evaluation::Segmentation(SegEvalMetrics { epoch: Some(epoch), mean_iou: m.mean_iou(), pixel_accuracy: m.pixel_accuracy(), samples: val.len() })))
    };
    runner.run(obs, step_loss, after_epoch)
}

/// Metrics of `model` (inference mode) over all of `ds`, in batches of `batch`; logits
/// are upsampled to the label size before the argmax.
pub fn evaluate(model: &BeitForSemanticSegmentation, ds: &dyn SegDataset, batch: usize, device: &Device) -> Result<SegMetrics> {
    evaluate_over(model, ds, batch, device, None)
}

/// [`evaluate`] by the members of a data-parallel `group`, each on its part of `ds`: every
/// member gets the metrics of the whole.
pub fn evaluate_in(model: &BeitForSemanticSegmentation, ds: &dyn SegDataset, batch: usize, device: &Device, group: &Arc<dyn Collective>) -> Result<SegMetrics> {
    evaluate_over(model, ds, batch, device, Some(group))
}

fn evaluate_over(model: &BeitForSemanticSegmentation, ds: &dyn SegDataset, batch: usize, device: &Device, group: Option<&Arc<dyn Collective>>) -> Result<SegMetrics> {
    let c = model.config();
    let mut metrics = SegMetrics::new(c.num_labels(), c.semantic_loss_ignore_index);
    let indices: Vec<usize> = Shard::of(group.map(|g| &**g))?.part(ds.len()).collect();
    for chunk in indices.chunks(batch.max(1)) {
        let (pixels, labels) = seg_batch(ds, chunk, device)?;
        let predicted = model.predict(&pixels)?;
        metrics.update(&predicted.to_vec::<i64>()?, &labels.to_vec::<i64>()?)?;
    }
    if let Some(g) = group {
        let counts: Vec<i64> = metrics.confusion.iter().map(|&n| n as i64).collect();
        let sums = g.all_reduce_sum(&Tensor::from_vec(counts, &[metrics.confusion.len()], device)?)?.to_vec::<i64>()?;
        metrics.confusion = sums.into_iter().map(|n| n as u64).collect();
    }
    Ok(metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-made 2x3 case with 3 classes and one ignored pixel:
    /// labels [0 0 1 / 1 2 255], predictions [0 1 1 / 1 1 0].
    #[test]
    fn miou_and_pixel_accuracy_by_hand() {
        let mut m = SegMetrics::new(3, 255);
        m.update(&[0, 1, 1, 1, 1, 0], &[0, 0, 1, 1, 2, 255]).unwrap();
        // class 0: tp 1, truth 2, predicted 1 → 1/2; class 1: tp 2, truth 2, predicted 4 → 2/4;
        // class 2: tp 0, truth 1, predicted 0 → 0.
        let iou = m.per_class_iou();
        assert_eq!(iou, vec![Some(0.5), Some(0.5), Some(0.0)]);
        assert!((m.mean_iou() - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.pixel_accuracy() - 3.0 / 5.0).abs() < 1e-12);
        // Majority (class 0 and 1 tie at 2 pixels: the last maximum, class 1).
        let base = m.majority_baseline();
        assert!((base.pixel_accuracy() - 2.0 / 5.0).abs() < 1e-12);
        assert_eq!(base.per_class_iou(), vec![Some(0.0), Some(2.0 / 5.0), Some(0.0)]);
        assert!(m.update(&[3], &[0]).unwrap_err().to_string().contains("outside 0..3"));
    }

    /// A class absent from labels and predictions does not count in the mean.
    #[test]
    fn absent_class_is_skipped() {
        let mut m = SegMetrics::new(4, 255);
        m.update(&[0, 0, 1], &[0, 0, 1]).unwrap();
        assert_eq!(m.per_class_iou(), vec![Some(1.0), Some(1.0), None, None]);
        assert_eq!(m.mean_iou(), 1.0);
    }
}
