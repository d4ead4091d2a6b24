//! Hugging Face's BEiT image preprocessing (`BeitImageProcessor`): resize, center crop,
//! rescale, normalise, with the values of a folder's `preprocessor_config.json`.
//!
//! ```no_run
//! use beit::preprocess::{load_image, ImageProcessor};
//! # fn main() -> beit::engine::Result<()> {
//! let dev = beit::open_device("cpu")?;
//! let processor = ImageProcessor::from_folder("beit-base-patch16-224")?;
//! let pixels = processor.preprocess(&[load_image("cat.jpg")?], &dev)?; // [1, 3, 224, 224] f32
//! # Ok(()) }
//! ```
//!
//! Resizing uses the `image` crate's separable filters (Catmull-Rom for PIL's bicubic,
//! triangle for bilinear, Lanczos3 for Lanczos). Like PIL they widen the kernel when
//! downscaling (antialiasing) and round to 8 bits, but PIL's fixed-point arithmetic and
//! torchvision's antialiased resize (Hugging Face's default backend) can differ from them by
//! a level or so on some pixels, i.e. up to about 0.01 after normalisation.

use beit_engine::{Device, Error, Result, Tensor};
use image::imageops::FilterType;
use image::DynamicImage;
use serde::{Deserialize, Deserializer};
use std::path::Path;

mod load;

pub use load::{load_image, load_image_as_stored, load_image_limited};

/// Images (decoded, resized or cropped) larger than this many pixels are refused instead of
/// exhausting memory.
pub const MAX_PIXELS: u64 = 100_000_000;

/// A `{height, width}` or `{shortest_edge}` size, as in Hugging Face configs. A plain
/// integer `n` (older configs: `"size": 224`) reads as `{height: n, width: n}`, as
/// Hugging Face's `get_size_dict` does for BEiT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    /// Exact height.
    pub height: Option<u32>,
    /// Exact width.
    pub width: Option<u32>,
    /// Resize so that the shorter side has this length, keeping the aspect ratio.
    pub shortest_edge: Option<u32>,
}

impl Size {
    /// `{height: n, width: n}`.
    pub fn square(n: u32) -> Self {
        Size { height: Some(n), width: Some(n), shortest_edge: None }
    }

    /// `(height, width)` when both are given.
    fn exact(&self) -> Option<(u32, u32)> {
        Some((self.height?, self.width?))
    }
}

/// What a size may look like in JSON.
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    Square(u32),
    Dict {
        height: Option<u32>,
        width: Option<u32>,
        shortest_edge: Option<u32>,
        longest_edge: Option<u32>,
        max_height: Option<u32>,
        max_width: Option<u32>,
    },
}

/// A size field; `null` keeps the default.
fn size_field<'de, D: Deserializer<'de>>(d: D, default: Size) -> std::result::Result<Size, D::Error> {
    use serde::de::Error as _;
    Ok(match Option::<SizeRepr>::deserialize(d)? {
        None => default,
        Some(SizeRepr::Square(n)) => Size::square(n),
        Some(SizeRepr::Dict { height, width, shortest_edge, longest_edge, max_height, max_width }) => {
            if longest_edge.is_some() || max_height.is_some() || max_width.is_some() {
                return Err(D::Error::custom(
                    "longest_edge / max_height / max_width sizes are not supported (use {height, width} or {shortest_edge})",
                ));
            }
            Size { height, width, shortest_edge }
        }
    })
}

fn resize_size<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Size, D::Error> {
    size_field(d, ImageProcessor::default().size)
}

fn crop_size<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Size, D::Error> {
    size_field(d, ImageProcessor::default().crop_size)
}

/// Per-channel values: a list, or one number for every channel; `null` keeps 0.5.
fn channels<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        One(f64),
        Each(Vec<f64>),
    }
    Ok(match Option::<Repr>::deserialize(d)? {
        None => vec![0.5; 3],
        Some(Repr::One(v)) => vec![v; 3],
        Some(Repr::Each(v)) => v,
    })
}

/// The preprocessing settings (Hugging Face field names; unknown fields are ignored).
///
/// The defaults are those of `BeitImageProcessor` in transformers 4.x: resize to exactly
/// 256×256 (bicubic), center crop 224×224, rescale by 1/255, normalise with mean = std = 0.5.
/// (transformers 5.x changed the class defaults to a 224×224 resize without crop; published
/// checkpoints spell their values out in `preprocessor_config.json`, which wins either way.)
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct ImageProcessor {
    /// Whether to resize.
    pub do_resize: bool,
    /// Target size of the resize: exact, or the shortest edge (aspect ratio kept, the long
    /// side rounded down, as Hugging Face does).
    #[serde(deserialize_with = "resize_size")]
    pub size: Size,
    /// PIL resampling id: 0 nearest, 1 Lanczos, 2 bilinear, 3 bicubic, 4 box and 5 Hamming
    /// (both approximated by bilinear).
    pub resample: u32,
    /// Whether to center-crop (zero-padding images smaller than the crop, as Hugging Face does).
    pub do_center_crop: bool,
    /// Crop size (`height` and `width`).
    #[serde(deserialize_with = "crop_size")]
    pub crop_size: Size,
    /// Whether to multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// Pixel scale, 1/255.
    pub rescale_factor: f64,
    /// Whether to normalise.
    pub do_normalize: bool,
    /// Per-channel mean (one number stands for all three channels).
    #[serde(deserialize_with = "channels")]
    pub image_mean: Vec<f64>,
    /// Per-channel std (one number stands for all three channels).
    #[serde(deserialize_with = "channels")]
    pub image_std: Vec<f64>,
}

impl Default for ImageProcessor {
    fn default() -> Self {
        ImageProcessor {
            do_resize: true,
            size: Size::square(256),
            resample: 3,
            do_center_crop: true,
            crop_size: Size::square(224),
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
    /// A config that does not parse or does not make sense is an error naming the file.
    pub fn from_folder(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join("preprocessor_config.json");
        if !path.is_file() {
            return Ok(Self::default());
        }
        let file = path.display().to_string();
        let text = crate::limits::read_config_text(&path)?;
        Self::from_json(&text).map_err(|e| match e {
            Error::Invalid { msg, .. } => Error::Format { file, msg },
            other => other,
        })
    }

    /// Parse and check preprocessor config JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        let p: ImageProcessor =
            serde_json::from_str(text).map_err(|e| Error::invalid("preprocessor_config.json", e.to_string()))?;
        p.validate()?;
        Ok(p)
    }

    /// Check the settings; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::invalid("preprocessor_config.json", msg));
        let pixels = |(h, w): (u32, u32)| h as u64 * w as u64;
        if self.do_resize {
            match (self.size.exact(), self.size.shortest_edge) {
                (Some((h, w)), _) if h > 0 && w > 0 => {}
                (None, Some(e)) if e > 0 => {}
                _ => return bad(format!("`size` needs positive height and width, or shortest_edge: {:?}", self.size)),
            }
            let side = self.size.shortest_edge.unwrap_or(0);
            if self.size.exact().map_or(pixels((side, side)), pixels) > MAX_PIXELS {
                return bad(format!("`size` {:?} is above the limit of {MAX_PIXELS} pixels", self.size));
            }
            if self.resample > 5 {
                return bad(format!("`resample` {} is not a PIL resampling filter (0-5)", self.resample));
            }
        }
        if self.do_center_crop && !matches!(self.crop_size.exact(), Some((h, w)) if h > 0 && w > 0) {
            return bad(format!("`crop_size` needs positive height and width: {:?}", self.crop_size));
        }
        if self.do_center_crop && self.crop_size.exact().map_or(0, pixels) > MAX_PIXELS {
            return bad(format!("`crop_size` {:?} is above the limit of {MAX_PIXELS} pixels", self.crop_size));
        }
        if self.do_rescale && !self.rescale_factor.is_finite() {
            return bad(format!("`rescale_factor` {} is not finite", self.rescale_factor));
        }
        if self.do_normalize {
            if self.image_mean.len() != 3 || self.image_std.len() != 3 {
                return bad("`image_mean` and `image_std` need 3 values (RGB)".into());
            }
            if self.image_mean.iter().chain(&self.image_std).any(|v| !v.is_finite()) || self.image_std.contains(&0.0) {
                return bad("`image_mean` and `image_std` must be finite, the std non-zero".into());
            }
        }
        Ok(())
    }

    fn filter(&self) -> FilterType {
        match self.resample {
            0 => FilterType::Nearest,
            1 => FilterType::Lanczos3,
            3 => FilterType::CatmullRom,
            _ => FilterType::Triangle,
        }
    }

    /// The `(height, width)` that [`ImageProcessor::preprocess`] produces, when the settings
    /// fix it (a crop, or an exact resize); `None` when it depends on the image.
    pub fn output_size(&self) -> Option<(u32, u32)> {
        if self.do_center_crop {
            self.crop_size.exact()
        } else if self.do_resize {
            self.size.exact()
        } else {
            None
        }
    }

    /// The size of the resize of a `w`×`h` image, as `(width, height)`.
    fn resized(&self, w: u32, h: u32) -> Result<(u32, u32)> {
        let size = match (self.size.exact(), self.size.shortest_edge) {
            (Some((nh, nw)), _) => (nw, nh),
            (None, Some(e)) => {
                // Hugging Face: the short side becomes `e`, the long one int(e * long / short).
                let (short, long) = (w.min(h) as u64, w.max(h) as u64);
                let long = (e as u64 * long / short.max(1)).min(u32::MAX as u64) as u32;
                if w <= h { (e, long) } else { (long, e) }
            }
            _ => return Err(Error::invalid("preprocess", "size needs height and width or shortest_edge")),
        };
        if size.0 as u64 * size.1 as u64 > MAX_PIXELS {
            let msg = format!("resizing {w}x{h} to {}x{} (`size` {:?}) is above the limit of {MAX_PIXELS} pixels", size.0, size.1, self.size);
            return Err(Error::invalid("preprocessor_config.json", msg));
        }
        Ok((size.0.max(1), size.1.max(1)))
    }

    /// One image to `[3, H, W]` f32 values, channel-major, with its `(H, W)`.
    fn pixels(&self, img: &DynamicImage) -> Result<(Vec<f32>, u32, u32)> {
        self.validate()?;
        let mut img = img.to_rgb8();
        if self.do_resize {
            let (w, h) = img.dimensions();
            let (nw, nh) = self.resized(w, h)?;
            // PIL returns a copy when the size is unchanged.
            if (nw, nh) != (w, h) {
                img = image::imageops::resize(&img, nw, nh, self.filter());
            }
        }
        if self.do_center_crop {
            let (ch, cw) = self.crop_size.exact().unwrap_or((224, 224));
            let (w, h) = img.dimensions();
            if (w, h) != (cw, ch) {
                // Offsets as Hugging Face's center_crop: floor((size - crop) / 2) when cropping,
                // ceil((crop - size) / 2) of zero padding when the image is smaller.
                let mut out = image::RgbImage::new(cw, ch);
                let (ox, oy) = (w as i64 - cw as i64, h as i64 - ch as i64);
                image::imageops::replace(&mut out, &img, -ox.div_euclid(2), -oy.div_euclid(2));
                img = out;
            }
        }
        let (w, h) = img.dimensions();
        let plane = w as usize * h as usize;
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

    /// A batch `[B, 3, H, W]` f32 on `device`: each image converted to RGB, resized,
    /// center-cropped, rescaled and normalised. All images must end up the same size (a
    /// crop or an exact resize sees to that).
    pub fn preprocess(&self, images: &[DynamicImage], device: &Device) -> Result<Tensor> {
        let mut data = Vec::new();
        let mut dims = None;
        for img in images {
            let (d, h, w) = self.pixels(img)?;
            let first = *dims.get_or_insert((h, w));
            if first != (h, w) {
                return Err(Error::invalid(
                    "preprocess",
                    format!("images of different sizes after preprocessing ({first:?} and {:?}): set a crop size", (h, w)),
                ));
            }
            data.extend(d);
        }
        let (h, w) = dims.ok_or_else(|| Error::invalid("preprocess", "no images"))?;
        Tensor::from_vec(data, &[images.len(), 3, h as usize, w as usize], device)
    }
}

#[cfg(test)]
mod tests;
