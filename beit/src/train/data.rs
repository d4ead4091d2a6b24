//! Training data: in-memory tensors (the built-in digits) or image folders read by the
//! prefetching [`Loader`], as batches at a given step. A batch depends only on (seed,
//! epoch, position in the epoch), so a resumed run sees the same batches.

use super::checkpoint::TrainState;
use crate::data::transforms::{crop_resize, random_crop_box, resize_center_crop, to_chw, TwoViewTransform};
use crate::data::epoch_order;
use crate::data::{Digits, ImageFolder, Loader, LoaderConfig, SampleTransform, Shard};
use beit_engine::rng::Rng;
use beit_engine::{Device, Error, Result, Tensor};
use image::imageops::{self, FilterType};
use image::RgbImage;

/// Images for MIM pretraining.
pub enum PretrainData {
    /// In memory: the model view `[N, 3, H, W]` (normalised) and the tokenizer view
    /// `[N, 3, h, w]` (already in the tokenizer's input range, e.g. [`crate::tokenizer::map_pixels`]).
    Memory {
        /// Model view.
        images: Tensor,
        /// Tokenizer view.
        tokenizer_view: Tensor,
    },
    /// An image folder with BEiT's two-view augmentation.
    Folder {
        /// The images (labels ignored).
        folder: ImageFolder,
        /// Augmentation and view sizes.
        transform: TwoViewTransform,
    },
}

impl PretrainData {
    /// Digits `indices` at `image_size` (model view) and `tokenizer_size` (tokenizer view,
    /// [0, 1] pixels through the DALL-E map).
    pub fn digits(digits: &Digits, indices: &[usize], image_size: usize, tokenizer_size: usize, device: &Device) -> Result<Self> {
        let (images, _) = digits.batch(indices, image_size, device)?;
        Ok(PretrainData::Memory { images, tokenizer_view: digits.tokenizer_batch(indices, tokenizer_size, device)? })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        match self {
            PretrainData::Memory { images, .. } => images.shape()[0],
            PretrainData::Folder { folder, .. } => folder.len(),
        }
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Labelled images for fine-tuning and evaluation.
pub enum ClassifyData {
    /// In memory: normalised images `[N, 3, H, W]`, their labels and the class names.
    Memory {
        /// Images.
        images: Tensor,
        /// Class ids.
        labels: Vec<i64>,
        /// Class names by id.
        classes: Vec<String>,
    },
    /// A labelled folder (one sub-folder per class), random-resized-crop and flip for
    /// training, resize + center crop for evaluation.
    Folder {
        /// The images.
        folder: ImageFolder,
        /// Side of the model input.
        size: u32,
    },
}

impl ClassifyData {
    /// Digits `indices` at `size`, classes "0".."9".
    pub fn digits(digits: &Digits, indices: &[usize], size: usize, device: &Device) -> Result<Self> {
        let (images, labels) = digits.batch(indices, size, device)?;
        let classes = (0..Digits::CLASSES).map(|c| c.to_string()).collect();
        Ok(ClassifyData::Memory { images, labels: labels.to_vec()?, classes })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        match self {
            ClassifyData::Memory { labels, .. } => labels.len(),
            ClassifyData::Folder { folder, .. } => folder.len(),
        }
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Class names by id.
    pub fn classes(&self) -> &[String] {
        match self {
            ClassifyData::Memory { classes, .. } => classes,
            ClassifyData::Folder { folder, .. } => &folder.classes,
        }
    }
}

/// Fine-tuning's single view: random resized crop and flip when training, else resize to
/// `size · 8/7` and center crop (ImageNet's 256 → 224); normalised with mean = std = 0.5.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassifyTransform {
    /// Output side.
    pub size: u32,
    /// Augment (training) or not (evaluation).
    pub train: bool,
}

impl SampleTransform for ClassifyTransform {
    fn views(&self, img: &RgbImage, rng: &mut Rng) -> Vec<Vec<f32>> {
        let out = if self.train {
            let mut img = img.clone();
            if rng.uniform() < 0.5 {
                imageops::flip_horizontal_in_place(&mut img);
            }
            let b = random_crop_box(img.width(), img.height(), (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), rng);
            crop_resize(&img, b, self.size, FilterType::CatmullRom)
        } else {
            resize_center_crop(img, self.size * 8 / 7, self.size)
        };
        vec![to_chw(&out, Some(([0.5; 3], [0.5; 3])))]
    }
}

/// One batch: per view a tensor `[B, 3, S, S]`, and the labels (labelled data).
pub(crate) struct StepBatch {
    pub(crate) views: Vec<Tensor>,
    pub(crate) labels: Vec<i64>,
}

/// The samples of each step over `n` in-memory samples: batch `batch_in_epoch` of a seeded
/// shuffle of the epoch ([`epoch_order`]), kept while the epoch lasts.
pub(crate) struct EpochPicks {
    n: usize,
    batch: usize,
    seed: u64,
    order: Option<(u64, Vec<usize>)>,
}

impl EpochPicks {
    pub(crate) fn new(n: usize, batch: usize, seed: u64) -> Self {
        EpochPicks { n, batch, seed, order: None }
    }

    /// The sample indices of the step `state` stands at.
    pub(crate) fn of(&mut self, state: &TrainState) -> &[usize] {
        if self.order.as_ref().is_none_or(|(e, _)| *e != state.epoch) {
            self.order = Some((state.epoch, epoch_order(self.n, self.seed, state.epoch)));
        }
        let order = &self.order.as_ref().expect("set above").1;
        &order[state.batch_in_epoch as usize * self.batch..][..self.batch]
    }
}

/// Batches by step (this member's shard of each), from memory or from a folder loader
/// started at the resume point.
pub(crate) enum Batches<'a> {
    Memory { views: Vec<&'a Tensor>, labels: Option<&'a [i64]>, picks: EpochPicks, shard: Shard },
    Folder { loader: Loader, sizes: Vec<usize>, device: Device },
}

impl<'a> Batches<'a> {
    /// `shard` of batches of `batch` in-memory samples (views share their first dimension).
    pub(crate) fn memory(views: Vec<&'a Tensor>, labels: Option<&'a [i64]>, batch: usize, seed: u64, shard: Shard) -> Self {
        let n = views[0].shape()[0];
        Batches::Memory { views, labels, picks: EpochPicks::new(n, batch, seed), shard }
    }

    /// Batches of a folder through `transform` whose views have sides `sizes`, loaded as
    /// `config` says (its `skip` is the step to start at).
    pub(crate) fn folder<T: SampleTransform>(folder: &ImageFolder, transform: T, sizes: Vec<usize>, config: LoaderConfig, device: &Device) -> Self {
        Batches::Folder { loader: Loader::new(folder.clone(), transform, config), sizes, device: device.clone() }
    }

    /// The batch of step `state.step`.
    pub(crate) fn next(&mut self, state: &TrainState) -> Result<StepBatch> {
        match self {
            Batches::Memory { views, labels, picks, shard } => {
                let pick = picks.of(state);
                let pick = &pick[shard.part(pick.len())];
                let index = Tensor::from_vec(pick.iter().map(|&i| i as i64).collect(), &[pick.len()], views[0].device())?;
                let views = views.iter().map(|v| v.index_select(0, &index)).collect::<Result<_>>()?;
                let labels = labels.map(|l| pick.iter().map(|&i| l[i]).collect()).unwrap_or_default();
                Ok(StepBatch { views, labels })
            }
            Batches::Folder { loader, sizes, device } => {
                let b = loader.next().ok_or_else(|| Error::invalid("training data", "the image loader ended early"))?;
                if b.len == 0 {
                    return Err(Error::invalid("training data", format!("no image of batch {} could be read", state.step)));
                }
                let views = b.views.into_iter().zip(sizes.iter()).map(|(v, &s)| Tensor::from_vec(v, &[b.len, 3, s, s], device)).collect::<Result<_>>()?;
                Ok(StepBatch { views, labels: b.labels })
            }
        }
    }
}
