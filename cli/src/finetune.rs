//! `beit finetune`: image classification from a pretrained Hugging Face folder or a
//! pretraining checkpoint, on a labelled image folder or the built-in digits.

use crate::segmentation::{self, SegDataArgs};
use crate::train_args::{is_main_process, TrainArgs};
use beit::data::{Digits, ImageFolder};
use beit::engine::{Error, Result};
use beit::train::{classifier_from_pretrained, evaluate, finetune, load_checkpoint, ClassifyData, FinetuneConfig};
use beit::{Beit, BeitForImageClassification};
use std::path::PathBuf;

/// Options of `beit finetune`.
#[derive(clap::Args, Debug)]
pub struct FinetuneArgs {
    /// What the model learns: image classes, or a class per pixel.
    #[arg(long, value_enum, default_value = "classification")]
    task: Task,
    /// Training images: one sub-folder per class (classification), or an ADE20K-layout
    /// folder (segmentation: images/ and annotations/, each with training/ and validation/).
    #[arg(long, conflicts_with = "digits", required_unless_present_any = ["digits", "shapes"])]
    data: Option<PathBuf>,
    /// Evaluation images (same classes), measured after every epoch.
    #[arg(long, requires = "data")]
    eval_data: Option<PathBuf>,
    /// Use the built-in digits: a labelled fraction of the training split, evaluated on
    /// the test split.
    #[arg(long)]
    digits: bool,
    /// Fraction of the digits' training split that is labelled.
    #[arg(long, default_value_t = 0.1)]
    label_fraction: f64,
    /// Pretrained Hugging Face folder (config.json + model.safetensors), or Hub id.
    #[arg(long, value_parser = crate::hub::model_dir, conflicts_with = "pretrained_checkpoint")]
    model: Option<PathBuf>,
    /// Pretraining checkpoint (file, or folder: its newest).
    #[arg(long)]
    pretrained_checkpoint: Option<PathBuf>,
    /// Where to write the fine-tuned model as a Hugging Face folder.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    train: TrainArgs,
    #[command(flatten)]
    seg: SegDataArgs,
}

/// `--task` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Image classification (mean pooling + linear head).
    Classification,
    /// Semantic segmentation (feature pyramid + UperNet or SETR-PUP head).
    Segmentation,
}

/// Training and evaluation data at `size` pixels.
fn data(args: &FinetuneArgs, size: usize, device: &beit::engine::Device) -> Result<(ClassifyData, Option<ClassifyData>)> {
    if let Some(dir) = &args.data {
        let eval = args.eval_data.as_ref().map(|d| ImageFolder::labelled(d).map(|folder| ClassifyData::Folder { folder, size: size as u32 }));
        return Ok((ClassifyData::Folder { folder: ImageFolder::labelled(dir)?, size: size as u32 }, eval.transpose()?));
    }
    if !(args.label_fraction > 0.0 && args.label_fraction <= 1.0) {
        return Err(Error::invalid("--label-fraction", format!("{} not in (0, 1]", args.label_fraction)));
    }
    let d = Digits::load()?;
    let (train, test) = d.split();
    let n = ((train.len() as f64 * args.label_fraction).round() as usize).max(1);
    Ok((ClassifyData::digits(&d, &train[..n], size, device)?, Some(ClassifyData::digits(&d, &test, size, device)?)))
}

/// Run `beit finetune`.
pub fn run(args: &FinetuneArgs) -> Result<()> {
    let cfg: FinetuneConfig = args.train.recipe()?;
    let device = args.train.run.open_device()?;
    if args.task == Task::Segmentation {
        return finetune_segmentation(args, &cfg, &device);
    }
    let resume = args.train.run.checkpoint(&device)?;
    let (weights, config) = match (&resume, &args.model, &args.pretrained_checkpoint) {
        (Some(ck), ..) => (None, ck.model_config()?),
        (None, Some(dir), _) => {
            let (config, weights) = beit::model::read_folder(dir, &device)?;
            (Some(weights), config)
        }
        (None, None, Some(path)) => {
            let ck = load_checkpoint(path, &device)?;
            let config = ck.model_config()?;
            (Some(ck.model), config)
        }
        (None, None, None) => return Err(Error::invalid("finetune", "give --model, --pretrained-checkpoint or --resume")),
    };
    let (train, eval) = data(args, config.image_size, &device)?;
    let model: BeitForImageClassification = match weights {
        Some(w) => classifier_from_pretrained(w, &config, train.classes(), cfg.train.drop_path, cfg.train.seed, &device)?,
        None => match Beit::new(&config, &device, cfg.train.seed)? {
            Beit::ImageClassification(m) => m,
            _ => return Err(Error::invalid("--resume", "the checkpoint is not a classification model")),
        },
    };
    let control = args.train.run.control(resume, &device)?;
    let mut progress = args.train.run.progress();
    let summary = finetune(&model, &train, eval.as_ref(), &cfg, &control, &mut progress)?;
    if !is_main_process() {
        return Ok(());
    }
    println!("stopped at step {}{}", summary.steps, if summary.interrupted { " (interrupted)" } else { "" });
    if let Some(path) = &summary.checkpoint {
        println!("checkpoint {}", path.display());
    }
    if let Some(eval) = &eval {
        let m = evaluate(&model, eval, cfg.train.batch_size)?;
        println!("top-1 {:.2}%  top-5 {:.2}%  ({} images)", 100.0 * m.top1, 100.0 * m.top5, m.samples);
    }
    if let Some(out) = &args.out {
        Beit::ImageClassification(model).save_pretrained(out)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// `--task segmentation`: the recipe on a segmentation model.
fn finetune_segmentation(args: &FinetuneArgs, cfg: &FinetuneConfig, device: &beit::engine::Device) -> Result<()> {
    if args.pretrained_checkpoint.is_some() {
        return Err(Error::invalid("--pretrained-checkpoint", "segmentation starts from a Hugging Face folder (--model) or resumes (--resume)"));
    }
    segmentation::finetune(args.model.as_deref(), args.data.as_deref(), &args.seg, cfg, &args.train.run, args.out.as_ref(), device)
}
