//! `beit pretrain`: masked image modeling on an image folder or the built-in digits, with
//! a DALL-E-style tokenizer folder for the targets.

use crate::train_args::{is_main_process, TrainArgs};
use beit::data::transforms::TwoViewTransform;
use beit::data::{Digits, ImageFolder};
use beit::engine::{Error, Result};
use beit::tokenizer::{DalleEncoder, Tokenizer};
use beit::train::{pretrain, pretrain_model_config, PretrainConfig, PretrainData};
use beit::{Beit, BeitConfig};
use clap::ValueEnum;
use std::path::PathBuf;

/// Architecture of a fresh model.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Preset {
    /// BEiT-Base/16 (12 layers, 768 wide).
    Base,
    /// A small model for small images: 4 layers, 64 wide, 4 heads.
    Tiny,
}

/// Options of `beit pretrain`.
#[derive(clap::Args, Debug)]
pub struct PretrainArgs {
    /// Folder of images (searched recursively; labels ignored).
    #[arg(long, conflicts_with = "digits", required_unless_present = "digits")]
    data: Option<PathBuf>,
    /// Use the built-in digits (all 1797 images).
    #[arg(long)]
    digits: bool,
    /// Tokenizer folder (config.json + model.safetensors of a DALL-E-style encoder).
    #[arg(long)]
    tokenizer: PathBuf,
    /// Side of the tokenizer view in pixels (default: the tokenizer's input size); its
    /// token grid must match the model's patch grid.
    #[arg(long)]
    tokenizer_size: Option<usize>,
    /// Start from this Hugging Face folder's (or Hub id's) weights instead of a fresh model.
    #[arg(long, value_parser = crate::hub::model_dir, conflicts_with = "preset")]
    model: Option<PathBuf>,
    /// Architecture of a fresh model.
    #[arg(long, value_enum, default_value_t = Preset::Base)]
    preset: Preset,
    /// Input side of a fresh model in pixels.
    #[arg(long, default_value_t = 224)]
    image_size: usize,
    /// Patch side of a fresh model in pixels.
    #[arg(long, default_value_t = 16)]
    patch_size: usize,
    /// Where to write the final model as a Hugging Face folder.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    train: TrainArgs,
}

fn fresh_config(args: &PretrainArgs, vocab: usize) -> BeitConfig {
    let base = BeitConfig { image_size: args.image_size, patch_size: args.patch_size, vocab_size: vocab, ..BeitConfig::base(args.image_size) };
    match args.preset {
        Preset::Base => base,
        Preset::Tiny => BeitConfig { hidden_size: 64, num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 128, ..base },
    }
}

/// Run `beit pretrain`.
pub fn run(args: &PretrainArgs) -> Result<()> {
    let cfg: PretrainConfig = args.train.recipe()?;
    let device = args.train.run.open_device()?;
    let tokenizer = DalleEncoder::from_folder(&args.tokenizer, &device)?;
    let resume = args.train.run.checkpoint(&device)?;
    let config = match (&resume, &args.model) {
        (Some(ck), _) => ck.model_config()?,
        (None, Some(dir)) => pretrain_model_config(&BeitConfig::from_file(dir.join("config.json"))?, &cfg),
        (None, None) => pretrain_model_config(&fresh_config(args, tokenizer.vocab_size()), &cfg),
    };
    if config.vocab_size != tokenizer.vocab_size() {
        return Err(Error::invalid("--tokenizer", format!("{} tokens for a model with vocab_size {}", tokenizer.vocab_size(), config.vocab_size)));
    }
    let beit = Beit::new(&config, &device, cfg.train.seed)?;
    if let (None, Some(dir)) = (&resume, &args.model) {
        beit.load_hf_state_dict(beit::engine::io::load_safetensors(dir.join("model.safetensors"), &device)?)?;
    }
    let Beit::MaskedImageModeling(model) = beit else {
        return Err(Error::invalid("pretrain", "the checkpoint is not a masked image modeling model"));
    };
    let tok_size = args.tokenizer_size.unwrap_or(tokenizer.input_size());
    let data = match &args.data {
        Some(dir) => {
            let transform = TwoViewTransform { tokenizer_size: tok_size as u32, ..TwoViewTransform::beit(config.image_size as u32) };
            PretrainData::Folder { folder: ImageFolder::flat(dir)?, transform }
        }
        None => {
            let d = Digits::load()?;
            PretrainData::digits(&d, &(0..d.len()).collect::<Vec<_>>(), config.image_size, tok_size, &device)?
        }
    };
    let control = args.train.run.control(resume, &device)?;
    let mut progress = args.train.run.progress();
    let summary = pretrain(&model, &tokenizer, &data, &cfg, &control, &mut progress)?;
    if !is_main_process() {
        return Ok(());
    }
    let loss = summary.final_loss.map_or("n/a".into(), |l| format!("{l:.4}"));
    let state = if summary.interrupted { "interrupted at" } else { "stopped at" };
    println!("{state} step {}; last loss {loss}; {} skipped steps", summary.steps, summary.skipped);
    if let Some(path) = &summary.checkpoint {
        println!("checkpoint {}", path.display());
    }
    if let Some(out) = &args.out {
        Beit::MaskedImageModeling(model).save_pretrained(out)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
