//! `beit info`: what a model folder holds.

use beit::engine::nn::Module;
use beit::engine::Result;
use beit::Beit;
use std::path::PathBuf;

/// Options of `beit info`.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Hugging Face model folder.
    #[arg(long)]
    model: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Run `beit info`.
pub fn run(args: &InfoArgs) -> Result<()> {
    let (model, report) = Beit::from_pretrained(&args.model, &beit::open_device("cpu")?)?;
    let c = model.config();
    let rel_pos = match (c.use_shared_relative_position_bias, c.use_relative_position_bias) {
        (true, true) => "shared + per-layer",
        (true, false) => "shared",
        (false, true) => "per-layer",
        (false, false) => "none",
    };
    let info = serde_json::json!({
        "architecture": format!("{:?}", c.architecture()?),
        "parameters": model.num_params(),
        "layers": c.num_hidden_layers,
        "hidden_size": c.hidden_size,
        "heads": c.num_attention_heads,
        "intermediate_size": c.intermediate_size,
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "relative_position_bias": rel_pos,
        "absolute_position_embeddings": c.use_absolute_position_embeddings,
        "mask_token": c.use_mask_token,
        "layer_scale": c.layer_scale_init_value,
        "mean_pooling": c.use_mean_pooling,
        "labels": c.num_labels(),
        "vocab_size": c.vocab_size,
        "unused_tensors": report.unexpected,
    });
    if args.json {
        println!("{info:#}");
    } else {
        for (k, v) in info.as_object().into_iter().flatten() {
            println!("{k:>30}: {v}");
        }
    }
    Ok(())
}
