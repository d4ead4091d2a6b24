//! The `beit` binary end to end on the committed parity fixtures.

mod common;

use common::*;
use std::path::{Path, PathBuf};

#[test]
fn info_init_and_bench() {
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", "--model", s(&fixture("cls_both_relpos_384")), "--json"])).unwrap();
    assert_eq!(info["architecture"], "BeitForImageClassification");
    assert_eq!((info["layers"].as_u64(), info["labels"].as_u64()), (Some(2), Some(5)));
    assert_eq!((info["hidden_size"].as_u64(), info["heads"].as_u64()), (Some(32), Some(4)));
    assert_eq!((info["image_size"].as_u64(), info["patch_size"].as_u64()), (Some(48), Some(8)));
    assert_eq!(info["relative_position_bias"], "shared + per-layer");
    assert_eq!((info["pooling"].as_str(), info["layer_scale"].as_f64()), (Some("mean"), Some(0.1)));
    assert!(info["parameters"].as_u64().unwrap() > 20_000);
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", "--model", s(&fixture("model_no_layerscale_mask")), "--json"])).unwrap();
    assert_eq!((info["architecture"].as_str(), info["layer_scale"].is_null()), (Some("BeitModel"), true));
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["info", "--model", s(&fixture("mim_shared_relpos")), "--json"])).unwrap();
    assert_eq!((info["pooling"].as_str(), info["labels"].is_null()), (Some("none"), true));
    assert_eq!((info["relative_position_bias"].as_str(), info["vocab_size"].as_u64()), (Some("shared"), Some(64)));
    let text = ok(&["info", "--model", s(&fixture("cls_abs_pos_no_meanpool"))]);
    assert!(text.contains("BeitForImageClassification") && text.contains("pooling") && text.contains("cls"), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tiny");
    let init = ["init", "--preset", "base", "--image-size", "32", "--arch", "cls", "--num-labels", "3", "--out", s(&dir)];
    ok(&init);
    let info: serde_json::Value = serde_json::from_str(&ok(&["info", "--model", s(&dir), "--json"])).unwrap();
    assert_eq!((info["image_size"].as_u64(), info["labels"].as_u64()), (Some(32), Some(3)));
    assert_eq!((info["layers"].as_u64(), info["hidden_size"].as_u64()), (Some(12), Some(768)));
    assert_eq!(info["relative_position_bias"], "per-layer");
    assert!(fails(&init).contains("--force"), "init does not overwrite a model");
    let err = fails(&["init", "--arch", "mim", "--num-labels", "3", "--out", s(&tmp.path().join("x"))]);
    assert!(err.contains("--num-labels"), "{err}");
    assert!(fails(&["init", "--image-size", "100", "--out", s(&tmp.path().join("y"))]).contains("patch_size"));

    for case in ["mim_shared_relpos", "cls_per_layer_relpos_meanpool"] {
        let bench: serde_json::Value =
            serde_json::from_str(&ok(&["bench", "--model", s(&fixture(case)), "--iters", "2", "--batch", "2", "--json"]))
                .unwrap();
        let (median, min) = (bench["median_ms"].as_f64().unwrap(), bench["min_ms"].as_f64().unwrap());
        assert!(median > 0.0 && min <= median, "{bench}");
        assert_eq!((bench["batch"].as_u64(), bench["iters"].as_u64()), (Some(2), Some(2)));
        assert!(bench["images_per_s"].as_f64().unwrap() > 0.0);
        if cfg!(target_os = "linux") {
            assert!(bench["peak_rss_mb"].as_f64().unwrap() > 1.0, "{bench}");
        }
    }
    assert!(fails(&["bench", "--model", s(&fixture("mim_shared_relpos")), "--iters", "0"]).contains("--iters"));
}

/// A temporary copy of the 32 px classification fixture with `preprocessor` as its
/// preprocessor_config.json.
fn classifier(tmp: &Path, preprocessor: &str) -> PathBuf {
    let model = tmp.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("cls_per_layer_relpos_meanpool").join(f), model.join(f)).unwrap();
    }
    std::fs::write(model.join("preprocessor_config.json"), preprocessor).unwrap();
    model
}

#[test]
fn classify_prints_sorted_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let model = classifier(tmp.path(), r#"{"size": {"height": 36, "width": 36}, "crop_size": {"height": 32, "width": 32}}"#);
    let (img, img2) = (tmp.path().join("img.png"), tmp.path().join("img2.jpg"));
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])).save(&img).unwrap();
    image::RgbImage::from_fn(50, 64, |x, y| image::Rgb([200, (x * 5) as u8, (y * 4) as u8])).save(&img2).unwrap();
    let out: serde_json::Value =
        serde_json::from_str(&ok(&["classify", "--model", s(&model), s(&img), s(&img2), "--json", "--batch", "1"])).unwrap();
    let results = out.as_array().unwrap();
    assert_eq!(results.len(), 2);
    let mut tops = Vec::new();
    for (r, path) in results.iter().zip([&img, &img2]) {
        assert_eq!(r["image"].as_str(), Some(s(path)));
        let top = r["top5"].as_array().unwrap();
        let probs: Vec<f64> = top.iter().map(|t| t["probability"].as_f64().unwrap()).collect();
        // The fixture has 5 classes: the top 5 are all of them.
        assert_eq!(probs.len(), 5);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{probs:?}");
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{probs:?}");
        let mut ids: Vec<u64> = top.iter().map(|t| t["id"].as_u64().unwrap()).collect();
        assert_eq!(top[0]["label"].as_str().unwrap(), format!("LABEL_{}", ids[0]));
        tops.push(ids[0]);
        ids.sort();
        assert_eq!(ids, [0, 1, 2, 3, 4]);
    }
    // Batching does not change the answer; the text output lists each image and 5 labels.
    let batched: serde_json::Value =
        serde_json::from_str(&ok(&["classify", "--model", s(&model), s(&img), s(&img2), "--json"])).unwrap();
    for (a, b) in results.iter().zip(batched.as_array().unwrap()) {
        let p = |v: &serde_json::Value| v["top5"][0]["probability"].as_f64().unwrap();
        assert!((p(a) - p(b)).abs() < 1e-5 && a["top5"][0]["id"] == b["top5"][0]["id"]);
    }
    let text = ok(&["classify", "--model", s(&model), s(&img)]);
    assert_eq!(text.lines().count(), 6, "{text}");
    assert!(text.starts_with(s(&img)) && text.contains(&format!("LABEL_{}", tops[0])), "{text}");

    // An older integer-size config (as microsoft/beit-base-patch16-224's), bilinear, no crop.
    let legacy_config = r#"{"size": 32, "crop_size": 32, "do_center_crop": false, "resample": 2}"#;
    let legacy = classifier(&tmp.path().join("legacy"), legacy_config);
    ok(&["classify", "--model", s(&legacy), s(&img)]);
    // Preprocessing to another size than the model's is caught before running it.
    let wrong = classifier(&tmp.path().join("wrong"), r#"{"size": 48, "do_center_crop": false}"#);
    let err = fails(&["classify", "--model", s(&wrong), s(&img)]);
    assert!(err.contains("preprocessor_config.json") && err.contains("48x48"), "{err}");
    let err = fails(&["classify", "--model", s(&fixture("mim_shared_relpos")), s(&img)]);
    assert!(err.contains("classification head"), "{err}");
}

#[test]
fn bad_input_names_the_culprit() {
    let tmp = tempfile::tempdir().unwrap();
    for cmd in ["info", "bench"] {
        assert!(fails(&[cmd, "--model", "/nonexistent/model"]).contains("/nonexistent/model"));
    }
    // A truncated model.safetensors.
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let src = fixture("cls_per_layer_relpos_meanpool");
    std::fs::copy(src.join("config.json"), model.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(model.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&["info", "--model", s(&model)]);
    assert!(err.starts_with("error: ") && err.contains("model.safetensors"), "{err}");
    // An undecodable image.
    let model = classifier(&tmp.path().join("ok"), r#"{"size": 32, "crop_size": 32}"#);
    let img = tmp.path().join("broken.jpg");
    std::fs::write(&img, b"\xff\xd8 not really a jpeg").unwrap();
    let err = fails(&["classify", "--model", s(&model), s(&img)]);
    assert!(err.contains("broken.jpg"), "{err}");
    let err = fails(&["classify", "--model", s(&model), s(&tmp.path().join("absent.png"))]);
    assert!(err.contains("absent.png"), "{err}");
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

#[test]
fn tokenizer_train_on_digits_and_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("dvae");
    let png = tmp.path().join("recon.png");
    let said = ok(&["tokenizer", "train", "--out", s(&out), "--steps", "3", "--batch", "8", "--hidden", "8", "--vocab", "32", "--picture", s(&png), "--json"]);
    let report: serde_json::Value = serde_json::from_str(said.trim()).unwrap();
    assert_eq!((report["images"].as_u64(), report["vocab_size"].as_u64()), (Some(297), Some(32)), "{report}");
    assert!(report["codes_used"].as_u64().unwrap() >= 1 && report["recon_mse"].as_f64().unwrap() > 0.0, "{report}");
    // 16 held-out digits scaled ×4: two rows of 64-pixel tiles.
    assert_eq!(image::open(&png).unwrap().to_rgb8().dimensions(), (16 * 66, 134));
    // The saved folder is a tokenizer `beit tokenize` reads.
    let (img, map) = (tmp.path().join("in.png"), tmp.path().join("map.png"));
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])).save(&img).unwrap();
    let said = ok(&["tokenize", "--tokenizer", s(&out), "--image", s(&img), "--out", s(&map)]);
    assert!(said.contains("8x8 tokens"), "{said}");
    // An image folder: every 10th image is held out.
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for i in 0..12u32 {
        image::RgbImage::from_fn(20 + i, 24, |x, y| image::Rgb([(x * 9) as u8, (y * 7) as u8, (i * 20) as u8])).save(images.join(format!("{i}.png"))).unwrap();
    }
    let said = ok(&["tokenizer", "train", "--data", s(&images), "--out", s(&out), "--steps", "2", "--batch", "4", "--hidden", "8", "--size", "8", "--json"]);
    let report: serde_json::Value = serde_json::from_str(said.trim()).unwrap();
    assert_eq!(report["images"].as_u64(), Some(2), "{report}");
    // Bad input is named.
    let err = fails(&["tokenizer", "train", "--data", s(&tmp.path().join("nowhere")), "--out", s(&out)]);
    assert!(err.contains("nowhere"), "{err}");
    let err = fails(&["tokenizer", "train", "--out", s(&out), "--size", "15"]);
    assert!(err.contains("image_size 15"), "{err}");
    let err = fails(&["tokenizer", "train", "--out", s(&out), "--steps", "0"]);
    assert!(err.contains("steps"), "{err}");
}

#[test]
fn demo_runs_end_to_end_at_a_tiny_size() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let tiny = ["--tokenizer-steps", "2", "--pretrain-epochs", "1", "--finetune-epochs", "1", "--hidden", "16", "--layers", "1"];
    let said = ok(&[&["demo", "--json", "--out", s(&out)][..], &tiny].concat());
    let summary: serde_json::Value = serde_json::from_str(said.trim()).unwrap();
    for key in ["pretrained_accuracy", "scratch_accuracy"] {
        let acc = summary[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{summary}");
    }
    assert!(summary["seconds"].as_f64().unwrap() > 0.0 && summary["labelled"] == 150 && summary["held_out"] == 297, "{summary}");
    for file in ["mask.png", "reconstructions.png", "pretrain.png", "finetune_pretrained.png", "finetune_scratch.png", "pretrain.jsonl", "tokenizer/config.json", "pretrained/config.json"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    // The pretrained folder is a Hugging Face BEiT MIM checkpoint the other commands read.
    let info = ok(&["info", "--model", s(&out.join("pretrained")), "--json"]);
    assert!(info.contains("BeitForMaskedImageModeling"), "{info}");
    let err = fails(&["demo", "--labelled", "0", "--out", s(&out)]);
    assert!(err.contains("--labelled"), "{err}");
}

#[test]
fn pretrain_resume_export_finetune_eval_on_digits() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    tiny_tokenizer(&p("tok"));
    let (tok, ck, metrics) = (p("tok"), p("ck"), p("m.jsonl"));
    let pretrain = |stop: &str, extra: &[&str]| {
        let mut args = vec!["pretrain", "--digits", "--preset", "tiny", "--image-size", "16", "--patch-size", "4", "--tokenizer", s(&tok)];
        args.extend(["--tokenizer-size", "4", "--epochs", "1", "--batch-size", "64", "--stop-at-step", stop, "--quiet"]);
        args.extend(["--checkpoint-dir", s(&ck), "--metrics", s(&metrics), "--set", "warmup_epochs=0.1", "--set", "mask_min_patches=4"]);
        args.extend(extra);
        ok(&args)
    };
    let out = pretrain("3", &[]);
    assert!(out.contains("stopped at step 3"), "{out}");
    assert!(ck.join("checkpoint-00000003.safetensors").exists());
    let out = pretrain("5", &["--resume", s(&ck)]);
    assert!(out.contains("stopped at step 5"), "{out}");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&metrics).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.iter().map(|l| l["step"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    assert!(lines.iter().all(|l| l["loss"].as_f64().unwrap().is_finite() && l["lr"].as_f64().unwrap() >= 0.0));
    assert!(lines[1]["lr"].as_f64().unwrap() > 0.0, "warmup starts from 0 and rises");
    ok(&["export", "--checkpoint", s(&ck), "--out", s(&p("hf"))]);
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p("hf/config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "BeitForMaskedImageModeling");
    assert_eq!(config["use_shared_relative_position_bias"], true);
    let out = ok(&["finetune", "--digits", "--model", s(&p("hf")), "--epochs", "1", "--batch-size", "50", "--checkpoint-dir", s(&p("ft")), "--plot", s(&p("curve.png")), "--quiet"]);
    assert!(out.contains("stopped at step 3") && out.contains("top-1") && out.contains("(297 images)"), "{out}");
    assert!(image::open(p("curve.png")).is_ok());
    let out = ok(&["eval", "--checkpoint", s(&p("ft")), "--digits"]);
    assert!(out.contains("images 297") && out.contains("confusion matrix"), "{out}");
    assert_eq!(out.lines().filter(|l| l.split_whitespace().count() == 11).count(), 10, "10 rows of a label and 10 counts:\n{out}");
    // Recipe files: unknown keys and bad overrides are named.
    std::fs::write(p("bad.toml"), "epochs = 1\nlearning_rate = 0.1\n").unwrap();
    let err = fails(&["finetune", "--digits", "--model", s(&p("hf")), "--config", s(&p("bad.toml"))]);
    assert!(err.contains("bad.toml") && err.contains("learning_rate"), "{err}");
    let err = fails(&["finetune", "--digits", "--model", s(&p("hf")), "--set", "layer_decay"]);
    assert!(err.contains("--set") && err.contains("KEY=VALUE"), "{err}");
    // Segmentation from the same pretrained encoder, on generated shapes.
    let seg = ["--task", "segmentation", "--shapes", "16", "--size", "32"];
    let out = ok(&[&["finetune", "--model", s(&p("hf")), "--epochs", "1", "--batch-size", "8", "--out", s(&p("seg")), "--quiet"][..], &seg].concat());
    assert!(out.contains("stopped at step 2") && out.contains("mIoU") && out.contains("majority class"), "{out}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p("seg/config.json")).unwrap()).unwrap();
    assert_eq!((config["architectures"][0].as_str(), config["image_size"].as_u64()), (Some("BeitForSemanticSegmentation"), Some(32)));
    let out = ok(&[&["eval", "--model", s(&p("seg"))][..], &seg].concat());
    assert!(out.contains("mIoU") && out.contains("circle"), "{out}");
    let err = fails(&["finetune", "--task", "segmentation", "--model", s(&p("hf")), "--data", s(&p("nowhere"))]);
    assert!(err.contains("--num-labels"), "{err}");
}
