//! Fuzzing the loaders on stable Rust: valid files ([`seeds`]) changed by [`Mutation`]s and
//! fed to the safetensors reader, `config.json` and model folders, preprocessor configs,
//! the image loader and tokenizer folders. Every case must end in `Ok` or a clean
//! [`beit::engine::Error`]: a panic, an abort or a hang is a bug. The proptest suite
//! (`benches/tests/fuzz.rs`) and the long-run driver (`cargo run --release -p beit-benches
//! --bin fuzz -- --seconds N`) both run cases through [`Fuzzer`].

mod mutate;
pub mod seeds;

pub use mutate::Mutation;

use beit::engine::io::load_safetensors;
use beit::engine::rng::Rng;
use beit::engine::Result;
use beit::preprocess::{load_image, ImageProcessor};
use beit::{Architecture, Beit, BeitConfig, BeitForSemanticSegmentation};
use seeds::Seed;
use std::path::Path;

/// A loader under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `load_safetensors` and every tensor's shape, dtype and data.
    Safetensors,
    /// `config.json` of a model folder, and the folder loaded when the config is small.
    Config,
    /// `preprocessor_config.json`, and an image preprocessed with it when its sizes are small.
    Preprocessor,
    /// `load_image` and the conversion to RGB.
    Image,
    /// A tokenizer folder (DALL-E or dVAE), config or weights mutated.
    Tokenizer,
}

/// Every target, in report order.
pub const TARGETS: [Target; 5] = [Target::Safetensors, Target::Config, Target::Preprocessor, Target::Image, Target::Tokenizer];

/// Models above this estimate are not built by the `config` target (it checks the config only).
const MAX_FUZZ_MODEL_BYTES: u128 = 64 << 20;

/// Images above this many pixels are not preprocessed by the `preprocessor` target.
const MAX_FUZZ_PIXELS: u64 = 1 << 20;

impl Target {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Target::Safetensors => "safetensors",
            Target::Config => "config",
            Target::Preprocessor => "preprocessor",
            Target::Image => "image",
            Target::Tokenizer => "tokenizer",
        }
    }

    /// The target called `name`.
    pub fn from_name(name: &str) -> Option<Target> {
        TARGETS.into_iter().find(|t| t.name() == name)
    }

    fn seeds(self) -> Vec<Seed> {
        match self {
            Target::Safetensors => seeds::safetensors(),
            Target::Config => seeds::model_configs(),
            Target::Preprocessor => seeds::preprocessor_configs(),
            Target::Image => seeds::images(),
            Target::Tokenizer => seeds::tokenizers(),
        }
    }

    /// Run the loader on the case folder `dir`.
    fn exercise(self, dir: &Path) -> Result<()> {
        let cpu = beit_backend_cpu::cpu();
        match self {
            Target::Safetensors => {
                let sd = load_safetensors(dir.join("model.safetensors"), &cpu)?;
                let mut first_error = None;
                for name in sd.names() {
                    let _ = sd.shape(name);
                    if let Err(e) = sd.dtype(name).and_then(|_| sd.get(name)) {
                        first_error.get_or_insert(e);
                    }
                }
                first_error.map_or(Ok(()), Err)
            }
            Target::Config => {
                let config = BeitConfig::from_file(dir.join("config.json"))?;
                if config.memory_estimate() > MAX_FUZZ_MODEL_BYTES {
                    return Ok(());
                }
                match config.architecture()? {
                    Architecture::BeitForSemanticSegmentation => BeitForSemanticSegmentation::from_pretrained(dir, &cpu).map(drop),
                    _ => Beit::from_pretrained(dir, &cpu).map(drop),
                }
            }
            Target::Preprocessor => {
                let p = ImageProcessor::from_folder(dir)?;
                let pixels = |s: beit::preprocess::Size| s.height.unwrap_or(1) as u64 * s.width.unwrap_or(1) as u64;
                let edge = p.size.shortest_edge.unwrap_or(1) as u64;
                if pixels(p.size) > MAX_FUZZ_PIXELS || pixels(p.crop_size) > MAX_FUZZ_PIXELS || edge * edge * 2 > MAX_FUZZ_PIXELS {
                    return Ok(());
                }
                let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(13, 9, image::Rgb([200, 100, 0])));
                p.preprocess(&[img], &cpu).map(drop)
            }
            Target::Image => load_image(dir.join("image.img")).map(|img| drop(img.to_rgb8())),
            Target::Tokenizer => beit::tokenizer::open_tokenizer(dir, &cpu).map(drop),
        }
    }
}

/// A target with its seed files loaded: runs cases.
pub struct Fuzzer {
    target: Target,
    seeds: Vec<Seed>,
}

impl Fuzzer {
    /// The fuzzer of `target` (builds its seed files).
    pub fn new(target: Target) -> Self {
        Fuzzer { target, seeds: target.seeds() }
    }

    /// Its target.
    pub fn target(&self) -> Target {
        self.target
    }

    /// Number of seed folders (cases pick one modulo this).
    pub fn num_seeds(&self) -> usize {
        self.seeds.len()
    }

    /// Size of the header region of seed `seed`'s mutated file.
    pub fn focus(&self, seed: usize) -> usize {
        self.seeds[seed % self.seeds.len()].focus
    }

    /// Run seed folder `seed` (modulo the number of seeds) with `mutations` applied to its
    /// target file, in a fresh temporary folder: `Ok` or the loader's clean error. A panic
    /// propagates (the caller catches it); an I/O failure of the harness itself panics.
    pub fn run(&self, seed: usize, mutations: &[Mutation]) -> Result<()> {
        let seed = &self.seeds[seed % self.seeds.len()];
        let dir = tempfile::tempdir().expect("a temporary folder");
        for (i, f) in seed.files.iter().enumerate() {
            let mut bytes = f.bytes.clone();
            if i == seed.target {
                mutations.iter().for_each(|m| m.apply(&mut bytes));
            }
            std::fs::write(dir.path().join(f.name), bytes).expect("write a case file");
        }
        self.target.exercise(dir.path())
    }

    /// The case numbered `case`: a seed folder and 1–4 mutations drawn from it.
    pub fn case(&self, case: u64) -> (usize, Vec<Mutation>) {
        let mut rng = Rng::new(case);
        let seed = rng.below(self.seeds.len());
        (seed, Mutation::random_list(&mut rng, self.focus(seed)))
    }

    /// A label of seed folder `seed`, for reports.
    pub fn seed_label(&self, seed: usize) -> &str {
        &self.seeds[seed % self.seeds.len()].label
    }
}
