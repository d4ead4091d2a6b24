//! `beit segment` end to end on the segmentation parity fixture: the class map it writes
//! is the library's prediction (HF post-processing: logits resized to the image, argmax),
//! the overlay blends the image with class colours and has a legend below it.

use beit::engine::DType;
use beit::preprocess::{ImageProcessor, Size};
use beit::BeitForSemanticSegmentation;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/seg/uper_aux")
}

fn beit(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_beit")).args(args).output().expect("run beit")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A 40x30 test picture: a gradient with a bright square.
fn picture(path: &Path) -> image::RgbImage {
    let img = image::RgbImage::from_fn(40, 30, |x, y| {
        if (10..22).contains(&x) && (8..20).contains(&y) {
            image::Rgb([250, 240, 30])
        } else {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, 120])
        }
    });
    img.save(path).unwrap();
    img
}

#[test]
fn overlay_mask_and_legend_match_the_library() {
    let tmp = tempfile::tempdir().unwrap();
    let (img_path, out, mask) = (tmp.path().join("in.png"), tmp.path().join("overlay.png"), tmp.path().join("mask.png"));
    let img = picture(&img_path);
    let run = beit(&["segment", "--model", s(&fixture()), s(&img_path), "--out", s(&out), "--mask", s(&mask), "--alpha", "0.6"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8(run.stdout).unwrap();

    // The library's prediction for the same picture.
    let dev = beit::open_device("cpu").unwrap();
    let (model, _) = BeitForSemanticSegmentation::from_pretrained(fixture(), &dev).unwrap();
    let processor = ImageProcessor { size: Size::square(32), do_center_crop: false, ..ImageProcessor::default() };
    let pixels = processor.preprocess(&[image::DynamicImage::ImageRgb8(img.clone())], &dev).unwrap();
    let logits = model.forward(&pixels, beit::Mode::eval()).unwrap().logits.detach();
    let want = logits.upsample_bilinear2d((30, 40)).unwrap().permute(&[0, 2, 3, 1]).unwrap().argmax().unwrap();
    let want: Vec<u8> = want.to_dtype(DType::I64).unwrap().to_vec::<i64>().unwrap().iter().map(|&c| c as u8).collect();
    let got = image::open(&mask).unwrap().to_luma8();
    assert_eq!(got.dimensions(), (40, 30));
    assert_eq!(got.into_raw(), want, "class map");

    // One legend line per class found, most frequent first, with its share.
    let mut classes: Vec<u8> = want.clone();
    classes.sort();
    classes.dedup();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), classes.len(), "{stdout}");
    for c in &classes {
        assert!(stdout.contains(&format!("LABEL_{c} ")), "{stdout}");
    }

    // Overlay: the picture blended with class colours on top, the legend below.
    let overlay = image::open(&out).unwrap().to_rgb8();
    assert_eq!(overlay.width(), 40);
    assert!(overlay.height() >= 30 + 11 * classes.len() as u32, "legend rows");
    // o = 0.4·p + 0.6·colour(class): the recovered colour is one per class (within rounding)
    // and differs between classes.
    let mut tint: std::collections::BTreeMap<u8, [f32; 3]> = Default::default();
    for (i, (x, y, p)) in img.enumerate_pixels().enumerate() {
        let o = overlay.get_pixel(x, y).0;
        let colour: [f32; 3] = std::array::from_fn(|k| (o[k] as f32 - 0.4 * p.0[k] as f32) / 0.6);
        let first = *tint.entry(want[i]).or_insert(colour);
        assert!((0..3).all(|k| (colour[k] - first[k]).abs() <= 2.0), "pixel ({x}, {y}): {colour:?} vs {first:?}");
    }
    let tints: Vec<&[f32; 3]> = tint.values().collect();
    for (i, a) in tints.iter().enumerate() {
        for b in &tints[i + 1..] {
            assert!((0..3).any(|k| (a[k] - b[k]).abs() > 10.0), "two classes share a colour");
        }
    }
    assert_ne!(overlay.get_pixel(0, 0).0, img.get_pixel(0, 0).0, "colours are blended in");
    let legend_ink = (30..overlay.height()).flat_map(|y| (0..40).map(move |x| (x, y))).filter(|&(x, y)| overlay.get_pixel(x, y).0 == [0, 0, 0]).count();
    assert!(legend_ink > 20, "legend text drawn ({legend_ink} black pixels)");
}

#[test]
fn bad_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let img_path = tmp.path().join("in.png");
    picture(&img_path);
    let out = tmp.path().join("o.png");
    let err = |args: &[&str]| {
        let r = beit(args);
        assert!(!r.status.success(), "{args:?} should fail");
        String::from_utf8(r.stderr).unwrap()
    };
    let e = err(&["segment", "--model", s(&fixture()), s(&img_path), "--out", s(&out), "--alpha", "2"]);
    assert!(e.contains("--alpha"), "{e}");
    let e = err(&["segment", "--model", s(&fixture()), s(&tmp.path().join("missing.png")), "--out", s(&out)]);
    assert!(e.contains("missing.png"), "{e}");
    let cls = fixture().join("../../beit").canonicalize().unwrap();
    let some_classifier = std::fs::read_dir(&cls).unwrap().map(|e| e.unwrap().path()).find(|p| p.join("config.json").is_file()).unwrap();
    let e = err(&["segment", "--model", s(&some_classifier), s(&img_path), "--out", s(&out)]);
    assert!(e.contains("BeitForSemanticSegmentation") || e.contains("architectures"), "{e}");
}
