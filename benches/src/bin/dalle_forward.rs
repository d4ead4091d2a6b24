//! DALL-E dVAE encoder latency on the CPU (openai's sizes: 4 groups of 2 blocks, 256 wide,
//! 8192 tokens), fp32 under no_grad: token logits of `--batch` random images of `--size`²
//! pixels, 1 warm-up then `--iters` timed forwards. Prints one JSON line: `median_ms`,
//! `times_ms`, `batch`, `size`, `peak_rss_mib`.
//!
//! ```text
//! cargo run --release -p beit-benches --bin dalle_forward -- [--iters 3] [--batch 8] [--size 112]
//!     [--model DIR | --save DIR]
//! ```
//! Without `--model` the weights are random (the package's init); `--save` writes them as a
//! tokenizer folder first, so that `benches/pytorch/dalle_encoder.py` times PyTorch on the
//! same weights. Threads: rayon's default (all cores) or `RAYON_NUM_THREADS`.

use beit::engine::rng::Rng;
use beit::engine::{no_grad, DType, Result, Tensor};
use beit::tokenizer::{DalleConfig, DalleEncoder, Tokenizer};
use beit_benches::{median, peak_rss_mib};
use clap::Parser;
use std::time::Instant;

/// Command-line arguments (a flag given twice takes its last value).
#[derive(Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Timed forwards (after one warm-up).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Images per forward.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 112)]
    size: usize,
    /// A tokenizer folder to load (default: random weights).
    #[arg(long)]
    model: Option<String>,
    /// Write the weights as a tokenizer folder first.
    #[arg(long)]
    save: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dev = beit::open_device("cpu")?;
    let enc = match &args.model {
        Some(dir) => DalleEncoder::from_folder(dir, &dev)?,
        None => DalleEncoder::new(DalleConfig::default(), &dev, 0)?,
    };
    if let Some(dir) = &args.save {
        enc.save(dir)?;
    }
    let shape = [args.batch, enc.config().input_channels, args.size, args.size];
    let pixels = Tensor::rand_uniform(&shape, 0.1, 0.9, DType::F32, &mut Rng::new(1), &dev)?;
    let _guard = no_grad();
    let mut times = Vec::new();
    for i in 0..=args.iters {
        let start = Instant::now();
        enc.logits(&pixels)?.to_vec::<f32>()?;
        if i > 0 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let list = times.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>().join(", ");
    println!(
        "{{\"median_ms\": {:.1}, \"times_ms\": [{list}], \"batch\": {}, \"size\": {}, \"peak_rss_mib\": {:.0}}}",
        median(&times),
        args.batch,
        args.size,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}
