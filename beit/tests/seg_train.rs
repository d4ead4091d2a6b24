//! End-to-end segmentation fine-tuning on the generated shapes: a tiny BEiT + UperNet (+
//! auxiliary head) trained from scratch for a few hundred steps must beat the
//! majority-class baseline's mIoU and pixel accuracy on held-out scenes. Also: SETR-PUP
//! trains (loss decreases) and BatchNorm running statistics move in training only.

use beit::data::{seg_batch, SegDataset, Shapes};
use beit::engine::nn::Module;
use beit::segmentation::{evaluate, finetune};
use beit::train::{Evaluation, FinetuneConfig, Quiet, RunControl, TrainConfig};
use beit::{BeitConfig, BeitForSemanticSegmentation, SegHead};

fn tiny(head: SegHead) -> BeitConfig {
    BeitConfig {
        architectures: vec!["BeitForSemanticSegmentation".into()],
        hidden_size: 32,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        intermediate_size: 64,
        image_size: 32,
        patch_size: 8,
        use_relative_position_bias: true,
        drop_path_rate: 0.0,
        out_indices: Some(vec![1, 2, 3, 4]),
        auxiliary_channels: 16,
        num_labels: Some(Shapes::CLASSES),
        seg_head: head,
        ..BeitConfig::default()
    }
}

/// Peak lr 2e-3 whatever the batch, warmup 10 steps, layer decay 0.9, clip 3.
fn recipe(epochs: u64, batch: usize, steps_per_epoch: usize) -> FinetuneConfig {
    let train = TrainConfig {
        epochs,
        batch_size: batch,
        base_lr: 2e-3 * 256.0 / batch as f64,
        min_lr: 1e-4,
        warmup_epochs: 10.0 / steps_per_epoch as f64,
        weight_decay: 0.05,
        clip_grad: Some(3.0),
        ..TrainConfig::default()
    };
    FinetuneConfig { train, layer_decay: 0.9, label_smoothing: 0.0 }
}

#[test]
fn uper_beats_majority_baseline_on_shapes() {
    let dev = beit::open_device("cpu").unwrap();
    let (train, val) = (Shapes::new(96, 32, 1).unwrap(), Shapes::new(32, 32, 2).unwrap());
    let model = BeitForSemanticSegmentation::new(&tiny(SegHead::Uper), &dev, 0).unwrap();
    let start = std::time::Instant::now();
    let s = finetune(&model, &train, Some(&val), &recipe(7, 8, 12), &RunControl::default(), &mut Quiet).unwrap();
    let trained = start.elapsed();
    assert_eq!((s.steps, s.skipped, s.evals.len()), (84, 0, 7));
    let m = evaluate(&model, &val, 16, &dev).unwrap();
    let Some(Evaluation::Segmentation(last)) = s.evals.last() else { panic!("{:?}", s.evals) };
    assert_eq!((last.epoch, last.mean_iou, last.samples), (Some(6), m.mean_iou(), 32), "the last epoch's evaluation is the model's");
    let base = m.majority_baseline();
    let losses: Vec<f64> = s.history.iter().map(|h| h.loss).collect();
    println!(
        "shapes 32px, {} steps of 8 in {trained:?}: loss {:.3} -> {:.3}; val mIoU {:.3} (majority {:.3}), \
         pixel acc {:.3} (majority {:.3}), per class {:?}",
        s.steps,
        losses[0],
        losses[losses.len() - 1],
        m.mean_iou(),
        base.mean_iou(),
        m.pixel_accuracy(),
        base.pixel_accuracy(),
        m.per_class_iou()
    );
    assert!(m.mean_iou() > base.mean_iou() + 0.3, "mIoU {} vs majority {}", m.mean_iou(), base.mean_iou());
    assert!(m.pixel_accuracy() > base.pixel_accuracy() + 0.05);
}

#[test]
fn setr_pup_trains_and_batch_norm_stats_move_in_training_only() {
    let dev = beit::open_device("cpu").unwrap();
    let model = BeitForSemanticSegmentation::new(&tiny(SegHead::SetrPup), &dev, 0).unwrap();
    let data = Shapes::new(8, 32, 3).unwrap();
    let (pixels, _) = seg_batch(&data, &(0..data.len()).collect::<Vec<_>>(), &dev).unwrap();
    let running = |m: &BeitForSemanticSegmentation| m.state_dict().get("decode_head.up_convs.0.bn.running_mean").unwrap().to_vec_f64().unwrap();
    let before = running(&model);
    let logits = model.forward(&pixels, beit::Mode::eval()).unwrap().logits;
    assert_eq!(logits.shape(), [8, Shapes::CLASSES, 64, 64], "SETR-PUP upsamples the patch grid 16x");
    assert_eq!(running(&model), before, "inference leaves the running statistics alone");
    let s = finetune(&model, &data, None, &recipe(30, 8, 1), &RunControl::default(), &mut Quiet).unwrap();
    assert_ne!(running(&model), before, "training moves the running statistics");
    let (first, last) = (s.history[0].loss, s.history[29].loss);
    assert!(last < 0.7 * first, "loss {first} -> {last}");
    assert_eq!(data.size(), 32);
}
