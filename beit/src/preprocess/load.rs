//! Image files to [`DynamicImage`]s: PNG or JPEG by content, upright by EXIF, refused above a
//! pixel limit before decoding.

use super::MAX_PIXELS;
use beit_engine::{Error, Result};
use image::{DynamicImage, ImageDecoder, Limits};
use std::path::Path;

/// Decode a PNG or JPEG file (format from its contents, not its name), turned upright by
/// its EXIF orientation as Hugging Face's `load_image` does; errors name the file. Images
/// above [`MAX_PIXELS`] are refused.
pub fn load_image(path: impl AsRef<Path>) -> Result<DynamicImage> {
    load_image_limited(path, MAX_PIXELS)
}

/// Most bytes a decoded pixel takes (16-bit RGBA, the widest PNG).
const MAX_BYTES_PER_PIXEL: u64 = 8;

/// [`load_image`] with another pixel limit: larger images are refused before decoding, and
/// the decoder may allocate at most 8 bytes per allowed pixel.
pub fn load_image_limited(path: impl AsRef<Path>, max_pixels: u64) -> Result<DynamicImage> {
    decode(path.as_ref(), max_pixels, true)
}

/// [`load_image`] without the EXIF rotation: pixels as stored, as a segmentation image must
/// stay aligned with its annotation (which carries no EXIF).
pub fn load_image_as_stored(path: impl AsRef<Path>) -> Result<DynamicImage> {
    decode(path.as_ref(), MAX_PIXELS, false)
}

fn decode(path: &Path, max_pixels: u64, orient: bool) -> Result<DynamicImage> {
    let file = path.display().to_string();
    let format = |msg: String| Error::Format { file: file.clone(), msg };
    let mut reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|source| Error::Io { path: file.clone(), source })?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL));
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| format(format!("cannot decode image: {e}")))?;
    let (w, h) = decoder.dimensions();
    if w as u64 * h as u64 > max_pixels {
        return Err(format(format!("{w}x{h} pixels is above the limit of {max_pixels}")));
    }
    let orientation = decoder.orientation().ok().filter(|_| orient);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| format(format!("cannot decode image: {e}")))?;
    if let Some(orientation) = orientation {
        img.apply_orientation(orientation);
    }
    Ok(img)
}

