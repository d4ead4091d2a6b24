//! The valid files each fuzz target starts from: the committed fixtures, a safetensors file
//! of every dtype, preprocessor configs, images of every common kind, tokenizer folders.

use beit::engine::io::StateDict;
use beit::engine::{DType, Tensor};
use beit::tokenizer::{Dvae, DvaeConfig};
use image::{DynamicImage, ImageFormat};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// A file to mutate: its name (the loader sees it under this name) and its bytes.
#[derive(Clone, Debug)]
pub struct SeedFile {
    /// File name within the case's folder.
    pub name: &'static str,
    /// Valid contents.
    pub bytes: Vec<u8>,
}

/// A folder of valid files (one of which a case mutates) and the size of the region where
/// its sizes live (headers), where most mutations land.
#[derive(Clone, Debug)]
pub struct Seed {
    /// What it is, for reports.
    pub label: String,
    /// Its files.
    pub files: Vec<SeedFile>,
    /// Index in `files` of the file that is mutated.
    pub target: usize,
    /// Bytes at the start of the target file where mutations concentrate.
    pub focus: usize,
}

/// The committed fixtures (`tests/fixtures`).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("fuzz seed {}: {e}", path.display()))
}

/// Length of a safetensors file's header, with its 8-byte length prefix.
fn header_len(bytes: &[u8]) -> usize {
    bytes.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize + 8)
}

fn file(name: &'static str, bytes: Vec<u8>) -> SeedFile {
    SeedFile { name, bytes }
}

/// Safetensors files: a fixture's inputs and a file with a tensor of every dtype.
pub fn safetensors() -> Vec<Seed> {
    let dev = beit_backend_cpu::cpu();
    let mut sd = StateDict::new();
    let values = Tensor::from_vec((0..24).map(|v| v as f32 * 0.5).collect::<Vec<f32>>(), &[2, 3, 4], &dev).unwrap();
    for dtype in [DType::F32, DType::F64, DType::I64, DType::U32, DType::U8, DType::Bool] {
        sd.insert(format!("t_{dtype}"), values.to_dtype(dtype).unwrap());
    }
    sd.insert("scalar", Tensor::from_vec(vec![1.5f32], &[], &dev).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.safetensors");
    sd.save(&path, Some(&[("format".to_string(), "pt".to_string())].into_iter().collect())).unwrap();
    [read(&path), read(&fixtures().join("beit/mim_shared_relpos/inputs.safetensors"))]
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            let focus = header_len(&bytes);
            Seed { label: format!("safetensors {i}"), files: vec![file("model.safetensors", bytes)], target: 0, focus }
        })
        .collect()
}

/// Model folders: each fixture's `config.json` (mutated) beside its `model.safetensors`.
pub fn model_configs() -> Vec<Seed> {
    let cases = ["beit/cls_abs_pos_no_meanpool", "beit/mim_shared_relpos", "beit/model_no_layerscale_mask", "beit/cls_per_layer_relpos_meanpool", "seg/uper_shared"];
    cases
        .iter()
        .map(|case| {
            let dir = fixtures().join(case);
            let config = read(&dir.join("config.json"));
            let focus = config.len();
            let files = vec![file("config.json", config), file("model.safetensors", read(&dir.join("model.safetensors")))];
            Seed { label: (*case).to_string(), files, target: 0, focus }
        })
        .collect()
}

/// `preprocessor_config.json` files: Hugging Face's legacy BEiT file, an exact size with a
/// crop, a shortest edge without crop.
pub fn preprocessor_configs() -> Vec<Seed> {
    let texts = [
        r#"{"crop_size": 224, "do_center_crop": false, "do_normalize": true, "do_resize": true, "feature_extractor_type": "BeitFeatureExtractor", "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "reduce_labels": false, "resample": 2, "size": 224}"#,
        r#"{"size": {"height": 12, "width": 10}, "crop_size": {"height": 8, "width": 6}, "resample": 3, "rescale_factor": 0.00392156862745098, "image_mean": 0.5, "image_std": [0.25, 0.5, 1.0]}"#,
        r#"{"size": {"shortest_edge": 9}, "do_center_crop": false, "resample": 1, "do_rescale": true, "image_mean": null}"#,
    ];
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| Seed { label: format!("preprocessor {i}"), files: vec![file("preprocessor_config.json", t.as_bytes().to_vec())], target: 0, focus: t.len() })
        .collect()
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// Images: 8-bit RGB, grey, RGBA and 16-bit PNGs, RGB and grey JPEGs, a 1×1 PNG.
pub fn images() -> Vec<Seed> {
    let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_fn(13, 9, |x, y| image::Rgb([(x * 19) as u8, (y * 27) as u8, 90])));
    let kinds: [(&str, Vec<u8>); 7] = [
        ("png rgb8", encode(&rgb, ImageFormat::Png)),
        ("png grey", encode(&DynamicImage::ImageLuma8(rgb.to_luma8()), ImageFormat::Png)),
        ("png rgba", encode(&DynamicImage::ImageRgba8(rgb.to_rgba8()), ImageFormat::Png)),
        ("png rgb16", encode(&DynamicImage::ImageRgb16(rgb.to_rgb16()), ImageFormat::Png)),
        ("jpeg rgb", encode(&rgb, ImageFormat::Jpeg)),
        ("jpeg grey", encode(&DynamicImage::ImageLuma8(rgb.to_luma8()), ImageFormat::Jpeg)),
        ("png 1x1", encode(&DynamicImage::ImageRgb8(image::RgbImage::new(1, 1)), ImageFormat::Png)),
    ];
    kinds
        .into_iter()
        .map(|(label, bytes)| Seed { label: label.into(), files: vec![file("image.img", bytes)], target: 0, focus: 64 })
        .collect()
}

/// Tokenizer folders: DALL-E's tiny fixture and a small dVAE, each with the config or the
/// weights mutated.
pub fn tokenizers() -> Vec<Seed> {
    let dalle = fixtures().join("dalle/tiny_1blk");
    let dvae_dir = tempfile::tempdir().unwrap();
    let config = DvaeConfig { image_size: 8, hidden: 4, downsample: 2, vocab_size: 6, ..DvaeConfig::digits() };
    let vb = beit::engine::nn::VarBuilder::new(&beit_backend_cpu::cpu(), DType::F32, 1);
    Dvae::new(&vb, config).unwrap().save(dvae_dir.path()).unwrap();
    let mut seeds = Vec::new();
    for (label, dir) in [("dalle", dalle.as_path()), ("dvae", dvae_dir.path())] {
        let files = vec![file("config.json", read(&dir.join("config.json"))), file("model.safetensors", read(&dir.join("model.safetensors")))];
        for target in 0..2 {
            let focus = if target == 0 { files[0].bytes.len() } else { header_len(&files[1].bytes) };
            seeds.push(Seed { label: format!("{label} {}", files[target].name), files: files.clone(), target, focus });
        }
    }
    seeds
}
