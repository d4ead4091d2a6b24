//! End-to-end segmentation fine-tuning on the generated shapes: a tiny BEiT + UperNet (+
//! auxiliary head) trained from scratch for a few hundred steps must beat the
//! majority-class baseline's mIoU and pixel accuracy on held-out scenes. Also: SETR-PUP
//! trains (loss decreases) and BatchNorm running statistics move in training only.

use beit::data::{seg_batch, SegDataset, Shapes};
use beit::engine::nn::Module;
use beit::engine::optim::Schedule;
use beit::segmentation::{evaluate, SegTrainConfig, SegTrainer};
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

fn trainer(model: &BeitForSemanticSegmentation, steps: u64) -> SegTrainer {
    let lr = Schedule::WarmupCosine { base: 2e-3, final_value: 1e-4, warmup_start: 0.0, warmup_steps: 10, total_steps: steps };
    let config = SegTrainConfig { lr, weight_decay: 0.05, layer_decay: 0.9, clip_grad: Some(3.0) };
    SegTrainer::new(model, config).unwrap()
}

#[test]
fn uper_beats_majority_baseline_on_shapes() {
    let dev = beit::open_device("cpu").unwrap();
    let (train, val) = (Shapes::new(96, 32, 1).unwrap(), Shapes::new(32, 32, 2).unwrap());
    let model = BeitForSemanticSegmentation::new(&tiny(SegHead::Uper), &dev, 0).unwrap();
    let steps = 80;
    let mut t = trainer(&model, steps);
    let (batch, start) = (8, std::time::Instant::now());
    let mut losses = Vec::new();
    for s in 0..steps as usize {
        let idx: Vec<usize> = (0..batch).map(|k| (s * batch + k) % train.len()).collect();
        let (pixels, labels) = seg_batch(&train, &idx, &dev).unwrap();
        losses.push(t.step(&model, &pixels, &labels).unwrap());
    }
    let trained = start.elapsed();
    let m = evaluate(&model, &val, 16, &dev).unwrap();
    let base = m.majority_baseline();
    println!(
        "shapes 32px, {steps} steps of {batch} in {trained:?}: loss {:.3} -> {:.3}; val mIoU {:.3} (majority {:.3}), \
         pixel acc {:.3} (majority {:.3}), per class {:?}",
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
    let (pixels, labels) = seg_batch(&data, &(0..data.len()).collect::<Vec<_>>(), &dev).unwrap();
    let running = |m: &BeitForSemanticSegmentation| m.state_dict().get("decode_head.up_convs.0.bn.running_mean").unwrap().to_vec_f64().unwrap();
    let before = running(&model);
    let logits = model.forward(&pixels, beit::Mode::eval()).unwrap().logits;
    assert_eq!(logits.shape(), [8, Shapes::CLASSES, 64, 64], "SETR-PUP upsamples the patch grid 16x");
    assert_eq!(running(&model), before, "inference leaves the running statistics alone");
    let mut t = trainer(&model, 30);
    let losses: Vec<f64> = (0..30).map(|_| t.step(&model, &pixels, &labels).unwrap()).collect();
    assert_ne!(running(&model), before, "training moves the running statistics");
    assert!(losses[29] < 0.7 * losses[0], "loss {} -> {}", losses[0], losses[29]);
    assert_eq!(data.size(), 32);
}
