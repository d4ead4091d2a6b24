//! Crafting the corpus' files: model folders from the fixtures with edited configs or
//! weights, safetensors files with lying headers, images of every kind and hostile headers.

use beit::engine::io::{load_safetensors, StateDict};
use beit::engine::DType;
use image::{DynamicImage, ImageFormat};
use std::path::{Path, PathBuf};

/// The committed fixture folder `case` (e.g. `beit/cls_abs_pos_no_meanpool`).
pub fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(case)
}

/// A copy of fixture folder `case` at `dir/name` (config.json and model.safetensors only).
pub fn copy_model(case: &str, dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(case).join(f), out.join(f)).unwrap();
    }
    out
}

/// [`copy_model`] with `edit` applied to its config.
pub fn with_config(case: &str, dir: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let out = copy_model(case, dir, name);
    let path = out.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    out
}

/// [`copy_model`] with `file` (in the folder) replaced by `bytes`.
pub fn with_file(case: &str, dir: &Path, name: &str, file: &str, bytes: &[u8]) -> PathBuf {
    let out = copy_model(case, dir, name);
    std::fs::write(out.join(file), bytes).unwrap();
    out
}

/// [`copy_model`] with its weights rewritten by `edit`.
pub fn with_weights(case: &str, dir: &Path, name: &str, edit: impl FnOnce(&mut StateDict)) -> PathBuf {
    let out = copy_model(case, dir, name);
    let path = out.join("model.safetensors");
    let cpu = beit::open_device("cpu").unwrap();
    let mut sd = StateDict::new();
    for (n, t) in load_safetensors(&path, &cpu).unwrap().tensors().unwrap() {
        sd.insert(n, t);
    }
    edit(&mut sd);
    sd.save(&path, None).unwrap();
    out
}

/// A weight of `sd` converted to `dtype`.
pub fn retype(sd: &mut StateDict, name: &str, dtype: DType) {
    let t = sd.get(name).unwrap().to_dtype(dtype).unwrap();
    sd.insert(name, t);
}

/// A safetensors file: the 8-byte length, `header` and `data`.
pub fn safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// `img` encoded as `format`.
pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A 40×30 colour picture.
pub fn picture() -> DynamicImage {
    DynamicImage::ImageRgb8(image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 128])))
}

/// CRC-32 (PNG's, ISO-HDLC).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A valid small PNG whose IHDR claims `width`×`height` (with a correct CRC, so that only
/// the size lies).
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = encode(&picture(), ImageFormat::Png);
    // Signature (8), IHDR length (4), "IHDR" (4), width, height, ..., CRC over type + data.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}
