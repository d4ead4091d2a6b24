//! Bounds on sizes read from files: a model's config is checked against them (and against
//! the size of its weights file) before anything is allocated, so that a hostile or mistyped
//! `config.json` is an error naming the field rather than an aborted allocation.

use beit_engine::{Error, Result};
use std::path::Path;

/// The most bytes a model's parameters and buffers may take: 64 GiB, or the machine's
/// memory (RAM + swap, where `/proc/meminfo` tells it) when that is less.
pub const MAX_MODEL_BYTES: u64 = 64 << 30;

/// The bound [`check_model_bytes`] applies: [`MAX_MODEL_BYTES`], capped by this machine's
/// memory when it can be read.
pub fn model_bytes_limit() -> u64 {
    machine_memory().map_or(MAX_MODEL_BYTES, |m| m.min(MAX_MODEL_BYTES))
}

/// The largest JSON config read (16 MiB; a config with a 150-class `id2label` is about 10 KiB).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The text of a JSON config file, refused when above [`MAX_CONFIG_BYTES`] or not UTF-8;
/// errors name the file.
pub fn read_config_text(path: &Path) -> Result<String> {
    let file = path.display().to_string();
    let io = |source| Error::Io { path: file.clone(), source };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_CONFIG_BYTES {
        let msg = format!("{len} bytes is above the limit of {MAX_CONFIG_BYTES} for a config");
        return Err(Error::Format { file: file.clone(), msg });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    String::from_utf8(bytes).map_err(|e| Error::Format { file: file.clone(), msg: format!("not UTF-8 text: {e}") })
}

/// RAM + swap in bytes (Linux); `None` elsewhere.
fn machine_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<u64> {
        info.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
    };
    Some((kib("MemTotal:")? + kib("SwapTotal:").unwrap_or(0)).saturating_mul(1024))
}

/// Human-readable bytes: `512 B`, `3.2 MiB`, `1.1e9 GiB`.
pub fn bytes(n: u128) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v >= 1e5 {
        format!("{v:.1e} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Bytes of an f32 tensor of `shape` (saturating), for [`check_model_bytes`] on inputs.
pub fn f32_bytes(shape: &[usize]) -> u128 {
    shape.iter().fold(4u128, |n, &d| n.saturating_mul(d as u128))
}

/// An error for `field` unless `needed` bytes fit in [`model_bytes_limit`]; `what` says
/// which sizes make up the total (e.g. `image_size 1000000000 / patch_size 16`).
pub fn check_model_bytes(field: &'static str, needed: u128, what: &str) -> Result<()> {
    let limit = model_bytes_limit();
    if needed > limit as u128 {
        let msg = format!("{what} needs {} of memory, above the limit of {}", bytes(needed), bytes(limit as u128));
        return Err(Error::invalid(field, msg));
    }
    Ok(())
}

/// An error for `field` when the weights file at `path` (if there is one) is too small to
/// hold `params` parameters at 2 bytes each (f16/bf16, the narrowest float dtype read), so
/// that a config claiming far more layers or width than its checkpoint has is refused
/// before the model is built.
pub fn check_weights_file(path: &Path, field: &'static str, params: u128, what: &str) -> Result<()> {
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    let needed = params.saturating_mul(2);
    if meta.is_file() && (meta.len() as u128) < needed {
        let msg = format!(
            "{what} means at least {params} parameters ({} at 2 bytes each), but {} holds only {}",
            bytes(needed),
            path.display(),
            bytes(meta.len() as u128)
        );
        return Err(Error::invalid(field, msg));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_messages() {
        assert_eq!((bytes(10), bytes(3 << 20), bytes(1 << 60)), ("10 B".into(), "3.0 MiB".into(), "1.0e6 TiB".into()));
        let limit = model_bytes_limit();
        assert!(limit > 0 && limit <= MAX_MODEL_BYTES);
        assert!(check_model_bytes("config.image_size", limit as u128, "x").is_ok());
        let err = check_model_bytes("config.image_size", 1 << 100, "image_size 7").unwrap_err().to_string();
        assert!(err.starts_with("config.image_size: image_size 7 needs") && err.contains("above the limit"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("model.safetensors");
        std::fs::write(&file, [0u8; 100]).unwrap();
        assert!(check_weights_file(&file, "config.num_hidden_layers", 50, "2 layers").is_ok());
        let err = check_weights_file(&file, "config.num_hidden_layers", 51, "2 layers").unwrap_err().to_string();
        assert!(err.contains("at least 51 parameters (102 B at 2 bytes each)") && err.contains("holds only 100 B"), "{err}");
        assert!(check_weights_file(&dir.path().join("none"), "config.num_hidden_layers", 1 << 60, "").is_ok());
    }
}
