//! `beit segment`: per-pixel classes of an image from a `BeitForSemanticSegmentation`
//! folder, drawn as a colour overlay with a legend of the classes found (names from
//! `id2label`, drawn with a built-in bitmap font).

mod font;

use beit::engine::{no_grad, Error, Result};
use beit::preprocess::{load_image, ImageProcessor, Size};
use beit::BeitForSemanticSegmentation;
use image::{Rgb, RgbImage};
use std::path::PathBuf;

/// Options of `beit segment`.
#[derive(clap::Args, Debug)]
pub struct SegmentArgs {
    /// Hugging Face BeitForSemanticSegmentation folder (config.json, model.safetensors and,
    /// optionally, preprocessor_config.json for resampling and normalisation), or Hub id.
    #[arg(long, value_parser = crate::hub::model_dir)]
    model: PathBuf,
    /// PNG or JPEG image.
    image: PathBuf,
    /// Where to write the overlay (PNG): the image with class colours blended in, and a
    /// legend below it.
    #[arg(long)]
    out: PathBuf,
    /// Also write the class map as an 8-bit grayscale PNG (pixel value = class id).
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Opacity of the class colours, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    alpha: f32,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Dtype of the Linear and convolution weights: f32, or bf16 (CPU; half their memory,
    /// f32 activations and accumulation).
    #[arg(long, value_enum, default_value_t)]
    dtype: crate::precision::Precision,
}

/// A bright colour for class `id` (hues spaced by the golden ratio).
fn palette(id: usize) -> [u8; 3] {
    let h = (id as f32 * 0.618_034).fract() * 6.0;
    let (s, v) = (0.7f32, 0.95f32);
    let f = h.fract();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    let rgb = match h as u32 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [rgb.0, rgb.1, rgb.2].map(|c| (c * 255.0).round() as u8)
}

/// Run `beit segment`.
pub fn run(args: &SegmentArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.alpha) {
        return Err(Error::invalid("segment", format!("--alpha {} is not in [0, 1]", args.alpha)));
    }
    let device = beit::open_device(&args.device)?;
    let image = load_image(&args.image)?.to_rgb8();
    let options = args.dtype.load_options(&device, None)?;
    let (model, _) = BeitForSemanticSegmentation::from_pretrained_with(&args.model, &device, options)?;
    let config = model.config();
    // The folder's resampling and normalisation, at exactly the model's input size.
    let side = config.image_size as u32;
    let processor = ImageProcessor {
        do_resize: true,
        size: Size::square(side),
        do_center_crop: false,
        ..ImageProcessor::from_folder(&args.model)?
    };
    let pixels = processor.preprocess(&[image::DynamicImage::ImageRgb8(image.clone())], &device)?;
    let (w, h) = image.dimensions();
    let classes = {
        let _guard = no_grad();
        let logits = model.forward(&pixels, beit::Mode::eval())?.logits;
        // Hugging Face's post-processing: logits resized to the image, then argmax.
        logits.upsample_bilinear2d((h as usize, w as usize))?.permute(&[0, 2, 3, 1])?.argmax()?.to_vec::<i64>()?
    };
    let mut counts = vec![0usize; config.num_labels()];
    for &c in &classes {
        counts[c as usize] += 1;
    }
    let mut present: Vec<usize> = (0..counts.len()).filter(|&c| counts[c] > 0).collect();
    present.sort_by_key(|&c| std::cmp::Reverse(counts[c]));
    let legend: Vec<(usize, String)> = present
        .iter()
        .map(|&c| (c, format!("{} {:.1}%", config.label(c), 100.0 * counts[c] as f64 / classes.len() as f64)))
        .collect();
    for (_, line) in &legend {
        println!("{line}");
    }
    let overlay = draw(&image, &classes, &legend, args.alpha);
    save(&overlay, &args.out)?;
    if let Some(path) = &args.mask {
        if counts.len() > 256 {
            return Err(Error::invalid("segment", format!("--mask holds 8-bit ids but the model has {} classes", counts.len())));
        }
        let ids: Vec<u8> = classes.iter().map(|&c| c as u8).collect();
        let mask = image::GrayImage::from_raw(w, h, ids).ok_or_else(|| Error::invalid("segment", "class map size"))?;
        save(&mask, path)?;
    }
    Ok(())
}

/// Write an 8-bit image as PNG; errors name the file.
fn save<P: image::PixelWithColorType<Subpixel = u8>>(img: &image::ImageBuffer<P, Vec<u8>>, path: &PathBuf) -> Result<()> {
    img.save(path).map_err(|e| Error::Format { file: path.display().to_string(), msg: e.to_string() })
}

/// The image with class colours blended in, on top of a legend: one row per class with a
/// colour swatch and its text.
fn draw(image: &RgbImage, classes: &[i64], legend: &[(usize, String)], alpha: f32) -> RgbImage {
    let (w, h) = image.dimensions();
    let scale = (w / 240).max(1);
    let row = (font::HEIGHT + 4) * scale;
    let mut out = RgbImage::from_pixel(w, h + row * legend.len() as u32 + 2 * scale, Rgb([255, 255, 255]));
    for (i, (x, y, p)) in image.enumerate_pixels().enumerate() {
        let c = palette(classes[i] as usize);
        let blend = |k: usize| ((1.0 - alpha) * p.0[k] as f32 + alpha * c[k] as f32).round() as u8;
        out.put_pixel(x, y, Rgb([blend(0), blend(1), blend(2)]));
    }
    for (r, (class, text)) in legend.iter().enumerate() {
        let top = h + 2 * scale + r as u32 * row;
        let swatch = font::HEIGHT * scale;
        for y in top..top + swatch {
            for x in scale..(scale + swatch).min(w) {
                out.put_pixel(x, y, Rgb(palette(*class)));
            }
        }
        font::draw_text(&mut out, text, (2 * scale + swatch + scale, top), scale, Rgb([0, 0, 0]));
    }
    out
}
