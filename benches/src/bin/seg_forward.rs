//! Segmentation forward latency on the CPU: BEiT-Base/16 + UperNet + auxiliary FCN head
//! (Hugging Face's ADE20K layout: out_indices [3, 5, 7, 11], 150 classes) at 512x512,
//! inference mode, fp32 or (`--dtype bf16`, with `--model`) bf16 Linear and Conv2d weights.
//! Prints one JSON line: `median_ms` and `times_ms` of `--iters` timed
//! forwards after one warm-up, `encoder_ms` (the median of the encoder alone), `peak_rss_mib`.
//!
//! ```text
//! cargo run --release -p beit-benches --bin seg_forward -- [--iters 3] [--size 512] [--batch 1]
//!     [--model DIR [--dtype bf16] | --save DIR]
//! ```
//! Without `--model`, the weights are random (BEiT init; heads PyTorch's default); `--save`
//! writes them as a Hugging Face folder first, so that `benches/pytorch/seg_forward.py` can
//! time PyTorch on the same model. Threads: rayon's default (all cores) or
//! `RAYON_NUM_THREADS`.

use beit::engine::rng::Rng;
use beit::engine::{no_grad, DType, Result, Tensor};
use beit::{BeitConfig, BeitForSemanticSegmentation, LoadOptions, Mode};
use beit_benches::{median, peak_rss_mib};
use clap::{Parser, ValueEnum};
use std::time::Instant;

/// Command-line arguments (a flag given twice takes its last value).
#[derive(Parser)]
#[command(args_override_self = true)]
struct Args {
    /// Timed forwards (after one warm-up).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// Image side in pixels (without --model).
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// Images per forward.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// A segmentation model folder to load (default: random BEiT-Base + UperNet).
    #[arg(long, required_if_eq("dtype", "bf16"))]
    model: Option<String>,
    /// Write the model as a Hugging Face folder first.
    #[arg(long)]
    save: Option<String>,
    /// Weight dtype: bf16 loads the Linear and Conv2d weights as bf16 (needs --model).
    #[arg(long, value_enum, default_value_t = Weights::F32)]
    dtype: Weights,
}

/// The dtype of the loaded weights.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Weights {
    F32,
    Bf16,
}

/// BEiT-Base with Hugging Face's ADE20K segmentation settings at `size`.
fn ade_base(size: usize) -> BeitConfig {
    BeitConfig {
        architectures: vec!["BeitForSemanticSegmentation".into()],
        image_size: size,
        use_relative_position_bias: true,
        use_mean_pooling: true,
        layer_scale_init_value: 0.1,
        out_indices: Some(vec![3, 5, 7, 11]),
        num_labels: Some(150),
        ..BeitConfig::default()
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dev = beit::open_device("cpu")?;
    let weight_dtype = if args.dtype == Weights::Bf16 { DType::BF16 } else { DType::F32 };
    let model = match &args.model {
        Some(dir) => BeitForSemanticSegmentation::from_pretrained_with(dir, &dev, LoadOptions { weight_dtype, ..LoadOptions::default() })?.0,
        None => BeitForSemanticSegmentation::new(&ade_base(args.size), &dev, 0)?,
    };
    if let Some(dir) = &args.save {
        model.save_pretrained(dir)?;
    }
    let size = model.config().image_size;
    let pixels = Tensor::randn(&[args.batch, 3, size, size], 1.0, DType::F32, &mut Rng::new(1), &dev)?;
    let _guard = no_grad();
    let (mut times, mut encoder) = (Vec::new(), Vec::new());
    for i in 0..=args.iters {
        let start = Instant::now();
        let out = model.forward(&pixels, Mode::eval())?;
        out.logits.to_vec::<f32>()?;
        if i > 0 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
            // The encoder alone (keeping its hidden states, as the segmentation forward does).
            let start = Instant::now();
            model.beit.forward(&pixels, None, Mode::eval().with_hidden_states())?.last_hidden_state.to_vec::<f32>()?;
            encoder.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let list = times.iter().map(|t| format!("{t:.1}")).collect::<Vec<_>>().join(", ");
    println!(
        "{{\"median_ms\": {:.1}, \"times_ms\": [{list}], \"encoder_ms\": {:.1}, \"batch\": {}, \"size\": {size}, \"dtype\": \"{weight_dtype}\", \"peak_rss_mib\": {:.0}}}",
        median(&times),
        median(&encoder),
        args.batch,
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}
