//! Segmentation fine-tuning and dVAE training go through the loop pretraining uses: a run
//! stopped part-way and resumed from its checkpoint ends with bit-identical weights,
//! optimiser moments and step metrics to an uninterrupted one, and non-finite steps are
//! skipped (no update) until `max_bad_steps` in a row stop the run.

use beit::data::{Digits, SegDataset, SegSample, Shapes, IGNORE_LABEL};
use beit::engine::nn::{Module, VarBuilder};
use beit::engine::{DType, Result};
use beit::segmentation::finetune;
use beit::tokenizer::{train_dvae, Dvae, DvaeConfig, DvaeTrainConfig};
use beit::train::{load_checkpoint, Checkpoint, FinetuneConfig, Quiet, RunControl, RunFiles, Summary, TrainConfig, TrainState};
use beit::{BeitConfig, BeitForSemanticSegmentation, SegHead};
use std::path::Path;

fn files(dir: &Path) -> RunFiles {
    RunFiles { checkpoint_dir: Some(dir.join("ckpt")), metrics: Some(dir.join("metrics.jsonl")), ..RunFiles::default() }
}

/// Every tensor of the newest checkpoint in `dir` by name, with the run's state.
fn last_checkpoint(dir: &Path) -> (TrainState, Vec<(String, Vec<f64>)>) {
    let Checkpoint { state, model, optim, .. } = load_checkpoint(&dir.join("ckpt"), &beit::open_device("cpu").unwrap()).unwrap();
    let mut tensors: Vec<(String, Vec<f64>)> = model.names().map(|n| (format!("model.{n}"), model.get(n).unwrap().to_vec_f64().unwrap())).collect();
    tensors.extend(optim.names().map(|n| (n.to_string(), optim.get(n).unwrap().to_vec_f64().unwrap())));
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    (state, tensors)
}

/// The metrics file's records without their timing.
fn records(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let mut out: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    out.iter_mut().for_each(|v| drop(v.as_object_mut().unwrap().remove("samples_per_sec")));
    out
}

/// Run `train` to the end in one folder, and in another stopped at `stop` then resumed from
/// its checkpoint (by a model built with another seed, which the checkpoint overwrites):
/// the two must agree bit for bit.
fn resumes_exactly(kind: &str, stop: u64, train: impl Fn(&Path, u64, RunControl) -> Summary) {
    let (whole, split) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let reference = train(whole.path(), 0, RunControl::default());
    assert!(reference.steps > stop + 1, "{kind}: {} steps", reference.steps);
    let first = train(split.path(), 0, RunControl { stop_at_step: Some(stop), ..RunControl::default() });
    assert_eq!(first.steps, stop);
    let ck = load_checkpoint(&split.path().join("ckpt"), &beit::open_device("cpu").unwrap()).unwrap();
    assert_eq!((ck.state.kind.as_str(), ck.state.step), (kind, stop));
    let resumed = train(split.path(), 1, RunControl { resume: Some(ck), ..RunControl::default() });
    assert_eq!(resumed.history.first().map(|m| m.step), Some(stop), "{kind}: resumed at the checkpoint's step");
    let ((state, got), (want_state, want)) = (last_checkpoint(split.path()), last_checkpoint(whole.path()));
    assert_eq!(state, want_state, "{kind}: final state");
    assert_eq!(got.len(), want.len(), "{kind}: tensor count");
    for ((name, a), (_, b)) in got.iter().zip(&want) {
        assert!(a == b, "{kind}: `{name}` differs from the uninterrupted run");
    }
    assert_eq!(records(split.path()), records(whole.path()), "{kind}: metrics");
}

fn tiny_segmenter(seed: u64) -> BeitForSemanticSegmentation {
    let config = BeitConfig {
        architectures: vec!["BeitForSemanticSegmentation".into()],
        hidden_size: 16,
        num_hidden_layers: 4,
        num_attention_heads: 2,
        intermediate_size: 32,
        image_size: 16,
        patch_size: 4,
        use_relative_position_bias: true,
        drop_path_rate: 0.1,
        out_indices: Some(vec![1, 2, 3, 4]),
        auxiliary_channels: 8,
        num_labels: Some(Shapes::CLASSES),
        seg_head: SegHead::Uper,
        ..BeitConfig::default()
    };
    BeitForSemanticSegmentation::new(&config, &beit::open_device("cpu").unwrap(), seed).unwrap()
}

fn seg_recipe(files: RunFiles) -> FinetuneConfig {
    let train = TrainConfig { epochs: 2, batch_size: 4, base_lr: 0.1, warmup_epochs: 0.5, seed: 3, files, ..TrainConfig::default() };
    FinetuneConfig { train, layer_decay: 0.9, label_smoothing: 0.0 }
}

#[test]
fn segmentation_resumes_exactly() {
    let (train, val) = (Shapes::new(16, 16, 1).unwrap(), Shapes::new(4, 16, 2).unwrap());
    resumes_exactly("segmentation", 3, |dir, seed, control| {
        finetune(&tiny_segmenter(seed), &train, Some(&val), &seg_recipe(files(dir)), &control, &mut Quiet).unwrap()
    });
}

#[test]
fn dvae_resumes_exactly() {
    let dev = beit::open_device("cpu").unwrap();
    let digits = Digits::load().unwrap();
    let (pool, _) = digits.split();
    let cfg = DvaeTrainConfig { steps: 8, batch: 8, seed: 5, ..DvaeTrainConfig::default() };
    resumes_exactly("dvae", 5, |dir, seed, control| {
        let model = Dvae::new(&VarBuilder::new(&dev, DType::F32, seed), DvaeConfig { hidden: 8, vocab_size: 16, ..DvaeConfig::digits() }).unwrap();
        let batch = |s: &TrainState| digits.tokenizer_batch(&pool[s.step as usize * 8..][..8], 16, &dev);
        train_dvae(&model, &cfg, &files(dir), pool.len(), batch, &control, &mut Quiet).unwrap()
    });
}

/// Shapes whose label maps are ignored everywhere from sample `from` on: a batch of them
/// has no pixel to learn from, and a NaN loss.
struct IgnoredFrom {
    shapes: Shapes,
    from: usize,
}

impl SegDataset for IgnoredFrom {
    fn len(&self) -> usize {
        self.shapes.len()
    }
    fn size(&self) -> usize {
        self.shapes.size()
    }
    fn sample(&self, i: usize) -> Result<SegSample> {
        let mut s = self.shapes.sample(i)?;
        if i >= self.from {
            s.labels.fill(IGNORE_LABEL);
        }
        Ok(s)
    }
}

#[test]
fn segmentation_skips_non_finite_steps_then_stops() {
    let weights = |m: &BeitForSemanticSegmentation| m.params().iter().map(|p| p.tensor().to_vec_f64().unwrap()).collect::<Vec<_>>();
    let shapes = || Shapes::new(8, 16, 1).unwrap();
    // Every batch ignored: two skipped steps change nothing, the third stops the run.
    let model = tiny_segmenter(0);
    let before = weights(&model);
    let mut cfg = seg_recipe(RunFiles::default());
    cfg.train.max_bad_steps = 3;
    let control = RunControl { stop_at_step: Some(2), ..RunControl::default() };
    let s = finetune(&model, &IgnoredFrom { shapes: shapes(), from: 0 }, None, &cfg, &control, &mut Quiet).unwrap();
    assert_eq!(s.skipped, 2);
    assert!(s.history.iter().all(|m| m.skipped && m.loss.is_nan() && m.grad_norm.is_none()), "{:?}", s.history);
    assert_eq!(weights(&model), before, "skipped steps leave the weights and statistics alone");
    let err = finetune(&model, &IgnoredFrom { shapes: shapes(), from: 0 }, None, &cfg, &RunControl::default(), &mut Quiet).unwrap_err().to_string();
    assert!(err.contains("3 bad steps in a row"), "{err}");
}
