//! The bad-input corpus: truncated and lying safetensors files, wrong dtypes and shapes,
//! hostile configs, undecodable, huge and odd images, empty folders and bad flag values,
//! each run through the `beit` binary. A bad input must fail with a message naming the
//! culprit (file, tensor or field) and never panic or abort; an odd but legitimate input
//! (a grey, RGBA, 16-bit, CMYK or 1×1 image, an unused tensor) must work. The files are made
//! here, in a temporary folder, from the committed fixtures.

#[path = "bad_inputs/craft.rs"]
mod craft;

use beit::engine::DType;
use craft::*;
use image::{DynamicImage, ImageFormat};
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// What a case must end in.
enum Expect {
    /// A non-zero exit whose stderr contains every needle.
    Fails(Vec<String>),
    /// Success, stdout containing the needle.
    Works(&'static str),
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    expect: Expect,
}

fn fails(needles: &[&str]) -> Expect {
    Expect::Fails(needles.iter().map(|s| s.to_string()).collect())
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A folder name for case `name`.
fn folder(name: &str) -> String {
    name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
}

fn args(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// Run one case; an error message says what went wrong.
fn check(case: &Case) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_beit")).args(&case.args).env("HF_HUB_OFFLINE", "1").output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let code = out.status.code();
    if code.is_none() || matches!(code, Some(101 | 134 | 139)) || stderr.contains("panicked") {
        return Err(format!("crashed ({:?}): {stderr}", out.status));
    }
    match &case.expect {
        Expect::Works(needle) if !out.status.success() || !stdout.contains(needle) => {
            Err(format!("should work and print {needle:?}: {:?}\nstdout: {stdout}\nstderr: {stderr}", out.status))
        }
        Expect::Fails(_) if out.status.success() => Err(format!("should fail: stdout {stdout}")),
        Expect::Fails(needles) => match needles.iter().find(|n| !stderr.contains(n.as_str())) {
            Some(n) => Err(format!("message does not name {n:?}: {stderr}")),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Cases that run `beit info` on a model folder.
fn model_cases(dir: &Path, cases: &mut Vec<Case>) {
    const CLS: &str = "beit/cls_abs_pos_no_meanpool";
    let info = |name: &'static str, model: &Path, expect: Expect| Case { name, args: args(&["info", "--model", &s(model)]), expect };
    let st = "model.safetensors";
    let bytes = |name: &str, b: &[u8]| with_file(CLS, dir, name, st, b);
    let t = r#""dtype":"F32","shape":"#;
    cases.extend([
        info("safetensors: empty file", &bytes("st_empty", b""), fails(&[st, "holds only 0 B"])),
        info("safetensors: 4 bytes", &bytes("st_short", b"\x10\0\0\0"), fails(&[st])),
        info("safetensors: header length 2^40", &bytes("st_hlen", &(1u64 << 40).to_le_bytes()), fails(&[st])),
        info("safetensors: header length past the end", &bytes("st_hpast", &[&100u64.to_le_bytes()[..], b"{}"].concat()), fails(&[st])),
        info("safetensors: header not JSON", &bytes("st_json", &safetensors("{\"a\": [", b"")), fails(&[st])),
        info("safetensors: header not UTF-8", &bytes("st_utf8", &safetensors("\u{0}\u{1}", b"")[..8].iter().chain(&[0xFF, 0xFE]).copied().collect::<Vec<u8>>()), fails(&[st])),
        info("safetensors: offsets past the end", &bytes("st_off", &safetensors(&format!(r#"{{"w":{{{t}[1024],"data_offsets":[0,4096]}}}}"#), &[0; 16])), fails(&[st])),
        info("safetensors: 2^40 elements, matching offsets, small file", &bytes("st_huge", &safetensors(&format!(r#"{{"w":{{{t}[1099511627776],"data_offsets":[0,4398046511104]}}}}"#), &[0; 64])), fails(&[st])),
        info("safetensors: shape overflows", &bytes("st_ovf", &safetensors(&format!(r#"{{"w":{{{t}[4611686018427387904,16],"data_offsets":[0,0]}}}}"#), b"")), fails(&[st])),
        info("safetensors: offsets with a gap", &bytes("st_gap", &safetensors(&format!(r#"{{"a":{{{t}[1],"data_offsets":[0,4]}},"b":{{{t}[1],"data_offsets":[8,12]}}}}"#), &[0; 12])), fails(&[st])),
        info("safetensors: shape disagrees with offsets", &bytes("st_lie", &safetensors(&format!(r#"{{"w":{{{t}[3],"data_offsets":[0,8]}}}}"#), &[0; 8])), fails(&[st])),
        info("safetensors: unknown dtype", &bytes("st_dtype", &safetensors(r#"{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}}"#, &[0; 2])), fails(&[st])),
        info("safetensors: duplicate key", &bytes("st_dup", &safetensors(&format!(r#"{{"w":{{{t}[1],"data_offsets":[0,4]}},"w":{{{t}[1],"data_offsets":[4,8]}}}}"#), &[0; 8])), fails(&[st])),
        info("safetensors: valid but empty", &bytes("st_none", &safetensors("{}", b"")), fails(&[st, "holds only 10 B"])),
        info("safetensors: random bytes", &bytes("st_random", &(0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<u8>>()), fails(&[st])),
    ]);
    let truncated = std::fs::read(fixture(CLS).join(st)).unwrap();
    let classifier = "classifier.weight";
    let patch = "beit.embeddings.patch_embeddings.projection.weight";
    cases.extend([
        info("weights: truncated to half", &bytes("w_half", &truncated[..truncated.len() / 2]), fails(&[st])),
        info("weights: i64 weight", &with_weights(CLS, dir, "w_i64", |sd| retype(sd, classifier, DType::I64)), fails(&[classifier, "dtype"])),
        info("weights: bool weight", &with_weights(CLS, dir, "w_bool", |sd| retype(sd, patch, DType::Bool)), fails(&[patch])),
        info("weights: transposed weight", &with_weights(CLS, dir, "w_shape", |sd| {
            let t = sd.get(classifier).unwrap().t().unwrap().contiguous().unwrap();
            sd.insert(classifier, t);
        }), fails(&[classifier, "shape"])),
        info("weights: missing weight", &with_weights(CLS, dir, "w_missing", |sd| drop(sd.remove(classifier).unwrap())), fails(&[classifier, "missing"])),
        info("weights: an extra tensor is reported, not refused", &with_weights(CLS, dir, "w_extra", |sd| {
            let t = sd.get(classifier).unwrap();
            sd.insert("extra.weight", t);
        }), Expect::Works("extra.weight")),
        info("weights: f64 weights load as f32", &with_weights(CLS, dir, "w_f64", |sd| retype(sd, classifier, DType::F64)), Expect::Works("BeitForImageClassification")),
    ]);
    let dir_weights = copy_model(CLS, dir, "w_dir");
    std::fs::remove_file(dir_weights.join(st)).unwrap();
    std::fs::create_dir(dir_weights.join(st)).unwrap();
    let no_weights = copy_model(CLS, dir, "w_none");
    std::fs::remove_file(no_weights.join(st)).unwrap();
    cases.extend([info("weights: a folder", &dir_weights, fails(&[st])), info("weights: missing file", &no_weights, fails(&[st]))]);
    let edit = |name: &'static str, key: &'static str, value: serde_json::Value, needle: &'static str| {
        let model = with_config(CLS, dir, &folder(name), |c| c[key] = value);
        info(name, &model, fails(&["config.json", needle]))
    };
    cases.extend([
        edit("config: image_size 1e9", "image_size", json!(1_000_000_000u64), "config.image_size"),
        edit("config: num_hidden_layers 1e6", "num_hidden_layers", json!(1_000_000), "config.num_hidden_layers"),
        edit("config: 50 layers, weights for 2", "num_hidden_layers", json!(50), "model.safetensors"),
        edit("config: hidden_size 0", "hidden_size", json!(0), "config.hidden_size"),
        edit("config: hidden_size a string", "hidden_size", json!("big"), "hidden_size"),
        edit("config: hidden_size negative", "hidden_size", json!(-32), "hidden_size"),
        edit("config: hidden_size a float", "hidden_size", json!(1e30), "hidden_size"),
        edit("config: patch_size 0", "patch_size", json!(0), "config.patch_size"),
        edit("config: patch_size not dividing", "patch_size", json!(7), "config.patch_size"),
        edit("config: heads not dividing", "num_attention_heads", json!(3), "config.num_attention_heads"),
        edit("config: intermediate_size 2^64-1", "intermediate_size", json!(u64::MAX), "config.num_hidden_layers"),
        edit("config: num_labels 1e11", "num_labels", json!(100_000_000_000u64), "config.num_labels"),
        edit("config: unknown architecture", "architectures", json!(["BeitBackbone"]), "config.architectures"),
        edit("config: model_type vit", "model_type", json!("vit"), "config.model_type"),
        edit("config: hidden_act relu", "hidden_act", json!("relu"), "config.hidden_act"),
        edit("config: layer_norm_eps 0", "layer_norm_eps", json!(0.0), "config.layer_norm_eps"),
        edit("config: drop_path_rate 1.5", "drop_path_rate", json!(1.5), "config.drop_path_rate"),
        edit("config: id2label a list", "id2label", json!(["cat", "dog"]), "id2label"),
        info("config: num_channels 1, weights for 3", &with_config(CLS, dir, "c_channels", |c| c["num_channels"] = json!(1)), fails(&["patch_embeddings", "expected [32, 1, 8, 8]"])),
    ]);
    let raw = |name: &'static str, bytes: &[u8]| info(name, &with_file(CLS, dir, &folder(name), "config.json", bytes), fails(&["config.json"]));
    let no_config = copy_model(CLS, dir, "c_none");
    std::fs::remove_file(no_config.join("config.json")).unwrap();
    let mut big = b"{\"id2label\": {".to_vec();
    big.resize(17 << 20, b' ');
    cases.extend([
        raw("config: empty", b""),
        raw("config: binary", &[0x89, b'P', b'N', b'G', 0, 1, 2]),
        raw("config: a JSON list", b"[1, 2, 3]"),
        raw("config: not UTF-8", b"{\"model_type\": \"be\xFF\xFEit\"}"),
        raw("config: 17 MiB", &big),
        info("config: missing", &no_config, fails(&["config.json"])),
    ]);
}

/// Image cases: `beit classify` with a 32×32 classifier and `beit mask`.
fn image_cases(dir: &Path, cases: &mut Vec<Case>) {
    let model = copy_model("beit/cls_abs_pos_no_meanpool", dir, "classifier");
    let pre = r#"{"size": {"height": 32, "width": 32}, "crop_size": {"height": 32, "width": 32}}"#;
    std::fs::write(model.join("preprocessor_config.json"), pre).unwrap();
    let img = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let classify = |name: &'static str, path: &Path, expect: Expect| Case { name, args: args(&["classify", "--model", &s(&model), &s(path)]), expect };
    let pic = picture();
    let png = encode(&pic, ImageFormat::Png);
    let jpeg = encode(&pic, ImageFormat::Jpeg);
    cases.extend([
        classify("image: grey PNG", &img("grey.png", &encode(&DynamicImage::ImageLuma8(pic.to_luma8()), ImageFormat::Png)), Expect::Works("LABEL_")),
        classify("image: RGBA PNG", &img("rgba.png", &encode(&DynamicImage::ImageRgba8(pic.to_rgba8()), ImageFormat::Png)), Expect::Works("LABEL_")),
        classify("image: 16-bit PNG", &img("rgb16.png", &encode(&DynamicImage::ImageRgb16(pic.to_rgb16()), ImageFormat::Png)), Expect::Works("LABEL_")),
        classify("image: 16-bit grey PNG", &img("grey16.png", &encode(&DynamicImage::ImageLuma16(pic.to_luma16()), ImageFormat::Png)), Expect::Works("LABEL_")),
        classify("image: grey JPEG", &img("grey.jpg", &encode(&DynamicImage::ImageLuma8(pic.to_luma8()), ImageFormat::Jpeg)), Expect::Works("LABEL_")),
        classify("image: 1x1 PNG", &img("one.png", &encode(&DynamicImage::ImageRgb8(image::RgbImage::new(1, 1)), ImageFormat::Png)), Expect::Works("LABEL_")),
        classify("image: JPEG named .png", &img("jpeg.png", &jpeg), Expect::Works("LABEL_")),
        classify("image: CMYK JPEG", &img("cmyk.jpg", &std::fs::read(fixture("images/cmyk.jpg")).unwrap()), Expect::Works("LABEL_")),
        classify("image: PNG claiming 100000x100000", &img("huge.png", &png_claiming(100_000, 100_000)), fails(&["huge.png", "above the limit"])),
        classify("image: PNG claiming 20000x20000", &img("big.png", &png_claiming(20_000, 20_000)), fails(&["big.png", "above the limit"])),
        classify("image: PNG claiming 0 wide", &img("zero.png", &png_claiming(0, 30)), fails(&["zero.png"])),
        classify("image: truncated PNG", &img("cut.png", &png[..png.len() / 2]), fails(&["cut.png"])),
        classify("image: text named .png", &img("text.png", b"not an image at all"), fails(&["text.png"])),
        classify("image: empty .jpg", &img("empty.jpg", b""), fails(&["empty.jpg"])),
        classify("image: JPEG header only", &img("head.jpg", &jpeg[..20]), fails(&["head.jpg"])),
        classify("image: a folder", dir, fails(&[&s(dir)])),
        classify("image: missing", &dir.join("missing.png"), fails(&["missing.png"])),
    ]);
    let mask = |name: &'static str, parts: &[&str], expect: Expect| {
        let mut a = args(&["mask"]);
        a.extend(args(parts));
        Case { name, args: a, expect }
    };
    let out = s(&dir.join("mask.png"));
    let grey = s(&dir.join("grey.png"));
    cases.extend([
        mask("mask: grey image", &["--image", &grey, "--out", &out], Expect::Works("patches masked")),
        mask("flags: mask --patch-size 0", &["--patch-size", "0", "--stats"], fails(&["--patch-size"])),
        mask("flags: mask --image-size 1e8", &["--image-size", "100000000", "--patch-size", "1", "--stats"], fails(&["--image-size"])),
        mask("flags: mask --samples 0", &["--samples", "0", "--stats"], fails(&["--samples"])),
        mask("flags: mask --target above the window", &["--target", "100000", "--stats"], fails(&["target 100000"])),
        mask("flags: mask --image-size not a number", &["--image-size", "big", "--stats"], fails(&["--image-size"])),
        Case { name: "flags: classify --batch 0", args: args(&["classify", "--model", &s(&model), "--batch", "0", &grey]), expect: fails(&["--batch"]) },
        Case { name: "flags: classify --device bogus", args: args(&["classify", "--model", &s(&model), "--device", "bogus", &grey]), expect: fails(&["bogus"]) },
        Case { name: "flags: bench --batch 1e9", args: args(&["bench", "--model", &s(&model), "--batch", "1000000000"]), expect: fails(&["--batch", "above the limit"]) },
        Case { name: "flags: info without --model", args: args(&["info"]), expect: fails(&["--model"]) },
        mask("flags: mask --stats over 2e6 samples (streamed)", &["--stats", "--samples", "2000000", "--image-size", "32", "--patch-size", "16"], Expect::Works("mean_masked")),
        Case {
            name: "flags: finetune --task segmentation --size 1e5",
            args: args(&["finetune", "--task", "segmentation", "--model", &s(&model), "--shapes", "4", "--size", "100000", "--out", &s(&dir.join("sg"))]),
            expect: fails(&["--size", "above the limit"]),
        },
        Case {
            name: "flags: tokenizer train --batch 1e9",
            args: args(&["tokenizer", "train", "--out", &s(&dir.join("tk")), "--steps", "1", "--batch", "1000000000"]),
            expect: fails(&["batch of 1000000000", "above the limit"]),
        },
    ]);
}

/// Tokenizer folders through `beit tokenize`.
fn tokenizer_cases(dir: &Path, cases: &mut Vec<Case>) {
    let image = dir.join("tok.png");
    std::fs::write(&image, encode(&picture(), ImageFormat::Png)).unwrap();
    let tokenize = |name: &'static str, tok: &Path, expect: Expect| {
        let a = args(&["tokenize", "--tokenizer", &s(tok), "--image", &s(&image), "--out", &s(&dir.join("tokens.png"))]);
        Case { name, args: a, expect }
    };
    let dalle = |name: &'static str, key: &'static str, value: serde_json::Value, needle: &'static str| {
        let tok = with_config("dalle/tiny_1blk", dir, &folder(name), |c| c[key] = value);
        tokenize(name, &tok, fails(&["config.json", needle]))
    };
    let empty = dir.join("t_empty");
    std::fs::create_dir_all(&empty).unwrap();
    let weights = std::fs::read(fixture("dalle/tiny_1blk").join("model.safetensors")).unwrap();
    let dvae = |name: &'static str, config: serde_json::Value, needle: &'static str| {
        let tok = dir.join(folder(name));
        std::fs::create_dir_all(&tok).unwrap();
        std::fs::write(tok.join("config.json"), config.to_string()).unwrap();
        tokenize(name, &tok, fails(&["config.json", needle]))
    };
    let d = |image_size: u64, hidden: u64| json!({"model_type": "beit-dvae", "input_channels": 3, "image_size": image_size, "hidden": hidden, "downsample": 1, "vocab_size": 16});
    cases.extend([
        tokenize("tokenizer: DALL-E works", &fixture("dalle/tiny_1blk"), Expect::Works("tokens")),
        dalle("tokenizer: group_count 100", "group_count", json!(100), "group_count 100"),
        dalle("tokenizer: n_hid 1e9", "n_hid", json!(1_000_000_000), "n_hid 1000000000"),
        dalle("tokenizer: 50 blocks, weights for 1", "n_blk_per_group", json!(50), "model.safetensors"),
        dalle("tokenizer: vocab_size 0", "vocab_size", json!(0), "positive"),
        dalle("tokenizer: unknown field", "n_layers", json!(3), "n_layers"),
        tokenize("tokenizer: truncated weights", &with_file("dalle/tiny_1blk", dir, "t_cut", "model.safetensors", &weights[..weights.len() / 3]), fails(&["model.safetensors"])),
        tokenize("tokenizer: empty folder", &empty, fails(&["config.json"])),
        tokenize("tokenizer: missing folder", &dir.join("t_missing"), fails(&["t_missing"])),
        dvae("tokenizer: dVAE hidden 1e6", d(16, 1_000_000), "hidden 1000000"),
        dvae("tokenizer: dVAE image_size 1e6", d(1_000_000, 4), "image_size 1000000"),
    ]);
}

/// Segmentation configs through `beit segment`.
fn segmentation_cases(dir: &Path, cases: &mut Vec<Case>) {
    let image = dir.join("seg.png");
    std::fs::write(&image, encode(&picture(), ImageFormat::Png)).unwrap();
    let seg = |name: &'static str, key: &'static str, value: serde_json::Value, needle: &'static str| {
        let model = with_config("seg/uper_shared", dir, &format!("s_{key}"), |c| c[key] = value);
        let a = args(&["segment", "--model", &s(&model), &s(&image), "--out", &s(&dir.join("seg_out.png"))]);
        Case { name, args: a, expect: fails(&["config.json", needle]) }
    };
    cases.extend([
        seg("segmentation: no out_indices", "out_indices", serde_json::Value::Null, "config.out_indices"),
        seg("segmentation: pool_scales [0]", "pool_scales", json!([0]), "config.pool_scales"),
        seg("segmentation: auxiliary_channels 1e7", "auxiliary_channels", json!(10_000_000), "config.auxiliary_channels"),
    ]);
}

#[test]
fn every_bad_input_is_a_clean_error_naming_the_culprit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    model_cases(tmp.path(), &mut cases);
    image_cases(tmp.path(), &mut cases);
    tokenizer_cases(tmp.path(), &mut cases);
    segmentation_cases(tmp.path(), &mut cases);
    let failures: Vec<String> = cases.iter().filter_map(|c| check(c).err().map(|e| format!("{}: {e}", c.name))).collect();
    let works = cases.iter().filter(|c| matches!(c.expect, Expect::Works(_))).count();
    println!("{} cases: {} clean errors, {} working odd inputs, {} wrong", cases.len(), cases.len() - works, works, failures.len());
    assert!(cases.len() >= 50, "{} cases", cases.len());
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}
