//! Which patches to mask: BEiT's blockwise masking (microsoft/unilm's masking generator,
//! the paper's Algorithm 1) and uniform random masking for ablations, both seeded.

use beit_engine::rng::Rng;
use beit_engine::{Device, Error, Result, Tensor};

/// A patch mask over a `height × width` window, row-major, `true` = masked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    /// Window rows.
    pub height: usize,
    /// Window columns.
    pub width: usize,
    /// One flag per patch, row-major.
    pub cells: Vec<bool>,
    /// Number of blocks placed (1 per masked patch for random masking).
    pub blocks: usize,
}

impl Mask {
    /// Number of masked patches.
    pub fn count(&self) -> usize {
        self.cells.iter().filter(|&&m| m).count()
    }
}

/// Draws patch masks.
pub trait Masker: Send + Sync {
    /// The window (rows, columns) of patches.
    fn window(&self) -> (usize, usize);
    /// One mask from `rng`.
    fn sample(&self, rng: &mut Rng) -> Mask;

    /// `n` masks, as the MIM model takes them.
    fn sample_batch(&self, n: usize, rng: &mut Rng, device: &Device) -> Result<MaskedPatches> {
        let masks: Vec<Mask> = (0..n).map(|_| self.sample(rng)).collect();
        MaskedPatches::from_masks(&masks, device)
    }
}

/// A batch's masked patches in the two forms the MIM model uses: the `bool_masked_pos`
/// input of the embeddings and the rows of the masked patches for the head and the loss,
/// built together on the host (no read-back from the device).
#[derive(Clone, Debug)]
pub struct MaskedPatches {
    /// `[B, N]` u8, 1 = masked.
    pub mask: Tensor,
    /// `[M]` i64: `b·N + n` of every masked patch, batch-major then row-major (the order
    /// of the labels).
    pub rows: Tensor,
}

impl MaskedPatches {
    /// From one mask per sample, all over the same window.
    pub fn from_masks(masks: &[Mask], device: &Device) -> Result<Self> {
        let n = masks.first().map_or(0, |m| m.cells.len());
        if let Some(m) = masks.iter().find(|m| m.cells.len() != n) {
            return Err(Error::invalid("masks", format!("masks of {} and {n} patches in one batch", m.cells.len())));
        }
        let cells: Vec<u8> = masks.iter().flat_map(|m| m.cells.iter().map(|&c| u8::from(c))).collect();
        Self::from_cells(cells, masks.len(), device)
    }

    /// From a `bool_masked_pos` tensor `[B, N]` (u8 or bool), read back once.
    pub fn from_tensor(mask: &Tensor) -> Result<Self> {
        let [b, _] = *mask.shape() else {
            return Err(Error::invalid("bool_masked_pos", format!("expects [B, N], got {:?}", mask.shape())));
        };
        let cells = mask.to_dtype(beit_engine::DType::U8)?.to_vec::<u8>()?;
        Self::from_cells(cells, b, mask.device())
    }

    fn from_cells(cells: Vec<u8>, batch: usize, device: &Device) -> Result<Self> {
        let n = cells.len().checked_div(batch).unwrap_or(0);
        let rows: Vec<i64> = cells.iter().enumerate().filter(|(_, &c)| c != 0).map(|(i, _)| i as i64).collect();
        let m = rows.len();
        Ok(MaskedPatches { rows: Tensor::from_vec(rows, &[m], device)?, mask: Tensor::from_vec(cells, &[batch, n], device)? })
    }

    /// Number of masked patches `M`.
    pub fn count(&self) -> usize {
        self.rows.numel()
    }
}

/// Blockwise masking: rectangles of at least `min_patches` cells with log-uniform aspect
/// ratios until `target` patches are masked or no block fits (10 attempts per block).
#[derive(Clone, Debug, PartialEq)]
pub struct BlockwiseMasker {
    height: usize,
    width: usize,
    target: usize,
    min_patches: usize,
    max_patches: usize,
    log_aspect: (f64, f64),
}

impl BlockwiseMasker {
    /// Masker for a window with `target` masked patches, blocks of `min_patches`..=`max_patches`
    /// cells (`None`: up to `target`) and aspect ratios in `[min_aspect, 1/min_aspect]`.
    pub fn new(
        window: (usize, usize),
        target: usize,
        min_patches: usize,
        max_patches: Option<usize>,
        min_aspect: f64,
    ) -> Result<Self> {
        let (height, width) = window;
        let invalid = |msg: String| Error::invalid("blockwise masker", msg);
        if height == 0 || width == 0 || target > height * width {
            return Err(invalid(format!("target {target} for a {height}x{width} window")));
        }
        if !(min_aspect > 0.0 && min_aspect <= 1.0) {
            return Err(invalid(format!("min_aspect {min_aspect} not in (0, 1]")));
        }
        Ok(BlockwiseMasker {
            height,
            width,
            target,
            min_patches,
            max_patches: max_patches.unwrap_or(target),
            log_aspect: (min_aspect.ln(), (1.0 / min_aspect).ln()),
        })
    }

    /// BEiT's defaults for a window: 75/196 of the patches, rounded (75 of 196 at 224/16),
    /// blocks of at least 16 patches, aspect ratio 0.3.
    pub fn beit(window: (usize, usize)) -> Result<Self> {
        let target = ((window.0 * window.1 * 75 + 98) / 196).max(1);
        Self::new(window, target, 16, None, 0.3)
    }

    /// Place one block masking between 1 and `budget` new cells: `(top, left, h, w, newly
    /// masked)`, or `None` when 10 attempts found no such block.
    fn place_block(&self, cells: &mut [bool], budget: usize, rng: &mut Rng) -> Option<(usize, usize, usize, usize, usize)> {
        for _ in 0..10 {
            // Python's random.uniform(a, b) also works for a > b.
            let area = rng.uniform_range(self.min_patches as f64, budget as f64);
            let aspect = rng.uniform_range(self.log_aspect.0, self.log_aspect.1).exp();
            let h = (area * aspect).sqrt().round_ties_even() as usize;
            let w = (area / aspect).sqrt().round_ties_even() as usize;
            if w < self.width && h < self.height {
                let top = rng.below(self.height - h + 1);
                let left = rng.below(self.width - w + 1);
                let rows = top..top + h;
                let masked: usize = rows.clone().map(|r| cells[r * self.width + left..][..w].iter().filter(|&&c| c).count()).sum();
                let fresh = h * w - masked;
                if fresh > 0 && fresh <= budget {
                    for r in rows {
                        cells[r * self.width + left..][..w].fill(true);
                    }
                    return Some((top, left, h, w, fresh));
                }
            }
        }
        None
    }
}

impl Masker for BlockwiseMasker {
    fn window(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    fn sample(&self, rng: &mut Rng) -> Mask {
        let mut cells = vec![false; self.height * self.width];
        let (mut count, mut blocks) = (0, 0);
        while count < self.target {
            let budget = (self.target - count).min(self.max_patches);
            let Some((.., fresh)) = self.place_block(&mut cells, budget, rng) else { break };
            count += fresh;
            blocks += 1;
        }
        Mask { height: self.height, width: self.width, cells, blocks }
    }
}

/// Uniform random masking of exactly `target` patches (the paper's ablation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RandomMasker {
    height: usize,
    width: usize,
    target: usize,
}

impl RandomMasker {
    /// Mask `target` of the window's patches uniformly at random.
    pub fn new(window: (usize, usize), target: usize) -> Result<Self> {
        if target > window.0 * window.1 {
            return Err(Error::invalid("random masker", format!("target {target} for a {window:?} window")));
        }
        Ok(RandomMasker { height: window.0, width: window.1, target })
    }
}

impl Masker for RandomMasker {
    fn window(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    fn sample(&self, rng: &mut Rng) -> Mask {
        let n = self.height * self.width;
        let mut order: Vec<usize> = (0..n).collect();
        for i in 0..self.target {
            let j = i + rng.below(n - i);
            order.swap(i, j);
        }
        let mut cells = vec![false; n];
        order[..self.target].iter().for_each(|&i| cells[i] = true);
        Mask { height: self.height, width: self.width, cells, blocks: self.target }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blockwise_statistics_match_the_reference_algorithm() {
        let masker = BlockwiseMasker::beit((14, 14)).unwrap();
        assert_eq!(masker.target, 75);
        let mut rng = Rng::new(0);
        let counts: Vec<usize> = (0..5000).map(|_| masker.sample(&mut rng).count()).collect();
        let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
        let (min, max) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        // unilm's generator: mean 74.47, min 64, max 75 over 20k draws.
        assert!((mean - 74.5).abs() <= 0.3, "mean {mean}");
        assert!(max == 75 && (60..=70).contains(&min), "min {min} max {max}");
    }

    #[test]
    fn blocks_are_rectangles_of_at_least_min_patches_unless_the_budget_is_smaller() {
        let masker = BlockwiseMasker::new((14, 14), 75, 16, None, 0.3).unwrap();
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let mut cells = vec![false; 196];
            let mut count = 0;
            while count < 75 {
                let before = cells.iter().filter(|&&c| c).count();
                let Some((top, left, h, w, fresh)) = masker.place_block(&mut cells, 75 - count, &mut rng) else { break };
                assert!((top..top + h).all(|r| (left..left + w).all(|c| cells[r * 14 + c])), "block not masked");
                assert_eq!(cells.iter().filter(|&&c| c).count(), before + fresh, "cells outside the block changed");
                // Rounding h and w can shrink a 16-cell target a little (e.g. 3x5).
                assert!(h * w >= 12 || 75 - count < 16, "block of {} cells with budget {}", h * w, 75 - count);
                count += fresh;
            }
        }
    }

    #[test]
    fn seeded_deterministic_and_random_masker_exact() {
        let b = BlockwiseMasker::beit((14, 14)).unwrap();
        let dev = beit_backend_cpu::cpu();
        let m1 = b.sample_batch(4, &mut Rng::new(9), &dev).unwrap().mask.to_vec::<u8>().unwrap();
        let m2 = b.sample_batch(4, &mut Rng::new(9), &dev).unwrap().mask.to_vec::<u8>().unwrap();
        assert_eq!(m1, m2);
        // The rows are the flat indices of the 1s, and reading the mask back gives them too.
        let batch = b.sample_batch(4, &mut Rng::new(9), &dev).unwrap();
        let ones: Vec<i64> = m1.iter().enumerate().filter(|(_, &m)| m == 1).map(|(i, _)| i as i64).collect();
        assert_eq!((batch.mask.shape(), batch.count()), (&[4, 196][..], ones.len()));
        assert_eq!(batch.rows.to_vec::<i64>().unwrap(), ones);
        assert_eq!(MaskedPatches::from_tensor(&batch.mask).unwrap().rows.to_vec::<i64>().unwrap(), ones);
        let r = RandomMasker::new((14, 14), 75).unwrap();
        let mut rng = Rng::new(1);
        assert!((0..100).all(|_| r.sample(&mut rng).count() == 75));
        assert!(BlockwiseMasker::new((14, 14), 197, 16, None, 0.3).is_err());
    }
}
