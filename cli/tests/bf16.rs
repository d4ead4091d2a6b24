//! `--dtype bf16` on the inference commands: `beit forward` within 2e-2 of PyTorch's float64
//! outputs (encoder and segmentation fixtures) and not equal to the f32 run, `classify` and
//! `segment` close to their f32 runs, `beit bench` says how this CPU multiplies by bf16
//! weights, and a bad `--dtype` names the flag.

mod common;

use common::*;

/// `beit forward --dtype bf16` on `dir`'s inputs: `names` within 2e-2 of the fixture and
/// different from the f32 run.
fn check(dir: &std::path::Path, names: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let (bf16, f32) = (tmp.path().join("bf16.safetensors"), tmp.path().join("f32.safetensors"));
    let (input, expected) = (dir.join("inputs.safetensors"), dir.join("expected.safetensors"));
    ok(&["forward", "--model", s(dir), "--input", s(&input), "--output", s(&bf16), "--dtype", "bf16"]);
    ok(&["forward", "--model", s(dir), "--input", s(&input), "--output", s(&f32)]);
    for name in names {
        let err = max_err(&bf16, &expected, name, "");
        assert!(err <= 2e-2, "{}: {name}: bf16 max abs error {err:e} > 2e-2", dir.display());
        // Where the CPU has no GEMM of ours, `--dtype bf16` falls back to f32.
        let fell_back = beit::bf16_linear() == beit::Bf16Linear::Composed;
        assert!(fell_back || max_err(&bf16, &f32, name, "") > 0.0, "{}: {name}: bf16 equals f32", dir.display());
    }
}

#[test]
fn forward_bf16_within_2e_2_of_pytorch() {
    check(&fixture("mim_shared_relpos"), &["last_hidden_state", "logits"]);
    check(&seg_fixture("uper_aux"), &["logits", "auxiliary_logits"]);
}

#[test]
fn bench_reports_the_bf16_form_and_bad_dtypes_name_the_flag() {
    let model = fixture("mim_shared_relpos");
    let out = ok(&["bench", "--model", s(&model), "--iters", "1", "--dtype", "bf16", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    if beit::bf16_linear() != beit::Bf16Linear::Composed {
        assert_eq!(json["dtype"], "bf16", "{out}");
        assert!(["vdpbf16ps", "widened"].contains(&json["bf16_gemm"].as_str().unwrap_or("")), "{out}");
    }
    let err = fails(&["bench", "--model", s(&model), "--dtype", "f16"]);
    assert!(err.contains("--dtype") && err.contains("bf16"), "{err}");
}

/// `classify` and `segment` take `--dtype bf16` too: the top-1 probabilities and the class
/// map stay those of the f32 run (within 2e-2; at least 95% of the pixels).
#[test]
fn classify_and_segment_take_bf16() {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("img.png");
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])).save(&img).unwrap();
    // The 32 px classifier fixture, with a preprocessor config of its size.
    let model = tmp.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("cls_per_layer_relpos_meanpool").join(f), model.join(f)).unwrap();
    }
    std::fs::write(model.join("preprocessor_config.json"), r#"{"size": {"height": 36, "width": 36}, "crop_size": {"height": 32, "width": 32}}"#).unwrap();
    let top = |extra: &[&str]| -> Vec<(u64, f64)> {
        let out = ok(&[&["classify", "--model", s(&model), s(&img), "--json"], extra].concat());
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        let top = json[0]["top5"].as_array().unwrap().clone();
        top.iter().map(|t| (t["id"].as_u64().unwrap(), t["probability"].as_f64().unwrap())).collect()
    };
    let (f32, bf16) = (top(&[]), top(&["--dtype", "bf16"]));
    for (id, p) in &f32 {
        let q = bf16.iter().find(|(j, _)| j == id).map(|&(_, q)| q).unwrap();
        assert!((p - q).abs() <= 2e-2, "class {id}: f32 {p}, bf16 {q}");
    }
    let seg = seg_fixture("uper_aux");
    let mask = |name: &str, extra: &[&str]| {
        let (out, mask) = (tmp.path().join(format!("{name}.png")), tmp.path().join(format!("{name}_mask.png")));
        ok(&[&["segment", "--model", s(&seg), s(&img), "--out", s(&out), "--mask", s(&mask)], extra].concat());
        image::open(&mask).unwrap().to_luma8().into_raw()
    };
    let (f32, bf16) = (mask("f32", &[]), mask("bf16", &["--dtype", "bf16"]));
    let same = f32.iter().zip(&bf16).filter(|(a, b)| a == b).count();
    assert!(same * 100 >= f32.len() * 95, "{same} of {} pixels agree", f32.len());
}
