//! `beit forward`: run a Hugging Face BEiT folder on tensors from a safetensors file and
//! write its outputs, to compare with PyTorch.

use beit::engine::io::{load_safetensors, StateDict};
use beit::engine::{no_grad, DType, Error, Result};
use beit::Beit;
use std::path::PathBuf;

/// Options of `beit forward`.
#[derive(clap::Args, Debug)]
pub struct ForwardArgs {
    /// Hugging Face model folder (config.json + model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Inputs: `pixel_values` f32 [B,3,H,W], optional `bool_masked_pos` u8/bool [B,N].
    #[arg(long)]
    input: PathBuf,
    /// Where to write `last_hidden_state`, `pooler_output`, `logits` (f32).
    #[arg(long)]
    output: PathBuf,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Run `beit forward`.
pub fn run(args: &ForwardArgs) -> Result<()> {
    let device = beit::open_device(&args.device)?;
    let (model, _) = Beit::from_pretrained(&args.model, &device)?;
    let inputs = load_safetensors(&args.input, &device)?;
    let file = args.input.display().to_string();
    let pixels = inputs.get("pixel_values")?;
    if pixels.dtype() != DType::F32 || pixels.rank() != 4 {
        return Err(Error::Format {
            file,
            msg: format!("`pixel_values` must be f32 [B, 3, H, W], got {} {:?}", pixels.dtype(), pixels.shape()),
        });
    }
    let mask = inputs.contains("bool_masked_pos").then(|| inputs.get("bool_masked_pos")).transpose()?;
    let _guard = no_grad();
    let (hidden, pooled, logits) = model.forward(&pixels, mask.as_ref())?;
    let mut out = StateDict::new();
    out.insert("last_hidden_state", hidden);
    if let Some(p) = pooled {
        out.insert("pooler_output", p);
    }
    if let Some(l) = logits {
        out.insert("logits", l);
    }
    out.save(&args.output, None)?;
    println!("wrote {} tensors to {}", out.len(), args.output.display());
    Ok(())
}
