//! `beit forward` end to end: every model type's outputs (and hidden states) against the
//! PyTorch float64 outputs of the committed fixtures, and errors that name the culprit.

mod common;

use common::*;
use std::path::{Path, PathBuf};

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
/// outputs under `prefix`, with `pooler_output` and `logits` present exactly when expected,
/// and `hidden_states.{k}` (k = 0..=L) exactly when `extra` holds `--hidden-states`.
fn check_forward(case: &str, input: &Path, out: &Path, prefix: &str, extra: &[&str]) {
    let dir = fixture(case);
    let _ = std::fs::remove_file(out);
    let mut args = vec!["forward", "--model", s(&dir), "--input", s(input), "--output", s(out)];
    args.extend(extra);
    let said = ok(&args);
    assert!(said.contains("last_hidden_state"), "{said}");
    let (got, want) = (load(out), load(&dir.join("expected.safetensors")));
    let layers = beit::BeitConfig::from_file(dir.join("config.json")).unwrap().num_hidden_layers;
    let hidden = extra.contains(&"--hidden-states");
    let hidden_names = (0..=layers).map(|k| format!("hidden_states.{k}"));
    assert_eq!(got.names().filter(|n| n.starts_with("hidden_states.")).count(), if hidden { layers + 1 } else { 0 }, "{case}");
    let names = ["last_hidden_state", "pooler_output", "logits"].map(String::from);
    for name in names.into_iter().chain(hidden_names.filter(|_| hidden)) {
        let name = name.as_str();
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
        check_forward(case, &fixture(case).join("inputs.safetensors"), &out, "", &["--hidden-states"]);
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
        check_forward(case, &input, &out, "masked.", &["--hidden-states"]);
    }
    // A 32 px checkpoint on 48 px inputs, as HF's interpolate_pos_encoding=True.
    let case = "cls_interpolate_32_to_48";
    let input = inputs(&fixture(case), None, &t("interp.safetensors"));
    let err = fails(&["forward", "--model", s(&fixture(case)), "--input", s(&input), "--output", s(&out)]);
    assert!(err.contains("48x48") && err.contains("--interpolate-pos-encoding"), "{err}");
    check_forward(case, &input, &out, "", &["--interpolate-pos-encoding", "--hidden-states"]);
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


/// BeitForSemanticSegmentation: `logits` and `auxiliary_logits` within 1e-4 of Hugging
/// Face's float64 outputs (the fixture's extra `labels` tensor is ignored), hidden states on
/// request, and no mask accepted.
#[test]
fn forward_segmentation_matches_pytorch() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.safetensors");
    for case in ["uper_aux", "uper_shared"] {
        let dir = seg_fixture(case);
        let (input, expected) = (dir.join("inputs.safetensors"), dir.join("expected.safetensors"));
        let said = ok(&["forward", "--model", s(&dir), "--input", s(&input), "--output", s(&out), "--hidden-states"]);
        assert!(said.contains("logits"), "{said}");
        let (got, want) = (load(&out), load(&expected));
        for name in ["logits", "auxiliary_logits"] {
            assert_eq!(got.contains(name), want.contains(name), "{case} {name}: presence");
            if want.contains(name) {
                let err = max_err(&out, &expected, name, "");
                assert!(err <= 1e-4, "{case} {name}: {err:e}");
            }
        }
        assert!(!got.contains("last_hidden_state"), "{case}: HF's segmentation output has no last_hidden_state");
        let c = beit::BeitConfig::from_file(dir.join("config.json")).unwrap();
        let tokens = c.grid().0 * c.grid().1 + 1;
        let batch = load(&input).shape("pixel_values").unwrap()[0];
        for k in 0..=c.num_hidden_layers {
            let shape = got.shape(&format!("hidden_states.{k}")).map(<[usize]>::to_vec);
            assert_eq!(shape, Some(vec![batch, tokens, c.hidden_size]), "{case} hidden_states.{k}");
        }
        assert!(!got.contains(&format!("hidden_states.{}", c.num_hidden_layers + 1)));
    }
    // At the checkpoint's own size --interpolate-pos-encoding changes nothing.
    let dir = seg_fixture("uper_aux");
    let input = dir.join("inputs.safetensors");
    let again = tmp.path().join("again.safetensors");
    ok(&["forward", "--model", s(&dir), "--input", s(&input), "--output", s(&out)]);
    ok(&["forward", "--model", s(&dir), "--input", s(&input), "--output", s(&again), "--interpolate-pos-encoding"]);
    assert_eq!(max_err(&again, &out, "logits", ""), 0.0);
    // A mask is refused, naming the tensor.
    let masked = tmp.path().join("masked.safetensors");
    let mut sd = beit::engine::io::StateDict::new();
    let pixels = load(&input).get("pixel_values").unwrap();
    let b = pixels.shape()[0];
    sd.insert("pixel_values", pixels);
    sd.insert("bool_masked_pos", beit::engine::Tensor::zeros(&[b, 16], beit::engine::DType::U8, &cpu()).unwrap());
    sd.save(&masked, None).unwrap();
    let err = fails(&["forward", "--model", s(&dir), "--input", s(&masked), "--output", s(&out)]);
    assert!(err.contains("bool_masked_pos") && err.contains("BeitForSemanticSegmentation"), "{err}");
}
