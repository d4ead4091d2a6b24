//! timm's BEiT layout: folders written by `timm.models.save_for_hf` (timm's config.json and
//! state-dict names; `tests/fixtures/make_timm_fixture.py`) load with `Beit::from_pretrained`
//! and give timm's float64 outputs within 1e-4; the config is read from the architecture
//! name, `model_args` and the weights' shapes, and what they cannot tell is a clear error.

use beit::engine::io::load_safetensors;
use beit::engine::Tensor;
use beit::{Architecture, Beit, Mode};
use std::path::{Path, PathBuf};

fn case_dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/timm").join(case)
}

fn max_abs_err(ours: &Tensor, expected: &Tensor, what: &str) -> f64 {
    assert_eq!(ours.shape(), expected.shape(), "{what}: shape");
    let (a, b) = (ours.to_vec_f64().unwrap(), expected.to_vec_f64().unwrap());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// Load `dir` and compare every output with `case`'s timm float64 outputs; the worst error.
fn check_outputs(dir: &Path, case: &str) -> f64 {
    let dev = beit::open_device("cpu").unwrap();
    let (model, report) = Beit::from_pretrained(dir, &dev).unwrap();
    assert!(report.unexpected.is_empty(), "{case}: unexpected keys {:?}", report.unexpected);
    let inputs = load_safetensors(case_dir(case).join("inputs.safetensors"), &dev).unwrap();
    let expected = load_safetensors(case_dir(case).join("expected.safetensors"), &dev).unwrap();
    let (logits, out) = model.forward(&inputs.get("pixel_values").unwrap(), None, Mode::eval()).unwrap();
    let pooled = out.pooler_output.expect("a pooler output");
    let mut outputs = vec![("last_hidden_state", out.last_hidden_state), ("pooler_output", pooled)];
    assert_eq!(logits.is_some(), expected.contains("logits"), "{case}: logits presence");
    outputs.extend(logits.map(|l| ("logits", l)));
    let mut worst = 0.0f64;
    for (name, ours) in &outputs {
        let err = max_abs_err(ours, &expected.get(name).unwrap(), name);
        assert!(err <= 1e-4, "{case}: {name}: max abs error {err:e} > 1e-4");
        worst = worst.max(err);
    }
    eprintln!("{case}: max |ours - timm fp64| = {worst:.2e}");
    worst
}

/// A copy of `case`'s weights beside a config.json whose JSON `edit` rewrites.
fn with_config(case: &str, edit: impl FnOnce(&mut serde_json::Value)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(case_dir(case).join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut config);
    std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    std::fs::copy(case_dir(case).join("model.safetensors"), tmp.path().join("model.safetensors")).unwrap();
    tmp
}

fn load_error(dir: &Path) -> String {
    match Beit::from_pretrained(dir, &beit::open_device("cpu").unwrap()) {
        Ok(_) => panic!("{} should not load", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn per_layer_relpos_layer_scale_mean_pooling_matches_timm() {
    check_outputs(&case_dir("relpos_avg"), "relpos_avg");
    let (model, _) = Beit::from_pretrained(case_dir("relpos_avg"), &beit::open_device("cpu").unwrap()).unwrap();
    let c = model.config();
    assert_eq!(c.architecture().unwrap(), Architecture::BeitForImageClassification);
    assert_eq!((c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size), (32, 2, 4, 64));
    assert_eq!((c.image_size, c.patch_size, c.num_labels(), c.layer_norm_eps), (32, 8, 5, 1e-6));
    assert!(c.use_relative_position_bias && !c.use_shared_relative_position_bias && !c.use_absolute_position_embeddings);
    assert!(c.use_mean_pooling && !c.use_mask_token);
    assert_eq!(c.layer_scale_init_value, 0.3);
}

#[test]
fn shared_relpos_absolute_positions_cls_pooling_matches_timm() {
    check_outputs(&case_dir("shared_abs_token"), "shared_abs_token");
    let (model, _) = Beit::from_pretrained(case_dir("shared_abs_token"), &beit::open_device("cpu").unwrap()).unwrap();
    let c = model.config();
    assert!(c.use_shared_relative_position_bias && c.use_absolute_position_embeddings && !c.use_relative_position_bias);
    assert!(!c.use_mean_pooling && c.layer_scale_init_value == 0.0);
    assert_eq!((c.hidden_size, c.num_attention_heads, c.num_labels()), (16, 2, 3));
}

#[test]
fn headless_model_without_qv_biases_matches_timm() {
    check_outputs(&case_dir("abs_headless"), "abs_headless");
    let (model, _) = Beit::from_pretrained(case_dir("abs_headless"), &beit::open_device("cpu").unwrap()).unwrap();
    assert_eq!(model.config().architecture().unwrap(), Architecture::BeitModel);
}

#[test]
fn an_unlisted_beit_name_is_read_from_the_weights_alone() {
    // No model_args, no top-level fields: sizes, heads (from the tables), image size,
    // pooling and head all come from the tensor shapes.
    let dir = with_config("relpos_avg", |c| *c = serde_json::json!({"architecture": "beit_tiny_patch8_32"}));
    check_outputs(dir.path(), "relpos_avg");
}

#[test]
fn unknown_architectures_and_contradictions_are_clear_errors() {
    let dir = with_config("relpos_avg", |c| c["architecture"] = "vit_base_patch16_224".into());
    let err = load_error(dir.path());
    assert!(err.contains("config.json") && err.contains("`vit_base_patch16_224` is not a timm BEiT architecture"), "{err}");
    assert!(err.contains("beit_base_patch16_224") && err.contains("beitv2_large_patch16_224"), "lists the known ones: {err}");

    // Without relative position tables the weights do not tell the number of heads.
    let dir = with_config("abs_headless", |c| *c = serde_json::json!({"architecture": "beit_mystery"}));
    let err = load_error(dir.path());
    assert!(err.contains("`beit_mystery` is not one beit-rs knows") && err.contains("num_heads"), "{err}");
    assert!(err.contains("\"model_args\": {\"num_heads\": N}"), "says how to fix it: {err}");

    // A registered name without model_args says 768 wide, 12 blocks: the weights disagree.
    let dir = with_config("relpos_avg", |c| c.as_object_mut().unwrap().remove("model_args").map(drop).unwrap());
    let err = load_error(dir.path());
    assert!(err.contains("embed_dim = 768") && err.contains("32") && err.contains("patch_embed.proj.weight"), "{err}");

    let dir = with_config("relpos_avg", |c| c["model_args"]["depth"] = 3.into());
    let err = load_error(dir.path());
    assert!(err.contains("depth = 3") && err.contains("blocks"), "{err}");

    let dir = with_config("relpos_avg", |c| c["model_args"]["global_pool"] = "token".into());
    let err = load_error(dir.path());
    assert!(err.contains("global_pool \"token\"") && err.contains("fc_norm"), "{err}");

    let dir = with_config("relpos_avg", |c| c["model_args"]["swiglu_mlp"] = true.into());
    assert!(load_error(dir.path()).contains("model_args.swiglu_mlp"));

    let dir = with_config("relpos_avg", |c| c["label_names"] = serde_json::json!(["a", "b"]));
    let err = load_error(dir.path());
    assert!(err.contains("label_names") && err.contains("2 names for 5 classes"), "{err}");
}

#[test]
fn labels_hugging_face_config_and_saving_as_hugging_face() {
    let dev = beit::open_device("cpu").unwrap();
    let dir = with_config("relpos_avg", |c| {
        c["label_names"] = serde_json::json!(["n01", "n02", "n03", "n04", "n05"]);
        c["label_descriptions"] = serde_json::json!({"n01": "tench", "n03": "goldfish"});
    });
    let (model, _) = Beit::from_pretrained(dir.path(), &dev).unwrap();
    let labels: Vec<String> = (0..5).map(|i| model.config().label(i)).collect();
    assert_eq!(labels, ["tench", "n02", "goldfish", "n04", "n05"]);

    // Saved back it is a Hugging Face folder; its config.json beside timm's weights loads too.
    let hf = tempfile::tempdir().unwrap();
    model.save_pretrained(hf.path()).unwrap();
    let names = load_safetensors(hf.path().join("model.safetensors"), &dev).unwrap();
    assert!(names.contains("beit.encoder.layer.1.attention.attention.key.weight") && !names.contains("blocks.0.attn.qkv.weight"));
    check_outputs(hf.path(), "relpos_avg");
    std::fs::copy(case_dir("relpos_avg").join("model.safetensors"), hf.path().join("model.safetensors")).unwrap();
    check_outputs(hf.path(), "relpos_avg");
}

#[test]
fn preprocessing_comes_from_pretrained_cfg() {
    let p = beit::model::folder_image_processor(&case_dir("relpos_avg")).unwrap();
    // timm's eval transform at input 32, crop_pct 0.9: shorter side to ⌊32 / 0.9⌋ = 35, bicubic, crop 32.
    assert_eq!((p.size.shortest_edge, p.crop_size.height, p.crop_size.width), (Some(35), Some(32), Some(32)));
    assert_eq!((p.resample, p.do_center_crop, p.image_mean.clone(), p.image_std.clone()), (3, true, vec![0.5; 3], vec![0.5; 3]));
    let dir = with_config("relpos_avg", |c| c["pretrained_cfg"]["interpolation"] = "random".into());
    let err = beit::model::folder_image_processor(dir.path()).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("pretrained_cfg.interpolation"), "{err}");
}
