//! `beit init`: a freshly initialised BEiT model folder (BEiT's init: truncated normal,
//! rescaled block outputs, layer scale), to train from scratch or to benchmark.

use beit::engine::nn::Module;
use beit::engine::{Error, Result};
use beit::{Beit, BeitConfig};
use clap::ValueEnum;
use std::path::PathBuf;

/// Model size.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Preset {
    /// BEiT-Base/16: 12 layers, 768 wide, 12 heads (86M).
    Base,
    /// BEiT-Large/16: 24 layers, 1024 wide, 16 heads (304M).
    Large,
}

/// Model head.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Arch {
    /// BeitForMaskedImageModeling, as pretrained: shared relative position bias, mask token.
    Mim,
    /// BeitForImageClassification, as fine-tuned: per-layer relative position bias, no mask token.
    Cls,
    /// BeitModel (encoder + pooler), with the pretraining layout.
    Model,
}

/// Options of `beit init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Model size.
    #[arg(long, value_enum, default_value_t = Preset::Base)]
    preset: Preset,
    /// Input side in pixels (a multiple of the patch size, 16).
    #[arg(long, default_value_t = 224)]
    image_size: usize,
    /// Model head.
    #[arg(long, value_enum, default_value_t = Arch::Mim)]
    arch: Arch,
    /// Classes of the classification head (`--arch cls` only; default 1000).
    #[arg(long)]
    num_labels: Option<usize>,
    /// Output folder (created; config.json and model.safetensors are written into it).
    #[arg(long)]
    out: PathBuf,
    /// Initialisation seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Overwrite a model already in the output folder.
    #[arg(long)]
    force: bool,
}

/// Run `beit init`.
pub fn run(args: &InitArgs) -> Result<()> {
    let mut config = match args.preset {
        Preset::Base => BeitConfig::base(args.image_size),
        Preset::Large => BeitConfig::large(args.image_size),
    };
    let arch = match args.arch {
        Arch::Mim => "BeitForMaskedImageModeling",
        Arch::Cls => "BeitForImageClassification",
        Arch::Model => "BeitModel",
    };
    config.architectures = vec![arch.into()];
    match (args.arch, args.num_labels) {
        (Arch::Cls, n) => {
            let n = n.unwrap_or(1000);
            if n == 0 {
                return Err(Error::invalid("--num-labels", "must be positive"));
            }
            // Fine-tuning layout (as microsoft/beit-base-patch16-224): per-layer tables, no mask token.
            config.use_shared_relative_position_bias = false;
            config.use_relative_position_bias = true;
            config.use_mask_token = false;
            config.num_labels = Some(n);
            // Spelled out so that Hugging Face finds id2label and num_labels in agreement.
            config.id2label = (0..n).map(|i| (i.to_string(), format!("LABEL_{i}"))).collect();
        }
        (_, Some(_)) => return Err(Error::invalid("--num-labels", "only applies to --arch cls")),
        (_, None) => {}
    }
    config.validate()?;
    for name in ["config.json", "model.safetensors"] {
        let path = args.out.join(name);
        if path.exists() && !args.force {
            return Err(Error::invalid(
                "init",
                format!("{} exists (pass --force to overwrite it)", path.display()),
            ));
        }
    }
    let model = Beit::new(&config, &beit::open_device("cpu")?, args.seed)?;
    model.save_pretrained(&args.out)?;
    println!("wrote {} ({arch}, {} parameters)", args.out.display(), model.num_params());
    Ok(())
}
