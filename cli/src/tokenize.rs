//! `beit tokenize`: token ids of a visual tokenizer, from tensors or as a picture.

use beit::data::transforms::to_chw;
use beit::engine::io::{load_safetensors, StateDict};
use beit::engine::rng::mix64;
use beit::engine::{no_grad, DType, Error, Result, Tensor};
use beit::preprocess::load_image;
use beit::tokenizer::{map_pixels, open_tokenizer};
use image::imageops::FilterType;
use std::path::PathBuf;

/// Options of `beit tokenize`.
#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// Tokenizer folder (config.json + model.safetensors): DALL-E (convert_dalle_encoder.py) or a dVAE from `beit tokenizer train`.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Safetensors with `pixels` f32 [B, 3, H, W], already mapped ...
    #[arg(long, requires = "output")]
    input: Option<PathBuf>,
    /// ... written back with `logits` and `token_ids`.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Draw the token grid of this image beside it ...
    #[arg(long, requires = "out")]
    image: Option<PathBuf>,
    /// ... into this PNG.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Run `beit tokenize`.
pub fn run(args: &TokenizeArgs) -> Result<()> {
    let device = beit::open_device(&args.device)?;
    let tok = open_tokenizer(&args.tokenizer, &device)?;
    let _guard = no_grad();
    if let (Some(input), Some(output)) = (&args.input, &args.output) {
        let pixels = load_safetensors(input, &device)?.get("pixels")?;
        if pixels.dtype() != DType::F32 {
            return Err(Error::Format { file: input.display().to_string(), msg: format!("`pixels` must be f32, got {}", pixels.dtype()) });
        }
        let logits = tok.logits(&pixels)?;
        let ids = logits.permute(&[0, 2, 3, 1])?.contiguous()?.argmax()?;
        let mut out = StateDict::new();
        out.insert("logits", logits);
        out.insert("token_ids", ids);
        out.save(output, None)?;
        println!("wrote {}", output.display());
    }
    if let (Some(image), Some(out)) = (&args.image, &args.out) {
        let s = tok.input_size() as u32;
        let img = image::imageops::resize(&load_image(image)?.to_rgb8(), s, s, FilterType::Lanczos3);
        let pixels = map_pixels(&Tensor::from_vec(to_chw(&img, None), &[1, 3, s as usize, s as usize], &device)?)?;
        let ids = tok.tokenize(&pixels)?;
        let (gh, gw) = (ids.shape()[1], ids.shape()[2]);
        let ids = ids.to_vec::<i64>()?;
        let mut canvas = image::RgbImage::new(2 * s, s);
        image::imageops::overlay(&mut canvas, &img, 0, 0);
        for y in 0..s {
            for x in 0..s {
                let id = ids[(y as usize * gh / s as usize) * gw + x as usize * gw / s as usize];
                let c = mix64(id as u64).to_le_bytes();
                canvas.put_pixel(s + x, y, image::Rgb([c[0], c[1], c[2]]));
            }
        }
        canvas.save(out).map_err(|e| Error::Format { file: out.display().to_string(), msg: e.to_string() })?;
        let distinct = ids.iter().collect::<std::collections::BTreeSet<_>>().len();
        println!("{gh}x{gw} tokens, {distinct} distinct; wrote {}", out.display());
    }
    if args.input.is_none() && args.image.is_none() {
        return Err(Error::invalid("tokenize", "give --input IN --output OUT, or --image X --out Y"));
    }
    Ok(())
}
