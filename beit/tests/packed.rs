//! Pre-packed Linear weights (`LoadOptions { pack_weights: true }`, what the inference
//! commands load with): on every parity fixture (`tests/fixtures/{beit,seg}`), f32 and bf16,
//! the outputs are exactly those of the same checkpoint loaded unpacked (the GEMM reads the
//! same panels, only packed once), which `parity.rs` and `bf16.rs` compare with PyTorch;
//! a packed model saves the checkpoint's values back, and refuses to track gradients.

use beit::engine::nn::Module;
use beit::engine::{no_grad, DType, Tensor};
use beit::{Beit, BeitForSemanticSegmentation, LoadOptions, Mode};
use std::path::PathBuf;

fn fixture(group: &str, case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(group).join(case)
}

fn options(weight_dtype: DType, pack_weights: bool) -> LoadOptions {
    LoadOptions { weight_dtype, pack_weights, ..LoadOptions::default() }
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()
}

fn inputs(dir: &std::path::Path) -> beit::engine::io::StateDict {
    beit::engine::io::load_safetensors(dir.join("inputs.safetensors"), &beit::open_device("cpu").unwrap()).unwrap()
}

#[test]
fn encoder_outputs_equal_unpacked() {
    let dev = beit::open_device("cpu").unwrap();
    for case in ["mim_shared_relpos", "cls_per_layer_relpos_meanpool", "cls_abs_pos_no_meanpool", "model_no_layerscale_mask", "cls_both_relpos_384"] {
        let dir = fixture("beit", case);
        let inputs = inputs(&dir);
        let pixels = inputs.get("pixel_values").unwrap();
        for dtype in [DType::F32, DType::BF16] {
            let (packed, _) = Beit::from_pretrained_with(&dir, &dev, options(dtype, true)).unwrap();
            let (plain, _) = Beit::from_pretrained_with(&dir, &dev, options(dtype, false)).unwrap();
            let mask = (!matches!(plain, Beit::ImageClassification(_))).then(|| inputs.get("bool_masked_pos").unwrap());
            let _guard = no_grad();
            let (logits, out) = packed.forward(&pixels, mask.as_ref(), Mode::eval()).unwrap();
            let (want_logits, want) = plain.forward(&pixels, mask.as_ref(), Mode::eval()).unwrap();
            assert!(bits(&out.last_hidden_state) == bits(&want.last_hidden_state), "{case} {dtype}: last_hidden_state");
            assert_eq!(logits.map(|l| bits(&l)), want_logits.map(|l| bits(&l)), "{case} {dtype}: logits");
        }
    }
}

#[test]
fn segmentation_outputs_equal_unpacked() {
    let dev = beit::open_device("cpu").unwrap();
    for case in ["uper_aux", "uper_shared"] {
        let dir = fixture("seg", case);
        let pixels = inputs(&dir).get("pixel_values").unwrap();
        for dtype in [DType::F32, DType::BF16] {
            let (packed, _) = BeitForSemanticSegmentation::from_pretrained_with(&dir, &dev, options(dtype, true)).unwrap();
            let (plain, _) = BeitForSemanticSegmentation::from_pretrained_with(&dir, &dev, options(dtype, false)).unwrap();
            let _guard = no_grad();
            let got = packed.forward(&pixels, Mode::eval()).unwrap();
            let want = plain.forward(&pixels, Mode::eval()).unwrap();
            assert!(bits(&got.logits) == bits(&want.logits), "{case} {dtype}: logits");
        }
    }
}

/// Saving a packed model writes the checkpoint's values (unpacked on the way out); running
/// it with gradients on is an error that says why, not a panic.
#[test]
fn packed_models_save_unpacked_and_refuse_gradients() {
    let dev = beit::open_device("cpu").unwrap();
    let dir = fixture("beit", "cls_per_layer_relpos_meanpool");
    let (packed, _) = Beit::from_pretrained_with(&dir, &dev, options(DType::F32, true)).unwrap();
    let out = tempfile::tempdir().unwrap();
    packed.save_pretrained(out.path()).unwrap();
    let (reloaded, _) = Beit::from_pretrained(out.path(), &dev).unwrap();
    let (plain, _) = Beit::from_pretrained(&dir, &dev).unwrap();
    let (a, b) = (reloaded.state_dict(), plain.state_dict());
    for name in b.names() {
        assert_eq!(a.get(name).unwrap().to_vec_f64().unwrap(), b.get(name).unwrap().to_vec_f64().unwrap(), "{name}");
    }
    if beit::bf16_linear() != beit::Bf16Linear::Composed {
        let pixels = inputs(&dir).get("pixel_values").unwrap();
        let err = packed.forward(&pixels, None, Mode::eval()).err().expect("gradients through packed weights").to_string();
        assert!(err.contains("pre-packed for inference"), "{err}");
    }
}
