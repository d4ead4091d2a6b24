//! The `beit` binary end to end on the committed parity fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/beit").join(case)
}

fn beit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_beit")).args(args).output().expect("run beit")
}

fn ok(args: &[&str]) -> String {
    let out = beit(args);
    assert!(out.status.success(), "beit {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = beit(args);
    assert!(!out.status.success(), "beit {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Max |a − b| between two tensors of the safetensors files, read with the engine.
fn max_err(a: &Path, b: &Path, name: &str) -> f64 {
    let dev = beit::open_device("cpu").unwrap();
    let (x, y) = (
        beit::engine::io::load_safetensors(a, &dev).unwrap().get(name).unwrap(),
        beit::engine::io::load_safetensors(b, &dev).unwrap().get(name).unwrap(),
    );
    assert_eq!(x.shape(), y.shape(), "{name}");
    let (x, y) = (x.to_vec_f64().unwrap(), y.to_vec_f64().unwrap());
    x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max)
}

#[test]
fn forward_matches_pytorch_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    for case in ["cls_abs_pos_no_meanpool", "model_no_layerscale_mask", "mim_shared_relpos"] {
        let dir = fixture(case);
        let out = tmp.path().join(format!("{case}.safetensors"));
        // Classification fixtures store the unmasked run under plain keys: drop the mask.
        let input = if case.starts_with("cls") {
            let dev = beit::open_device("cpu").unwrap();
            let inputs = beit::engine::io::load_safetensors(dir.join("inputs.safetensors"), &dev).unwrap();
            let mut only = beit::engine::io::StateDict::new();
            only.insert("pixel_values", inputs.get("pixel_values").unwrap());
            let p = tmp.path().join("pixels.safetensors");
            only.save(&p, None).unwrap();
            p
        } else {
            dir.join("inputs.safetensors")
        };
        ok(&["forward", "--model", s(&dir), "--input", s(&input), "--output", s(&out)]);
        let expected = dir.join("expected.safetensors");
        for name in ["last_hidden_state", "pooler_output", "logits"] {
            let has = safetensors_has(&expected, name);
            assert_eq!(has, safetensors_has(&out, name), "{case}: {name} presence");
            if has {
                let err = max_err(&out, &expected, name);
                assert!(err <= 1e-4, "{case} {name}: {err:e}");
            }
        }
    }
}

fn safetensors_has(path: &Path, name: &str) -> bool {
    beit::engine::io::load_safetensors(path, &beit::open_device("cpu").unwrap()).unwrap().contains(name)
}

#[test]
fn info_init_and_bench() {
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", "--model", s(&fixture("cls_both_relpos_384")), "--json"])).unwrap();
    assert_eq!(info["architecture"], "BeitForImageClassification");
    assert_eq!((info["layers"].as_u64(), info["labels"].as_u64()), (Some(2), Some(5)));
    assert_eq!(info["relative_position_bias"], "shared + per-layer");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    ok(&["init", "--preset", "base", "--image-size", "32", "--arch", "cls", "--num-labels", "3", "--out", s(&dir)]);
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", "--model", s(&dir), "--json"])).unwrap();
    assert_eq!((info["image_size"].as_u64(), info["labels"].as_u64()), (Some(32), Some(3)));
    let bench: serde_json::Value =
        serde_json::from_str(&ok(&["bench", "--model", s(&fixture("mim_shared_relpos")), "--iters", "2", "--batch", "2", "--json"]))
            .unwrap();
    assert!(bench["median_ms"].as_f64().unwrap() > 0.0 && bench["min_ms"].as_f64().unwrap() <= bench["median_ms"].as_f64().unwrap());
}

#[test]
fn classify_prints_sorted_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("cls_per_layer_relpos_meanpool").join(f), model.join(f)).unwrap();
    }
    std::fs::write(
        model.join("preprocessor_config.json"),
        r#"{"size": {"height": 36, "width": 36}, "crop_size": {"height": 32, "width": 32}}"#,
    )
    .unwrap();
    let img = tmp.path().join("img.png");
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])).save(&img).unwrap();
    let out: serde_json::Value = serde_json::from_str(&ok(&["classify", "--model", s(&model), s(&img), "--json"])).unwrap();
    let top = out[0]["top5"].as_array().unwrap();
    let probs: Vec<f64> = top.iter().map(|t| t["probability"].as_f64().unwrap()).collect();
    assert_eq!(probs.len(), 5);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5, "5 classes: the top 5 hold everything");
    assert!(probs.windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn bad_input_names_the_culprit() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(fails(&["info", "--model", "/nonexistent/model"]).contains("/nonexistent/model"));
    // A truncated model.safetensors.
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let src = fixture("cls_per_layer_relpos_meanpool");
    std::fs::copy(src.join("config.json"), model.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(model.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    assert!(fails(&["info", "--model", s(&model)]).contains("model.safetensors"));
    // An undecodable image.
    let img = tmp.path().join("broken.jpg");
    std::fs::write(&img, b"\xff\xd8 not really a jpeg").unwrap();
    let err = fails(&["classify", "--model", s(&src), s(&img)]);
    assert!(err.contains("broken.jpg"), "{err}");
    // Inputs without pixel_values.
    let input = tmp.path().join("in.safetensors");
    let mut sd = beit::engine::io::StateDict::new();
    let dev = beit::open_device("cpu").unwrap();
    sd.insert("pixels", beit::engine::Tensor::zeros(&[1, 3, 32, 32], beit::engine::DType::F32, &dev).unwrap());
    sd.save(&input, None).unwrap();
    let out = tmp.path().join("out.safetensors");
    let err = fails(&["forward", "--model", s(&src), "--input", s(&input), "--output", s(&out)]);
    assert!(err.contains("pixel_values"), "{err}");
    assert!(fails(&["bench", "--model", s(&src), "--device", "cuda:0"]).contains("cuda:0"));
}

#[test]
fn mask_picture_and_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    let (img, out) = (tmp.path().join("in.png"), tmp.path().join("mask.png"));
    image::RgbImage::from_fn(50, 40, |x, y| image::Rgb([(x * 5) as u8, (y * 6) as u8, 200])).save(&img).unwrap();
    let said = ok(&["mask", "--image", s(&img), "--out", s(&out), "--seed", "1"]);
    assert!(said.contains("of 196 patches masked"), "{said}");
    let picture = image::open(&out).unwrap().to_rgb8();
    assert_eq!(picture.dimensions(), (224, 224));
    let grey = picture.pixels().filter(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]).count();
    assert!(grey >= 64 * 256, "masked patches are grey: {grey} grey pixels");
    let stats: serde_json::Value = serde_json::from_str(&ok(&["mask", "--stats", "--samples", "2000", "--seed", "5"])).unwrap();
    let mean = stats["mean_masked"].as_f64().unwrap();
    assert!((mean - 74.5).abs() < 0.4 && stats["max_masked"] == 75, "{stats}");
    assert!(fails(&["mask"]).contains("--stats"));
}

#[test]
fn tokenize_tensors_and_picture() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dalle/tiny_1blk");
    let out = tmp.path().join("tokens.safetensors");
    ok(&["tokenize", "--tokenizer", s(&dir), "--input", s(&dir.join("inputs.safetensors")), "--output", s(&out)]);
    let dev = beit::open_device("cpu").unwrap();
    let got = beit::engine::io::load_safetensors(&out, &dev).unwrap().get("token_ids").unwrap();
    let want = beit::engine::io::load_safetensors(dir.join("expected.safetensors"), &dev).unwrap().get("token_ids").unwrap();
    assert_eq!(got.to_vec::<i64>().unwrap(), want.to_vec::<i64>().unwrap());
    let (img, png) = (tmp.path().join("in.png"), tmp.path().join("map.png"));
    image::RgbImage::from_fn(60, 50, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 30])).save(&img).unwrap();
    let said = ok(&["tokenize", "--tokenizer", s(&dir), "--image", s(&img), "--out", s(&png)]);
    assert!(said.contains("14x14 tokens"), "{said}");
    assert_eq!(image::open(&png).unwrap().to_rgb8().dimensions(), (224, 112));
    let err = fails(&["tokenize", "--tokenizer", s(&tmp.path().join("missing"))]);
    assert!(err.contains("missing"), "{err}");
}
