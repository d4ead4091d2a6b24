//! `beit init`: a freshly initialised BEiT model folder (BEiT's init), to train from scratch.

use beit::engine::nn::Module;
use beit::engine::{Error, Result};
use beit::{Beit, BeitConfig};
use std::path::PathBuf;

/// Options of `beit init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// `base` (86M) or `large` (304M).
    #[arg(long, default_value = "base")]
    preset: String,
    /// Input side in pixels.
    #[arg(long, default_value_t = 224)]
    image_size: usize,
    /// `mim`, `cls` or `model`.
    #[arg(long, default_value = "mim")]
    arch: String,
    /// Classes of the classification head.
    #[arg(long, default_value_t = 1000)]
    num_labels: usize,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Initialisation seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Run `beit init`.
pub fn run(args: &InitArgs) -> Result<()> {
    let mut config = match args.preset.as_str() {
        "base" => BeitConfig::base(args.image_size),
        "large" => BeitConfig::large(args.image_size),
        p => return Err(Error::invalid("--preset", format!("`{p}` (expected base or large)"))),
    };
    let (arch, per_layer) = match args.arch.as_str() {
        "mim" => ("BeitForMaskedImageModeling", false),
        "cls" => ("BeitForImageClassification", true),
        "model" => ("BeitModel", false),
        a => return Err(Error::invalid("--arch", format!("`{a}` (expected mim, cls or model)"))),
    };
    config.architectures = vec![arch.into()];
    if per_layer {
        // Fine-tuning layout: per-layer tables, no mask token.
        config.use_shared_relative_position_bias = false;
        config.use_relative_position_bias = true;
        config.use_mask_token = false;
        config.num_labels = Some(args.num_labels);
    }
    config.validate()?;
    let model = Beit::new(&config, &beit::open_device("cpu")?, args.seed)?;
    model.save_pretrained(&args.out)?;
    println!("wrote {} ({arch}, {} parameters)", args.out.display(), model.num_params());
    Ok(())
}
