//! The built-in dataset: UCI handwritten digits (1797 images, 8×8, 10 classes; E. Alpaydin
//! and C. Kaynak, 1998, CC BY 4.0), from scikit-learn's copy, packed by
//! `beit/data/make_digits.py` into `beit/data/digits.bin` and compiled into the binary.

use crate::model::{resize_grid, Interp};
use beit_engine::rng::Rng;
use beit_engine::{Device, Error, Result, Tensor};

const PACKED: &[u8] = include_bytes!("../../data/digits.bin");
const MAGIC: &[u8] = b"DIGITS01";
const SIDE: usize = 8;
/// Images held out for evaluation in [`Digits::split`].
const TEST: usize = 297;

/// The digits: labels and 8×8 pixels with values 0..=16.
#[derive(Clone, Debug)]
pub struct Digits {
    labels: Vec<u8>,
    pixels: Vec<u8>,
}

impl Digits {
    /// Number of classes.
    pub const CLASSES: usize = 10;

    /// Unpack the built-in copy.
    pub fn load() -> Result<Self> {
        let bad = |msg: &str| Error::Format { file: "beit/data/digits.bin".into(), msg: msg.into() };
        let body = PACKED.strip_prefix(MAGIC).ok_or_else(|| bad("bad magic"))?;
        if body.len() % (1 + SIDE * SIDE) != 0 {
            return Err(bad("truncated"));
        }
        let (mut labels, mut pixels) = (Vec::new(), Vec::new());
        for rec in body.chunks_exact(1 + SIDE * SIDE) {
            if rec[0] > 9 || rec[1..].iter().any(|&p| p > 16) {
                return Err(bad("value out of range"));
            }
            labels.push(rec[0]);
            pixels.extend_from_slice(&rec[1..]);
        }
        Ok(Digits { labels, pixels })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The class of image `i`.
    pub fn label(&self, i: usize) -> usize {
        self.labels[i] as usize
    }

    /// The fixed split: `(train, test)` indices, 1500 and 297 images, from a seeded shuffle.
    pub fn split(&self) -> (Vec<usize>, Vec<usize>) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        let mut rng = Rng::new(0x00D1_6175);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let test = order.split_off(order.len() - TEST.min(order.len()));
        (order, test)
    }

    /// Images `indices` upscaled (bilinear) to `size`×`size`, grey replicated to 3 channels,
    /// scaled to [0, 1] and normalised with mean = std = 0.5: `[B, 3, size, size]` f32, and
    /// their labels as i64 `[B]`. An index out of range is an error.
    pub fn batch(&self, indices: &[usize], size: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let images = self.pixels(indices, size, device, |v| (v - 0.5) / 0.5)?;
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i] as i64).collect();
        Ok((images, Tensor::from_vec(labels, &[indices.len()], device)?))
    }

    /// The tokenizer view of images `indices`: upscaled (bilinear) to `size`×`size`, 3
    /// channels, [0, 1] pixels DALL-E-mapped ([`crate::tokenizer::map_pixels`]).
    pub fn tokenizer_batch(&self, indices: &[usize], size: usize, device: &Device) -> Result<Tensor> {
        let eps = crate::tokenizer::LOGIT_LAPLACE_EPS;
        self.pixels(indices, size, device, |v| v * (1.0 - 2.0 * eps) + eps)
    }

    fn pixels(&self, indices: &[usize], size: usize, device: &Device, f: impl Fn(f64) -> f64) -> Result<Tensor> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::invalid("digits", format!("image {i} of {}", self.len())));
        }
        let plane = size * size;
        let mut data = Vec::with_capacity(indices.len() * 3 * plane);
        for &i in indices {
            let img: Vec<f64> = self.pixels[i * SIDE * SIDE..][..SIDE * SIDE].iter().map(|&p| p as f64 / 16.0).collect();
            let up = resize_grid(&img, (SIDE, SIDE, 1), (size, size), Interp::Bilinear);
            for _ in 0..3 {
                data.extend(up.iter().map(|&v| f(v) as f32));
            }
        }
        Tensor::from_vec(data, &[indices.len(), 3, size, size], device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_splits_and_upscales() {
        let d = Digits::load().unwrap();
        assert_eq!(d.len(), 1797);
        let counts = (0..10).map(|c| (0..d.len()).filter(|&i| d.label(i) == c).count()).collect::<Vec<_>>();
        assert!(counts.iter().all(|&n| (170..=190).contains(&n)), "{counts:?}");
        let (train, test) = d.split();
        assert_eq!((train.len(), test.len()), (1500, 297));
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1797).collect::<Vec<_>>());
        let (x, y) = d.batch(&[0, 5], 32, &beit_backend_cpu::cpu()).unwrap();
        assert_eq!((x.shape(), y.to_vec::<i64>().unwrap()), (&[2usize, 3, 32, 32][..], vec![0, 5]));
        let v = x.to_vec::<f32>().unwrap();
        assert!(v.iter().all(|&p| (-1.0..=1.0).contains(&p)));
        assert_eq!(v[..1024], v[1024..2048], "channels replicate the grey image");
        assert!(d.batch(&[1797], 32, &beit_backend_cpu::cpu()).is_err());
        let t = d.tokenizer_batch(&[0, 5], 32, &beit_backend_cpu::cpu()).unwrap().to_vec::<f32>().unwrap();
        assert!(t.iter().zip(&v).all(|(t, x)| (t - ((x * 0.5 + 0.5) * 0.8 + 0.1)).abs() < 1e-6), "the mapped [0, 1] view");
    }
}
