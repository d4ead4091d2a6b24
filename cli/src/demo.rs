//! `beit demo`: trains [`beit::vit::Vit`] on built-in synthetic images (a bright square in
//! one of four quadrants; the class is the quadrant) with AdamW, warmup + cosine and
//! gradient clipping, then reports held-out accuracy.

use beit::engine::nn::{Module, VarBuilder};
use beit::engine::optim::{clip_grad_norm, AdamW, AdamWConfig, ParamGroup, Schedule};
use beit::engine::rng::Rng;
use beit::engine::{no_grad, DType, Device, Error, Result, Tensor};
use beit::vit::{Vit, VitConfig};
use std::time::Instant;

/// Options of `beit demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Optimiser steps.
    #[arg(long, default_value_t = 300)]
    steps: u64,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Seed for data, initialisation and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Save the trained weights here (safetensors).
    #[arg(long)]
    save: Option<std::path::PathBuf>,
}

const IMAGE: usize = 32;
const CLASSES: usize = 4;

/// A batch of synthetic images `[n, 3, 32, 32]` and their i64 labels.
fn synthetic_batch(n: usize, rng: &mut Rng, device: &Device) -> Result<(Tensor, Tensor)> {
    let side = IMAGE / 4;
    let mut pixels = vec![0f32; n * 3 * IMAGE * IMAGE];
    let mut labels = Vec::with_capacity(n);
    for (i, img) in pixels.chunks_mut(3 * IMAGE * IMAGE).enumerate() {
        let class = (i + rng.below(CLASSES)) % CLASSES;
        labels.push(class as i64);
        for v in img.iter_mut() {
            *v = (rng.normal() * 0.5) as f32;
        }
        let top = (class / 2) * IMAGE / 2 + rng.below(IMAGE / 2 - side + 1);
        let left = (class % 2) * IMAGE / 2 + rng.below(IMAGE / 2 - side + 1);
        for c in 0..3 {
            for y in top..top + side {
                let row = c * IMAGE * IMAGE + y * IMAGE;
                img[row + left..row + left + side].iter_mut().for_each(|v| *v += 1.5);
            }
        }
    }
    Ok((Tensor::from_vec(pixels, &[n, 3, IMAGE, IMAGE], device)?, Tensor::from_vec(labels, &[n], device)?))
}

/// Run the demo.
pub fn run(args: &DemoArgs) -> Result<()> {
    let device = beit::open_device(&args.device)?;
    if args.steps == 0 || args.batch == 0 {
        return Err(Error::invalid("demo", "--steps and --batch must be positive"));
    }
    let config =
        VitConfig { image_size: IMAGE, patch_size: 8, channels: 3, dim: 64, depth: 2, heads: 4, mlp_dim: 256, classes: CLASSES };
    let model = Vit::new(&VarBuilder::new(&device, DType::F32, args.seed), config)?;
    let params = model.trainable_params();
    let (decay, no_decay): (Vec<_>, Vec<_>) = params.iter().cloned().partition(|p| p.shape().len() > 1);
    let mut opt = AdamW::new(
        vec![ParamGroup::new(decay).weight_decay(0.05), ParamGroup::new(no_decay).weight_decay(0.0)],
        AdamWConfig::default(),
    )?;
    let schedule = Schedule::WarmupCosine {
        base: args.lr,
        final_value: args.lr * 0.01,
        warmup_start: 0.0,
        warmup_steps: args.steps / 10,
        total_steps: args.steps,
    };
    schedule.validate()?;
    println!("beit demo: {} parameters on {}, {} steps of {} images", model.num_params(), device, args.steps, args.batch);
    let mut rng = Rng::new(args.seed ^ 0x5EED);
    let start = Instant::now();
    for step in 0..args.steps {
        let (images, labels) = synthetic_batch(args.batch, &mut rng, &device)?;
        let loss = model.forward(&images)?.cross_entropy(&labels, 0.0)?;
        let loss_value = loss.to_scalar()?;
        if !loss_value.is_finite() {
            return Err(Error::NonFinite(format!("loss at step {step}")));
        }
        let mut grads = loss.backward()?;
        let norm = clip_grad_norm(&mut grads, &params, 1.0)?;
        opt.step(&grads, schedule.at(step))?;
        if step % 25 == 0 || step + 1 == args.steps {
            println!("step {step:4}  loss {loss_value:.4}  grad-norm {norm:.3}  lr {:.2e}", schedule.at(step));
        }
    }
    let train_s = start.elapsed().as_secs_f64();
    let accuracy = evaluate(&model, &mut rng, &device)?;
    println!(
        "trained in {train_s:.1} s ({:.0} images/s); held-out accuracy {:.1}% (chance {:.0}%)",
        (args.steps as usize * args.batch) as f64 / train_s,
        accuracy * 100.0,
        100.0 / CLASSES as f64
    );
    if let Some(path) = &args.save {
        let sd = model.state_dict();
        sd.save(path, None)?;
        println!("saved {}", path.display());
    }
    Ok(())
}

/// Accuracy on 512 fresh images.
fn evaluate(model: &Vit, rng: &mut Rng, device: &Device) -> Result<f64> {
    let _guard = no_grad();
    let (images, labels) = synthetic_batch(512, rng, device)?;
    let predicted = model.forward(&images)?.argmax()?.to_vec::<i64>()?;
    let truth = labels.to_vec::<i64>()?;
    Ok(predicted.iter().zip(&truth).filter(|(p, t)| p == t).count() as f64 / truth.len() as f64)
}
