//! timm's eval preprocessing, read from the `pretrained_cfg` of its `config.json`.

use crate::preprocess::{ImageProcessor, Size};
use beit_engine::{Error, Result};
use serde_json::Value;

fn bad(file: &str, msg: impl Into<String>) -> Error {
    Error::Format { file: file.to_string(), msg: msg.into() }
}

/// timm's eval preprocessing from `pretrained_cfg` (`None` without an `input_size`): resize
/// to ⌊input_size / crop_pct⌋ (the shorter side, for square inputs) with its
/// `interpolation`, center crop `input_size`, scale to [0, 1], normalise by `mean`/`std`.
pub(super) fn image_processor(json: &Value, file: &str) -> Result<Option<ImageProcessor>> {
    let Some(cfg) = json.get("pretrained_cfg") else { return Ok(None) };
    let Some([_, h, w]) = cfg.get("input_size").and_then(Value::as_array).map(Vec::as_slice) else { return Ok(None) };
    let side = |v: &Value| v.as_u64().filter(|&n| n > 0 && n <= u32::MAX as u64).map(|n| n as u32);
    let (Some(h), Some(w)) = (side(h), side(w)) else {
        return Err(bad(file, "field `pretrained_cfg.input_size`: expected [channels, height, width] of positive integers"));
    };
    let crop_pct = match cfg.get("crop_pct") {
        None | Some(Value::Null) => 0.875,
        Some(v) => v.as_f64().filter(|c| *c > 0.0 && *c <= 1.0).ok_or_else(|| bad(file, format!("field `pretrained_cfg.crop_pct`: {v} is not in (0, 1]")))?,
    };
    if let Some(mode) = cfg.get("crop_mode").and_then(Value::as_str).filter(|m| *m != "center") {
        return Err(bad(file, format!("field `pretrained_cfg.crop_mode`: \"{mode}\" is not supported (only \"center\")")));
    }
    let interpolation = cfg.get("interpolation").and_then(Value::as_str).unwrap_or("bicubic");
    let resample = match interpolation {
        "nearest" => 0,
        "lanczos" => 1,
        "bilinear" => 2,
        "bicubic" => 3,
        "box" => 4,
        "hamming" => 5,
        other => return Err(bad(file, format!("field `pretrained_cfg.interpolation`: \"{other}\" is not supported"))),
    };
    let channels = |key: &str, default: [f64; 3]| -> Result<Vec<f64>> {
        match cfg.get(key) {
            None => Ok(default.to_vec()),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                .ok_or_else(|| bad(file, format!("field `pretrained_cfg.{key}`: expected a list of numbers"))),
        }
    };
    let scaled = |n: u32| (n as f64 / crop_pct).floor() as u32;
    let size = if h == w { Size { height: None, width: None, shortest_edge: Some(scaled(h)) } } else { Size { height: Some(scaled(h)), width: Some(scaled(w)), shortest_edge: None } };
    let processor = ImageProcessor {
        size,
        resample,
        crop_size: Size { height: Some(h), width: Some(w), shortest_edge: None },
        image_mean: channels("mean", [0.485, 0.456, 0.406])?,
        image_std: channels("std", [0.229, 0.224, 0.225])?,
        ..ImageProcessor::default()
    };
    processor.validate().map_err(|e| bad(file, format!("pretrained_cfg: {e}")))?;
    Ok(Some(processor))
}
