//! Image transforms: random resized crop, horizontal flip, colour jitter, eval resize +
//! center crop, normalisation, the DALL-E pixel map, and BEiT's two-view pretraining sample
//! (one crop resized twice: the model view and the tokenizer view).

use beit_engine::rng::Rng;
use image::imageops::{self, FilterType};
use image::RgbImage;

/// A crop box in source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

/// torchvision's `RandomResizedCrop` box: area fraction in `scale`, aspect ratio
/// log-uniform in `ratio`, 10 tries, then the largest center crop within `ratio`.
pub fn random_crop_box(width: u32, height: u32, scale: (f64, f64), ratio: (f64, f64), rng: &mut Rng) -> CropBox {
    let (w0, h0) = (width as f64, height as f64);
    let area = w0 * h0;
    for _ in 0..10 {
        let target = area * rng.uniform_range(scale.0, scale.1);
        let aspect = rng.uniform_range(ratio.0.ln(), ratio.1.ln()).exp();
        let w = (target * aspect).sqrt().round();
        let h = (target / aspect).sqrt().round();
        if w >= 1.0 && h >= 1.0 && w <= w0 && h <= h0 {
            let (w, h) = (w as u32, h as u32);
            let x = rng.below((width - w + 1) as usize) as u32;
            let y = rng.below((height - h + 1) as usize) as u32;
            return CropBox { x, y, w, h };
        }
    }
    let in_ratio = w0 / h0;
    let (w, h) = if in_ratio < ratio.0 {
        (width, (w0 / ratio.0).round() as u32)
    } else if in_ratio > ratio.1 {
        ((h0 * ratio.1).round() as u32, height)
    } else {
        (width, height)
    };
    let (w, h) = (w.clamp(1, width), h.clamp(1, height));
    CropBox { x: (width - w) / 2, y: (height - h) / 2, w, h }
}

/// Crop `b` out of `img` and resize it to `size`×`size`.
pub fn crop_resize(img: &RgbImage, b: CropBox, size: u32, filter: FilterType) -> RgbImage {
    let crop = imageops::crop_imm(img, b.x, b.y, b.w, b.h).to_image();
    imageops::resize(&crop, size, size, filter)
}

/// Evaluation transform: shorter side to `resize` (bicubic), then the center `crop`.
pub fn resize_center_crop(img: &RgbImage, resize: u32, crop: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let (nw, nh) = if w <= h {
        (resize, ((h as u64 * resize as u64) / w.max(1) as u64).max(1) as u32)
    } else {
        (((w as u64 * resize as u64) / h.max(1) as u64).max(1) as u32, resize)
    };
    let r = imageops::resize(img, nw, nh, FilterType::CatmullRom);
    let (c_w, c_h) = (crop.min(nw), crop.min(nh));
    let b = CropBox { x: (nw - c_w) / 2, y: (nh - c_h) / 2, w: c_w, h: c_h };
    crop_resize(&r, b, crop, FilterType::CatmullRom)
}

/// torchvision's `ColorJitter` without hue: brightness, contrast and saturation factors
/// uniform in `[max(0, 1−s), 1+s]`, applied in that order.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorJitter {
    /// Brightness strength.
    pub brightness: f64,
    /// Contrast strength.
    pub contrast: f64,
    /// Saturation strength.
    pub saturation: f64,
}

impl ColorJitter {
    /// Jitter `img` in place.
    pub fn apply(&self, img: &mut RgbImage, rng: &mut Rng) {
        let factor = |s: f64, rng: &mut Rng| rng.uniform_range((1.0 - s).max(0.0), 1.0 + s);
        let (b, c, s) = (factor(self.brightness, rng), factor(self.contrast, rng), factor(self.saturation, rng));
        let grey = |p: &[f64; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
        let mut px: Vec<[f64; 3]> = img.pixels().map(|p| p.0.map(|v| (v as f64 * b).min(255.0))).collect();
        let mean = px.iter().map(grey).sum::<f64>() / px.len().max(1) as f64;
        for p in px.iter_mut() {
            *p = p.map(|v| (mean + c * (v - mean)).clamp(0.0, 255.0));
            let g = grey(p);
            *p = p.map(|v| (g + s * (v - g)).clamp(0.0, 255.0));
        }
        for (dst, p) in img.pixels_mut().zip(px) {
            dst.0 = p.map(|v| v.round() as u8);
        }
    }
}

/// `[3, H, W]` floats in `[0, 1]`, then `(x − mean)/std` per channel when given.
pub fn to_chw(img: &RgbImage, norm: Option<([f32; 3], [f32; 3])>) -> Vec<f32> {
    let plane = (img.width() * img.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            let v = p.0[c] as f32 / 255.0;
            out[c * plane + i] = match norm {
                Some((m, s)) => (v - m[c]) / s[c],
                None => v,
            };
        }
    }
    out
}

/// The DALL-E tokenizer's pixel map `x·(1 − 2ε) + ε`, ε = 0.1, on `[0, 1]` values.
pub fn dalle_map(x: &mut [f32]) {
    const EPS: f32 = 0.1;
    x.iter_mut().for_each(|v| *v = *v * (1.0 - 2.0 * EPS) + EPS);
}

/// BEiT's pretraining augmentation: colour jitter, horizontal flip, then one random resized
/// crop resized twice — bicubic to `size` and normalised (the model view), and Lanczos to
/// `tokenizer_size` with the DALL-E map (the tokenizer view).
#[derive(Clone, Debug, PartialEq)]
pub struct TwoViewTransform {
    /// Model view side (224).
    pub size: u32,
    /// Tokenizer view side (112).
    pub tokenizer_size: u32,
    /// Crop area range.
    pub scale: (f64, f64),
    /// Crop aspect ratio range.
    pub ratio: (f64, f64),
    /// Flip probability.
    pub flip: f64,
    /// Colour jitter (None: off).
    pub jitter: Option<ColorJitter>,
    /// Model view normalisation.
    pub mean: [f32; 3],
    /// Model view normalisation.
    pub std: [f32; 3],
}

impl TwoViewTransform {
    /// BEiT's settings for `size` (tokenizer view at half the size).
    pub fn beit(size: u32) -> Self {
        TwoViewTransform {
            size,
            tokenizer_size: size / 2,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            flip: 0.5,
            jitter: Some(ColorJitter { brightness: 0.4, contrast: 0.4, saturation: 0.4 }),
            mean: [0.5; 3],
            std: [0.5; 3],
        }
    }

    /// The two views `([3, size, size], [3, tokenizer_size, tokenizer_size])`.
    pub fn apply(&self, img: &RgbImage, rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
        let mut img = img.clone();
        if let Some(j) = &self.jitter {
            j.apply(&mut img, rng);
        }
        if rng.uniform() < self.flip {
            imageops::flip_horizontal_in_place(&mut img);
        }
        let b = random_crop_box(img.width(), img.height(), self.scale, self.ratio, rng);
        let model = to_chw(&crop_resize(&img, b, self.size, FilterType::CatmullRom), Some((self.mean, self.std)));
        let mut tok = to_chw(&crop_resize(&img, b, self.tokenizer_size, FilterType::Lanczos3), None);
        dalle_map(&mut tok);
        (model, tok)
    }
}

/// A tokenizer's own training sample: a random resized crop (35–100% of the area) with a
/// horizontal flip, or for evaluation the resize + center crop; Lanczos to `size`, then the
/// DALL-E map. `[3, size, size]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenizerView {
    /// Output side.
    pub size: u32,
    /// Random crop and flip (training) or center crop (evaluation).
    pub train: bool,
}

impl TokenizerView {
    /// The view of `img`.
    pub fn apply(&self, img: &RgbImage, rng: &mut Rng) -> Vec<f32> {
        let img = if self.train {
            let b = random_crop_box(img.width(), img.height(), (0.35, 1.0), (3.0 / 4.0, 4.0 / 3.0), rng);
            let mut out = crop_resize(img, b, self.size, FilterType::Lanczos3);
            if rng.uniform() < 0.5 {
                imageops::flip_horizontal_in_place(&mut out);
            }
            out
        } else {
            let side = img.width().min(img.height());
            crop_resize(img, CropBox { x: (img.width() - side) / 2, y: (img.height() - side) / 2, w: side, h: side }, self.size, FilterType::Lanczos3)
        };
        let mut x = to_chw(&img, None);
        dalle_map(&mut x);
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 77]))
    }

    #[test]
    fn crop_boxes_stay_inside_and_respect_scale_and_ratio() {
        let mut rng = Rng::new(1);
        for _ in 0..500 {
            let b = random_crop_box(300, 200, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert!(b.x + b.w <= 300 && b.y + b.h <= 200 && b.w > 0 && b.h > 0);
            let frac = (b.w * b.h) as f64 / 60000.0;
            assert!(frac > 0.07 && frac <= 1.0, "{b:?}");
        }
        // A sliver falls back to the centered crop within the ratio range.
        let b = random_crop_box(1000, 10, (0.9, 1.0), (0.75, 4.0 / 3.0), &mut Rng::new(2));
        assert_eq!((b.h, b.w, b.x), (10, 13, 493));
    }

    #[test]
    fn eval_resize_crop_shapes_and_flip_symmetry() {
        let img = gradient(64, 48);
        let e = resize_center_crop(&img, 40, 32);
        assert_eq!(e.dimensions(), (32, 32));
        let mut f = img.clone();
        imageops::flip_horizontal_in_place(&mut f);
        imageops::flip_horizontal_in_place(&mut f);
        assert_eq!(f, img);
        let x = to_chw(&e, Some(([0.5; 3], [0.5; 3])));
        assert!(x.len() == 3 * 32 * 32 && x.iter().all(|v| (-1.0..=1.0).contains(v)));
        // The red channel grows left to right.
        assert!(x[31] > x[0]);
    }

    #[test]
    fn jitter_keeps_range_and_identity_at_zero_strength() {
        let img = gradient(16, 16);
        let mut same = img.clone();
        ColorJitter { brightness: 0.0, contrast: 0.0, saturation: 0.0 }.apply(&mut same, &mut Rng::new(0));
        assert_eq!(same, img);
        let mut j = img.clone();
        ColorJitter { brightness: 0.4, contrast: 0.4, saturation: 0.4 }.apply(&mut j, &mut Rng::new(3));
        assert_ne!(j, img);
    }

    #[test]
    fn two_views_share_one_crop() {
        // Without jitter and flip, both views of a left-to-right ramp must agree on where the
        // crop lies: the mean red value of the two views matches.
        let t = TwoViewTransform { jitter: None, flip: 0.0, ..TwoViewTransform::beit(32) };
        let img = gradient(200, 100);
        for seed in 0..20 {
            let (m, k) = t.apply(&img, &mut Rng::new(seed));
            assert_eq!((m.len(), k.len()), (3 * 32 * 32, 3 * 16 * 16));
            assert!(k.iter().all(|v| (0.1..=0.9).contains(v)), "DALL-E map range");
            let red_m = m[..1024].iter().map(|v| v * 0.5 + 0.5).sum::<f32>() / 1024.0;
            let red_k = k[..256].iter().map(|v| (v - 0.1) / 0.8).sum::<f32>() / 256.0;
            assert!((red_m - red_k).abs() < 0.02, "seed {seed}: {red_m} vs {red_k}");
        }
    }
}
