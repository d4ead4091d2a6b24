//! Segmentation datasets: an ADE20K-layout folder written here (label reduction as Hugging
//! Face's `reduce_labels`, nearest resizing of the class map, 0.5/0.5 normalisation,
//! errors naming the file), and the generated shapes (deterministic, all classes, labels
//! consistent with the drawn colours).

use beit::data::{seg_batch, SegDataset, SegFolder, Shapes, Split, IGNORE_LABEL};

/// `root/images/training/a.png` (4x2) with `annotations/training/a.png` labels
/// [0 1 2 255 / 3 3 0 1].
fn ade_folder(root: &std::path::Path) {
    let (img_dir, ann_dir) = (root.join("images/training"), root.join("annotations/training"));
    std::fs::create_dir_all(&img_dir).unwrap();
    std::fs::create_dir_all(&ann_dir).unwrap();
    let img = image::RgbImage::from_fn(4, 2, |x, y| image::Rgb([(x * 60) as u8, (y * 255) as u8, 51]));
    img.save(img_dir.join("a.png")).unwrap();
    let ann = image::GrayImage::from_raw(4, 2, vec![0, 1, 2, 255, 3, 3, 0, 1]).unwrap();
    ann.save(ann_dir.join("a.png")).unwrap();
}

#[test]
fn ade_folder_reduces_labels_and_normalises() {
    let tmp = tempfile::tempdir().unwrap();
    ade_folder(tmp.path());
    let plain = SegFolder::open(tmp.path(), Split::Training, 4, false).unwrap();
    let reduced = SegFolder::open(tmp.path(), Split::Training, 4, true).unwrap();
    assert_eq!(plain.len(), 1);
    // Resized 4x2 -> 4x4 nearest: each label row repeats.
    let rows = |r: [i64; 8]| [&r[..4], &r[..4], &r[4..], &r[4..]].concat();
    assert_eq!(plain.sample(0).unwrap().labels, rows([0, 1, 2, 255, 3, 3, 0, 1]));
    assert_eq!(reduced.sample(0).unwrap().labels, rows([IGNORE_LABEL, 0, 1, IGNORE_LABEL, 2, 2, IGNORE_LABEL, 0]));
    // Blue is 51 everywhere: (51/255 − 0.5)/0.5 = −0.6.
    let px = plain.sample(0).unwrap().pixels;
    assert_eq!(px.len(), 3 * 16);
    assert!(px[32..].iter().all(|v| (v + 0.6).abs() < 1e-6), "{:?}", &px[32..]);
    let (pixels, labels) = seg_batch(&plain, &[0, 0], &beit::open_device("cpu").unwrap()).unwrap();
    assert_eq!((pixels.shape(), labels.shape()), (&[2, 3, 4, 4][..], &[2, 4, 4][..]));
}

#[test]
fn ade_folder_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    ade_folder(tmp.path());
    std::fs::write(tmp.path().join("images/training/b.jpg"), b"not a jpeg").unwrap();
    let err = SegFolder::open(tmp.path(), Split::Training, 4, false).unwrap_err().to_string();
    assert!(err.contains("b.jpg") && err.contains("annotations"), "{err}");
    std::fs::write(tmp.path().join("annotations/training/b.png"), b"junk").unwrap();
    let ds = SegFolder::open(tmp.path(), Split::Training, 4, false).unwrap();
    let err = ds.sample(1).unwrap_err().to_string();
    assert!(err.contains("b.jpg"), "{err}");
    let err = SegFolder::open(tmp.path(), Split::Validation, 4, false).unwrap_err().to_string();
    assert!(err.contains("validation"), "{err}");
}

#[test]
fn shapes_are_deterministic_and_labelled_by_colour() {
    let ds = Shapes::new(40, 24, 7).unwrap();
    assert_eq!(ds.sample(3).unwrap(), ds.sample(3).unwrap());
    assert_ne!(ds.sample(3).unwrap(), ds.sample(4).unwrap());
    let mut seen = [0usize; Shapes::CLASSES];
    let mut dominant_ok = [0usize; Shapes::CLASSES];
    for i in 0..ds.len() {
        let s = ds.sample(i).unwrap();
        let plane = 24 * 24;
        for (p, &l) in s.labels.iter().enumerate() {
            seen[l as usize] += 1;
            let c = [s.pixels[p], s.pixels[plane + p], s.pixels[2 * plane + p]];
            // Shapes have a dominant channel (red, green, blue for classes 1, 2, 3).
            if l > 0 && (0..3).all(|k| k == l as usize - 1 || c[l as usize - 1] > c[k]) {
                dominant_ok[l as usize] += 1;
            }
        }
    }
    assert!(seen.iter().all(|&n| n > 0), "every class occurs: {seen:?}");
    for k in 1..Shapes::CLASSES {
        assert!(dominant_ok[k] as f64 > 0.95 * seen[k] as f64, "class {k}: {} of {}", dominant_ok[k], seen[k]);
    }
    assert!(Shapes::new(4, 4, 0).is_err());
    assert!(ds.sample(40).is_err());
}
