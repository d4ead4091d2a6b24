//! `beit classify`: top-5 labels of images with Hugging Face's BEiT preprocessing.

use beit::engine::{no_grad, Error, Result};
use beit::preprocess::{load_image, ImageProcessor};
use beit::Beit;
use std::path::PathBuf;

/// Options of `beit classify`.
#[derive(clap::Args, Debug)]
pub struct ClassifyArgs {
    /// Hugging Face BeitForImageClassification folder.
    #[arg(long)]
    model: PathBuf,
    /// PNG or JPEG images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Run `beit classify`.
pub fn run(args: &ClassifyArgs) -> Result<()> {
    let device = beit::open_device(&args.device)?;
    let (model, _) = Beit::from_pretrained(&args.model, &device)?;
    if !matches!(model, Beit::ImageClassification(_)) {
        return Err(Error::invalid("classify", format!("{} is not a classification model", args.model.display())));
    }
    let processor = ImageProcessor::from_folder(&args.model)?;
    let images = args.images.iter().map(load_image).collect::<Result<Vec<_>>>()?;
    let pixels = processor.preprocess(&images, &device)?;
    let _guard = no_grad();
    let (_, _, logits) = model.forward(&pixels, None)?;
    let probs = logits.ok_or_else(|| Error::invalid("classify", "model gave no logits"))?.softmax_last()?;
    let k = probs.dim(-1)?.min(5);
    let (values, indices) = probs.topk(k)?;
    let (values, indices) = (values.to_vec::<f32>()?, indices.to_vec::<i64>()?);
    let mut results = Vec::new();
    for (i, path) in args.images.iter().enumerate() {
        let top: Vec<_> = (0..k)
            .map(|j| {
                let id = indices[i * k + j] as usize;
                serde_json::json!({"label": model.config().label(id), "id": id, "probability": values[i * k + j]})
            })
            .collect();
        if !args.json {
            println!("{}", path.display());
            for t in &top {
                println!("  {:>7.3}%  {}", t["probability"].as_f64().unwrap_or(0.0) * 100.0, t["label"].as_str().unwrap_or(""));
            }
        }
        results.push(serde_json::json!({"image": path.display().to_string(), "top5": top}));
    }
    if args.json {
        println!("{:#}", serde_json::Value::Array(results));
    }
    Ok(())
}
