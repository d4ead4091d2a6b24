//! Batches from an [`ImageFolder`]: shuffled per epoch from a seed, decoded and transformed
//! in parallel on the rayon pool, prefetched on a background thread so the trainer does not
//! wait. Each sample's randomness depends only on (seed, epoch, index): runs repeat exactly.
//! Unreadable images are skipped with a warning naming the file, and counted.

use super::ImageFolder;
use crate::preprocess::load_image_limited;
use beit_engine::collective::Collective;
use beit_engine::rng::{mix64, Rng};
use beit_engine::{Error, Result};
use image::RgbImage;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// Turns one decoded image into one or more flat float views.
pub trait SampleTransform: Send + Sync + 'static {
    /// The views of `img` (each `[3, H, W]` row-major), drawing randomness from `rng`.
    fn views(&self, img: &RgbImage, rng: &mut Rng) -> Vec<Vec<f32>>;
}

impl SampleTransform for super::transforms::TwoViewTransform {
    fn views(&self, img: &RgbImage, rng: &mut Rng) -> Vec<Vec<f32>> {
        let (m, t) = self.apply(img, rng);
        vec![m, t]
    }
}

impl SampleTransform for super::transforms::TokenizerView {
    fn views(&self, img: &RgbImage, rng: &mut Rng) -> Vec<Vec<f32>> {
        vec![self.apply(img, rng)]
    }
}

/// One batch: per view, the concatenated samples; labels where the folder has classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `views[v]` holds `len` samples of view `v` back to back.
    pub views: Vec<Vec<f32>>,
    /// Class ids (labelled folders).
    pub labels: Vec<i64>,
    /// Samples in the batch (skipped files are not counted).
    pub len: usize,
    /// Epoch the batch belongs to.
    pub epoch: u64,
}

/// Which part of every global batch a member of a data-parallel group trains on: the
/// `rank`-th of `world` slices, in the batch's order ([`Shard::part`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    rank: usize,
    world: usize,
}

impl Shard {
    /// The whole batch: a process alone.
    pub const WHOLE: Shard = Shard { rank: 0, world: 1 };

    /// Member `rank` of `world` (`rank < world`).
    pub fn new(rank: usize, world: usize) -> Result<Shard> {
        if rank >= world {
            return Err(Error::invalid("shard", format!("member {rank} of a group of {world}")));
        }
        Ok(Shard { rank, world })
    }

    /// The member.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Members in the group.
    pub fn world(&self) -> usize {
        self.world
    }

    /// The positions of this member's items among `len` (a batch, an evaluation set): the
    /// parts are in order, cover every item once, and are as even as can be (equal when
    /// `world` divides `len`, as the runner checks it does a training batch).
    pub fn part(&self, len: usize) -> std::ops::Range<usize> {
        self.rank * len / self.world..(self.rank + 1) * len / self.world
    }

    /// The member `group` makes of this process (the whole, alone).
    pub fn of(group: Option<&dyn Collective>) -> Result<Shard> {
        group.map_or(Ok(Shard::WHOLE), |g| Shard::new(g.rank(), g.world_size()))
    }
}

/// How a [`Loader`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch (an epoch's last, smaller batch is dropped).
    pub batch: usize,
    /// Passes over the folder.
    pub epochs: u64,
    /// Seed of the shuffles and the per-sample augmentations.
    pub seed: u64,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// Images with more pixels are skipped (with a warning) instead of decoded.
    pub max_pixels: u64,
    /// Batches to pass over, undecoded, at the start (resuming a run mid-way).
    pub skip: u64,
    /// Load only this member's slice of every batch (data-parallel training); `batch`
    /// stays the whole batch, which orders and seeds the samples.
    pub shard: Shard,
}

impl LoaderConfig {
    /// `batch` samples a batch, one epoch, seed 0, 2 batches ahead, the default pixel limit.
    pub fn new(batch: usize) -> Self {
        LoaderConfig { batch, epochs: 1, seed: 0, prefetch: 2, max_pixels: crate::preprocess::MAX_PIXELS, skip: 0, shard: Shard::WHOLE }
    }
}

/// The shuffled order of `n` samples in `epoch` of a run seeded `seed`.
pub(crate) fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(mix64(seed ^ epoch.wrapping_mul(0x9E37_79B9)));
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

/// A prefetching batch iterator; ends after `epochs` epochs.
pub struct Loader {
    rx: Receiver<Batch>,
    skipped: Arc<AtomicUsize>,
}

impl Loader {
    /// Start loading `folder` on a background thread.
    pub fn new<T: SampleTransform>(folder: ImageFolder, transform: T, config: LoaderConfig) -> Self {
        let LoaderConfig { batch, epochs, seed, prefetch, max_pixels, skip, shard } = config;
        let (tx, rx) = sync_channel(prefetch.max(1));
        let skipped = Arc::new(AtomicUsize::new(0));
        let counter = skipped.clone();
        std::thread::spawn(move || {
            let mut position = 0u64;
            for epoch in 0..epochs {
                let order = epoch_order(folder.len(), seed, epoch);
                for chunk in order.chunks_exact(batch.max(1)) {
                    position += 1;
                    if position <= skip {
                        continue;
                    }
                    let samples: Vec<_> = chunk[shard.part(chunk.len())]
                        .par_iter()
                        .filter_map(|&i| {
                            let (path, label) = &folder.items[i];
                            match load_image_limited(path, max_pixels) {
                                Ok(img) => {
                                    let mut r = Rng::new(mix64(seed ^ mix64(epoch) ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407)));
                                    Some((transform.views(&img.to_rgb8(), &mut r), label.map(|l| l as i64)))
                                }
                                Err(e) => {
                                    tracing::warn!("skipping {e}");
                                    counter.fetch_add(1, Ordering::Relaxed);
                                    None
                                }
                            }
                        })
                        .collect();
                    let len = samples.len();
                    let n_views = samples.first().map_or(0, |s| s.0.len());
                    let mut views = vec![Vec::new(); n_views];
                    let mut labels = Vec::new();
                    for (v, l) in samples {
                        v.into_iter().zip(views.iter_mut()).for_each(|(src, dst)| dst.extend(src));
                        labels.extend(l);
                    }
                    if tx.send(Batch { views, labels, len, epoch }).is_err() {
                        return;
                    }
                }
            }
        });
        Loader { rx, skipped }
    }

    /// Files skipped so far because they could not be decoded.
    pub fn skipped(&self) -> usize {
        self.skipped.load(Ordering::Relaxed)
    }
}

impl Iterator for Loader {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        self.rx.recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::transforms::TwoViewTransform;

    fn write_images(dir: &std::path::Path, n: u32) {
        for i in 0..n {
            let img = RgbImage::from_fn(40 + i, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, (i * 20) as u8]));
            img.save(dir.join(format!("img{i}.png"))).unwrap();
        }
    }

    #[test]
    fn deterministic_batches_skipping_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        write_images(dir.path(), 7);
        std::fs::write(dir.path().join("broken.png"), b"not a png").unwrap();
        let folder = ImageFolder::flat(dir.path()).unwrap();
        assert_eq!(folder.len(), 8);
        let t = TwoViewTransform::beit(16);
        let run = || {
            let config = LoaderConfig { epochs: 2, seed: 9, ..LoaderConfig::new(4) };
            let mut l = Loader::new(folder.clone(), t.clone(), config);
            let batches: Vec<Batch> = l.by_ref().collect();
            (batches, l.skipped())
        };
        let (a, skipped) = run();
        let (b, _) = run();
        assert_eq!(a, b, "same seed, same batches");
        assert_eq!((a.len(), skipped), (4, 2), "2 epochs of 2 batches; the broken file skipped once per epoch");
        assert_eq!(a.iter().map(|x| x.len).sum::<usize>(), 14);
        assert_eq!(a[0].views[0].len(), a[0].len * 3 * 16 * 16);
        assert_eq!(a[0].views[1].len(), a[0].len * 3 * 8 * 8);
        assert_ne!(a[0].views[0], a[2].views[0], "epochs reshuffle");
        // Skipping batches resumes at the same place.
        let config = LoaderConfig { epochs: 2, seed: 9, skip: 3, ..LoaderConfig::new(4) };
        assert_eq!(Loader::new(folder.clone(), t.clone(), config).collect::<Vec<_>>(), a[3..]);
        // A pixel limit below the images' size skips them all, with a count.
        let mut l = Loader::new(folder.clone(), t, LoaderConfig { max_pixels: 100, ..LoaderConfig::new(4) });
        assert_eq!((l.by_ref().map(|b| b.len).sum::<usize>(), l.skipped()), (0, 8));
    }

    #[test]
    fn shards_split_every_batch_in_order() {
        let dir = tempfile::tempdir().unwrap();
        write_images(dir.path(), 8);
        let folder = ImageFolder::flat(dir.path()).unwrap();
        let t = TwoViewTransform::beit(16);
        let load = |shard| Loader::new(folder.clone(), t.clone(), LoaderConfig { epochs: 2, seed: 3, shard, ..LoaderConfig::new(4) }).collect::<Vec<_>>();
        let whole = load(Shard::WHOLE);
        let halves = [load(Shard::new(0, 2).unwrap()), load(Shard::new(1, 2).unwrap())];
        assert_eq!((whole.len(), halves[0].len()), (4, 4), "a shard sees every step");
        for (k, w) in whole.iter().enumerate() {
            let (a, b) = (&halves[0][k], &halves[1][k]);
            assert_eq!((a.len, b.len), (2, 2));
            for v in 0..2 {
                // The same samples with the same augmentations as the whole batch's.
                assert_eq!([&a.views[v][..], &b.views[v][..]].concat(), w.views[v], "batch {k} view {v}");
            }
        }
    }

    #[test]
    fn folders_need_images() {
        let dir = tempfile::tempdir().unwrap();
        let err = ImageFolder::flat(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no PNG or JPEG images"), "{err}");
        for class in ["cat", "dog"] {
            std::fs::create_dir(dir.path().join(class)).unwrap();
            write_images(&dir.path().join(class), 2);
        }
        let f = ImageFolder::labelled(dir.path()).unwrap();
        assert_eq!((f.classes.clone(), f.len(), f.items[3].1), (vec!["cat".to_string(), "dog".to_string()], 4, Some(1)));
        assert!(ImageFolder::flat("/nonexistent/images").unwrap_err().to_string().contains("/nonexistent/images"));
    }
}
