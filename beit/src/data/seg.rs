//! Segmentation data: pairs of an image and a per-pixel class map. [`SegFolder`] reads an
//! ADE20K-layout folder; [`Shapes`] generates rectangles, circles and triangles on noisy
//! backgrounds (tests, benchmarks, demos); [`seg_batch`] stacks samples into tensors.

use beit_engine::rng::Rng;
use beit_engine::{Device, Error, Result, Tensor};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};

/// One sample: `pixels [3, H, W]` (normalised) and `labels [H, W]` (class ids, or the
/// ignore index 255).
#[derive(Clone, Debug, PartialEq)]
pub struct SegSample {
    /// Channel-major pixel values.
    pub pixels: Vec<f32>,
    /// Row-major class ids.
    pub labels: Vec<i64>,
}

/// Label value that the loss and the metrics skip (ADE20K's, Hugging Face's default
/// `semantic_loss_ignore_index`).
pub const IGNORE_LABEL: i64 = 255;

/// A source of segmentation samples of one size.
pub trait SegDataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Image side in pixels (samples are square).
    fn size(&self) -> usize;
    /// Sample `i`.
    fn sample(&self, i: usize) -> Result<SegSample>;
}

/// Stack samples `indices` of `ds` into `pixels [B, 3, S, S]` (f32) and `labels [B, S, S]` (i64).
pub fn seg_batch(ds: &dyn SegDataset, indices: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
    let s = ds.size();
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for &i in indices {
        let sample = ds.sample(i)?;
        pixels.extend(sample.pixels);
        labels.extend(sample.labels);
    }
    let b = indices.len();
    Ok((Tensor::from_vec(pixels, &[b, 3, s, s], device)?, Tensor::from_vec(labels, &[b, s, s], device)?))
}

/// Which half of an ADE20K-layout folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// `images/training`, `annotations/training`.
    Training,
    /// `images/validation`, `annotations/validation`.
    Validation,
}

impl Split {
    fn dir(self) -> &'static str {
        match self {
            Split::Training => "training",
            Split::Validation => "validation",
        }
    }
}

/// An ADE20K-layout folder: `images/<split>/<name>.jpg` with `annotations/<split>/<name>.png`
/// (8-bit class maps). Samples are resized to `size`² (image bilinear, labels nearest) and
/// normalised with mean = std = 0.5 (the ADE checkpoints' processor).
#[derive(Clone, Debug)]
pub struct SegFolder {
    /// `(image, annotation)` pairs, sorted by image path.
    pub items: Vec<(PathBuf, PathBuf)>,
    size: usize,
    reduce_labels: bool,
}

impl SegFolder {
    /// List `root`'s `split`. With `reduce_labels` (ADE20K: 0 is "other"), label 0 becomes
    /// 255 (ignored) and every other label drops by one, as Hugging Face's processor does.
    /// An image without its annotation is an error naming both paths.
    pub fn open(root: impl AsRef<Path>, split: Split, size: usize, reduce_labels: bool) -> Result<Self> {
        let root = root.as_ref();
        let images = root.join("images").join(split.dir());
        let annotations = root.join("annotations").join(split.dir());
        let io = |source| Error::Io { path: images.display().to_string(), source };
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(&images).map_err(io)?.map(|e| e.map(|e| e.path())).collect::<std::io::Result<_>>().map_err(io)?;
        files.retain(|p| p.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png")));
        files.sort();
        let mut items = Vec::with_capacity(files.len());
        for image in files {
            let stem = image.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let ann = annotations.join(format!("{stem}.png"));
            if !ann.is_file() {
                return Err(Error::Format {
                    file: image.display().to_string(),
                    msg: format!("no annotation {} for this image", ann.display()),
                });
            }
            items.push((image, ann));
        }
        if items.is_empty() {
            return Err(Error::Format { file: images.display().to_string(), msg: "no JPEG or PNG images found".into() });
        }
        if size == 0 {
            return Err(Error::invalid("SegFolder", "size must be positive"));
        }
        Ok(SegFolder { items, size, reduce_labels })
    }
}

fn open_image(path: &Path) -> Result<image::DynamicImage> {
    crate::preprocess::load_image_as_stored(path)
}

impl SegDataset for SegFolder {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sample(&self, i: usize) -> Result<SegSample> {
        let (image_path, ann_path) = self.items.get(i).ok_or_else(|| Error::invalid("SegFolder", format!("no sample {i}")))?;
        let s = self.size as u32;
        let image = open_image(image_path)?.to_rgb8();
        let ann = open_image(ann_path)?.to_luma8();
        if image.dimensions() != ann.dimensions() {
            return Err(Error::Format {
                file: ann_path.display().to_string(),
                msg: format!("annotation is {:?} but its image is {:?}", ann.dimensions(), image.dimensions()),
            });
        }
        let image = image::imageops::resize(&image, s, s, FilterType::Triangle);
        let ann = image::imageops::resize(&ann, s, s, FilterType::Nearest);
        let pixels = super::transforms::to_chw(&image, Some(([0.5; 3], [0.5; 3])));
        let labels = ann
            .pixels()
            .map(|p| {
                let v = p.0[0] as i64;
                match (self.reduce_labels, v) {
                    (false, v) => v,
                    (true, 0) | (true, IGNORE_LABEL) => IGNORE_LABEL,
                    (true, v) => v - 1,
                }
            })
            .collect();
        Ok(SegSample { pixels, labels })
    }
}

/// Generated scenes: 1–3 filled rectangles, circles and triangles (classes 1, 2, 3; 0 is
/// the background) on a noisy background. Each class has its own hue with jitter, so a
/// small model learns it in a few hundred steps. Sample `i` depends only on `(seed, i)`.
#[derive(Clone, Debug)]
pub struct Shapes {
    len: usize,
    size: usize,
    seed: u64,
}

impl Shapes {
    /// Number of classes (background included).
    pub const CLASSES: usize = 4;
    /// Class names by id.
    pub const NAMES: [&'static str; 4] = ["background", "rectangle", "circle", "triangle"];

    /// `len` scenes of `size`² pixels.
    pub fn new(len: usize, size: usize, seed: u64) -> Result<Self> {
        if size < 8 {
            return Err(Error::invalid("Shapes", format!("size {size} is below 8 pixels")));
        }
        Ok(Shapes { len, size, seed })
    }
}

/// Whether `(x, y)` is inside triangle `t` (any winding).
fn in_triangle(t: &[(f64, f64); 3], (x, y): (f64, f64)) -> bool {
    let side = |(ax, ay): (f64, f64), (bx, by): (f64, f64)| (bx - ax) * (y - ay) - (by - ay) * (x - ax);
    let (a, b, c) = (side(t[0], t[1]), side(t[1], t[2]), side(t[2], t[0]));
    (a >= 0.0 && b >= 0.0 && c >= 0.0) || (a <= 0.0 && b <= 0.0 && c <= 0.0)
}

impl SegDataset for Shapes {
    fn len(&self) -> usize {
        self.len
    }

    fn size(&self) -> usize {
        self.size
    }

    fn sample(&self, i: usize) -> Result<SegSample> {
        if i >= self.len {
            return Err(Error::invalid("Shapes", format!("no sample {i} in {}", self.len)));
        }
        let mut rng = Rng::new(self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let s = self.size;
        let sf = s as f64;
        let mut labels = vec![0i64; s * s];
        let mut colour = vec![[0.0f64; 3]; s * s];
        let base: [f64; 3] = std::array::from_fn(|_| rng.uniform_range(0.3, 0.6));
        colour.iter_mut().for_each(|c| *c = base);
        let hues = [[0.0; 3], [0.9, 0.2, 0.2], [0.2, 0.9, 0.2], [0.2, 0.2, 0.9]];
        for _ in 0..1 + rng.below(3) {
            let class = 1 + rng.below(3);
            let (cx, cy, r) = (rng.uniform_range(0.2, 0.8) * sf, rng.uniform_range(0.2, 0.8) * sf, rng.uniform_range(0.12, 0.3) * sf);
            let tint: [f64; 3] = std::array::from_fn(|k| (hues[class][k] + rng.uniform_range(-0.1, 0.1)).clamp(0.0, 1.0));
            let tri: [(f64, f64); 3] = std::array::from_fn(|k| {
                let a = rng.uniform_range(0.0, 0.5) + k as f64 * std::f64::consts::TAU / 3.0;
                (cx + r * a.cos(), cy + r * a.sin())
            });
            for y in 0..s {
                for x in 0..s {
                    let p = (x as f64 + 0.5, y as f64 + 0.5);
                    let inside = match class {
                        1 => (p.0 - cx).abs() <= r && (p.1 - cy).abs() <= 0.7 * r,
                        2 => (p.0 - cx).powi(2) + (p.1 - cy).powi(2) <= r * r,
                        _ => in_triangle(&tri, p),
                    };
                    if inside {
                        labels[y * s + x] = class as i64;
                        colour[y * s + x] = tint;
                    }
                }
            }
        }
        let mut pixels = vec![0f32; 3 * s * s];
        for (p, c) in colour.iter().enumerate() {
            for k in 0..3 {
                let v = (c[k] + rng.normal() * 0.08).clamp(0.0, 1.0);
                pixels[k * s * s + p] = ((v - 0.5) / 0.5) as f32;
            }
        }
        Ok(SegSample { pixels, labels })
    }
}
