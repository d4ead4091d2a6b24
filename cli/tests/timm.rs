//! `beit info`, `forward` and `classify` on a folder in timm's layout (`tests/fixtures/timm`).

mod common;

use common::*;
use std::path::PathBuf;

fn timm_fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/timm").join(case)
}

#[test]
fn info_forward_and_classify_on_a_timm_folder() {
    let dir = timm_fixture("relpos_avg");
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", "--model", s(&dir), "--json"])).unwrap();
    assert_eq!(info["architecture"], "BeitForImageClassification");
    assert_eq!((info["layers"].as_u64(), info["heads"].as_u64(), info["labels"].as_u64()), (Some(2), Some(4), Some(5)));
    assert_eq!((info["relative_position_bias"].as_str(), info["pooling"].as_str()), (Some("per-layer"), Some("mean")));

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.safetensors");
    ok(&["forward", "--model", s(&dir), "--input", s(&dir.join("inputs.safetensors")), "--output", s(&out)]);
    for name in ["logits", "pooler_output", "last_hidden_state"] {
        let err = max_err(&out, &dir.join("expected.safetensors"), name, "");
        assert!(err <= 1e-4, "{name}: max abs error {err:e} > 1e-4");
    }

    let png = tmp.path().join("img.png");
    image::RgbImage::from_fn(40, 36, |x, y| image::Rgb([(x * 6) as u8, (y * 7) as u8, 128])).save(&png).unwrap();
    let top: serde_json::Value = serde_json::from_str(&ok(&["classify", "--model", s(&dir), s(&png), "--json"])).unwrap();
    let probs: Vec<f64> = top[0]["top5"].as_array().unwrap().iter().map(|t| t["probability"].as_f64().unwrap()).collect();
    assert_eq!(probs.len(), 5);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-4 && probs.windows(2).all(|w| w[0] >= w[1]), "{top}");

    std::fs::write(tmp.path().join("config.json"), r#"{"architecture": "deit_tiny_patch16_224"}"#).unwrap();
    std::fs::copy(dir.join("model.safetensors"), tmp.path().join("model.safetensors")).unwrap();
    let err = fails(&["info", "--model", s(tmp.path())]);
    assert!(err.contains("config.json") && err.contains("not a timm BEiT architecture"), "{err}");
}
