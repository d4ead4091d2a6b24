//! `beit forward`: run a Hugging Face BEiT folder on tensors from a safetensors file and
//! write its outputs, to compare with PyTorch (`BeitModel(...)(pixel_values, bool_masked_pos)`).

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
    /// Inputs: `pixel_values` f32 [B, C, H, W] and, optionally, `bool_masked_pos` u8 or
    /// bool [B, N] (1 = masked; required by BeitForMaskedImageModeling).
    #[arg(long)]
    input: PathBuf,
    /// Where to write `last_hidden_state`, `pooler_output` (when the model has a pooler)
    /// and `logits` (when it has a head), all f32.
    #[arg(long)]
    output: PathBuf,
    /// Accept inputs of another (square) size than config.image_size, interpolating the
    /// position tables as Hugging Face's `interpolate_pos_encoding=True` does.
    #[arg(long)]
    interpolate_pos_encoding: bool,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Run `beit forward`.
pub fn run(args: &ForwardArgs) -> Result<()> {
    let device = beit::open_device(&args.device)?;
    // Check the inputs' names, dtypes and ranks from the header before loading the model.
    let inputs = load_safetensors(&args.input, &device)?;
    let file = inputs.source().to_string();
    let bad = |msg: String| Error::Format { file: file.clone(), msg };
    let pixel_dtype = inputs.dtype("pixel_values")?;
    let pixel_shape = inputs.shape("pixel_values").unwrap_or_default().to_vec();
    if pixel_dtype != DType::F32 || pixel_shape.len() != 4 {
        return Err(bad(format!("`pixel_values` must be f32 [B, C, H, W], got {pixel_dtype} {pixel_shape:?}")));
    }
    let (batch, channels, height, width) = (pixel_shape[0], pixel_shape[1], pixel_shape[2], pixel_shape[3]);
    if batch == 0 {
        return Err(bad("`pixel_values` holds no images (batch size 0)".into()));
    }
    let has_mask = inputs.contains("bool_masked_pos");
    if has_mask {
        let dtype = inputs.dtype("bool_masked_pos")?;
        let shape = inputs.shape("bool_masked_pos").unwrap_or_default();
        if !matches!(dtype, DType::U8 | DType::Bool) || shape.len() != 2 {
            return Err(bad(format!("`bool_masked_pos` must be u8 or bool [B, N], got {dtype} {shape:?}")));
        }
    }

    let (model, _) = if args.interpolate_pos_encoding {
        if height != width {
            return Err(bad(format!("--interpolate-pos-encoding needs square images, `pixel_values` is {height}x{width}")));
        }
        Beit::from_pretrained_at(&args.model, &device, Some(height))?
    } else {
        Beit::from_pretrained(&args.model, &device)?
    };
    let c = model.config();
    if channels != c.num_channels {
        let msg = format!("`pixel_values` has {channels} channels, the model takes {} (config.num_channels)", c.num_channels);
        return Err(bad(msg));
    }
    if (height, width) != (c.image_size, c.image_size) {
        return Err(bad(format!(
            "`pixel_values` is {height}x{width} but the model takes {0}x{0} (config.image_size); \
             pass --interpolate-pos-encoding to run it at another square size",
            c.image_size
        )));
    }
    let patches = (height / c.patch_size) * (width / c.patch_size);
    if has_mask {
        let shape = inputs.shape("bool_masked_pos").unwrap_or_default();
        if shape != [batch, patches] {
            let msg = format!("`bool_masked_pos` has shape {shape:?}, expected [{batch}, {patches}] (batch, patches)");
            return Err(bad(msg));
        }
        if !c.use_mask_token {
            return Err(bad(format!(
                "`bool_masked_pos` given but {} has no mask token (config.use_mask_token is false)",
                args.model.display()
            )));
        }
    } else if matches!(model, Beit::MaskedImageModeling(_)) {
        return Err(bad(format!(
            "BeitForMaskedImageModeling needs `bool_masked_pos` u8 or bool [{batch}, {patches}] (1 = masked)"
        )));
    }

    let pixels = inputs.get("pixel_values")?;
    let mask = has_mask.then(|| inputs.get("bool_masked_pos")).transpose()?;
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
    let written: Vec<String> =
        out.names().map(|n| format!("{n} {:?}", out.shape(n).unwrap_or_default())).collect();
    println!("wrote {} to {}", written.join(", "), args.output.display());
    Ok(())
}
