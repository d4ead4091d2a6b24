//! BEiT-Base throughput on any device, for comparison with PyTorch on the same machine
//! (`benches/pytorch/device_bench.py` prints the same lines):
//!
//! - `sgemm`: `x [M, K] · Wᵀ` at Linear-layer shapes of BEiT-Base batch 64 and a square 4096
//!   GEMM, TFLOP/s through the `Backend` trait (cuBLAS, or the built-in kernel);
//! - `forward`: the MIM model's inference forward at `--batch`, images/s;
//! - `train`: one MIM training step at `--batch` (forward, loss on the blockwise-masked
//!   patches, backward, AdamW), images/s, and the first step's loss.
//!
//! ```sh
//! cargo run --release -p beit-benches --features cuda --bin device_bench -- --device cuda:0
//! ```
//! One JSON object per line. TF32 follows `BEIT_CUDA_TF32` (off unless `1`).

use beit::engine::nn::Module;
use beit::engine::optim::{AdamW, AdamWConfig, ParamGroup};
use beit::engine::rng::Rng;
use beit::engine::{no_grad, Backend, DType, Device, HostData, Layout, Result, Tensor, View};
use beit::masker::{BlockwiseMasker, MaskedPatches, Masker};
use beit::{open_device, Beit, BeitConfig, Mode};
use clap::Parser;
use std::time::Instant;

/// Command-line arguments.
#[derive(Parser)]
struct Args {
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cuda:0")]
    device: String,
    /// Images per step (forward and train).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed iterations (after warm-up).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Warm-up iterations.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Which benchmarks, comma-separated: sgemm, forward, train.
    #[arg(long, default_value = "sgemm,forward,train")]
    only: String,
}

/// Median seconds of `iters` timed calls of `f` after `warmup` untimed ones, synchronising
/// the device around each call.
fn time(dev: &Device, warmup: usize, iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    dev.backend().synchronize()?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        f()?;
        dev.backend().synchronize()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn sgemm(dev: &Device, a: &Args) -> Result<()> {
    let be: &dyn Backend = dev.backend();
    let tokens = a.batch * 197;
    for (m, k, n) in [(tokens, 768, 2304), (tokens, 768, 3072), (tokens, 3072, 768), (4096, 4096, 4096)] {
        let vals = |len: usize, seed: usize| HostData::F32((0..len).map(|i| ((i * 7 + seed) % 13) as f32 * 0.1 - 0.6).collect());
        let (x, w) = (be.from_host(&vals(m * k, 1))?, be.from_host(&vals(n * k, 2))?);
        let (xl, wl) = (Layout::contiguous(&[m, k]), Layout::contiguous(&[n, k]).permute(&[1, 0])?);
        let (xv, wv) = (View { storage: &*x, layout: &xl }, View { storage: &*w, layout: &wl });
        let s = time(dev, a.warmup, a.iters, || be.matmul(xv, wv).map(drop))?;
        let tflops = 2.0 * (m * n * k) as f64 / s / 1e12;
        println!(r#"{{"bench":"sgemm","shape":"{m}x{k}x{n}","ms":{:.3},"tflops":{tflops:.2}}}"#, s * 1e3);
    }
    Ok(())
}

/// BEiT-Base MIM (224, shared relative position bias, drop path 0.1), a batch of random
/// pixels, a blockwise mask and random visual-token labels for the masked patches.
fn setup(dev: &Device, batch: usize) -> Result<(Beit, Tensor, MaskedPatches, Tensor)> {
    let config = BeitConfig { drop_path_rate: 0.1, ..BeitConfig::base(224) };
    let model = Beit::new(&config, dev, 0)?;
    let mut rng = Rng::new(0);
    let pixels = Tensor::randn(&[batch, 3, 224, 224], 1.0, DType::F32, &mut rng, dev)?;
    let mask = BlockwiseMasker::beit((14, 14))?.sample_batch(batch, &mut rng, dev)?;
    let labels: Vec<i64> = (0..mask.count()).map(|_| rng.below(8192) as i64).collect();
    let labels = Tensor::from_vec(labels, &[mask.count()], dev)?;
    Ok((model, pixels, mask, labels))
}

fn forward(dev: &Device, a: &Args) -> Result<()> {
    let (model, pixels, mask, _) = setup(dev, a.batch)?;
    let _guard = no_grad();
    let s = time(dev, a.warmup, a.iters, || model.forward(&pixels, Some(&mask.mask), beit::Mode::eval()).map(drop))?;
    println!(r#"{{"bench":"forward","batch":{},"ms":{:.1},"images_per_s":{:.1}}}"#, a.batch, s * 1e3, a.batch as f64 / s);
    Ok(())
}

fn train(dev: &Device, a: &Args) -> Result<()> {
    let (model, pixels, mask, labels) = setup(dev, a.batch)?;
    let Beit::MaskedImageModeling(mim) = &model else {
        return Err(beit::engine::Error::invalid("train", "BeitConfig::base is not a MIM configuration"));
    };
    let mut opt = AdamW::new(vec![ParamGroup::new(model.trainable_params())], AdamWConfig::default())?;
    let (mut step, mut first_loss) = (0u64, None);
    let s = time(dev, a.warmup, a.iters, || {
        step += 1;
        let loss = mim.loss(&pixels, &mask, &labels, Mode::train(step))?;
        if first_loss.is_none() {
            first_loss = Some(loss.to_vec::<f32>()?[0]);
        }
        let grads = loss.backward()?;
        opt.step(&grads, 1e-4)
    })?;
    println!(
        r#"{{"bench":"train","batch":{},"ms":{:.1},"images_per_s":{:.1},"first_loss":{}}}"#,
        a.batch,
        s * 1e3,
        a.batch as f64 / s,
        first_loss.unwrap_or(f32::NAN)
    );
    Ok(())
}

fn main() {
    let a = Args::parse();
    let run = || -> Result<()> {
        let dev = open_device(&a.device)?;
        println!(r#"{{"bench":"device","device":"{}","backend":"{:?}"}}"#, a.device, dev.backend());
        for what in a.only.split(',') {
            match what.trim() {
                "sgemm" => sgemm(&dev, &a)?,
                "forward" => forward(&dev, &a)?,
                "train" => train(&dev, &a)?,
                other => return Err(beit::engine::Error::invalid("--only", format!("unknown benchmark `{other}`"))),
            }
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("device_bench: {e}");
        std::process::exit(1);
    }
}
