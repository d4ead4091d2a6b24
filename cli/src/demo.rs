//! `beit demo`: trains [`beit::vit::Vit`] on the built-in handwritten digits (1500 training
//! images upscaled to 32×32) with AdamW, warmup + cosine and gradient clipping, then reports
//! accuracy on the 297 held-out digits. (It becomes BEiT pretraining + fine-tuning as the
//! tokenizer and trainer land.)

use beit::engine::nn::{Module, VarBuilder};
use beit::engine::optim::{clip_grad_norm, AdamW, AdamWConfig, ParamGroup, Schedule};
use beit::engine::rng::Rng;
use beit::data::Digits;
use beit::engine::{no_grad, DType, Device, Error, Result};
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

/// Run the demo.
pub fn run(args: &DemoArgs) -> Result<()> {
    let device = beit::open_device(&args.device)?;
    if args.steps == 0 || args.batch == 0 {
        return Err(Error::invalid("demo", "--steps and --batch must be positive"));
    }
    let digits = Digits::load()?;
    let (train, test) = digits.split();
    let config = VitConfig {
        image_size: IMAGE,
        patch_size: 8,
        channels: 3,
        dim: 64,
        depth: 2,
        heads: 4,
        mlp_dim: 256,
        classes: Digits::CLASSES,
    };
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
    println!(
        "beit demo: a {}-parameter ViT on {} built-in digits ({} held out), {} steps of {} on {}",
        model.num_params(),
        train.len(),
        test.len(),
        args.steps,
        args.batch,
        device
    );
    let mut rng = Rng::new(args.seed ^ 0x5EED);
    let start = Instant::now();
    for step in 0..args.steps {
        let picks: Vec<usize> = (0..args.batch).map(|_| train[rng.below(train.len())]).collect();
        let (images, labels) = digits.batch(&picks, IMAGE, &device)?;
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
    let accuracy = evaluate(&model, &digits, &test, &device)?;
    println!(
        "trained in {train_s:.1} s ({:.0} images/s); accuracy on {} held-out digits {:.1}% (chance 10%)",
        (args.steps as usize * args.batch) as f64 / train_s,
        test.len(),
        accuracy * 100.0,
    );
    if let Some(path) = &args.save {
        let sd = model.state_dict();
        sd.save(path, None)?;
        println!("saved {}", path.display());
    }
    Ok(())
}

/// Accuracy on the held-out digits.
fn evaluate(model: &Vit, digits: &Digits, test: &[usize], device: &Device) -> Result<f64> {
    let _guard = no_grad();
    let (images, labels) = digits.batch(test, IMAGE, device)?;
    let predicted = model.forward(&images)?.argmax()?.to_vec::<i64>()?;
    let truth = labels.to_vec::<i64>()?;
    Ok(predicted.iter().zip(&truth).filter(|(p, t)| p == t).count() as f64 / truth.len() as f64)
}
