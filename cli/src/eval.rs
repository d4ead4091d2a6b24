//! `beit eval`: top-1/top-5 accuracy and the confusion matrix of a classifier on a
//! labelled folder or the digits' test split.

use crate::finetune::Task;
use crate::segmentation::{self, SegDataArgs};
use beit::data::{Digits, ImageFolder};
use beit::engine::{Error, Result};
use beit::train::{evaluate, load_checkpoint, ClassifyData};
use beit::Beit;
use std::path::PathBuf;

/// Options of `beit eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// What the model predicts: image classes, or a class per pixel (mIoU, pixel accuracy).
    #[arg(long, value_enum, default_value = "classification")]
    task: Task,
    /// Classifier as a Hugging Face folder, or Hub id (`org/name[@revision]`).
    #[arg(long, value_parser = crate::hub::model_dir, conflicts_with = "checkpoint", required_unless_present = "checkpoint")]
    model: Option<PathBuf>,
    /// Classifier as a fine-tuning checkpoint (file, or folder: its newest).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Images, one sub-folder per class (in the model's label order); for segmentation an
    /// ADE20K-layout folder (its validation half is used).
    #[arg(long, conflicts_with = "digits", required_unless_present_any = ["digits", "shapes"])]
    data: Option<PathBuf>,
    /// The built-in digits' test split.
    #[arg(long)]
    digits: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    seg: SegDataArgs,
}

/// Run `beit eval`.
pub fn run(args: &EvalArgs) -> Result<()> {
    let device = beit::open_device(&args.device)?;
    if args.task == Task::Segmentation {
        let dir = args.model.as_ref().ok_or_else(|| Error::invalid("--task segmentation", "give the model as --model DIR"))?;
        return segmentation::eval(dir, args.data.as_deref(), &args.seg, args.batch_size, &device);
    }
    let model = match (&args.model, &args.checkpoint) {
        (Some(dir), _) => Beit::from_pretrained(dir, &device)?.0,
        (None, Some(path)) => {
            let ck = load_checkpoint(path, &device)?;
            let m = Beit::new(&ck.model_config()?, &device, 0)?;
            beit::engine::nn::Module::load_state_dict(&m, &ck.model, true)?;
            m
        }
        (None, None) => return Err(Error::invalid("eval", "give --model or --checkpoint")),
    };
    let Beit::ImageClassification(model) = model else {
        return Err(Error::invalid("eval", "the model is not an image classifier (BeitForImageClassification)"));
    };
    let size = model.beit.config().image_size;
    let data = match &args.data {
        Some(dir) => ClassifyData::Folder { folder: ImageFolder::labelled(dir)?, size: size as u32 },
        None => {
            let d = Digits::load()?;
            ClassifyData::digits(&d, &d.split().1, size, &device)?
        }
    };
    let m = evaluate(&model, &data, args.batch_size)?;
    println!("images {}  loss {:.4}  top-1 {:.2}%  top-5 {:.2}%", m.samples, m.loss, 100.0 * m.top1, 100.0 * m.top5);
    let classes = data.classes();
    let width = classes.iter().map(|c| c.len()).max().unwrap_or(1).max(5);
    println!("confusion matrix (rows: true class, columns: predicted)");
    print!("{:>width$}", "");
    (0..classes.len()).for_each(|j| print!(" {j:>5}"));
    println!();
    for (i, row) in m.confusion.iter().enumerate() {
        print!("{:>width$}", classes[i]);
        row.iter().for_each(|n| print!(" {n:>5}"));
        println!();
    }
    Ok(())
}
