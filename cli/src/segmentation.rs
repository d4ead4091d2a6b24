//! `beit finetune --task segmentation` and `beit eval --task segmentation`: a BEiT encoder
//! with a UperNet (or SETR-PUP) head fine-tuned on an ADE20K-layout folder or the generated
//! shapes, with mIoU and pixel accuracy on the validation images.

use crate::train_args::{is_main_process, RunArgs};
use beit::data::{SegDataset, SegFolder, Shapes, Split};
use beit::engine::{Device, Error, Result};
use beit::segmentation::{evaluate, SegMetrics};
use beit::train::FinetuneConfig;
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

/// Fine-tune the encoder in `model_dir` for segmentation with `cfg`, or resume the run
/// `run.resume` names; evaluate and write the model to `out`.
pub fn finetune(model_dir: Option<&Path>, data: Option<&Path>, args: &SegDataArgs, cfg: &FinetuneConfig, run: &RunArgs, out: Option<&PathBuf>, device: &Device) -> Result<()> {
    let seed = cfg.train.seed;
    let resume = run.checkpoint(device)?;
    let model = match (&resume, model_dir) {
        (Some(ck), _) => {
            ck.expect_kind("segmentation")?;
            BeitForSemanticSegmentation::new(&ck.model_config()?, device, seed)?
        }
        (None, Some(dir)) => {
            let pretrained = BeitConfig::from_file(dir.join("config.json"))?;
            let size = args.size.unwrap_or(pretrained.image_size);
            let (_, _, classes) = datasets(data, args, size, seed)?;
            let config = seg_config(&pretrained, size, &classes, args.head, cfg.train.drop_path);
            let (model, report) = BeitForSemanticSegmentation::from_pretrained_encoder(dir, &config, device, seed)?;
            if !report.missing.is_empty() {
                println!("fresh (not in the checkpoint): {}", report.missing.len());
            }
            model
        }
        (None, None) => return Err(Error::invalid("--task segmentation", "give the pretrained encoder as --model DIR (a Hugging Face folder), or --resume")),
    };
    let c = model.config();
    if args.size.is_some_and(|s| s != c.image_size) {
        return Err(Error::invalid("--size", format!("the resumed model takes {} px images", c.image_size)));
    }
    let (train, val, classes) = datasets(data, args, c.image_size, seed)?;
    if classes.len() != c.num_labels() {
        return Err(Error::invalid("segmentation data", format!("{} classes for a model of {}", classes.len(), c.num_labels())));
    }
    if is_main_process() {
        println!("segmentation fine-tuning: {} training / {} validation images at {} px, {} classes", train.len(), val.len(), c.image_size, classes.len());
    }
    let start = Instant::now();
    let summary = beit::segmentation::finetune(&model, train.as_ref(), Some(val.as_ref()), cfg, &run.control(resume, device)?, &mut run.progress())?;
    if !is_main_process() {
        return Ok(());
    }
    println!("stopped at step {}{} after {:.0} s", summary.steps, if summary.interrupted { " (interrupted)" } else { "" }, start.elapsed().as_secs_f64());
    if let Some(path) = &summary.checkpoint {
        println!("checkpoint {}", path.display());
    }
    report_metrics(&evaluate(&model, val.as_ref(), cfg.train.batch_size, device)?, &classes);
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
