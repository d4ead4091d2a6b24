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

fn cpu() -> beit::engine::Device {
    beit::open_device("cpu").unwrap()
}

fn load(path: &Path) -> beit::engine::io::StateDict {
    beit::engine::io::load_safetensors(path, &cpu()).unwrap()
}

/// Max |a − b| between `got[name]` and `want[prefix + name]`, read with the engine.
fn max_err(got: &Path, want: &Path, name: &str, prefix: &str) -> f64 {
    let (x, y) = (load(got).get(name).unwrap(), load(want).get(&format!("{prefix}{name}")).unwrap());
    assert_eq!(x.dtype(), beit::engine::DType::F32, "{name} is written as f32");
    assert_eq!(x.shape(), y.shape(), "{name}");
    let (x, y) = (x.to_vec_f64().unwrap(), y.to_vec_f64().unwrap());
    x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max)
}

/// An inputs file holding a fixture's `pixel_values` and, when `mask` names a dtype, its
/// `bool_masked_pos` in that dtype.
fn inputs(dir: &Path, mask: Option<beit::engine::DType>, out: &Path) -> PathBuf {
    let src = load(&dir.join("inputs.safetensors"));
    let mut sd = beit::engine::io::StateDict::new();
    sd.insert("pixel_values", src.get("pixel_values").unwrap());
    if let Some(dtype) = mask {
        sd.insert("bool_masked_pos", src.get("bool_masked_pos").unwrap().to_dtype(dtype).unwrap());
    }
    sd.save(out, None).unwrap();
    out.to_path_buf()
}

/// `beit forward` on `input` (output written to `out`) matches the fixture's `expected`
/// outputs under `prefix`, with `pooler_output` and `logits` present exactly when expected.
fn check_forward(case: &str, input: &Path, out: &Path, prefix: &str, extra: &[&str]) {
    let dir = fixture(case);
    let _ = std::fs::remove_file(out);
    let mut args = vec!["forward", "--model", s(&dir), "--input", s(input), "--output", s(out)];
    args.extend(extra);
    let said = ok(&args);
    assert!(said.contains("last_hidden_state"), "{said}");
    let (got, want) = (load(out), load(&dir.join("expected.safetensors")));
    for name in ["last_hidden_state", "pooler_output", "logits"] {
        let has = want.contains(&format!("{prefix}{name}"));
        assert_eq!(has, got.contains(name), "{case} {prefix}{name}: presence");
        if has {
            let err = max_err(out, &dir.join("expected.safetensors"), name, prefix);
            assert!(err <= 1e-4, "{case} {prefix}{name}: {err:e}");
        }
    }
}

#[test]
fn forward_matches_pytorch_outputs() {
    use beit::engine::DType;
    let tmp = tempfile::tempdir().unwrap();
    let t = |name: &str| tmp.path().join(name);
    let out = t("out.safetensors");
    // MIM and BeitModel fixtures store the masked run under plain keys: the file as committed.
    for case in ["mim_shared_relpos", "model_no_layerscale_mask"] {
        check_forward(case, &fixture(case).join("inputs.safetensors"), &out, "", &[]);
    }
    // A bool mask (as torch saves `bool_masked_pos`) works as well as u8.
    let input = inputs(&fixture("mim_shared_relpos"), Some(DType::Bool), &t("mim_bool.safetensors"));
    check_forward("mim_shared_relpos", &input, &out, "", &[]);
    // Classification fixtures: plain keys unmasked, `masked.` keys with the mask.
    for case in ["cls_abs_pos_no_meanpool", "cls_per_layer_relpos_meanpool", "cls_both_relpos_384"] {
        check_forward(case, &inputs(&fixture(case), None, &t(&format!("{case}.safetensors"))), &out, "", &[]);
    }
    for case in ["cls_abs_pos_no_meanpool", "cls_both_relpos_384"] {
        let input = inputs(&fixture(case), Some(DType::U8), &t(&format!("{case}_masked.safetensors")));
        check_forward(case, &input, &out, "masked.", &[]);
    }
    // A 32 px checkpoint on 48 px inputs, as HF's interpolate_pos_encoding=True.
    let case = "cls_interpolate_32_to_48";
    let input = inputs(&fixture(case), None, &t("interp.safetensors"));
    let err = fails(&["forward", "--model", s(&fixture(case)), "--input", s(&input), "--output", s(&out)]);
    assert!(err.contains("48x48") && err.contains("--interpolate-pos-encoding"), "{err}");
    check_forward(case, &input, &out, "", &["--interpolate-pos-encoding"]);
    let input = inputs(&fixture(case), Some(DType::U8), &t("interp_masked.safetensors"));
    check_forward(case, &input, &out, "masked.", &["--interpolate-pos-encoding"]);
}

#[test]
fn forward_input_errors_name_file_and_tensor() {
    use beit::engine::{DType, Tensor};
    let tmp = tempfile::tempdir().unwrap();
    let (cls, mim) = (fixture("cls_per_layer_relpos_meanpool"), fixture("mim_shared_relpos"));
    let out = tmp.path().join("out.safetensors");
    let run = |model: &Path, tensors: Vec<(&str, Tensor)>, file: &str| {
        let input = tmp.path().join(file);
        let mut sd = beit::engine::io::StateDict::new();
        for (name, t) in tensors {
            sd.insert(name, t);
        }
        sd.save(&input, None).unwrap();
        let err = fails(&["forward", "--model", s(model), "--input", s(&input), "--output", s(&out)]);
        assert!(err.starts_with("error: ") && err.contains(file), "{err}");
        err
    };
    let zeros = |shape: &[usize], dtype| Tensor::zeros(shape, dtype, &cpu()).unwrap();
    let err = run(&cls, vec![("pixels", zeros(&[1, 3, 32, 32], DType::F32))], "no_pixels.safetensors");
    assert!(err.contains("missing tensor `pixel_values`"), "{err}");
    let err = run(&cls, vec![("pixel_values", zeros(&[1, 3, 32, 32], DType::F64))], "f64.safetensors");
    assert!(err.contains("`pixel_values` must be f32") && err.contains("f64"), "{err}");
    let err = run(&cls, vec![("pixel_values", zeros(&[3, 32, 32], DType::F32))], "rank3.safetensors");
    assert!(err.contains("`pixel_values` must be f32 [B, C, H, W]") && err.contains("[3, 32, 32]"), "{err}");
    let err = run(&cls, vec![("pixel_values", zeros(&[1, 1, 32, 32], DType::F32))], "gray.safetensors");
    assert!(err.contains("1 channels"), "{err}");
    let err = run(&mim, vec![("pixel_values", zeros(&[1, 3, 32, 32], DType::F32))], "nomask.safetensors");
    assert!(err.contains("needs `bool_masked_pos`"), "{err}");
    let pixels = zeros(&[1, 3, 32, 32], DType::F32);
    let with_mask = |mask: Tensor| vec![("pixel_values", pixels.clone()), ("bool_masked_pos", mask)];
    let err = run(&mim, with_mask(zeros(&[1, 16], DType::F32)), "fmask.safetensors");
    assert!(err.contains("`bool_masked_pos` must be u8 or bool"), "{err}");
    let err = run(&mim, with_mask(zeros(&[1, 15], DType::U8)), "short.safetensors");
    assert!(err.contains("`bool_masked_pos` has shape [1, 15], expected [1, 16]"), "{err}");
    let err = run(&cls, with_mask(zeros(&[1, 16], DType::U8)), "nomasktoken.safetensors");
    assert!(err.contains("no mask token"), "{err}");
    let missing = tmp.path().join("missing.safetensors");
    let err = fails(&["forward", "--model", s(&cls), "--input", s(&missing), "--output", s(&out)]);
    assert!(err.contains("missing.safetensors"), "{err}");
}

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

/// A tiny DALL-E-style tokenizer folder (one group: one token per 1×1 cell of its view).
fn tiny_tokenizer(dir: &Path) {
    use beit::engine::nn::Module;
    let config = beit::tokenizer::DalleConfig { group_count: 1, n_hid: 4, n_blk_per_group: 1, input_channels: 3, vocab_size: 16 };
    let enc = beit::tokenizer::DalleEncoder::new(config, &cpu(), 1).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string(&config).unwrap()).unwrap();
    enc.state_dict().save(dir.join("model.safetensors"), None).unwrap();
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
    assert!(out.contains("epoch 0: loss") && out.contains("mIoU") && out.contains("majority class"), "{out}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p("seg/config.json")).unwrap()).unwrap();
    assert_eq!((config["architectures"][0].as_str(), config["image_size"].as_u64()), (Some("BeitForSemanticSegmentation"), Some(32)));
    let out = ok(&[&["eval", "--model", s(&p("seg"))][..], &seg].concat());
    assert!(out.contains("mIoU") && out.contains("circle"), "{out}");
    let err = fails(&["finetune", "--task", "segmentation", "--model", s(&p("hf")), "--data", s(&p("nowhere"))]);
    assert!(err.contains("--num-labels"), "{err}");
}
