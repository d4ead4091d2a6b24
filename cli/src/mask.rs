//! `beit mask`: look at BEiT's blockwise masks, as a picture or as statistics.

use beit::engine::rng::Rng;
use beit::engine::{Error, Result};
use beit::masker::{BlockwiseMasker, Mask, Masker, RandomMasker};
use beit::preprocess::{load_image, MAX_PIXELS};
use std::path::PathBuf;

/// Most patches a mask window may have (a 4096-pixel side at patch 16).
const MAX_PATCHES: usize = 1 << 16;

/// Options of `beit mask`.
#[derive(clap::Args, Debug)]
pub struct MaskArgs {
    /// Draw one mask over this image (PNG or JPEG) ...
    #[arg(long, requires = "out")]
    image: Option<PathBuf>,
    /// ... into this PNG, masked patches greyed out.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print statistics of this many masks as JSON.
    #[arg(long)]
    stats: bool,
    /// Masks for `--stats`.
    #[arg(long, default_value_t = 5000)]
    samples: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Input side in pixels.
    #[arg(long, default_value_t = 224)]
    image_size: usize,
    /// Patch side in pixels.
    #[arg(long, default_value_t = 16)]
    patch_size: usize,
    /// Patches to mask (default: 75/196 of them, 75 at 224/16).
    #[arg(long)]
    target: Option<usize>,
    /// Smallest block, in patches.
    #[arg(long, default_value_t = 16)]
    min_patches: usize,
    /// Smallest aspect ratio (the largest is its inverse).
    #[arg(long, default_value_t = 0.3)]
    min_aspect: f64,
    /// Uniform random masking instead of blockwise (the paper's ablation).
    #[arg(long)]
    random: bool,
}

/// Run `beit mask`.
pub fn run(args: &MaskArgs) -> Result<()> {
    if args.patch_size == 0 || args.image_size < args.patch_size {
        return Err(Error::invalid("mask", "--image-size must be at least one --patch-size"));
    }
    if (args.image_size as u128).pow(2) > MAX_PIXELS as u128 {
        return Err(Error::invalid("mask", format!("--image-size {0}: {0}x{0} is above the limit of {MAX_PIXELS} pixels", args.image_size)));
    }
    let side = args.image_size / args.patch_size;
    if side * side > MAX_PATCHES {
        return Err(Error::invalid("mask", format!("--image-size / --patch-size gives {side}x{side} patches, above the limit of {MAX_PATCHES}")));
    }
    let window = (side, side);
    let target = args.target.unwrap_or(((side * side * 75 + 98) / 196).max(1));
    let masker: Box<dyn Masker> = if args.random {
        Box::new(RandomMasker::new(window, target)?)
    } else {
        Box::new(BlockwiseMasker::new(window, target, args.min_patches, None, args.min_aspect)?)
    };
    let mut rng = Rng::new(args.seed);
    if let (Some(image), Some(out)) = (&args.image, &args.out) {
        let mask = masker.sample(&mut rng);
        let (s, p) = (side * args.patch_size, args.patch_size);
        let mut img = image::imageops::resize(&load_image(image)?.to_rgb8(), s as u32, s as u32, image::imageops::FilterType::CatmullRom);
        draw_mask(&mut img, &mask, side, p);
        img.save(out).map_err(|e| Error::Format { file: out.display().to_string(), msg: e.to_string() })?;
        println!("{} of {} patches masked in {} blocks; wrote {}", mask.count(), side * side, mask.blocks, out.display());
    }
    if args.stats {
        if args.samples == 0 {
            return Err(Error::invalid("--samples", "must be positive"));
        }
        // Streamed: any number of samples in constant memory.
        let (mut sum, mut min, mut max, mut blocks) = (0usize, usize::MAX, 0usize, 0usize);
        for _ in 0..args.samples {
            let m = masker.sample(&mut rng);
            let count = m.count();
            (sum, min, max, blocks) = (sum + count, min.min(count), max.max(count), blocks + m.blocks);
        }
        let n = args.samples as f64;
        let summary = serde_json::json!({
            "samples": args.samples,
            "window": [side, side],
            "target": target,
            "mean_masked": sum as f64 / n,
            "min_masked": min,
            "max_masked": max,
            "mean_blocks": blocks as f64 / n,
        });
        println!("{summary}");
    }
    if args.image.is_none() && !args.stats {
        return Err(Error::invalid("mask", "give --image X --out Y, or --stats"));
    }
    Ok(())
}

/// Grey out the masked patches of `img` (a `side`×`side` grid of `patch`-pixel cells), each
/// with a thin dark border so the grid shows.
pub fn draw_mask(img: &mut image::RgbImage, mask: &Mask, side: usize, patch: usize) {
    for (i, _) in mask.cells.iter().enumerate().filter(|(_, &m)| m) {
        let (top, left) = ((i / side) * patch, (i % side) * patch);
        for y in top..top + patch {
            for x in left..left + patch {
                let px = img.get_pixel_mut(x as u32, y as u32);
                let grey = (px.0.iter().map(|&v| v as u32).sum::<u32>() / 3 / 3 + 96) as u8;
                let edge = y == top || x == left;
                px.0 = if edge { [60, 60, 60] } else { [grey, grey, grey] };
            }
        }
    }
}
