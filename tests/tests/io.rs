//! safetensors state dicts: exact round trips, half-precision files, and errors that name
//! the file and the tensor for truncated, corrupt or mismatched input.

use beit_backend_cpu::cpu;
use beit_engine::io::{load_safetensors, save_safetensors, StateDict};
use beit_engine::nn::{Linear, Module, VarBuilder};
use beit_engine::{DType, Error, HostData, Result, Tensor};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::Path;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Write raw `(name, dtype, shape, bytes)` tensors with the reference implementation.
fn write_reference(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), safetensors::tensor::TensorView::new(*d, s.clone(), b).expect("view")))
        .collect();
    safetensors::serialize_to_file(views, None, path).expect("reference write");
}

fn assert_format_error(err: &Error, file: &Path) {
    assert!(matches!(err, Error::Format { .. }), "expected a format error, got {err:?}");
    assert!(err.to_string().contains(&file.display().to_string()), "`{err}` names the file");
}

#[test]
fn round_trip_keeps_names_dtypes_and_values() -> Result<()> {
    let dev = cpu();
    let dir = tmp();
    let path = dir.path().join("model.safetensors");
    let q = "encoder.layer.0.attention.attention.query.weight";
    let wq = Tensor::from_vec(vec![1.5f32, -2.25, 3.0, 1e-8, f32::MAX, -0.0], &[2, 3], &dev)?;
    let tensors = vec![
        (q, wq.clone()),
        ("beit.embeddings.cls_token", Tensor::from_vec(vec![0.1f64, 0.2, std::f64::consts::PI], &[1, 1, 3], &dev)?),
        ("relative_position_index", Tensor::from_vec(vec![0i64, -1, i64::MAX, 7], &[2, 2], &dev)?),
        ("mask", Tensor::from_host(&HostData::Bool(vec![1, 0, 0, 1]), &[4], &dev)?),
        ("bytes", Tensor::from_vec(vec![0u8, 255, 7], &[3], &dev)?),
        ("ids", Tensor::from_vec(vec![1u32, u32::MAX], &[2], &dev)?),
        ("scalar", Tensor::scalar(2.5, DType::F32, &dev)?),
        ("empty", Tensor::zeros(&[0, 3], DType::F32, &dev)?),
        ("transposed", wq.t()?),
    ];
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    save_safetensors(&path, tensors.iter().map(|(n, t)| (*n, t)), Some(&meta))?;

    // The reference reader agrees on names, dtypes, shapes and bytes.
    let bytes = std::fs::read(&path).expect("read back");
    let st = SafeTensors::deserialize(&bytes).expect("a valid safetensors file");
    let mut names = st.names().into_iter().map(str::to_string).collect::<Vec<_>>();
    names.sort();
    let mut want: Vec<String> = tensors.iter().map(|(n, _)| n.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
    let view = st.tensor(q).expect("query weight");
    assert_eq!((view.dtype(), view.shape()), (Dtype::F32, &[2usize, 3][..]));
    let raw: Vec<f32> = view.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(raw, wq.to_vec::<f32>()?);
    assert_eq!(st.tensor("mask").expect("mask").dtype(), Dtype::BOOL);
    assert_eq!(st.tensor("transposed").expect("t").shape(), &[3, 2]);

    let sd = load_safetensors(&path, &dev)?;
    assert_eq!(sd.len(), tensors.len());
    assert_eq!(sd.metadata(), Some(&meta));
    assert_eq!(sd.source(), path.display().to_string());
    for (name, t) in &tensors {
        let got = sd.get(name)?;
        assert_eq!((got.shape(), got.dtype()), (t.shape(), t.dtype()), "{name}");
        assert_eq!(got.to_host()?, t.to_host()?, "{name}");
        assert_eq!(sd.shape(name), Some(t.shape()));
    }
    Ok(())
}

#[test]
fn half_precision_files_load_as_f32() -> Result<()> {
    let dev = cpu();
    let dir = tmp();
    let path = dir.path().join("half.safetensors");
    let values = [0.1f32, -2.5, 1e-3, 65504.0, 1.2345, -0.0];
    let f16: Vec<u8> = values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    let bf16: Vec<u8> = values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
    let i32s: Vec<u8> = [-3i32, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_reference(
        &path,
        &[
            ("beit.pooler.weight", Dtype::F16, vec![2, 3], f16),
            ("beit.pooler.bias", Dtype::BF16, vec![2], bf16[..4].to_vec()),
            ("counts", Dtype::I32, vec![2], i32s),
            ("odd", Dtype::I16, vec![1], vec![1, 0]),
        ],
    );
    let sd = load_safetensors(&path, &dev)?;
    let w = sd.get("beit.pooler.weight")?;
    assert_eq!(w.dtype(), DType::F32);
    let want: Vec<f32> = values.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
    assert_eq!(w.to_vec::<f32>()?, want);
    let want: Vec<f32> = values[..2].iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect();
    assert_eq!(sd.get("beit.pooler.bias")?.to_vec::<f32>()?, want);
    assert_eq!(sd.get("counts")?.to_vec::<i64>()?, vec![-3, 9]);

    // An unsupported dtype is an error naming the tensor, on access only.
    let err = sd.get("odd").unwrap_err();
    assert_format_error(&err, &path);
    assert!(err.to_string().contains("`odd`") && err.to_string().contains("I16"), "{err}");
    assert!(sd.dtype("odd").is_err());

    // A Hugging Face style prefix is stripped, and f16 fills an f32 layer.
    let sd = sd.map_names(|n| n.starts_with("beit.").then(|| n.to_string()))?.strip_prefix("beit")?;
    let lin = Linear::new(&VarBuilder::new(&dev, DType::F32, 0).pp("pooler"), 3, 2, true)?;
    lin.load_state_dict(&sd, true)?;
    assert_eq!(lin.weight().tensor().to_vec::<f32>()?, w.to_vec::<f32>()?);
    Ok(())
}

#[test]
fn truncated_and_corrupt_files_are_errors_naming_the_file() -> Result<()> {
    let dev = cpu();
    let dir = tmp();
    let good = dir.path().join("good.safetensors");
    let t = Tensor::from_vec(vec![1.0f32; 64], &[8, 8], &dev)?;
    save_safetensors(&good, [("w", &t)], None)?;
    let bytes = std::fs::read(&good).expect("read");

    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("data_cut", bytes[..bytes.len() - 5].to_vec()),
        ("header_cut", bytes[..8 + header_len / 2].to_vec()),
        ("length_only", bytes[..6].to_vec()),
        ("empty", Vec::new()),
        ("extra_bytes", [bytes.clone(), vec![0; 4]].concat()),
        ("not_json", [(16u64).to_le_bytes().to_vec(), b"{not json at all".to_vec()].concat()),
        ("huge_header", [u64::MAX.to_le_bytes().to_vec(), vec![0; 32]].concat()),
        ("bad_offsets", {
            let h = br#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#;
            [(h.len() as u64).to_le_bytes().to_vec(), h.to_vec(), vec![0; 12]].concat()
        }),
    ];
    for (name, content) in cases {
        let path = dir.path().join(format!("{name}.safetensors"));
        std::fs::write(&path, content).expect("write");
        let err = load_safetensors(&path, &dev).expect_err(name);
        assert_format_error(&err, &path);
    }

    let missing = dir.path().join("does_not_exist.safetensors");
    let err = load_safetensors(&missing, &dev).unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("does_not_exist.safetensors"), "{err}");
    Ok(())
}

#[test]
fn missing_tensor_names_file_and_key() -> Result<()> {
    let dev = cpu();
    let dir = tmp();
    let path = dir.path().join("m.safetensors");
    save_safetensors(&path, [("a", &Tensor::ones(&[2], DType::F32, &dev)?)], None)?;
    let mut sd = load_safetensors(&path, &dev)?;
    let err = sd.get("encoder.layer.11.output.dense.weight").unwrap_err();
    assert!(matches!(&err, Error::MissingTensor { name, .. } if name == "encoder.layer.11.output.dense.weight"));
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert!(sd.contains("a") && !sd.is_empty());
    assert_eq!(sd.remove("a")?.to_vec::<f32>()?, vec![1.0, 1.0]);
    assert!(sd.is_empty() && sd.remove("a").is_err());
    Ok(())
}

#[test]
fn renaming_detects_collisions() -> Result<()> {
    let dev = cpu();
    let mut sd = StateDict::new();
    sd.insert("beit.x", Tensor::ones(&[1], DType::F32, &dev)?);
    sd.insert("x", Tensor::zeros(&[1], DType::F32, &dev)?);
    let err = sd.strip_prefix("beit").unwrap_err();
    assert!(err.to_string().contains("beit.x") && err.to_string().contains("`x`"), "{err}");

    let mut sd = StateDict::new();
    sd.insert("embeddings.cls_token", Tensor::ones(&[1], DType::F32, &dev)?);
    sd.insert("classifier.weight", Tensor::ones(&[1], DType::F32, &dev)?);
    let sd = sd.add_prefix("beit")?;
    assert_eq!(sd.names().collect::<Vec<_>>(), ["beit.embeddings.cls_token", "beit.classifier.weight"]);
    let sd = sd.strip_prefix("beit")?;
    assert_eq!(sd.names().collect::<Vec<_>>(), ["embeddings.cls_token", "classifier.weight"]);
    Ok(())
}

#[test]
fn saving_is_atomic() -> Result<()> {
    let dev = cpu();
    let dir = tmp();
    let path = dir.path().join("ckpt.safetensors");
    let v1 = Tensor::from_vec(vec![1.0f32, 2.0], &[2], &dev)?;
    let v2 = Tensor::from_vec(vec![3.0f32, 4.0, 5.0], &[3], &dev)?;
    save_safetensors(&path, [("w", &v1)], None)?;
    let mapped = load_safetensors(&path, &dev)?;

    // Overwriting replaces the file; a reader of the old one still sees the old data.
    save_safetensors(&path, [("w", &v2)], None)?;
    assert_eq!(mapped.get("w")?.to_vec::<f32>()?, vec![1.0, 2.0]);
    assert_eq!(load_safetensors(&path, &dev)?.get("w")?.to_vec::<f32>()?, vec![3.0, 4.0, 5.0]);

    // A failed save leaves the previous file as it was.
    let err = save_safetensors(&path, [("w", &v1), ("w", &v1)], None).unwrap_err();
    assert!(err.to_string().contains("`w`"), "{err}");
    assert_eq!(load_safetensors(&path, &dev)?.get("w")?.to_vec::<f32>()?, vec![3.0, 4.0, 5.0]);
    let nowhere = dir.path().join("no_such_dir").join("x.safetensors");
    let err = save_safetensors(&nowhere, [("w", &v1)], None).unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("no_such_dir"), "{err}");
    let leftovers = std::fs::read_dir(dir.path()).expect("list").count();
    assert_eq!(leftovers, 1, "no temporary files remain");
    Ok(())
}

#[test]
fn module_round_trips_through_a_file() -> Result<()> {
    let dev = cpu();
    let dir = tmp();
    let path = dir.path().join("linear.safetensors");
    let a = Linear::new(&VarBuilder::new(&dev, DType::F32, 1).pp("encoder.layer.0.intermediate.dense"), 4, 6, true)?;
    a.state_dict().save(&path, None)?;
    let b = Linear::new(&VarBuilder::new(&dev, DType::F32, 2).pp("encoder.layer.0.intermediate.dense"), 4, 6, true)?;
    let sd = load_safetensors(&path, &dev)?;
    let mut names: Vec<&str> = sd.names().collect();
    names.sort();
    assert_eq!(names, ["encoder.layer.0.intermediate.dense.bias", "encoder.layer.0.intermediate.dense.weight"]);
    b.load_state_dict(&sd, true)?;
    let x = Tensor::from_vec((0..8).map(|i| i as f32 / 8.0).collect(), &[2, 4], &dev)?;
    assert_eq!(a.forward(&x)?.to_vec::<f32>()?, b.forward(&x)?.to_vec::<f32>()?);

    // Shape mismatch against the file: names the file, the key and both shapes.
    let c = Linear::new(&VarBuilder::new(&dev, DType::F32, 2).pp("encoder.layer.0.intermediate.dense"), 4, 5, true)?;
    let err = c.load_state_dict(&sd, true).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("dense.weight"), "{msg}");
    assert!(msg.contains("[6, 4]") && msg.contains("[5, 4]"), "{msg}");
    Ok(())
}
