//! `beit export`: a training checkpoint's model as a Hugging Face folder.

use beit::engine::nn::Module;
use beit::engine::Result;
use beit::train::load_checkpoint;
use beit::Beit;
use std::path::PathBuf;

/// Options of `beit export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Checkpoint file, or a folder (its newest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Output folder (config.json + model.safetensors).
    #[arg(long)]
    out: PathBuf,
}

/// Run `beit export`.
pub fn run(args: &ExportArgs) -> Result<()> {
    let device = beit::open_device("cpu")?;
    let ck = load_checkpoint(&args.checkpoint, &device)?;
    let model = Beit::new(&ck.model_config()?, &device, 0)?;
    model.load_state_dict(&ck.model, true)?;
    model.save_pretrained(&args.out)?;
    println!("wrote {} (step {})", args.out.display(), ck.state.step);
    Ok(())
}
