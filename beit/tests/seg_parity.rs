//! Segmentation parity with Hugging Face `BeitForSemanticSegmentation`: our f32 logits,
//! auxiliary logits and loss against PyTorch's float64 outputs on the random-weight
//! checkpoints of `tests/fixtures/make_seg_fixtures.py` (non-trivial BatchNorm running
//! statistics, eval mode). Tolerance: max abs error 1e-4.

use beit::engine::io::load_safetensors;
use beit::engine::nn::Module;
use beit::engine::Tensor;
use beit::{BeitForSemanticSegmentation, Mode};
use std::path::PathBuf;

fn case_dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/seg").join(case)
}

fn assert_close(ours: &Tensor, expected: &Tensor, what: &str) {
    assert_eq!(ours.shape(), expected.shape(), "{what}: shape");
    let (a, b) = (ours.to_vec_f64().unwrap(), expected.to_vec_f64().unwrap());
    let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let scale = b.iter().map(|v| v.abs()).fold(0.0, f64::max);
    assert!(err <= 1e-4, "{what}: max abs error {err:e} > 1e-4 (largest |expected| {scale})");
}

fn check(case: &str) {
    let dev = beit::open_device("cpu").unwrap();
    let dir = case_dir(case);
    let (model, report) = BeitForSemanticSegmentation::from_pretrained(&dir, &dev).unwrap();
    assert!(report.unexpected.is_empty(), "{case}: unexpected keys {:?}", report.unexpected);
    let inputs = load_safetensors(dir.join("inputs.safetensors"), &dev).unwrap();
    let expected = load_safetensors(dir.join("expected.safetensors"), &dev).unwrap();
    let _guard = beit::engine::no_grad();
    let out = model.forward(&inputs.get("pixel_values").unwrap(), Mode::eval()).unwrap();
    assert_close(&out.logits, &expected.get("logits").unwrap(), &format!("{case}: logits"));
    assert_eq!(out.auxiliary_logits.is_some(), expected.contains("auxiliary_logits"), "{case}: auxiliary head");
    if let Some(aux) = &out.auxiliary_logits {
        assert_close(aux, &expected.get("auxiliary_logits").unwrap(), &format!("{case}: auxiliary_logits"));
    }
    let loss = model.loss(&out, &inputs.get("labels").unwrap()).unwrap();
    assert_close(&loss, &expected.get("loss").unwrap(), &format!("{case}: loss"));
}

/// Per-layer relative position bias, out_indices 1..4 (the embeddings as first feature),
/// auxiliary head with two convs and concat_input, PSP scales up to 6 on a 4x4 map.
#[test]
fn uper_with_auxiliary_head() {
    check("uper_aux");
}

/// Shared relative position bias, absolute positions, final LayerNorm, out_indices
/// [0, 2, 3, 4] (0 = the last block, Python's index −1), no auxiliary head.
#[test]
fn uper_shared_bias_no_auxiliary() {
    check("uper_shared");
}

/// A saved model loads back with identical tensors (BatchNorm buffers included), and its
/// config keeps the segmentation fields.
#[test]
fn save_and_reload_round_trip() {
    let dev = beit::open_device("cpu").unwrap();
    let (model, _) = BeitForSemanticSegmentation::from_pretrained(case_dir("uper_aux"), &dev).unwrap();
    let tmp = std::env::temp_dir().join(format!("beit-seg-roundtrip-{}", std::process::id()));
    model.save_pretrained(&tmp).unwrap();
    let (back, report) = BeitForSemanticSegmentation::from_pretrained(&tmp, &dev).unwrap();
    assert!(report.unexpected.is_empty());
    assert_eq!(back.config(), model.config());
    let (a, b) = (model.state_dict(), back.state_dict());
    assert_eq!(a.len(), b.len());
    for name in a.names() {
        assert_eq!(a.get(name).unwrap().to_vec_f64().unwrap(), b.get(name).unwrap().to_vec_f64().unwrap(), "{name}");
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// Fine-tuning start: the encoder of a BEiT checkpoint (here the encoder of a segmentation
/// fixture saved as a plain `BeitModel`-style folder, keys without `beit.`) at another
/// input size: shared table copied per layer and resized, heads fresh.
#[test]
fn encoder_from_a_pretrained_checkpoint() {
    let dev = beit::open_device("cpu").unwrap();
    let (src, _) = BeitForSemanticSegmentation::from_pretrained(case_dir("uper_shared"), &dev).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut sd = beit::engine::io::StateDict::new();
    for (name, t) in src.beit.state_dict().tensors().unwrap() {
        sd.insert(name.strip_prefix("beit.").unwrap(), t);
    }
    sd.save(tmp.path().join("model.safetensors"), None).unwrap();
    let mut config = src.config().clone();
    config.use_shared_relative_position_bias = false;
    config.use_relative_position_bias = true;
    config.image_size = 96;
    let (model, report) = BeitForSemanticSegmentation::from_pretrained_encoder(tmp.path(), &config, &dev, 0).unwrap();
    assert!(report.missing.is_empty() && report.unexpected.is_empty(), "{report:?}");
    let got = model.state_dict();
    let table = |sd: &beit::engine::io::StateDict, k: &str| sd.get(k).unwrap();
    let shared = table(&src.state_dict(), "beit.encoder.relative_position_bias.relative_position_bias_table");
    let resized = beit::model::resize_rel_pos_table(&shared, (12, 12), "t").unwrap();
    for i in 0..config.num_hidden_layers {
        let k = format!("beit.encoder.layer.{i}.attention.attention.relative_position_bias.relative_position_bias_table");
        assert_eq!(table(&got, &k).to_vec_f64().unwrap(), resized.to_vec_f64().unwrap(), "{k}");
    }
    let k = "beit.encoder.layer.2.intermediate.dense.weight";
    assert_eq!(table(&got, k).to_vec_f64().unwrap(), table(&src.state_dict(), k).to_vec_f64().unwrap());
    let pixels = beit::engine::Tensor::zeros(&[2, 3, 96, 96], beit::engine::DType::F32, &dev).unwrap();
    let out = model.forward(&pixels, Mode::eval()).unwrap();
    assert_eq!(out.logits.shape(), [2, 3, 48, 48]);
}
