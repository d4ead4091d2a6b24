//! `beit classify`: top-5 labels of images, with Hugging Face's BEiT preprocessing
//! ([`beit::preprocess::ImageProcessor`], from the folder's `preprocessor_config.json`, or
//! the `pretrained_cfg` of a timm `config.json`).

use beit::engine::{no_grad, Error, Result, Tensor};
use beit::preprocess::load_image;
use beit::{Architecture, Beit};
use std::path::PathBuf;

/// Options of `beit classify`.
#[derive(clap::Args, Debug)]
pub struct ClassifyArgs {
    /// Hugging Face BeitForImageClassification folder (config.json, model.safetensors and,
    /// optionally, preprocessor_config.json), or Hub id (`org/name[@revision]`).
    #[arg(long, value_parser = crate::hub::model_dir)]
    model: PathBuf,
    /// PNG or JPEG images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Print JSON: `[{"image", "top5": [{"label", "id", "probability"}, ...]}, ...]`.
    #[arg(long)]
    json: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Dtype of the Linear and convolution weights: f32, or bf16 (CPU; half their memory,
    /// f32 activations and accumulation).
    #[arg(long, value_enum, default_value_t)]
    dtype: crate::precision::Precision,
}

/// How many labels to print per image.
const TOP: usize = 5;

/// Run `beit classify`.
pub fn run(args: &ClassifyArgs) -> Result<()> {
    if args.batch == 0 {
        return Err(Error::invalid("classify", "--batch must be positive"));
    }
    let device = beit::open_device(&args.device)?;
    // Cheap checks first: the config's head and the preprocessing's output size.
    let config_file = args.model.join("config.json");
    let config = beit::model::read_folder(&args.model, &device)?.0;
    if config.architecture()? != Architecture::BeitForImageClassification {
        return Err(Error::Format {
            file: config_file.display().to_string(),
            msg: format!("{:?} has no classification head (expected BeitForImageClassification)", config.architecture()?),
        });
    }
    let processor = beit::model::folder_image_processor(&args.model)?;
    let want = (config.image_size, config.image_size);
    let preprocessor_file = args.model.join("preprocessor_config.json");
    let size_error = |got: (usize, usize)| {
        let (file, what) = if preprocessor_file.is_file() {
            (preprocessor_file.display().to_string(), "preprocessing")
        } else {
            (args.model.display().to_string(), "the default preprocessing (there is no preprocessor_config.json)")
        };
        let msg = format!(
            "{what} gives {}x{} images but the model takes {}x{} (config.image_size)",
            got.0, got.1, want.0, want.1
        );
        Error::Format { file, msg }
    };
    if let Some((h, w)) = processor.output_size() {
        if (h as usize, w as usize) != want {
            return Err(size_error((h as usize, w as usize)));
        }
    }
    let (model, _) = Beit::from_pretrained_with(&args.model, &device, args.dtype.load_options(&device, None)?)?;
    let config = model.config();

    let mut results = Vec::new();
    for chunk in args.images.chunks(args.batch) {
        let mut pixels = Vec::with_capacity(chunk.len());
        for path in chunk {
            let x = processor.preprocess(&[load_image(path)?], &device)?;
            if (x.shape()[2], x.shape()[3]) != want {
                return Err(size_error((x.shape()[2], x.shape()[3])));
            }
            pixels.push(x);
        }
        let pixels = Tensor::cat(&pixels.iter().collect::<Vec<_>>(), 0)?;
        let _guard = no_grad();
        let (logits, _) = model.forward(&pixels, None, beit::Mode::eval())?;
        let probs = logits.ok_or_else(|| Error::invalid("classify", "the model gave no logits"))?.softmax_last()?;
        let k = probs.dim(-1)?.min(TOP);
        let (values, indices) = probs.topk(k)?;
        let (values, indices) = (values.to_vec::<f32>()?, indices.to_vec::<i64>()?);
        for (i, path) in chunk.iter().enumerate() {
            let top: Vec<_> = (0..k)
                .map(|j| {
                    let id = indices[i * k + j] as usize;
                    (id, config.label(id), values[i * k + j])
                })
                .collect();
            if args.json {
                let top: Vec<_> = top
                    .iter()
                    .map(|(id, label, p)| serde_json::json!({"label": label, "id": id, "probability": p}))
                    .collect();
                results.push(serde_json::json!({"image": path.display().to_string(), "top5": top}));
            } else {
                println!("{}", path.display());
                for (_, label, p) in &top {
                    println!("  {:>7.3}%  {label}", p * 100.0);
                }
            }
        }
    }
    if args.json {
        println!("{:#}", serde_json::Value::Array(results));
    }
    Ok(())
}
