//! bf16 inference (`LoadOptions { weight_dtype: BF16 }`) against PyTorch's float64 outputs
//! on every parity fixture (`tests/fixtures/{beit,seg}`): each Linear and Conv2d weight is
//! bf16 after loading (biases, norms, the patch embedding and the FPN's transposed
//! convolutions stay f32), and every output is within 2e-2
//! (max abs error) of the reference, yet not equal to the f32 one (bf16 was used).

use beit::engine::io::{load_safetensors, StateDict};
use beit::engine::nn::Module;
use beit::engine::{no_grad, DType, Device, Tensor};
use beit::{Beit, BeitForSemanticSegmentation, LoadOptions, Mode};
use std::path::PathBuf;

/// The largest error bf16 weights may add to an output.
const TOL: f64 = 2e-2;

fn fixture(group: &str, case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(group).join(case)
}

fn bf16() -> LoadOptions {
    LoadOptions { weight_dtype: DType::BF16, ..LoadOptions::default() }
}

fn max_abs_err(ours: &Tensor, want: &Tensor, what: &str) -> f64 {
    assert_eq!(ours.shape(), want.shape(), "{what}: shape");
    let (a, b) = (ours.to_vec_f64().unwrap(), want.to_vec_f64().unwrap());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// `bf16` is within [`TOL`] of `want`, and differs from the f32 output `f32`.
fn check(bf16: &Tensor, f32: &Tensor, want: &Tensor, what: &str) {
    let err = max_abs_err(bf16, want, what);
    println!("{what}: bf16 max abs error {err:.3e} (f32: {:.3e})", max_abs_err(f32, want, what));
    assert!(err <= TOL, "{what}: bf16 max abs error {err:e} > {TOL}");
    assert!(max_abs_err(bf16, f32, what) > 0.0, "{what}: the bf16 output equals the f32 one");
}

/// Every 2-D `*.weight` (the Linear layers') and 4-D one (the Conv2d layers', but the
/// patch embedding's and the FPN's transposed convolutions') is bf16, every other float
/// parameter f32; `(linears, convs)` counts the bf16 ones.
fn check_dtypes(params: &[beit::engine::nn::Param], case: &str) -> (usize, usize) {
    let (mut linears, mut convs) = (0, 0);
    for p in params.iter().filter(|p| p.dtype().is_float()) {
        let weight = p.name().ends_with(".weight");
        let linear = weight && p.shape().len() == 2;
        let conv = weight && p.shape().len() == 4 && !p.name().contains("patch_embeddings") && !p.name().starts_with("fpn");
        (linears, convs) = (linears + usize::from(linear), convs + usize::from(conv));
        let want = if linear || conv { DType::BF16 } else { DType::F32 };
        assert_eq!(p.dtype(), want, "{case}: {}", p.name());
    }
    assert!(linears > 0, "{case}: no Linear weights");
    (linears, convs)
}

fn inputs(dir: &std::path::Path, dev: &Device) -> (StateDict, StateDict) {
    (load_safetensors(dir.join("inputs.safetensors"), dev).unwrap(), load_safetensors(dir.join("expected.safetensors"), dev).unwrap())
}

#[test]
fn encoder_fixtures_within_2e_2() {
    let dev = beit::open_device("cpu").unwrap();
    let _guard = no_grad();
    for case in ["mim_shared_relpos", "cls_per_layer_relpos_meanpool", "cls_abs_pos_no_meanpool", "model_no_layerscale_mask", "cls_both_relpos_384"] {
        let dir = fixture("beit", case);
        let (model, _) = Beit::from_pretrained_with(&dir, &dev, bf16()).unwrap();
        let (reference, _) = Beit::from_pretrained(&dir, &dev).unwrap();
        assert_eq!(check_dtypes(&model.params(), case).1, 0, "{case}: an encoder has no Conv2d");
        let (inputs, expected) = inputs(&dir, &dev);
        let pixels = inputs.get("pixel_values").unwrap();
        // The fixtures' unprefixed outputs are masked for MIM and BeitModel, unmasked for
        // classification.
        let masked = !matches!(model, Beit::ImageClassification(_));
        let mask = masked.then(|| inputs.get("bool_masked_pos").unwrap());
        let (logits, out) = model.forward(&pixels, mask.as_ref(), Mode::eval()).unwrap();
        let (want_logits, want) = reference.forward(&pixels, mask.as_ref(), Mode::eval()).unwrap();
        check(&out.last_hidden_state, &want.last_hidden_state, &expected.get("last_hidden_state").unwrap(), &format!("{case}: last_hidden_state"));
        if let (Some(l), Some(w)) = (logits, want_logits) {
            check(&l, &w, &expected.get("logits").unwrap(), &format!("{case}: logits"));
        }
    }
}

#[test]
fn weights_must_be_f32_or_bf16() {
    let dev = beit::open_device("cpu").unwrap();
    let options = LoadOptions { weight_dtype: DType::F64, ..LoadOptions::default() };
    let err = Beit::from_pretrained_with(fixture("beit", "mim_shared_relpos"), &dev, options).err().expect("f64 weights are refused").to_string();
    assert!(err.contains("weight_dtype") && err.contains("f64"), "{err}");
}

#[test]
fn segmentation_fixtures_within_2e_2() {
    let dev = beit::open_device("cpu").unwrap();
    let _guard = no_grad();
    for case in ["uper_aux", "uper_shared"] {
        let dir = fixture("seg", case);
        let (model, _) = BeitForSemanticSegmentation::from_pretrained_with(&dir, &dev, bf16()).unwrap();
        let (reference, _) = BeitForSemanticSegmentation::from_pretrained(&dir, &dev).unwrap();
        assert!(check_dtypes(&model.params(), case).1 > 0, "{case}: no bf16 Conv2d weights");
        let (inputs, expected) = inputs(&dir, &dev);
        let pixels = inputs.get("pixel_values").unwrap();
        let (out, want) = (model.forward(&pixels, Mode::eval()).unwrap(), reference.forward(&pixels, Mode::eval()).unwrap());
        check(&out.logits, &want.logits, &expected.get("logits").unwrap(), &format!("{case}: logits"));
    }
}
