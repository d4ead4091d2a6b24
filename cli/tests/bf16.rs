//! `--dtype bf16` on the inference commands: `beit forward` within 2e-2 of PyTorch's float64
//! outputs (encoder and segmentation fixtures) and not equal to the f32 run, `beit bench`
//! says how this CPU multiplies by bf16 weights, and a bad `--dtype` names the flag.

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
