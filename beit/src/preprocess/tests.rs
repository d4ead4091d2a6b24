//! Tests of the preprocessing: sizes, crops, normalisation, configs and their errors.

use super::*;

fn cpu() -> Device {
    beit_backend_cpu::cpu()
}

#[test]
fn resize_crop_normalise_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = r#"{"size": {"height": 8, "width": 8}, "crop_size": {"height": 4, "width": 4},
                  "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "unknown": 1}"#;
    std::fs::write(dir.path().join("preprocessor_config.json"), cfg).unwrap();
    let p = ImageProcessor::from_folder(dir.path()).unwrap();
    assert_eq!(p.output_size(), Some((4, 4)));
    let white = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(16, 12, image::Rgb([255, 0, 128])));
    let x = p.preprocess(&[white.clone(), white], &cpu()).unwrap();
    assert_eq!(x.shape(), &[2, 3, 4, 4]);
    let v = x.to_vec::<f32>().unwrap();
    assert!((v[0] - 1.0).abs() < 1e-6 && (v[16] + 1.0).abs() < 1e-6 && (v[32] - 0.00392).abs() < 1e-3);
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"not an image").unwrap();
    let err = load_image(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.png"), "{err}");
    assert!(load_image(dir.path().join("missing.png")).unwrap_err().to_string().contains("missing.png"));
    assert!(ImageProcessor::from_folder("/nonexistent").unwrap() == ImageProcessor::default());
    std::fs::write(dir.path().join("preprocessor_config.json"), r#"{"image_std": [0, 1, 1]}"#).unwrap();
    let err = ImageProcessor::from_folder(dir.path()).unwrap_err().to_string();
    assert!(err.contains("preprocessor_config.json") && err.contains("image_std"), "{err}");
}

#[test]
fn legacy_and_partial_configs() {
    // microsoft/beit-base-patch16-224's file: integer sizes, bilinear, no crop.
    let p = ImageProcessor::from_json(
        r#"{"crop_size": 224, "do_center_crop": false, "do_normalize": true, "do_resize": true,
            "feature_extractor_type": "BeitFeatureExtractor", "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5], "reduce_labels": false, "resample": 2, "size": 224}"#,
    )
    .unwrap();
    assert_eq!((p.size, p.crop_size, p.filter()), (Size::square(224), Size::square(224), FilterType::Triangle));
    assert_eq!(p.output_size(), Some((224, 224)));
    let p = ImageProcessor::from_json(r#"{"image_mean": 0.25, "crop_size": null}"#).unwrap();
    assert_eq!((p.image_mean, p.crop_size), (vec![0.25; 3], Size::square(224)));
    assert!(ImageProcessor::from_json(r#"{"size": {"longest_edge": 3}}"#).is_err());
    assert!(ImageProcessor::from_json(r#"{"resample": 9}"#).is_err());
    let err = |j: &str| ImageProcessor::from_json(j).unwrap_err().to_string();
    assert!(err(r#"{"size": 4000000000}"#).contains("`size` Size { height: Some(4000000000)"), "{}", err(r#"{"size": 4000000000}"#));
    assert!(err(r#"{"crop_size": {"height": 100000, "width": 100000}}"#).contains("`crop_size`"));
    assert!(err(r#"{"size": {"shortest_edge": 10001}, "do_center_crop": false}"#).contains("above the limit"));
    let p = ImageProcessor::from_json(r#"{"size": {"shortest_edge": 10000}, "do_center_crop": false}"#).unwrap();
    let wide = DynamicImage::ImageRgb8(image::RgbImage::new(3, 1));
    assert!(p.preprocess(&[wide], &cpu()).unwrap_err().to_string().contains("resizing 3x1 to 30000x10000"));
    assert!(ImageProcessor::from_json(r#"{"crop_size": {"height": 5}}"#).is_err());
    assert!(ImageProcessor::from_json(r#"{"do_center_crop": false, "crop_size": {"height": 5}}"#).is_ok());
}

#[test]
fn shortest_edge_and_padding() {
    let p = ImageProcessor::from_json(
        r#"{"size": {"shortest_edge": 6}, "do_center_crop": false, "do_normalize": false, "do_rescale": false,
            "resample": 0}"#,
    )
    .unwrap();
    assert_eq!(p.output_size(), None);
    let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(20, 9, image::Rgb([7, 8, 9])));
    assert_eq!(p.preprocess(std::slice::from_ref(&img), &cpu()).unwrap().shape(), &[1, 3, 6, 13]);
    let tall = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(9, 20, image::Rgb([7, 8, 9])));
    assert!(p.preprocess(&[img, tall], &cpu()).unwrap_err().to_string().contains("different sizes"));
    // A 3x2 image center-cropped to 6x4 sits at (ceil(3/2), ceil(2/2)) = (2, 1) in zeros.
    let p = ImageProcessor::from_json(
        r#"{"do_resize": false, "crop_size": {"height": 4, "width": 6}, "do_normalize": false, "do_rescale": false}"#,
    )
    .unwrap();
    let small = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(3, 2, image::Rgb([9, 9, 9])));
    let v = p.preprocess(&[small], &cpu()).unwrap().to_vec::<f32>().unwrap();
    let red: Vec<usize> = (0..24).filter(|&i| v[i] != 0.0).collect();
    assert_eq!(red, vec![8, 9, 10, 14, 15, 16]);
}
