//! Parity with Hugging Face transformers: our f32 outputs against PyTorch's f64 outputs
//! on the fixtures that `tests/fixtures/make_beit_fixtures.py` generates (tiny random
//! checkpoints covering shared/per-layer/both relative position bias, absolute positions,
//! mean pooling on and off, layer scale off, the mask token). Tolerances: max abs error
//! 1e-4 on outputs, 1e-4 relative (to the tensor's largest entry) on gradients.

use beit::engine::io::{load_safetensors, StateDict};
use beit::engine::nn::Module;
use beit::engine::{Result, Tensor};
use beit::{Beit, Mode};
use std::path::PathBuf;

fn case_dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/beit").join(case)
}

struct Case {
    model: Beit,
    inputs: StateDict,
    expected: StateDict,
}

fn load(case: &str) -> Result<Case> {
    let dev = beit::open_device("cpu")?;
    let dir = case_dir(case);
    let (model, report) = Beit::from_pretrained(&dir, &dev)?;
    assert!(report.unexpected.is_empty(), "{case}: unexpected keys {:?}", report.unexpected);
    Ok(Case {
        model,
        inputs: load_safetensors(dir.join("inputs.safetensors"), &dev)?,
        expected: load_safetensors(dir.join("expected.safetensors"), &dev)?,
    })
}

/// Max |ours − expected| over all elements, after checking shapes.
fn max_abs_err(ours: &Tensor, expected: &Tensor, what: &str) -> f64 {
    assert_eq!(ours.shape(), expected.shape(), "{what}: shape");
    let (a, b) = (ours.to_vec_f64().unwrap(), expected.to_vec_f64().unwrap());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn assert_close(ours: &Tensor, expected: &Tensor, what: &str) {
    let err = max_abs_err(ours, expected, what);
    assert!(err <= 1e-4, "{what}: max abs error {err:e} > 1e-4");
}

/// Compare `forward`'s outputs with `{prefix}last_hidden_state`, `pooler_output`, `logits`
/// and `hidden_states.{k}`.
fn check_forward(c: &Case, masked: bool, prefix: &str) {
    let pixels = c.inputs.get("pixel_values").unwrap();
    let mask = masked.then(|| c.inputs.get("bool_masked_pos").unwrap());
    let (logits, out) = c.model.forward(&pixels, mask.as_ref(), Mode::eval().with_hidden_states()).unwrap();
    let key = |k: &str| format!("{prefix}{k}");
    assert_close(&out.last_hidden_state, &c.expected.get(&key("last_hidden_state")).unwrap(), &key("last_hidden_state"));
    assert_eq!(out.hidden_states.len(), c.model.config().num_hidden_layers + 1, "hidden_states count");
    for (k, h) in out.hidden_states.iter().enumerate() {
        let name = key(&format!("hidden_states.{k}"));
        assert_close(h, &c.expected.get(&name).unwrap(), &name);
    }
    assert_eq!(out.pooler_output.is_some(), c.expected.contains(&key("pooler_output")), "pooler presence");
    if let Some(p) = out.pooler_output {
        assert_close(&p, &c.expected.get(&key("pooler_output")).unwrap(), &key("pooler_output"));
    }
    assert_eq!(logits.is_some(), c.expected.contains(&key("logits")), "logits presence");
    if let Some(l) = logits {
        assert_close(&l, &c.expected.get(&key("logits")).unwrap(), &key("logits"));
    }
}

#[test]
fn mim_shared_relpos_outputs_loss_and_every_gradient() {
    let c = load("mim_shared_relpos").unwrap();
    check_forward(&c, true, "");
    let Beit::MaskedImageModeling(m) = &c.model else { panic!("expected the MIM model") };
    let (pixels, mask, labels) = (
        c.inputs.get("pixel_values").unwrap(),
        c.inputs.get("bool_masked_pos").unwrap(),
        c.inputs.get("labels").unwrap(),
    );
    let masked = beit::masker::MaskedPatches::from_tensor(&mask).unwrap();
    let loss = m.loss(&pixels, &masked, &labels, Mode::eval()).unwrap();
    assert_close(&loss, &c.expected.get("loss").unwrap(), "loss");
    let grads = loss.backward().unwrap();
    let params = c.model.params();
    assert_eq!(params.len(), c.expected.names().filter(|n| n.starts_with("grad.")).count());
    for p in params {
        let expected = c.expected.get(&format!("grad.{}", p.name())).unwrap();
        let ours = grads.get(&p.tensor()).unwrap_or_else(|| panic!("no gradient for {}", p.name()));
        let scale = expected.to_vec_f64().unwrap().iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
        let rel = max_abs_err(ours, &expected, p.name()) / scale;
        assert!(rel <= 1e-4, "grad of {}: relative error {rel:e} > 1e-4", p.name());
    }
}

#[test]
fn classification_per_layer_relpos_mean_pooling() {
    check_forward(&load("cls_per_layer_relpos_meanpool").unwrap(), false, "");
}

#[test]
fn classification_absolute_positions_cls_pooling_with_and_without_mask() {
    let c = load("cls_abs_pos_no_meanpool").unwrap();
    check_forward(&c, false, "");
    check_forward(&c, true, "masked.");
}

#[test]
fn beit_model_without_layer_scale_with_mask_token() {
    check_forward(&load("model_no_layerscale_mask").unwrap(), true, "");
}

#[test]
fn shared_and_per_layer_tables_summed_at_48px() {
    let c = load("cls_both_relpos_384").unwrap();
    check_forward(&c, false, "");
    check_forward(&c, true, "masked.");
}

#[test]
fn beit_model_checkpoint_loads_under_a_head_and_back() {
    // A BeitModel file (no `beit.` prefix) feeds a classification model's encoder, and a
    // saved model reloads with identical outputs.
    let dev = beit::open_device("cpu").unwrap();
    let c = load("model_no_layerscale_mask").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    c.model.save_pretrained(tmp.path()).unwrap();
    let (again, _) = Beit::from_pretrained(tmp.path(), &dev).unwrap();
    let pixels = c.inputs.get("pixel_values").unwrap();
    let a = c.model.forward(&pixels, None, Mode::eval()).unwrap().1.last_hidden_state;
    let b = again.forward(&pixels, None, Mode::eval()).unwrap().1.last_hidden_state;
    assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());

    let mut config = c.model.config().clone();
    config.architectures = vec!["BeitForImageClassification".into()];
    let cls = Beit::new(&config, &dev, 0).unwrap();
    let sd = load_safetensors(case_dir("model_no_layerscale_mask").join("model.safetensors"), &dev).unwrap();
    let missing = cls.load_hf_state_dict(sd).unwrap_err().to_string();
    assert!(missing.contains("classifier.weight"), "{missing}");
}

#[test]
fn bad_checkpoints_name_the_culprit() {
    let dev = beit::open_device("cpu").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = case_dir("cls_per_layer_relpos_meanpool");
    std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
    // A misshapen tensor: the error names the key and both shapes.
    let sd = load_safetensors(src.join("model.safetensors"), &dev).unwrap();
    let mut tensors = sd.tensors().unwrap();
    for (name, t) in tensors.iter_mut() {
        if name == "classifier.weight" {
            *t = Tensor::zeros(&[3, 32], t.dtype(), &dev).unwrap();
        }
    }
    let mut bad = StateDict::new();
    for (n, t) in tensors {
        bad.insert(n, t);
    }
    bad.save(tmp.path().join("model.safetensors"), None).unwrap();
    let err = Beit::from_pretrained(tmp.path(), &dev).err().unwrap().to_string();
    assert!(err.contains("classifier.weight") && err.contains("[3, 32]") && err.contains("[5, 32]"), "{err}");
    // A non-BEiT config.
    std::fs::write(tmp.path().join("config.json"), r#"{"model_type": "vit"}"#).unwrap();
    let err = Beit::from_pretrained(tmp.path(), &dev).err().unwrap().to_string();
    assert!(err.contains("config.json") && err.contains("not a BEiT config"), "{err}");
}

#[test]
fn resolution_change_interpolates_tables_like_hugging_face() {
    // A 32 px checkpoint loaded for 48 px inputs; HF ran it with interpolate_pos_encoding.
    let dev = beit::open_device("cpu").unwrap();
    let dir = case_dir("cls_interpolate_32_to_48");
    let (model, _) = Beit::from_pretrained_with(&dir, &dev, beit::LoadOptions { image_size: Some(48), ..Default::default() }).unwrap();
    let c = Case {
        model,
        inputs: load_safetensors(dir.join("inputs.safetensors"), &dev).unwrap(),
        expected: load_safetensors(dir.join("expected.safetensors"), &dev).unwrap(),
    };
    check_forward(&c, false, "");
    check_forward(&c, true, "masked.");
}
