//! Helpers shared by the `beit` binary's integration tests.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A committed parity fixture under `tests/fixtures/beit`.
pub fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/beit").join(case)
}

/// A committed segmentation fixture under `tests/fixtures/seg`.
pub fn seg_fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/seg").join(case)
}

/// Run the `beit` binary.
pub fn beit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_beit")).args(args).output().expect("run beit")
}

/// Run `beit`, assert success, return its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = beit(args);
    assert!(out.status.success(), "beit {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Run `beit`, assert failure, return its stderr.
pub fn fails(args: &[&str]) -> String {
    let out = beit(args);
    assert!(!out.status.success(), "beit {args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The CPU device.
pub fn cpu() -> beit::engine::Device {
    beit::open_device("cpu").unwrap()
}

/// A safetensors file, read with the engine.
pub fn load(path: &Path) -> beit::engine::io::StateDict {
    beit::engine::io::load_safetensors(path, &cpu()).unwrap()
}

/// Max |a − b| between `got[name]` and `want[prefix + name]`, read with the engine;
/// `got[name]` must be f32 and of the same shape.
pub fn max_err(got: &Path, want: &Path, name: &str, prefix: &str) -> f64 {
    let (x, y) = (load(got).get(name).unwrap(), load(want).get(&format!("{prefix}{name}")).unwrap());
    assert_eq!(x.dtype(), beit::engine::DType::F32, "{name} is written as f32");
    assert_eq!(x.shape(), y.shape(), "{name}");
    let (x, y) = (x.to_vec_f64().unwrap(), y.to_vec_f64().unwrap());
    x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max)
}

/// A tiny DALL-E-style tokenizer folder (one group: one token per 1×1 cell of its view).
pub fn tiny_tokenizer(dir: &Path) {
    use beit::engine::nn::Module;
    let config = beit::tokenizer::DalleConfig { group_count: 1, n_hid: 4, n_blk_per_group: 1, input_channels: 3, vocab_size: 16 };
    let enc = beit::tokenizer::DalleEncoder::new(config, &cpu(), 1).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string(&config).unwrap()).unwrap();
    enc.state_dict().save(dir.join("model.safetensors"), None).unwrap();
}
