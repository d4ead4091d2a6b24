//! `beit tokenizer train`: train a dVAE tokenizer on the built-in digits or an image folder,
//! save it as a tokenizer folder, and report reconstruction error and codebook usage on
//! held-out images.

use crate::progress::Progress;
use crate::train_args::{is_main_process, RunArgs};
use beit::data::transforms::TokenizerView;
use beit::data::{Digits, ImageFolder, Loader, LoaderConfig};
use beit::engine::nn::VarBuilder;
use beit::engine::rng::{mix64, Rng};
use beit::engine::{no_grad, DType, Device, Error, Result, Tensor};
use beit::preprocess::{load_image_limited, MAX_PIXELS};
use beit::tokenizer::{evaluate_dvae, train_dvae, unmap_pixels, Dvae, DvaeConfig, DvaeEval, DvaeTrainConfig, Tokenizer};
use beit::train::{Observer, StepMetrics, TrainState};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `beit tokenizer ...`
#[derive(clap::Subcommand, Debug)]
pub enum TokenizerCommand {
    /// Train a dVAE tokenizer (Gumbel-softmax, KL to the uniform prior) and save its folder.
    Train(TrainArgs),
}

/// Options of `beit tokenizer train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// `digits` (built in) or a folder of images (flat, or one sub-folder per class).
    #[arg(long, default_value = "digits")]
    data: String,
    /// Held-out images (default: every 10th image of --data; for digits, the fixed split).
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Write the tokenizer folder (config.json + model.safetensors) here.
    #[arg(long)]
    out: PathBuf,
    /// Input side in pixels.
    #[arg(long, default_value_t = DvaeConfig::digits().image_size)]
    size: usize,
    /// Number of 2× downsampling stages (token grid = size / 2^downsample).
    #[arg(long, default_value_t = DvaeConfig::digits().downsample)]
    downsample: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = DvaeConfig::digits().vocab_size)]
    vocab: usize,
    /// Convolution width.
    #[arg(long, default_value_t = DvaeConfig::digits().hidden)]
    hidden: usize,
    /// Optimiser steps.
    #[arg(long, default_value_t = DvaeTrainConfig::default().steps)]
    steps: u64,
    /// Images per step.
    #[arg(long, default_value_t = DvaeTrainConfig::default().batch)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = DvaeTrainConfig::default().lr)]
    lr: f64,
    /// Weight of the KL term.
    #[arg(long, default_value_t = DvaeTrainConfig::default().kl_weight)]
    kl_weight: f64,
    /// Weight of the codebook-usage term.
    #[arg(long, default_value_t = DvaeTrainConfig::default().usage_weight)]
    usage_weight: f64,
    /// Final Gumbel temperature (from 1).
    #[arg(long, default_value_t = DvaeTrainConfig::default().temperature_end)]
    temperature_end: f64,
    /// Seed of initialisation, data order and noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Draw held-out originals (top) above their reconstructions (bottom) into this PNG.
    #[arg(long)]
    picture: Option<PathBuf>,
    /// Print the held-out evaluation as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    run: RunArgs,
}

/// Run `beit tokenizer ...`.
pub fn run(cmd: &TokenizerCommand) -> Result<()> {
    match cmd {
        TokenizerCommand::Train(args) => train(args),
    }
}

/// The training batch of each step.
type StepBatches<'a> = Box<dyn FnMut(&TrainState) -> Result<Tensor> + 'a>;

/// Where batches of mapped pixels come from.
enum Source {
    Digits { digits: Digits, train: Vec<usize>, test: Vec<usize> },
    Folder { train: ImageFolder, test: ImageFolder },
}

impl Source {
    fn open(args: &TrainArgs) -> Result<Self> {
        if args.data == "digits" {
            if args.eval_data.is_some() {
                return Err(Error::invalid("--eval-data", "the built-in digits have their own held-out split"));
            }
            let digits = Digits::load()?;
            let (train, test) = digits.split();
            return Ok(Source::Digits { digits, train, test });
        }
        let all = any_folder(Path::new(&args.data))?;
        let (train, test) = match &args.eval_data {
            Some(dir) => (all, any_folder(dir)?),
            None if all.len() < 2 => return Err(Error::invalid("--data", format!("{} holds {} image; at least 2 are needed to hold one out", args.data, all.len()))),
            None => {
                let (test, train): (Vec<_>, Vec<_>) = all.items.into_iter().enumerate().partition(|(i, _)| i % 10 == 9 || *i == 0);
                let strip = |v: Vec<(usize, _)>| ImageFolder { items: v.into_iter().map(|(_, x)| x).collect(), classes: Vec::new() };
                (strip(train), strip(test))
            }
        };
        Ok(Source::Folder { train, test })
    }

    /// Training images.
    fn train_len(&self) -> usize {
        match self {
            Source::Digits { train, .. } => train.len(),
            Source::Folder { train, .. } => train.len(),
        }
    }

    /// The batch of each step, from `first_step` on: digits drawn at random by (seed,
    /// step), a folder read epoch after epoch in a seeded order.
    fn train_batches<'a>(&'a self, args: &TrainArgs, first_step: u64, device: &'a Device) -> StepBatches<'a> {
        let (batch, size, seed) = (args.batch, args.size, args.seed);
        match self {
            Source::Digits { digits, train, .. } => Box::new(digit_batches(digits, train, batch, size, seed, device)),
            Source::Folder { train, .. } => {
                let view = TokenizerView { size: size as u32, train: true };
                let config = LoaderConfig { epochs: u64::MAX, seed, skip: first_step, ..LoaderConfig::new(batch.min(train.len())) };
                let mut loader = Loader::new(train.clone(), view, config);
                Box::new(move |state: &TrainState| {
                    let b = loader.next().ok_or_else(|| Error::invalid("--data", "the image loader ended early"))?;
                    if b.len == 0 {
                        return Err(Error::invalid("--data", format!("no image of batch {} could be read", state.step)));
                    }
                    Tensor::from_vec(b.views.into_iter().next().unwrap_or_default(), &[b.len, 3, size, size], device)
                })
            }
        }
    }

    /// Held-out batches of up to 64 images.
    fn test_batches(&self, size: usize, device: &Device) -> Result<Vec<Tensor>> {
        match self {
            Source::Digits { digits, test, .. } => test.chunks(64).map(|c| digits.tokenizer_batch(c, size, device)).collect(),
            Source::Folder { test, .. } => {
                let view = TokenizerView { size: size as u32, train: false };
                let images: Vec<Vec<f32>> = test
                    .items
                    .par_iter()
                    .filter_map(|(path, _)| match load_image_limited(path, MAX_PIXELS) {
                        Ok(img) => Some(view.apply(&img.to_rgb8(), &mut Rng::new(0))),
                        Err(e) => {
                            eprintln!("warning: skipping {e}");
                            None
                        }
                    })
                    .collect();
                if images.is_empty() {
                    return Err(Error::invalid("held-out images", "none could be read"));
                }
                images.chunks(64).map(|c| Tensor::from_vec(c.concat(), &[c.len(), 3, size, size], device)).collect()
            }
        }
    }
}

/// `batch` digits of `pool` at `size` for each step, drawn at random from (seed, step).
pub fn digit_batches<'a>(digits: &'a Digits, pool: &'a [usize], batch: usize, size: usize, seed: u64, device: &'a Device) -> impl FnMut(&TrainState) -> Result<Tensor> + 'a {
    move |state: &TrainState| {
        let mut rng = Rng::new(mix64(seed ^ 0xD1A7) ^ mix64(state.step));
        let picks: Vec<usize> = (0..batch).map(|_| pool[rng.below(pool.len())]).collect();
        digits.tokenizer_batch(&picks, size, device)
    }
}

/// Images directly in `dir`, or else in its class sub-folders (labels ignored).
fn any_folder(dir: &Path) -> Result<ImageFolder> {
    ImageFolder::flat(dir).or_else(|flat_err| ImageFolder::labelled(dir).map_err(|_| flat_err))
}

fn train(args: &TrainArgs) -> Result<()> {
    let device = args.run.open_device()?;
    let train_config = DvaeTrainConfig {
        steps: args.steps,
        batch: args.batch,
        lr: args.lr,
        kl_weight: args.kl_weight,
        usage_weight: args.usage_weight,
        temperature_end: args.temperature_end,
        seed: args.seed,
        ..DvaeTrainConfig::default()
    };
    train_config.validate()?;
    let resume = args.run.checkpoint(&device)?;
    let config = match &resume {
        Some(ck) => {
            ck.expect_kind("dvae")?;
            ck.model_config()?
        }
        None => DvaeConfig { image_size: args.size, hidden: args.hidden, downsample: args.downsample, vocab_size: args.vocab, ..DvaeConfig::digits() },
    };
    if config.image_size != args.size {
        return Err(Error::invalid("--size", format!("the resumed tokenizer takes {} px images", config.image_size)));
    }
    let source = Source::open(args)?;
    let model = Dvae::new(&VarBuilder::new(&device, DType::F32, args.seed), config.clone())?;
    let test = source.test_batches(args.size, &device)?;
    let main = is_main_process();
    if !args.json && main {
        let g = config.grid();
        println!(
            "beit tokenizer train: dVAE of {} parameters, {}×{} inputs → {g}×{g} tokens of {}, {} steps of {} on {device}",
            beit::engine::nn::Module::num_params(&model),
            config.image_size,
            config.image_size,
            config.vocab_size,
            args.steps,
            args.batch
        );
    }
    let start = Instant::now();
    let batches = source.train_batches(args, resume.as_ref().map_or(0, |ck| ck.state.step), &device);
    let mut progress = DvaeProgress { bar: args.run.progress(), every: (args.steps / 10).max(1), print: !args.json && main };
    let summary = train_dvae(&model, &train_config, &args.run.files(), source.train_len(), batches, &args.run.control(resume, &device)?, &mut progress)?;
    let seconds = start.elapsed().as_secs_f64();
    if !main {
        return Ok(());
    }
    if summary.steps < args.steps {
        println!("stopped at step {}{}; resume with --resume", summary.steps, if summary.interrupted { " (interrupted)" } else { "" });
    }
    model.save(&args.out)?;
    let eval = evaluate_dvae(&model, test.iter().cloned().map(Ok))?;
    if let Some(path) = &args.picture {
        draw_reconstructions(&model, &test[0], path)?;
    }
    if args.json {
        let mut v = serde_json::to_value(&eval).expect("an evaluation serialises");
        v["seconds"] = seconds.into();
        v["out"] = args.out.display().to_string().into();
        println!("{v}");
    } else {
        print_eval(&eval, seconds, &args.out);
    }
    Ok(())
}

/// The progress bar, and a line of the loss and its parts every `every` steps.
struct DvaeProgress {
    bar: Progress,
    every: u64,
    print: bool,
}

impl Observer for DvaeProgress {
    fn start(&mut self, first_step: u64, total_steps: u64) {
        self.bar.start(first_step, total_steps);
    }

    fn step(&mut self, m: &StepMetrics, total_steps: u64) {
        self.bar.step(m, total_steps);
        if self.print && (m.step.is_multiple_of(self.every) || m.step + 1 == total_steps) {
            let part = |k: &str| m.parts.get(k).copied().unwrap_or(f64::NAN);
            let line = format!(
                "step {:5}  loss {:.5}  recon {:.5}  kl {:.3}  usage {:.3}  temperature {:.3}  lr {:.2e}",
                m.step,
                m.loss,
                part("recon"),
                part("kl"),
                part("usage"),
                part("temperature"),
                m.lr
            );
            self.bar.println(&line);
        }
    }

    fn warn(&mut self, message: &str) {
        self.bar.warn(message);
    }

    fn checkpoint(&mut self, path: &Path) {
        self.bar.checkpoint(path);
    }

    fn finish(&mut self) {
        self.bar.finish();
    }
}

fn print_eval(e: &DvaeEval, seconds: f64, out: &Path) {
    println!("trained in {seconds:.1} s; saved {}", out.display());
    println!("held-out images        {}", e.images);
    println!("reconstruction MSE     {:.5}  (mean image: {:.5}, {:.1}× lower)", e.recon_mse, e.mean_image_mse, e.mean_image_mse / e.recon_mse);
    println!("codebook perplexity    {:.1}", e.perplexity);
    println!("codes used             {} of {} ({:.0}%)", e.codes_used, e.vocab_size, 100.0 * e.used_share());
}

/// Up to 16 images of `batch` (top row) above their reconstructions from argmax tokens.
pub fn draw_reconstructions(model: &Dvae, batch: &Tensor, path: &Path) -> Result<()> {
    let _guard = no_grad();
    let n = batch.shape()[0].min(16);
    let batch = batch.narrow(0, 0, n)?;
    let recon = model.decode_ids(&model.tokenize(&batch)?)?;
    let s = model.input_size();
    let scale = (64 / s).max(1) as u32;
    let side = s as u32 * scale;
    let mut canvas = image::RgbImage::from_pixel(n as u32 * (side + 2), 2 * side + 6, image::Rgb([255, 255, 255]));
    for (row, t) in [batch, recon].iter().enumerate() {
        let v = unmap_pixels(t)?.to_vec::<f32>()?;
        for i in 0..n {
            for (y, x) in (0..side).flat_map(|y| (0..side).map(move |x| (y, x))) {
                let at = |c: usize| (v[((i * 3 + c) * s + (y / scale) as usize) * s + (x / scale) as usize] * 255.0).round() as u8;
                canvas.put_pixel(i as u32 * (side + 2) + x, row as u32 * (side + 6) + y, image::Rgb([at(0), at(1), at(2)]));
            }
        }
    }
    canvas.save(path).map_err(|e| Error::Format { file: path.display().to_string(), msg: e.to_string() })
}
