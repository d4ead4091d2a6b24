//! `beit bench`: forward latency of a model folder on random input of its size (with a
//! blockwise mask of about 40% of the patches for MIM models), under no_grad: 2 warm-up
//! iterations, then the median and min of `--iters` timed ones, and the peak RSS.

use beit::engine::rng::Rng;
use beit::engine::{no_grad, DType, Error, Result, Tensor};
use beit::masker::{BlockwiseMasker, Masker};
use beit::Beit;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `beit bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Hugging Face model folder, or Hub id (`org/name[@revision]`).
    #[arg(long, value_parser = crate::hub::model_dir)]
    model: PathBuf,
    /// Images per forward.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed iterations (after 2 warm-up ones).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Dtype of the Linear and convolution weights: f32, or bf16 (CPU; half their memory,
    /// f32 activations and accumulation).
    #[arg(long, value_enum, default_value_t)]
    dtype: crate::precision::Precision,
    /// Print one line of JSON: `median_ms`, `min_ms`, `times_ms` (each iteration, in order),
    /// `batch`, `iters`, `images_per_s`, with `--dtype bf16` `dtype` and `bf16_gemm` (how
    /// this CPU multiplies by bf16 weights: `vdpbf16ps` or `widened`),
    /// `peak_rss_mb` (Linux only), ...
    #[arg(long)]
    json: bool,
}

/// Peak resident memory of this process in MB (Linux: VmHWM of /proc/self/status; `None`
/// elsewhere, and the JSON then has no `peak_rss_mb`).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// Run `beit bench`.
pub fn run(args: &BenchArgs) -> Result<()> {
    if args.batch == 0 || args.iters == 0 {
        return Err(Error::invalid("bench", "--batch and --iters must be positive"));
    }
    let device = beit::open_device(&args.device)?;
    let options = args.dtype.load_options(&device, None)?;
    let (model, _) = Beit::from_pretrained_with(&args.model, &device, options)?;
    let c = model.config();
    let mut rng = Rng::new(0);
    let shape = [args.batch, c.num_channels, c.image_size, c.image_size];
    beit::limits::check_model_bytes("--batch", beit::limits::f32_bytes(&shape), &format!("an input batch of shape {shape:?}"))?;
    let pixels = Tensor::randn(&shape, 1.0, DType::F32, &mut rng, &device)?;
    let mask = match model {
        Beit::MaskedImageModeling(_) => Some(BlockwiseMasker::beit(c.grid())?.sample_batch(args.batch, &mut rng, &device)?.mask),
        _ => None,
    };
    let _guard = no_grad();
    let mut times = Vec::with_capacity(args.iters);
    for i in 0..args.iters + 2 {
        let start = Instant::now();
        let out = model.forward(&pixels, mask.as_ref(), beit::Mode::eval())?;
        device.backend().synchronize()?;
        drop(out);
        if i >= 2 {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let order = times.clone();
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 { times[n / 2] } else { (times[n / 2 - 1] + times[n / 2]) / 2.0 };
    let min = times[0];
    let images_per_s = args.batch as f64 * 1e3 / median;
    let mut summary = serde_json::json!({
        "model": args.model.display().to_string(),
        "architecture": format!("{:?}", c.architecture()?),
        "device": device.name(),
        "batch": args.batch,
        "iters": args.iters,
        "image_size": c.image_size,
        "median_ms": median,
        "min_ms": min,
        "images_per_s": images_per_s,
        "times_ms": order,
    });
    if options.weight_dtype == DType::BF16 {
        summary["dtype"] = "bf16".into();
        summary["bf16_gemm"] = beit::bf16_linear().to_string().into();
    }
    let peak = peak_rss_mb();
    if let Some(mb) = peak {
        summary["peak_rss_mb"] = mb.into();
    }
    if args.json {
        println!("{summary}");
    } else {
        let peak = peak.map(|mb| format!(", peak RSS {mb:.0} MB")).unwrap_or_default();
        println!(
            "batch {}, {} iterations: median {median:.1} ms, min {min:.1} ms, {images_per_s:.1} images/s{peak}",
            args.batch, args.iters
        );
    }
    Ok(())
}
