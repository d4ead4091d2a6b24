//! `beit forward`: run a Hugging Face BEiT folder of any model type on tensors from a
//! safetensors file and write its outputs, to compare with PyTorch
//! (`model(pixel_values, bool_masked_pos=..., output_hidden_states=...)`).

use beit::engine::io::{load_safetensors, StateDict};
use beit::engine::{no_grad, DType, Error, Result, Tensor};
use beit::{Beit, BeitConfig, BeitForSemanticSegmentation, Mode};
use std::path::{Path, PathBuf};

/// Options of `beit forward`.
#[derive(clap::Args, Debug)]
pub struct ForwardArgs {
    /// Hugging Face model folder (config.json + model.safetensors) or Hub id: BeitModel,
    /// BeitForMaskedImageModeling, BeitForImageClassification or BeitForSemanticSegmentation.
    #[arg(long, value_parser = crate::hub::model_dir)]
    model: PathBuf,
    /// Inputs: `pixel_values` f32 [B, C, H, W] and, optionally, `bool_masked_pos` u8 or
    /// bool [B, N] (1 = masked; required by BeitForMaskedImageModeling).
    #[arg(long)]
    input: PathBuf,
    /// Where to write the outputs, all f32: `last_hidden_state`, `pooler_output` (when the
    /// model has a pooler) and `logits` (when it has a head); for segmentation `logits` and
    /// `auxiliary_logits` (when the model has an auxiliary head).
    #[arg(long)]
    output: PathBuf,
    /// Also write `hidden_states.{k}`: k = 0 the embeddings, k = 1..L each block's output.
    #[arg(long)]
    hidden_states: bool,
    /// Accept inputs of another (square) size than config.image_size, interpolating the
    /// position tables as Hugging Face's `interpolate_pos_encoding=True` does.
    #[arg(long)]
    interpolate_pos_encoding: bool,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Dtype of the Linear and convolution weights: f32, or bf16 (CPU; half their memory,
    /// f32 activations and accumulation).
    #[arg(long, value_enum, default_value_t)]
    dtype: crate::precision::Precision,
}

/// A loaded checkpoint: one of the three encoder-with-head types, or segmentation.
enum Model {
    Beit(Box<Beit>),
    Segmentation(Box<BeitForSemanticSegmentation>),
}

impl Model {
    fn config(&self) -> &BeitConfig {
        match self {
            Model::Beit(m) => m.config(),
            Model::Segmentation(m) => m.config(),
        }
    }
}

/// Whether `dir/config.json` names `BeitForSemanticSegmentation`. A file that cannot be
/// read or parsed says no here; the loader then reports what is wrong with it.
fn is_segmentation(dir: &Path) -> bool {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap_or_default();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let archs = config.get("architectures").and_then(|a| a.as_array());
    archs.is_some_and(|a| a.iter().any(|n| n.as_str() == Some("BeitForSemanticSegmentation")))
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

    let size = if args.interpolate_pos_encoding {
        if height != width {
            return Err(bad(format!("--interpolate-pos-encoding needs square images, `pixel_values` is {height}x{width}")));
        }
        Some(height)
    } else {
        None
    };
    let options = args.dtype.load_options(&device, size)?;
    let model = if is_segmentation(&args.model) {
        Model::Segmentation(Box::new(BeitForSemanticSegmentation::from_pretrained_with(&args.model, &device, options)?.0))
    } else {
        Model::Beit(Box::new(Beit::from_pretrained_with(&args.model, &device, options)?.0))
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
    let needs_mask = matches!(&model, Model::Beit(m) if matches!(**m, Beit::MaskedImageModeling(_)));
    if has_mask {
        let shape = inputs.shape("bool_masked_pos").unwrap_or_default();
        if matches!(model, Model::Segmentation(_)) {
            return Err(bad("`bool_masked_pos` given but BeitForSemanticSegmentation takes no mask".into()));
        }
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
    } else if needs_mask {
        return Err(bad(format!(
            "BeitForMaskedImageModeling needs `bool_masked_pos` u8 or bool [{batch}, {patches}] (1 = masked)"
        )));
    }

    let pixels = inputs.get("pixel_values")?;
    let mask = has_mask.then(|| inputs.get("bool_masked_pos")).transpose()?;
    let mode = if args.hidden_states { Mode::eval().with_hidden_states() } else { Mode::eval() };
    let _guard = no_grad();
    let mut out = StateDict::new();
    let hidden = match &model {
        Model::Beit(m) => {
            let (logits, o) = m.forward(&pixels, mask.as_ref(), mode)?;
            out.insert("last_hidden_state", o.last_hidden_state);
            insert_some(&mut out, "pooler_output", o.pooler_output);
            insert_some(&mut out, "logits", logits);
            o.hidden_states
        }
        Model::Segmentation(m) => {
            let o = m.forward(&pixels, mode)?;
            out.insert("logits", o.logits);
            insert_some(&mut out, "auxiliary_logits", o.auxiliary_logits);
            o.hidden_states
        }
    };
    for (k, h) in hidden.into_iter().enumerate() {
        out.insert(format!("hidden_states.{k}"), h);
    }
    out.save(&args.output, None)?;
    let written: Vec<String> =
        out.names().map(|n| format!("{n} {:?}", out.shape(n).unwrap_or_default())).collect();
    println!("wrote {} to {}", written.join(", "), args.output.display());
    Ok(())
}

fn insert_some(out: &mut StateDict, name: &str, tensor: Option<Tensor>) {
    if let Some(t) = tensor {
        out.insert(name, t);
    }
}
