//! Segmentation training and evaluation as a library: [`SegMetrics`] (mIoU, pixel
//! accuracy from a confusion matrix), [`SegTrainer`] (AdamW with layer-wise lr decay and
//! no decay on 1-D parameters, warmup + cosine schedule, one step per batch) and
//! [`evaluate`] over a [`SegDataset`].

use crate::data::{seg_batch, SegDataset};
use crate::model::{BeitForSemanticSegmentation, Mode};
use beit_engine::nn::{Module, Param};
use beit_engine::optim::{clip_grad_norm, AdamW, AdamWConfig, ParamGroup, Schedule};
use beit_engine::{Device, Error, Result, Tensor};

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

/// Hyper-parameters of [`SegTrainer`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegTrainConfig {
    /// Learning rate per step (the heads' and the last block's).
    pub lr: Schedule,
    /// Weight decay of matrices and kernels (1-D parameters and tokens get none).
    pub weight_decay: f64,
    /// Layer-wise lr decay: block `i` of `L` gets `decay^(L − i)`, the embeddings
    /// `decay^(L + 1)`; heads and pyramid 1. Use 1 for none.
    pub layer_decay: f64,
    /// Max global gradient norm, if clipping.
    pub clip_grad: Option<f64>,
}

/// Depth of a parameter for layer-wise lr decay (BEiT's `get_num_layer_for_vit`).
fn layer_id(name: &str, layers: usize) -> usize {
    if name.starts_with("beit.embeddings.") {
        0
    } else if let Some(rest) = name.strip_prefix("beit.encoder.layer.") {
        rest.split('.').next().and_then(|i| i.parse::<usize>().ok()).map_or(layers + 1, |i| i + 1)
    } else {
        layers + 1
    }
}

/// Optimiser groups: per depth, split into decayed (≥ 2-D) and undecayed parameters.
pub fn param_groups(model: &BeitForSemanticSegmentation, layer_decay: f64, weight_decay: f64) -> Vec<ParamGroup> {
    let layers = model.config().num_hidden_layers;
    let mut groups: Vec<(usize, bool, Vec<Param>)> = Vec::new();
    for p in model.trainable_params() {
        let id = layer_id(p.name(), layers);
        let token = p.name().ends_with("cls_token") || p.name().ends_with("mask_token") || p.name().contains("position");
        let decay = p.shape().len() >= 2 && !token;
        match groups.iter_mut().find(|(i, d, _)| *i == id && *d == decay) {
            Some(g) => g.2.push(p),
            None => groups.push((id, decay, vec![p])),
        }
    }
    groups
        .into_iter()
        .map(|(id, decay, params)| {
            ParamGroup::new(params)
                .lr_scale(layer_decay.powi((layers + 1 - id) as i32))
                .weight_decay(if decay { weight_decay } else { 0.0 })
        })
        .collect()
}

/// Fine-tunes a [`BeitForSemanticSegmentation`]: one [`SegTrainer::step`] per batch.
pub struct SegTrainer {
    optimizer: AdamW,
    config: SegTrainConfig,
    step: u64,
}

impl SegTrainer {
    /// An optimiser over `model`'s trainable parameters.
    pub fn new(model: &BeitForSemanticSegmentation, config: SegTrainConfig) -> Result<Self> {
        config.lr.validate()?;
        let groups = param_groups(model, config.layer_decay, config.weight_decay);
        let adamw = AdamWConfig { weight_decay: config.weight_decay, ..AdamWConfig::default() };
        Ok(SegTrainer { optimizer: AdamW::new(groups, adamw)?, config, step: 0 })
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One step on `pixels [B, 3, H, W]` and `labels [B, H, W]`: forward in train mode
    /// (BatchNorm batch statistics, drop path seeded by the step), the loss (main +
    /// auxiliary), backward, clipping, AdamW. Returns the loss.
    pub fn step(&mut self, model: &BeitForSemanticSegmentation, pixels: &Tensor, labels: &Tensor) -> Result<f64> {
        let out = model.forward(pixels, Mode::train(self.step))?;
        let loss = model.loss(&out, labels)?;
        let value = loss.to_scalar()?;
        if !value.is_finite() {
            return Err(Error::invalid("segmentation loss", format!("{value} at step {} (every pixel ignored?)", self.step)));
        }
        let mut grads = loss.backward()?;
        if let Some(max) = self.config.clip_grad {
            clip_grad_norm(&mut grads, &model.trainable_params(), max)?;
        }
        self.optimizer.step(&grads, self.config.lr.at(self.step))?;
        self.step += 1;
        Ok(value)
    }
}

/// Metrics of `model` (inference mode) over all of `ds`, in batches of `batch`; logits
/// are upsampled to the label size before the argmax.
pub fn evaluate(model: &BeitForSemanticSegmentation, ds: &dyn SegDataset, batch: usize, device: &Device) -> Result<SegMetrics> {
    let c = model.config();
    let mut metrics = SegMetrics::new(c.num_labels(), c.semantic_loss_ignore_index);
    let indices: Vec<usize> = (0..ds.len()).collect();
    for chunk in indices.chunks(batch.max(1)) {
        let (pixels, labels) = seg_batch(ds, chunk, device)?;
        let predicted = model.predict(&pixels)?;
        metrics.update(&predicted.to_vec::<i64>()?, &labels.to_vec::<i64>()?)?;
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

    #[test]
    fn layer_ids_follow_beit() {
        assert_eq!(layer_id("beit.embeddings.cls_token", 12), 0);
        assert_eq!(layer_id("beit.encoder.layer.0.attention.attention.query.weight", 12), 1);
        assert_eq!(layer_id("beit.encoder.layer.11.lambda_1", 12), 12);
        assert_eq!(layer_id("decode_head.classifier.weight", 12), 13);
        assert_eq!(layer_id("fpn1.0.weight", 12), 13);
    }
}
