//! `beit finetune --task segmentation` and `beit eval --task segmentation`: a BEiT encoder
//! with a UperNet (or SETR-PUP) head fine-tuned on an ADE20K-layout folder or the generated
//! shapes, with mIoU and pixel accuracy on the validation images.

use beit::data::{seg_batch, SegDataset, SegFolder, Shapes, Split};
use beit::engine::optim::Schedule;
use beit::engine::rng::Rng;
use beit::engine::{Device, Error, Result};
use beit::segmentation::{evaluate, SegMetrics, SegTrainConfig, SegTrainer};
use beit::{BeitConfig, BeitForSemanticSegmentation, SegHead};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where segmentation samples come from.
#[derive(clap::Args, Debug, Clone)]
pub struct SegDataArgs {
    /// Generated shapes scenes (4 classes) instead of a folder: this many training scenes
    /// (and a quarter as many validation scenes).
    #[arg(long)]
    pub shapes: Option<usize>,
    /// Image side for segmentation (default: the model's).
    #[arg(long)]
    pub size: Option<usize>,
    /// ADE20K's `reduce_labels`: label 0 ("other") becomes ignored, the rest shift down by 1.
    #[arg(long)]
    pub reduce_labels: bool,
    /// Classes of the folder's label maps (after `--reduce-labels`), e.g. 150 for ADE20K.
    #[arg(long)]
    pub num_labels: Option<usize>,
    /// Segmentation decode head of a new model.
    #[arg(long, value_enum, default_value = "uper")]
    pub head: HeadArg,
}

/// `--head` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum HeadArg {
    /// UperNet on a four-level feature pyramid (Hugging Face's).
    Uper,
    /// SETR's progressive upsampling.
    SetrPup,
}

/// A training set, a validation set and the class names.
type SegData = (Box<dyn SegDataset>, Box<dyn SegDataset>, Vec<String>);

/// The data `--data` or `--shapes` names.
fn datasets(data: Option<&Path>, args: &SegDataArgs, size: usize, seed: u64) -> Result<SegData> {
    if (size as u64).saturating_mul(size as u64) > beit::preprocess::MAX_PIXELS {
        return Err(Error::invalid("--size", format!("{size}x{size} images are above the limit of {} pixels", beit::preprocess::MAX_PIXELS)));
    }
    if let Some(n) = args.shapes {
        if n == 0 {
            return Err(Error::invalid("--shapes", "needs at least one scene"));
        }
        let names = Shapes::NAMES.iter().map(|s| s.to_string()).collect();
        return Ok((Box::new(Shapes::new(n, size, seed)?), Box::new(Shapes::new((n / 4).max(1), size, seed ^ 0x7E57)?), names));
    }
    let dir = data.ok_or_else(|| Error::invalid("segmentation", "give --data (an ADE20K-layout folder) or --shapes N"))?;
    let classes = args.num_labels.ok_or_else(|| Error::invalid("--num-labels", "needed with a folder: the number of classes of its label maps"))?;
    let train = SegFolder::open(dir, Split::Training, size, args.reduce_labels)?;
    let val = SegFolder::open(dir, Split::Validation, size, args.reduce_labels)?;
    Ok((Box::new(train), Box::new(val), (0..classes).map(|c| format!("class {c}")).collect()))
}

/// The segmentation config built on a pretrained encoder's.
fn seg_config(pretrained: &BeitConfig, size: usize, classes: &[String], head: HeadArg, drop_path: f64) -> BeitConfig {
    let l = pretrained.num_hidden_layers;
    // Hugging Face's BEiT-Base ADE20K choice (blocks 4, 6, 8, 12 of 12), scaled to the depth.
    let out_indices = [4, 6, 8, 12].iter().map(|&i| (i * l).div_ceil(12).clamp(1, l)).collect();
    BeitConfig {
        architectures: vec!["BeitForSemanticSegmentation".into()],
        image_size: size,
        use_mask_token: false,
        use_relative_position_bias: pretrained.use_relative_position_bias || pretrained.use_shared_relative_position_bias,
        use_shared_relative_position_bias: false,
        use_auxiliary_head: true,
        drop_path_rate: drop_path,
        out_indices: Some(out_indices),
        num_labels: Some(classes.len()),
        id2label: classes.iter().enumerate().map(|(i, c)| (i.to_string(), c.clone())).collect(),
        seg_head: match head {
            HeadArg::Uper => SegHead::Uper,
            HeadArg::SetrPup => SegHead::SetrPup,
        },
        ..pretrained.clone()
    }
}

/// Hyper-parameters taken from the fine-tuning recipe.
pub struct SegRecipe {
    /// Passes over the training set.
    pub epochs: u64,
    /// Images per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate.
    pub min_lr: f64,
    /// Warmup in epochs.
    pub warmup_epochs: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Layer-wise lr decay.
    pub layer_decay: f64,
    /// Gradient clipping.
    pub clip_grad: Option<f64>,
    /// Stochastic depth.
    pub drop_path: f64,
    /// Seed of the model's fresh heads and the data order.
    pub seed: u64,
}

/// Fine-tune the encoder in `model_dir` for segmentation; write the model to `out`.
pub fn finetune(model_dir: &Path, data: Option<&Path>, args: &SegDataArgs, r: &SegRecipe, out: Option<&PathBuf>, device: &Device) -> Result<()> {
    let pretrained = BeitConfig::from_file(model_dir.join("config.json"))?;
    let size = args.size.unwrap_or(pretrained.image_size);
    let (train, val, classes) = datasets(data, args, size, r.seed)?;
    let config = seg_config(&pretrained, size, &classes, args.head, r.drop_path);
    let (model, report) = BeitForSemanticSegmentation::from_pretrained_encoder(model_dir, &config, device, r.seed)?;
    if !report.missing.is_empty() {
        println!("fresh (not in the checkpoint): {}", report.missing.len());
    }
    let per_epoch = (train.len() / r.batch.max(1)) as u64;
    if per_epoch == 0 {
        return Err(Error::invalid("segmentation data", format!("{} training images, fewer than one batch of {}", train.len(), r.batch)));
    }
    let total = per_epoch * r.epochs;
    let warmup = ((r.warmup_epochs * per_epoch as f64).round() as u64).min(total);
    let lr = Schedule::WarmupCosine { base: r.lr, final_value: r.min_lr, warmup_start: 0.0, warmup_steps: warmup, total_steps: total };
    let mut trainer = SegTrainer::new(&model, SegTrainConfig { lr, weight_decay: r.weight_decay, layer_decay: r.layer_decay, clip_grad: r.clip_grad })?;
    println!("segmentation fine-tuning: {} training / {} validation images at {size} px, {} classes, {total} steps", train.len(), val.len(), classes.len());
    let start = Instant::now();
    for epoch in 0..r.epochs {
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng = Rng::new(r.seed ^ epoch.wrapping_mul(0x9E37_79B9));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut loss = 0.0;
        for chunk in order.chunks_exact(r.batch) {
            let (pixels, labels) = seg_batch(train.as_ref(), chunk, device)?;
            loss += trainer.step(&model, &pixels, &labels)?;
        }
        let m = evaluate(&model, val.as_ref(), r.batch, device)?;
        println!(
            "epoch {epoch}: loss {:.4}  val mIoU {:.3}  pixel accuracy {:.3}  ({:.0} s)",
            loss / per_epoch as f64,
            m.mean_iou(),
            m.pixel_accuracy(),
            start.elapsed().as_secs_f64()
        );
    }
    report_metrics(&evaluate(&model, val.as_ref(), r.batch, device)?, &classes);
    if let Some(out) = out {
        model.save_pretrained(out)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// Evaluate a segmentation folder on validation data.
pub fn eval(model_dir: &Path, data: Option<&Path>, args: &SegDataArgs, batch: usize, device: &Device) -> Result<()> {
    let (model, _) = BeitForSemanticSegmentation::from_pretrained(model_dir, device)?;
    let c = model.config();
    let size = args.size.unwrap_or(c.image_size);
    let (_, val, mut classes) = datasets(data, args, size, 0)?;
    if classes.len() != c.num_labels() && args.shapes.is_some() {
        return Err(Error::invalid("--shapes", format!("the shapes have {} classes, the model {}", classes.len(), c.num_labels())));
    }
    classes = (0..c.num_labels()).map(|i| c.label(i)).collect();
    report_metrics(&evaluate(&model, val.as_ref(), batch, device)?, &classes);
    Ok(())
}

/// mIoU, pixel accuracy (next to the majority-class baseline) and per-class IoU.
fn report_metrics(m: &SegMetrics, classes: &[String]) {
    let base = m.majority_baseline();
    println!("mIoU {:.4}  pixel accuracy {:.4}  (majority class: mIoU {:.4}, pixel accuracy {:.4})", m.mean_iou(), m.pixel_accuracy(), base.mean_iou(), base.pixel_accuracy());
    for (name, iou) in classes.iter().zip(m.per_class_iou()) {
        if let Some(iou) = iou {
            println!("  {name:>20}  IoU {iou:.4}");
        }
    }
}
