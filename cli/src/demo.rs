//! `beit demo`, the main job on the built-in digits: train a dVAE tokenizer, pretrain a small
//! BEiT by masked image modeling on all images without labels, fine-tune it on a small
//! labelled share, train the same model from scratch on the same share, and compare their
//! accuracy on the held-out digits. Writes the tokenizer, the pretrained model (a Hugging
//! Face folder), curves, a mask picture and reconstructions.

use crate::mask::draw_mask;
use crate::progress::Progress;
use beit::data::Digits;
use beit::engine::nn::{Module, VarBuilder};
use beit::engine::rng::Rng;
use beit::engine::{DType, Device, Error, Result};
use beit::masker::{BlockwiseMasker, Masker};
use beit::tokenizer::{evaluate_dvae, train_dvae, Dvae, DvaeConfig, DvaeEval, DvaeTrainConfig};
use beit::train::{
    classifier_from_pretrained, evaluate, finetune, pretrain, pretrain_model_config, ClassifyData, FinetuneConfig, PretrainConfig, PretrainData,
    Quiet, RunControl, RunFiles, TrainConfig,
};
use beit::{Beit, BeitConfig, BeitForImageClassification};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options of `beit demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Seed of everything: initialisation, data order, masks, noise, the labelled share.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Share of the 1500 training digits whose labels fine-tuning sees (stratified).
    #[arg(long, default_value_t = 0.1)]
    labelled: f64,
    /// dVAE tokenizer training steps (batch 64).
    #[arg(long, default_value_t = 150)]
    tokenizer_steps: u64,
    /// MIM pretraining epochs over all 1797 digits (batch 64).
    #[arg(long, default_value_t = 20)]
    pretrain_epochs: u64,
    /// Fine-tuning epochs over the labelled share (batch 32), for both models.
    #[arg(long, default_value_t = 80)]
    finetune_epochs: u64,
    /// Fine-tuning learning rate per 256 images (peak = this · 32 / 256), for both models.
    #[arg(long, default_value_t = 16e-3)]
    finetune_lr: f64,
    /// Encoder width.
    #[arg(long, default_value_t = 96)]
    hidden: usize,
    /// Encoder depth.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Write curves, the mask picture, reconstructions and the tokenizer here.
    #[arg(long, default_value = "demo-out")]
    out: PathBuf,
    /// Print one JSON summary instead of the table.
    #[arg(long)]
    json: bool,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Model input side: 8×8 digits upscaled to 32×32, patches of 4 (an 8×8 grid).
const IMAGE: usize = 32;
const PATCH: usize = 4;
/// Tokenizer view side: 16×16 → an 8×8 token grid matching the patches.
const TOKENIZER_IMAGE: usize = 16;

/// Run the demo.
pub fn run(args: &DemoArgs) -> Result<()> {
    if !(args.labelled > 0.0 && args.labelled <= 1.0) {
        return Err(Error::invalid("--labelled", format!("{} is not a share in (0, 1]", args.labelled)));
    }
    if args.hidden == 0 || !args.hidden.is_multiple_of(4) || args.layers == 0 {
        return Err(Error::invalid("--hidden/--layers", "the width must be a positive multiple of 4 heads and the depth positive"));
    }
    let device = beit::open_device(&args.device)?;
    let out = &args.out;
    std::fs::create_dir_all(out).map_err(|source| Error::Io { path: out.display().to_string(), source })?;
    let say = |line: String| {
        if !args.json {
            println!("{line}");
        }
    };
    let digits = Digits::load()?;
    let (train, test) = digits.split();
    let all: Vec<usize> = (0..digits.len()).collect();
    let labelled = stratified_share(&digits, &train, args.labelled, args.seed);
    let start = Instant::now();

    say(format!("[1/4] dVAE tokenizer: {} steps on the {} training digits ({})", args.tokenizer_steps, train.len(), device));
    let (tokenizer, tok_eval) = train_tokenizer(args, &digits, &train, &test, &device)?;
    let tok_seconds = start.elapsed().as_secs_f64();
    say(format!(
        "      held-out reconstruction MSE {:.4} (mean image {:.4}), {} of {} codes used, perplexity {:.0}",
        tok_eval.recon_mse, tok_eval.mean_image_mse, tok_eval.codes_used, tok_eval.vocab_size, tok_eval.perplexity
    ));

    let pre_cfg = PretrainConfig {
        train: TrainConfig {
            seed: args.seed,
            epochs: args.pretrain_epochs,
            batch_size: 64,
            base_lr: 4e-3,
            min_lr: 1e-5,
            warmup_epochs: 2.0,
            drop_path: 0.0,
            files: RunFiles { metrics: Some(out.join("pretrain.jsonl")), plot: Some(out.join("pretrain.png")), ..RunFiles::default() },
            ..TrainConfig::default()
        },
        mask_min_patches: 4,
        ..PretrainConfig::default()
    };
    let config = pretrain_model_config(&small_config(args), &pre_cfg);
    let pretrained_model = Beit::new(&config, &device, args.seed)?;
    let Beit::MaskedImageModeling(mim) = &pretrained_model else { unreachable!("pretrain_model_config asks for the MIM head") };
    say(format!(
        "[2/4] MIM pretraining: a {}-parameter BEiT ({} layers, {} wide, {PATCH}×{PATCH} patches of {IMAGE}×{IMAGE}) on all {} digits, no labels, {} epochs",
        mim.num_params(),
        args.layers,
        args.hidden,
        all.len(),
        args.pretrain_epochs
    ));
    draw_mask_picture(&digits, &pre_cfg, &out.join("mask.png"), args.seed, &device)?;
    let t = Instant::now();
    let data = PretrainData::digits(&digits, &all, IMAGE, TOKENIZER_IMAGE, &device)?;
    let pre = pretrain(mim, &tokenizer, &data, &pre_cfg, &RunControl::default(), &mut Progress::new(args.json))?;
    let pre_seconds = t.elapsed().as_secs_f64();
    pretrained_model.save_pretrained(out.join("pretrained"))?;
    say(format!("      final MIM loss {:.3} after {} steps, {:.0} s", pre.final_loss.unwrap_or(f64::NAN), pre.steps, pre_seconds));

    let classes: Vec<String> = (0..Digits::CLASSES).map(|c| c.to_string()).collect();
    let train_data = ClassifyData::digits(&digits, &labelled, IMAGE, &device)?;
    let test_data = ClassifyData::digits(&digits, &test, IMAGE, &device)?;
    let ft_cfg = |layer_decay: f64, name: &str| FinetuneConfig {
        train: TrainConfig {
            seed: args.seed,
            epochs: args.finetune_epochs,
            batch_size: 32,
            base_lr: args.finetune_lr,
            min_lr: 1e-6,
            warmup_epochs: 5.0,
            drop_path: 0.1,
            clip_grad: None,
            files: RunFiles { metrics: Some(out.join(format!("{name}.jsonl"))), plot: Some(out.join(format!("{name}.png"))), ..RunFiles::default() },
            ..TrainConfig::default()
        },
        layer_decay,
        label_smoothing: 0.1,
    };
    say(format!("[3/4] fine-tuning the pretrained model on {} labelled digits ({:.0}%), {} epochs", labelled.len(), 100.0 * args.labelled, args.finetune_epochs));
    let t = Instant::now();
    let cfg = ft_cfg(0.75, "finetune_pretrained");
    let pretrained = classifier_from_pretrained(mim.state_dict(), &config, &classes, cfg.train.drop_path, args.seed, &device)?;
    let pre_acc = finetune_and_score(&pretrained, &train_data, &test_data, &cfg, args.json)?;
    let ft_seconds = t.elapsed().as_secs_f64();
    say(format!("      held-out accuracy {:.1}%", 100.0 * pre_acc));

    say(format!("[4/4] the same model from scratch on the same {} digits, {} epochs", labelled.len(), args.finetune_epochs));
    let t = Instant::now();
    let cfg = ft_cfg(1.0, "finetune_scratch");
    let scratch = scratch_classifier(&config, &classes, cfg.train.drop_path, args.seed, &device)?;
    let scratch_acc = finetune_and_score(&scratch, &train_data, &test_data, &cfg, args.json)?;
    let scratch_seconds = t.elapsed().as_secs_f64();
    say(format!("      held-out accuracy {:.1}%", 100.0 * scratch_acc));
    let seconds = start.elapsed().as_secs_f64();

    if args.json {
        let summary = serde_json::json!({
            "pretrained_accuracy": pre_acc,
            "scratch_accuracy": scratch_acc,
            "seconds": seconds,
            "seed": args.seed,
            "labelled": labelled.len(),
            "held_out": test.len(),
            "tokenizer": { "recon_mse": tok_eval.recon_mse, "mean_image_mse": tok_eval.mean_image_mse, "codes_used": tok_eval.codes_used, "perplexity": tok_eval.perplexity, "seconds": tok_seconds },
            "pretrain": { "steps": pre.steps, "final_loss": pre.final_loss, "seconds": pre_seconds },
            "finetune_seconds": ft_seconds,
            "scratch_seconds": scratch_seconds,
            "out": out.display().to_string(),
        });
        println!("{summary}");
    } else {
        println!();
        println!("| held-out accuracy ({} digits) | {:>8} | {:>9} |", test.len(), "accuracy", "time");
        println!("|---|---:|---:|");
        println!("| BEiT pretrained (MIM on all digits) + fine-tuned on {} labels | {:>7.1}% | {:>7.0} s |", labelled.len(), 100.0 * pre_acc, tok_seconds + pre_seconds + ft_seconds);
        println!("| same model from scratch on {} labels | {:>7.1}% | {:>7.0} s |", labelled.len(), 100.0 * scratch_acc, scratch_seconds);
        println!();
        println!("total {seconds:.0} s; curves, mask and reconstructions in {}", out.display());
    }
    Ok(())
}

/// The small BEiT of the demo (before the pretraining settings).
fn small_config(args: &DemoArgs) -> BeitConfig {
    BeitConfig {
        image_size: IMAGE,
        patch_size: PATCH,
        hidden_size: args.hidden,
        num_hidden_layers: args.layers,
        num_attention_heads: 4,
        intermediate_size: 4 * args.hidden,
        vocab_size: DvaeConfig::digits().vocab_size,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        ..BeitConfig::base(IMAGE)
    }
}

/// Train the tokenizer on `train`, save it with a reconstruction picture, and evaluate it
/// on `test`.
fn train_tokenizer(args: &DemoArgs, digits: &Digits, train: &[usize], test: &[usize], device: &Device) -> Result<(Dvae, DvaeEval)> {
    let model = Dvae::new(&VarBuilder::new(device, DType::F32, args.seed), DvaeConfig::digits())?;
    let cfg = DvaeTrainConfig { steps: args.tokenizer_steps, seed: args.seed, ..DvaeTrainConfig::default() };
    let batches = crate::tokenizer::digit_batches(digits, train, cfg.batch, TOKENIZER_IMAGE, args.seed, device);
    train_dvae(&model, &cfg, &RunFiles::default(), train.len(), batches, &RunControl::default(), &mut Quiet)?;
    model.save(args.out.join("tokenizer"))?;
    let eval = evaluate_dvae(&model, test.chunks(100).map(|c| digits.tokenizer_batch(c, TOKENIZER_IMAGE, device)))?;
    crate::tokenizer::draw_reconstructions(&model, &digits.tokenizer_batch(&test[..16], TOKENIZER_IMAGE, device)?, &args.out.join("reconstructions.png"))?;
    Ok((model, eval))
}

/// The classifier with the pretraining config but fresh weights.
fn scratch_classifier(config: &BeitConfig, classes: &[String], drop_path: f64, seed: u64, device: &Device) -> Result<BeitForImageClassification> {
    let fresh = match Beit::new(config, device, seed ^ 0x5C7A)? {
        Beit::MaskedImageModeling(m) => m,
        _ => unreachable!("the pretraining config asks for the MIM head"),
    };
    classifier_from_pretrained(fresh.state_dict(), config, classes, drop_path, seed, device)
}

/// Fine-tune, then the held-out top-1 accuracy.
fn finetune_and_score(model: &BeitForImageClassification, train: &ClassifyData, test: &ClassifyData, cfg: &FinetuneConfig, quiet: bool) -> Result<f64> {
    finetune(model, train, Some(test), cfg, &RunControl::default(), &mut Progress::new(quiet))?;
    Ok(evaluate(model, test, 128)?.top1)
}

/// A seeded, class-stratified `share` of `pool`.
fn stratified_share(digits: &Digits, pool: &[usize], share: f64, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ 0x1AB);
    let mut picked = Vec::new();
    for class in 0..Digits::CLASSES {
        let mut members: Vec<usize> = pool.iter().copied().filter(|&i| digits.label(i) == class).collect();
        for i in (1..members.len()).rev() {
            members.swap(i, rng.below(i + 1));
        }
        let n = ((members.len() as f64 * share).round() as usize).clamp(1, members.len());
        picked.extend_from_slice(&members[..n]);
    }
    picked.sort_unstable();
    picked
}

/// One digit with a pretraining mask drawn over it.
fn draw_mask_picture(digits: &Digits, cfg: &PretrainConfig, path: &Path, seed: u64, device: &Device) -> Result<()> {
    let side = IMAGE / PATCH;
    let target = ((side * side) as f64 * cfg.mask_ratio).round() as usize;
    let masker = BlockwiseMasker::new((side, side), target, cfg.mask_min_patches, None, 0.3)?;
    let mask = masker.sample(&mut Rng::new(seed));
    let scale = 8;
    let (img, _) = digits.batch(&[0], IMAGE, device)?;
    let v = img.to_vec::<f32>()?;
    let s = (IMAGE * scale) as u32;
    let mut picture = image::RgbImage::from_fn(s, s, |x, y| {
        let g = ((v[(y as usize / scale) * IMAGE + x as usize / scale] * 0.5 + 0.5) * 255.0).round() as u8;
        image::Rgb([g, g, g])
    });
    draw_mask(&mut picture, &mask, side, PATCH * scale);
    picture.save(path).map_err(|e| Error::Format { file: path.display().to_string(), msg: e.to_string() })
}
