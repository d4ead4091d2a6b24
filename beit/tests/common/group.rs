//! What the data-parallel tests share: a small pretraining run and a small segmentation
//! run (BatchNorm in 16 places), and the tolerances a group is held to against one process.

use super::{digits_data, tiny_config, weights, PatchTokenizer};
use beit::engine::nn::Module;
use beit::engine::Device;
use beit::train::*;
use beit::{Beit, BeitForMaskedImageModeling};
use std::path::Path;

/// Tolerance of the group against one process: the same sums, added in another order.
pub const TOL: f64 = 1e-5;

/// 2 epochs of 3 steps of 4 images, with drop path (per-sample draws) and checkpoints.
pub fn config(dir: &Path, batch: usize) -> PretrainConfig {
    let mut cfg = PretrainConfig { mask_ratio: 0.5, mask_min_patches: 1, ..PretrainConfig::default() };
    cfg.train = TrainConfig {
        epochs: 2,
        batch_size: batch,
        base_lr: 0.05,
        warmup_epochs: 1.0,
        drop_path: 0.2,
        files: RunFiles { checkpoint_dir: Some(dir.join("ckpt")), metrics: Some(dir.join("metrics.jsonl")), keep_last: 10, ..RunFiles::default() },
        seed: 7,
        ..cfg.train
    };
    cfg
}

/// A fresh model whose initial weights come from `init_seed`.
pub fn model(cfg: &PretrainConfig, device: &Device, init_seed: u64) -> BeitForMaskedImageModeling {
    let Beit::MaskedImageModeling(m) = Beit::new(&pretrain_model_config(&tiny_config(), cfg), device, init_seed).unwrap() else { panic!("a MIM model") };
    m
}

/// A fresh model (initial weights from seed 3) pretrained with [`config`] (batch 4, files
/// in `dir`) in `control`'s group on `device`: its history and weights.
pub fn pretrain_run(dir: &Path, device: &Device, control: &RunControl) -> (Summary, Vec<(String, Vec<f32>)>) {
    let cfg = config(dir, 4);
    let m = model(&cfg, device, 3);
    (run(&m, &cfg, control).unwrap(), weights(&m))
}

/// Train `model` on 12 digits with `control`, on `model`'s device.
pub fn run(model: &BeitForMaskedImageModeling, cfg: &PretrainConfig, control: &RunControl) -> beit::engine::Result<Summary> {
    let device = model.params()[0].device();
    pretrain(model, &PatchTokenizer::new(8, &device), &digits_data(12, &device), cfg, control, &mut Quiet)
}

/// Steps, losses and gradient norms agree within [`TOL`] (relative).
pub fn assert_same_history(got: &Summary, want: &Summary, what: &str) {
    assert_eq!(got.history.len(), want.history.len(), "{what}: steps");
    for (g, w) in got.history.iter().zip(&want.history) {
        assert_eq!((g.step, g.skipped), (w.step, w.skipped), "{what}");
        assert!((g.loss - w.loss).abs() <= TOL * w.loss.abs(), "{what}: step {} loss {} vs {}", g.step, g.loss, w.loss);
        let (gn, wn) = (g.grad_norm.unwrap(), w.grad_norm.unwrap());
        assert!((gn - wn).abs() <= TOL * wn, "{what}: step {} grad norm {gn} vs {wn}", g.step);
    }
}

/// Every weight agrees within [`TOL`] (absolute).
pub fn assert_same_weights(got: &[(String, Vec<f32>)], want: &[(String, Vec<f32>)], what: &str) {
    assert_eq!(got.len(), want.len());
    for ((name, g), (_, w)) in got.iter().zip(want) {
        let worst = g.iter().zip(w).map(|(a, b)| (a - b).abs() as f64).fold(0.0, f64::max);
        assert!(worst <= TOL, "{what}: `{name}` differs by {worst}");
    }
}

/// A 2-layer, 16-wide segmentation model on 32 px shapes of 8 px patches, with `head`.
pub fn seg_config(head: beit::SegHead) -> beit::BeitConfig {
    beit::BeitConfig {
        architectures: vec!["BeitForSemanticSegmentation".into()],
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        image_size: 32,
        patch_size: 8,
        out_indices: Some(vec![1, 1, 2, 2]),
        auxiliary_channels: 8,
        num_labels: Some(beit::data::Shapes::CLASSES),
        seg_head: head,
        ..beit::BeitConfig::default()
    }
}

/// Fine-tune a fresh segmentation model (UperNet, the FPN and the auxiliary FCN head:
/// BatchNorm in 16 places) for 8 steps of 2 shapes with drop path, in `control`'s group;
/// its history and weights.
pub fn seg_run(control: &RunControl, device: &Device) -> (Summary, Vec<(String, Vec<f32>)>) {
    let data = beit::data::Shapes::new(8, 32, 1).unwrap();
    let train = TrainConfig { epochs: 2, batch_size: 2, drop_path: 0.1, seed: 3, ..TrainConfig::default() };
    let cfg = FinetuneConfig { train, layer_decay: 0.9, label_smoothing: 0.0 };
    let model = beit::BeitForSemanticSegmentation::new(&seg_config(beit::SegHead::Uper), device, 0).unwrap();
    let s = beit::segmentation::finetune(&model, &data, None, &cfg, control, &mut Quiet).unwrap();
    (s, weights(&model))
}

/// The weights of [`seg_run`] a group and a lone run must agree on. The biases of the FPN's
/// transposed convolutions only reach the loss through a BatchNorm (`fpn1.1`, and
/// UperNet's lateral 1x1 conv module), which takes their value out again: their gradients
/// are 0 in exact arithmetic, rounding noise here, which AdamW scales up to whole steps.
/// They can differ by 1e-5 where every other weight agrees to 1e-7.
pub fn seg_compared(w: &[(String, Vec<f32>)]) -> Vec<(String, Vec<f32>)> {
    w.iter().filter(|(name, _)| !["fpn1.0.bias", "fpn2.0.bias"].contains(&name.as_str())).cloned().collect()
}
