//! Hugging Face's BEiT image preprocessing (`BeitImageProcessor`): resize, center crop,
//! rescale, normalise, with the values of a folder's `preprocessor_config.json`.
//!
//! Resizing uses the `image` crate's separable filters (Catmull-Rom for bicubic, triangle
//! for bilinear), which antialias like PIL but may differ from it in the last bits.

use beit_engine::{Device, Error, Result, Tensor};
use image::imageops::FilterType;
use image::DynamicImage;
use serde::Deserialize;
use std::path::Path;

/// Images larger than this many pixels are refused instead of exhausting memory.
pub const MAX_PIXELS: u64 = 100_000_000;

/// A `{height, width}` or `{shortest_edge}` size, as in Hugging Face configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Size {
    /// Exact height.
    pub height: Option<u32>,
    /// Exact width.
    pub width: Option<u32>,
    /// Resize so that the shorter side has this length, keeping the aspect ratio.
    pub shortest_edge: Option<u32>,
}

/// The preprocessing settings (Hugging Face field names and `BeitImageProcessor` defaults).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct ImageProcessor {
    /// Whether to resize.
    pub do_resize: bool,
    /// Target size of the resize.
    pub size: Size,
    /// PIL resampling id: 0 nearest, 2 bilinear, 3 bicubic (others map to bicubic).
    pub resample: u32,
    /// Whether to center-crop.
    pub do_center_crop: bool,
    /// Crop size.
    pub crop_size: Size,
    /// Whether to multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// Pixel scale, 1/255.
    pub rescale_factor: f64,
    /// Whether to normalise.
    pub do_normalize: bool,
    /// Per-channel mean.
    pub image_mean: Vec<f64>,
    /// Per-channel std.
    pub image_std: Vec<f64>,
}

impl Default for ImageProcessor {
    fn default() -> Self {
        let s = |n| Size { height: Some(n), width: Some(n), shortest_edge: None };
        ImageProcessor {
            do_resize: true,
            size: s(256),
            resample: 3,
            do_center_crop: true,
            crop_size: s(224),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: vec![0.5; 3],
            image_std: vec![0.5; 3],
        }
    }
}

impl ImageProcessor {
    /// Settings from `dir/preprocessor_config.json`, or the defaults when there is none.
    pub fn from_folder(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join("preprocessor_config.json");
        if !path.exists() {
            return Ok(Self::default());
        }
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: file.clone(), source })?;
        let p: ImageProcessor =
            serde_json::from_str(&text).map_err(|e| Error::Format { file: file.clone(), msg: e.to_string() })?;
        if p.image_mean.len() != 3 || p.image_std.len() != 3 || p.image_std.contains(&0.0) {
            return Err(Error::Format { file, msg: "image_mean and image_std need 3 values, std non-zero".into() });
        }
        Ok(p)
    }

    fn filter(&self) -> FilterType {
        match self.resample {
            0 => FilterType::Nearest,
            2 => FilterType::Triangle,
            _ => FilterType::CatmullRom,
        }
    }

    /// One image to `[3, H, W]` f32 values, row-major.
    fn pixels(&self, img: &DynamicImage) -> Result<(Vec<f32>, u32, u32)> {
        let mut img = img.to_rgb8();
        if self.do_resize {
            let (w, h) = img.dimensions();
            let (nw, nh) = match (self.size.height, self.size.width, self.size.shortest_edge) {
                (Some(h), Some(w), _) => (w, h),
                (_, _, Some(e)) if w <= h => (e, (h as u64 * e as u64 / w as u64) as u32),
                (_, _, Some(e)) => ((w as u64 * e as u64 / h as u64) as u32, e),
                _ => return Err(Error::invalid("preprocess", "size needs height and width or shortest_edge")),
            };
            img = image::imageops::resize(&img, nw.max(1), nh.max(1), self.filter());
        }
        if self.do_center_crop {
            let (ch, cw) = (self.crop_size.height.unwrap_or(224), self.crop_size.width.unwrap_or(224));
            let (w, h) = img.dimensions();
            // Zero-pad when the image is smaller than the crop, as Hugging Face does.
            let mut out = image::RgbImage::new(cw, ch);
            let (ox, oy) = (w as i64 - cw as i64, h as i64 - ch as i64);
            image::imageops::overlay(&mut out, &img, -ox.div_euclid(2), -oy.div_euclid(2));
            img = out;
        }
        let (w, h) = img.dimensions();
        let plane = (w * h) as usize;
        let mut data = vec![0f32; 3 * plane];
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                let mut v = p.0[c] as f64;
                if self.do_rescale {
                    v *= self.rescale_factor;
                }
                if self.do_normalize {
                    v = (v - self.image_mean[c]) / self.image_std[c];
                }
                data[c * plane + i] = v as f32;
            }
        }
        Ok((data, h, w))
    }

    /// A batch `[B, 3, H, W]` f32 (all images end up the same size after the crop or resize).
    pub fn preprocess(&self, images: &[DynamicImage], device: &Device) -> Result<Tensor> {
        let mut data = Vec::new();
        let mut dims = None;
        for img in images {
            let (d, h, w) = self.pixels(img)?;
            if *dims.get_or_insert((h, w)) != (h, w) {
                return Err(Error::invalid("preprocess", "images of different sizes after resizing: set a crop size"));
            }
            data.extend(d);
        }
        let (h, w) = dims.ok_or_else(|| Error::invalid("preprocess", "no images"))?;
        Tensor::from_vec(data, &[images.len(), 3, h as usize, w as usize], device)
    }
}

/// Decode a PNG or JPEG file; errors name the file. Images above [`MAX_PIXELS`] are refused.
pub fn load_image(path: impl AsRef<Path>) -> Result<DynamicImage> {
    load_image_limited(path, MAX_PIXELS)
}

/// [`load_image`] with another pixel limit: larger images are refused before decoding.
pub fn load_image_limited(path: impl AsRef<Path>, max_pixels: u64) -> Result<DynamicImage> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let reader = image::ImageReader::open(path)
        .map_err(|source| Error::Io { path: file.clone(), source })?
        .with_guessed_format()
        .map_err(|source| Error::Io { path: file.clone(), source })?;
    let (w, h) = reader.into_dimensions().map_err(|e| Error::Format { file: file.clone(), msg: e.to_string() })?;
    if w as u64 * h as u64 > max_pixels {
        return Err(Error::Format { file, msg: format!("{w}x{h} pixels is above the limit of {max_pixels}") });
    }
    image::open(path).map_err(|e| Error::Format { file, msg: format!("cannot decode image: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_crop_normalise_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = r#"{"size": {"height": 8, "width": 8}, "crop_size": {"height": 4, "width": 4},
                      "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "unknown": 1}"#;
        std::fs::write(dir.path().join("preprocessor_config.json"), cfg).unwrap();
        let p = ImageProcessor::from_folder(dir.path()).unwrap();
        let white = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(16, 12, image::Rgb([255, 0, 128])));
        let x = p.preprocess(&[white.clone(), white], &beit_backend_cpu::cpu()).unwrap();
        assert_eq!(x.shape(), &[2, 3, 4, 4]);
        let v = x.to_vec::<f32>().unwrap();
        assert!((v[0] - 1.0).abs() < 1e-6 && (v[16] + 1.0).abs() < 1e-6 && (v[32] - 0.00392).abs() < 1e-3);
        let bad = dir.path().join("bad.png");
        std::fs::write(&bad, b"not an image").unwrap();
        let err = load_image(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.png"), "{err}");
        assert!(ImageProcessor::from_folder("/nonexistent").unwrap() == ImageProcessor::default());
    }
}
