//! Training library: exact resume, non-finite loss skipping, fine-tuning conversion,
//! layer-wise decay, evaluation metrics, configs and checkpoints.

use beit::engine::nn::Module;
use beit::engine::{Device, Tensor};
use beit::train::*;
use common::{digits_data, tiny_config, weights, PatchTokenizer};

mod common;
use beit::{Beit, BeitForMaskedImageModeling};
use std::cell::RefCell;

fn pretrain_config(dir: &std::path::Path) -> PretrainConfig {
    let mut cfg = PretrainConfig { mask_ratio: 0.5, mask_min_patches: 1, ..PretrainConfig::default() };
    cfg.train = TrainConfig {
        epochs: 3,
        batch_size: 4,
        base_lr: 0.05,
        warmup_epochs: 1.0,
        files: RunFiles { checkpoint_dir: Some(dir.join("ckpt")), metrics: Some(dir.join("metrics.jsonl")), keep_last: 2, ..RunFiles::default() },
        seed: 7,
        ..cfg.train
    };
    cfg
}

fn mim_model(cfg: &PretrainConfig, device: &Device) -> BeitForMaskedImageModeling {
    let Beit::MaskedImageModeling(m) = Beit::new(&pretrain_model_config(&tiny_config(), cfg), device, 3).unwrap() else { panic!() };
    m
}

fn losses(path: &std::path::Path) -> Vec<(u64, u64, u64)> {
    read_metrics(path).unwrap().0.iter().map(|m| (m.step, m.loss.to_bits(), m.lr.to_bits())).collect()
}

#[test]
fn resume_reproduces_an_uninterrupted_run_bit_for_bit() {
    let device = beit_backend_cpu::cpu();
    let tok = PatchTokenizer::new(8, &device);
    let data = digits_data(12, &device);
    // Straight through: 3 epochs of 3 steps.
    let straight = tempfile::tempdir().unwrap();
    let cfg = pretrain_config(straight.path());
    let model = mim_model(&cfg, &device);
    let s = pretrain(&model, &tok, &data, &cfg, &RunControl::default(), &mut Quiet).unwrap();
    assert_eq!((s.steps, s.skipped, s.interrupted), (9, 0, false));
    let first = s.history[0].loss;
    assert!((first - (8f64).ln()).abs() < 0.7, "initial loss {first} near ln(vocab)");
    // Stopped after 4 steps (mid-epoch), then resumed by a fresh process-like setup.
    let split = tempfile::tempdir().unwrap();
    let cfg2 = pretrain_config(split.path());
    let m1 = mim_model(&cfg2, &device);
    let s1 = pretrain(&m1, &tok, &data, &cfg2, &RunControl { stop_at_step: Some(4), ..Default::default() }, &mut Quiet).unwrap();
    assert_eq!(s1.steps, 4);
    let ck = load_checkpoint(&split.path().join("ckpt"), &device).unwrap();
    assert_eq!((ck.state.step, ck.state.epoch, ck.state.batch_in_epoch), (4, 1, 1));
    let m2 = mim_model(&cfg2, &device);
    let fresh = weights(&m2);
    let s2 = pretrain(&m2, &tok, &data, &cfg2, &RunControl { resume: Some(ck), ..Default::default() }, &mut Quiet).unwrap();
    assert_eq!((s2.steps, s2.history.len()), (9, 5));
    assert_ne!(weights(&m2), fresh);
    assert!(weights(&model) == weights(&m2), "final weights differ after resume");
    let (a, b) = (losses(&straight.path().join("metrics.jsonl")), losses(&split.path().join("metrics.jsonl")));
    assert_eq!(a.len(), 9);
    assert_eq!(a, b, "loss logs differ");
    // The optimiser state was restored too: the checkpoints at the end are identical.
    let end = |d: &std::path::Path| load_checkpoint(&d.join("ckpt"), &device).unwrap();
    let (ea, eb) = (end(straight.path()), end(split.path()));
    for name in ea.optim.names() {
        assert_eq!(ea.optim.get(name).unwrap().to_vec_f64().unwrap(), eb.optim.get(name).unwrap().to_vec_f64().unwrap(), "{name}");
    }
    assert_eq!(ea.optim.len(), 3 * model.trainable_params().len());
    // keep_last = 2: only the two newest remain, no temporary files.
    let files: Vec<_> = std::fs::read_dir(straight.path().join("ckpt")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(files.len(), 1, "{files:?}"); // written only at the end (checkpoint_every = 0)
    let mut cfg3 = pretrain_config(split.path());
    cfg3.train.seed = 8;
    let err = pretrain(&mim_model(&cfg3, &device), &tok, &data, &cfg3, &RunControl { resume: Some(end(split.path())), ..Default::default() }, &mut Quiet);
    assert!(err.unwrap_err().to_string().contains("seed"));
}

#[test]
fn checkpoints_keep_the_last_n_and_interrupt_saves_one() {
    let device = beit_backend_cpu::cpu();
    let tok = PatchTokenizer::new(8, &device);
    let data = digits_data(8, &device);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = pretrain_config(dir.path());
    cfg.train.files.checkpoint_every = 1;
    cfg.train.batch_size = 2;
    let model = mim_model(&cfg, &device);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    struct StopAt(std::sync::Arc<std::sync::atomic::AtomicBool>, u64);
    impl Observer for StopAt {
        fn step(&mut self, m: &StepMetrics, _: u64) {
            if m.step + 1 == self.1 {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }
    let control = RunControl { stop: Some(stop.clone()), ..Default::default() };
    let s = pretrain(&model, &tok, &data, &cfg, &control, &mut StopAt(stop, 5)).unwrap();
    assert!(s.interrupted);
    assert_eq!(s.steps, 5);
    let names: Vec<String> = list_checkpoints(&dir.path().join("ckpt")).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["checkpoint-00000004.safetensors", "checkpoint-00000005.safetensors"]);
    let ck = load_checkpoint(&dir.path().join("ckpt"), &device).unwrap();
    assert_eq!(ck.state.step, 5);
    assert!(load_checkpoint(dir.path(), &device).unwrap_err().to_string().contains("no checkpoint"));
}

#[test]
fn non_finite_losses_skip_the_step_and_too_many_stop_the_run() {
    let device = beit_backend_cpu::cpu();
    let tok = PatchTokenizer::new(8, &device);
    let PretrainData::Memory { images, tokenizer_view } = digits_data(4, &device) else { panic!() };
    // Poison image 0: every batch holding it has a NaN loss.
    let mut px = images.to_vec::<f32>().unwrap();
    px[0] = f32::NAN;
    let data = PretrainData::Memory { images: Tensor::from_vec(px, images.shape(), &device).unwrap(), tokenizer_view };
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = pretrain_config(dir.path());
    cfg.train.batch_size = 2;
    cfg.train.epochs = 4;
    let model = mim_model(&cfg, &device);
    type Weights = Vec<(String, Vec<f32>)>;
    struct Snap<'a>(&'a BeitForMaskedImageModeling, RefCell<Vec<(StepMetrics, Weights)>>, usize);
    impl Observer for Snap<'_> {
        fn step(&mut self, m: &StepMetrics, _: u64) {
            self.1.borrow_mut().push((m.clone(), weights(self.0)));
        }
        fn warn(&mut self, msg: &str) {
            // A masked poisoned patch leaves the loss finite but not its gradient.
            assert!(msg.contains("non-finite loss") || msg.contains("the gradient of"), "{msg}");
            self.2 += 1;
        }
    }
    let before = weights(&model);
    let mut snap = Snap(&model, RefCell::new(Vec::new()), 0);
    let s = pretrain(&model, &tok, &data, &cfg, &RunControl::default(), &mut snap).unwrap();
    let log = snap.1.into_inner();
    assert_eq!((s.skipped, snap.2), (4, 4), "one poisoned batch per epoch");
    let mut prev = before;
    for (m, w) in &log {
        assert!(m.loss.is_finite() || m.skipped);
        assert_eq!(*w == prev, m.skipped, "step {} changed the weights: {}", m.step, !m.skipped);
        prev = w.clone();
    }
    // Every image poisoned: the run stops after max_bad_steps with the last checkpoint intact.
    let PretrainData::Memory { images, tokenizer_view } = digits_data(4, &device) else { panic!() };
    let data = PretrainData::Memory { images: images.affine(f64::NAN, 0.0).unwrap(), tokenizer_view };
    cfg.train.max_bad_steps = 3;
    cfg.train.files.checkpoint_every = 100;
    let model = mim_model(&cfg, &device);
    let before = weights(&model);
    let err = pretrain(&model, &tok, &data, &cfg, &RunControl::default(), &mut Quiet).unwrap_err().to_string();
    assert!(err.contains("3 bad steps in a row") && err.contains("max_bad_steps"), "{err}");
    assert!(weights(&model) == before);
}

#[test]
fn finetune_converts_the_shared_bias_decays_layers_and_evaluates() {
    let device = beit_backend_cpu::cpu();
    let cfg = pretrain_config(std::path::Path::new("/nonexistent"));
    let mim = mim_model(&cfg, &device);
    let shared: Vec<f32> = mim.state_dict().get("beit.encoder.relative_position_bias.relative_position_bias_table").unwrap().to_vec().unwrap();
    let d = beit::data::Digits::load().unwrap();
    let train = ClassifyData::digits(&d, &(0..40).collect::<Vec<_>>(), 8, &device).unwrap();
    let test = ClassifyData::digits(&d, &(1000..1064).collect::<Vec<_>>(), 8, &device).unwrap();
    let model = classifier_from_pretrained(mim.state_dict(), mim.beit.config(), train.classes(), 0.1, 1, &device).unwrap();
    let c = model.beit.config();
    assert!(c.use_relative_position_bias && !c.use_shared_relative_position_bias && c.use_mean_pooling && !c.use_mask_token);
    let sd = model.state_dict();
    for i in 0..2 {
        let t: Vec<f32> = sd.get(&format!("beit.encoder.layer.{i}.attention.attention.relative_position_bias.relative_position_bias_table")).unwrap().to_vec().unwrap();
        assert_eq!(t, shared, "layer {i} table");
    }
    let q = "beit.encoder.layer.1.attention.attention.query.weight";
    assert_eq!(sd.get(q).unwrap().to_vec::<f32>().unwrap(), mim.state_dict().get(q).unwrap().to_vec::<f32>().unwrap());
    // From a classifier of another class count (e.g. an ImageNet-22k checkpoint): the
    // encoder carries over, the head is new.
    let three = ["a", "b", "c"].map(String::from);
    let again = classifier_from_pretrained(model.state_dict(), c, &three, 0.1, 2, &device).unwrap();
    assert_eq!(again.state_dict().shape("classifier.weight"), Some(&[3, c.hidden_size][..]));
    assert_eq!(again.state_dict().get(q).unwrap().to_vec::<f32>().unwrap(), sd.get(q).unwrap().to_vec::<f32>().unwrap());
    // Fine-tune a few steps: only the head trains at full rate; embeddings at decay^3.
    let dir = tempfile::tempdir().unwrap();
    let mut fc = FinetuneConfig::default();
    fc.train = TrainConfig { epochs: 2, batch_size: 8, base_lr: 0.1, warmup_epochs: 0.5, ..fc.train };
    fc.train.files = RunFiles { metrics: Some(dir.path().join("m.jsonl")), plot: Some(dir.path().join("curve.png")), ..RunFiles::default() };
    let s = finetune(&model, &train, Some(&test), &fc, &RunControl::default(), &mut Quiet).unwrap();
    assert_eq!((s.steps, s.evals.len()), (10, 2));
    let (steps, evals) = read_metrics(&dir.path().join("m.jsonl")).unwrap();
    assert_eq!((steps.len(), evals.len(), evals[1].epoch()), (10, 2, Some(1)));
    assert_eq!(evals, s.evals, "evaluations read back as written");
    assert!(matches!(evals[0], Evaluation::Classification(_)));
    assert!(image::open(dir.path().join("curve.png")).unwrap().height() == 640);
    // Evaluation against a direct computation.
    let m = evaluate(&model, &test, 10).unwrap();
    let ClassifyData::Memory { images, labels, .. } = &test else { panic!() };
    let (logits, _) = model.forward(images, None, beit::Mode::eval()).unwrap();
    let rows: Vec<f32> = logits.to_vec().unwrap();
    let (mut top1, mut top5) = (0, 0);
    for (row, &y) in rows.chunks(10).zip(labels) {
        let rank = row.iter().filter(|&&v| v > row[y as usize]).count();
        top1 += (rank == 0) as usize;
        top5 += (rank < 5) as usize;
    }
    assert_eq!((m.samples, m.top1, m.top5), (64, top1 as f64 / 64.0, top5 as f64 / 64.0));
    assert_eq!(m.confusion.iter().flatten().sum::<u64>(), 64);
    assert_eq!((0..10).map(|i| m.confusion[i][i]).sum::<u64>(), top1 as u64);
    let ce: f64 = rows.chunks(10).zip(labels).map(|(r, &y)| {
        let mx = r.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let lse = mx + r.iter().map(|&v| (v as f64 - mx).exp()).sum::<f64>().ln();
        lse - r[y as usize] as f64
    }).sum::<f64>() / 64.0;
    assert!((m.loss - ce).abs() < 1e-4 * ce.max(1.0), "{} vs {ce}", m.loss);
}

#[test]
fn configs_load_from_json_and_toml_with_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("c.json");
    std::fs::write(&json, r#"{"epochs": 3, "batch_size": 64, "mask_ratio": 0.4}"#).unwrap();
    let c: PretrainConfig = load_config(&json).unwrap();
    assert_eq!((c.train.epochs, c.train.batch_size, c.mask_ratio, c.train.weight_decay), (3, 64, 0.4, 0.05));
    assert_eq!(c.train.lr(), 1.5e-3 * 64.0 / 256.0);
    let toml = dir.path().join("c.toml");
    std::fs::write(&toml, "epochs = 5\nlayer_decay = 0.75\nclip_grad = 1.0\n").unwrap();
    let f: FinetuneConfig = load_config(&toml).unwrap();
    assert_eq!((f.train.epochs, f.layer_decay, f.train.clip_grad, f.label_smoothing), (5, 0.75, Some(1.0), 0.1));
    let f = apply_overrides(&f, &[("epochs".into(), "9".into()), ("metrics".into(), "out/m.jsonl".into())]).unwrap();
    assert_eq!((f.train.epochs, f.train.files.metrics.as_deref()), (9, Some(std::path::Path::new("out/m.jsonl"))));
    assert!(apply_overrides(&f, &[("epoch".into(), "9".into())]).unwrap_err().to_string().contains("unknown key `epoch`"));
    assert!(apply_overrides(&f, &[("epochs".into(), "many".into())]).unwrap_err().to_string().contains("epochs"));
    std::fs::write(&toml, "epochz = 5\n").unwrap();
    let err = load_config::<FinetuneConfig>(&toml).unwrap_err().to_string();
    assert!(err.contains("c.toml") && err.contains("epochz"), "{err}");
    let bad = TrainConfig { batch_size: 0, ..TrainConfig::default() }.validate().unwrap_err().to_string();
    assert!(bad.contains("batch_size"), "{bad}");
    let device = beit_backend_cpu::cpu();
    let mut small = pretrain_config(dir.path());
    small.train.batch_size = 64;
    let err = pretrain(&mim_model(&small, &device), &PatchTokenizer::new(8, &device), &digits_data(10, &device), &small, &RunControl::default(), &mut Quiet);
    assert!(err.unwrap_err().to_string().contains("fewer samples than one batch of 64"));
    let d = PretrainConfig::default();
    assert_eq!((d.train.beta1, d.train.beta2, d.train.clip_grad, d.train.drop_path, d.layer_scale, d.train.base_lr), (0.9, 0.999, Some(3.0), 0.1, 0.1, 1.5e-3));
}

#[test]
fn one_mim_step_matches_torch_adamw() {
    // tests/fixtures/make_train_fixture.py: HF BeitForMaskedImageModeling + torch AdamW in fp64.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/train");
    let device = beit_backend_cpu::cpu();
    let (model, _) = Beit::from_pretrained(&dir, &device).unwrap();
    let Beit::MaskedImageModeling(model) = model else { panic!("MIM fixture") };
    let step = beit::engine::io::load_safetensors(dir.join("step.safetensors"), &device).unwrap();
    let layers = model.beit.config().num_hidden_layers;
    let groups = param_groups(model.trainable_params(), layers, 1.0, 0.05);
    let config = beit::engine::optim::AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05 };
    let mut opt = beit::engine::optim::AdamW::new(groups, config).unwrap();
    let (pixels, mask, labels) = (step.get("pixel_values").unwrap(), step.get("bool_masked_pos").unwrap(), step.get("labels").unwrap());
    let masked = beit::masker::MaskedPatches::from_tensor(&mask).unwrap();
    let loss = model.loss(&pixels, &masked, &labels, beit::Mode::train(0)).unwrap();
    let (got, want) = (loss.to_scalar().unwrap(), step.get("loss").unwrap().to_scalar().unwrap());
    assert!((got - want).abs() <= 1e-4 * want.abs(), "loss {got} vs {want}");
    let mut grads = loss.backward().unwrap();
    let norm = beit::engine::optim::clip_grad_norm(&mut grads, &model.trainable_params(), 1.0).unwrap();
    let want_norm = step.get("grad_norm").unwrap().to_scalar().unwrap();
    assert!((norm - want_norm).abs() <= 1e-4 * want_norm, "grad norm {norm} vs {want_norm}");
    let before: Vec<Vec<f64>> = model.trainable_params().iter().map(|p| p.tensor().to_vec_f64().unwrap()).collect();
    opt.step(&grads, 2e-3).unwrap();
    let mut checked = 0;
    for p in model.trainable_params() {
        let want = step.get(&format!("updated.{}", p.name())).unwrap().to_vec_f64().unwrap();
        let got = p.tensor().to_vec_f64().unwrap();
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        let err = got.iter().zip(&want).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err <= 1e-4 * scale, "{}: max error {err:.3e} relative to max |w| {scale:.3e}", p.name());
        // The step itself (lr 2e-3) is reproduced to 1%, element by element.
        let update = want.iter().zip(&before[checked]).fold(0f64, |m, (w, b)| m.max((w - b).abs()));
        assert!(err <= 1e-2 * update, "{}: max error {err:.3e} for a max update of {update:.3e}", p.name());
        checked += 1;
    }
    assert_eq!(checked, step.names().filter(|n| n.starts_with("updated.")).count());
}

/// Every trainable parameter's gradient comes out of backward contiguous, so that the norm
/// and AdamW read it in place (a strided one is copied every step): BEiT MIM (the fixture
/// model: Linear weights, which the forward multiplies by as `wᵀ`, layer scales, the mask
/// token) and segmentation with UperNet and the auxiliary head (convolutions, transposed
/// convolutions, BatchNorm). The one exception is a relative position table: its bias is
/// gathered through the table's transpose, so that the bias comes out contiguous, and its
/// gradient is that transpose's (a few thousand values: copying it costs microseconds).
#[test]
fn gradients_come_out_contiguous() {
    let device = beit_backend_cpu::cpu();
    let strided = |grads: &beit::engine::Gradients, params: &[beit::engine::nn::Param]| -> Vec<String> {
        assert!(params.iter().any(|p| grads.get(&p.tensor()).is_some()), "no gradients at all");
        let strided = |p: &&beit::engine::nn::Param| grads.get(&p.tensor()).is_some_and(|g| !g.is_contiguous());
        params.iter().filter(strided).map(|p| p.name().to_string()).filter(|n| !n.ends_with("relative_position_bias_table")).collect()
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/train");
    let Beit::MaskedImageModeling(model) = Beit::from_pretrained(&dir, &device).unwrap().0 else { panic!("MIM fixture") };
    let step = beit::engine::io::load_safetensors(dir.join("step.safetensors"), &device).unwrap();
    let masked = beit::masker::MaskedPatches::from_tensor(&step.get("bool_masked_pos").unwrap()).unwrap();
    let loss = model.loss(&step.get("pixel_values").unwrap(), &masked, &step.get("labels").unwrap(), beit::Mode::train(0)).unwrap();
    assert_eq!(strided(&loss.backward().unwrap(), &model.trainable_params()), Vec::<String>::new(), "MIM");

    let seg = beit::BeitForSemanticSegmentation::new(&common::group::seg_config(beit::SegHead::Uper), &device, 0).unwrap();
    let pixels = Tensor::randn(&[2, 3, 32, 32], 1.0, beit::engine::DType::F32, &mut beit::engine::rng::Rng::new(1), &device).unwrap();
    let labels = Tensor::from_vec((0..2 * 32 * 32).map(|i| (i % beit::data::Shapes::CLASSES) as i64).collect(), &[2, 32, 32], &device).unwrap();
    let out = seg.forward_in(&pixels, beit::Mode::train(0), None).unwrap();
    let grads = seg.loss(&out, &labels).unwrap().backward().unwrap();
    assert_eq!(strided(&grads, &seg.trainable_params()), Vec::<String>::new(), "segmentation");
}
