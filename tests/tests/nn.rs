//! nn layers: forward passes against naive float64 loops, parameter names, state-dict
//! loading and its errors.

use beit_backend_cpu::cpu;
use beit_engine::io::StateDict;
use beit_engine::nn::{Conv2d, Conv2dConfig, DropPath, Dropout, Init, LayerNorm, Linear, Module, Param, VarBuilder};
use beit_engine::rng::Rng;
use beit_engine::{DType, Error, Result, Tensor};

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "element {i}: got {g}, want {w}");
    }
}

fn random(shape: &[usize], seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..shape.iter().product()).map(|_| rng.uniform_range(-1.0, 1.0)).collect()
}

/// A two-layer model with nested names, as a composite module is written: its parameters
/// are what its constructor created.
struct Block {
    dense: Linear,
    norm: LayerNorm,
    params: Vec<Param>,
}

impl Block {
    fn new(vb: &VarBuilder) -> Result<Self> {
        let mark = vb.mark();
        Ok(Block {
            dense: Linear::new(&vb.pp("output").pp("dense"), 4, 3, true)?,
            norm: LayerNorm::new(&vb.pp("layernorm"), 3, 1e-12)?,
            params: vb.created_since(mark),
        })
    }
}

impl Module for Block {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}

#[test]
fn linear_forward_matches_naive_loops() -> Result<()> {
    let dev = cpu();
    for dtype in [DType::F64, DType::F32] {
        let vb = VarBuilder::new(&dev, dtype, 7);
        let lin = Linear::new(&vb, 5, 3, true)?;
        let (w, b) = (lin.weight().tensor().to_vec_f64()?, lin.bias().unwrap().tensor().to_vec_f64()?);
        let xs = random(&[2, 4, 5], 1);
        let x = Tensor::from_vec(xs.clone(), &[2, 4, 5], &dev)?.to_dtype(dtype)?;
        let y = lin.forward(&x)?;
        assert_eq!(y.shape(), &[2, 4, 3]);
        let mut want = vec![0.0; 2 * 4 * 3];
        for r in 0..8 {
            for o in 0..3 {
                want[r * 3 + o] = b[o] + (0..5).map(|i| xs[r * 5 + i] * w[o * 5 + i]).sum::<f64>();
            }
        }
        let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
        assert_close(&y.to_vec_f64()?, &want, tol);
    }
    Ok(())
}

#[test]
fn linear_without_bias_and_from_params() -> Result<()> {
    let dev = cpu();
    let w = Param::new("w", Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], &dev)?)?;
    let lin = Linear::from_params(w.clone(), None)?;
    let y = lin.forward(&Tensor::from_vec(vec![1.0, 0.0, -1.0], &[1, 3], &dev)?)?;
    assert_eq!(y.to_vec_f64()?, vec![-2.0, -2.0]);
    let bad_bias = Param::new("b", Tensor::zeros(&[3], DType::F64, &dev)?)?;
    let err = Linear::from_params(w, Some(bad_bias)).unwrap_err();
    assert!(matches!(&err, Error::Param { name, .. } if name == "b"), "{err}");
    Ok(())
}

/// A Linear whose loaded weight is pre-packed (`VarBuilder::with_packed_weights`): under
/// no_grad it matches f64 loops over the loaded values, the weight reads back exactly (state
/// dict), and a forward that tracks gradients is an error naming the packed weight.
#[test]
fn packed_linear_weights() -> Result<()> {
    let dev = cpu();
    let lin = Linear::new(&VarBuilder::new(&dev, DType::F32, 7).with_packed_weights(true), 40, 70, true)?;
    let (ws, bs, xs) = (random(&[70, 40], 3), random(&[70], 4), random(&[3, 40], 5));
    let f32s = |v: &[f64], shape: &[usize]| Tensor::from_vec(v.to_vec(), shape, &dev)?.to_dtype(DType::F32);
    let mut sd = StateDict::new();
    sd.insert("weight", f32s(&ws, &[70, 40])?);
    sd.insert("bias", f32s(&bs, &[70])?);
    lin.load_state_dict(&sd, true)?;
    let rounded = f32s(&ws, &[70, 40])?.to_vec_f64()?;
    assert_eq!(lin.state_dict().get("weight")?.to_vec_f64()?, rounded);
    let x = f32s(&xs, &[3, 40])?;
    let y = {
        let _guard = beit_engine::no_grad();
        lin.forward(&x)?.to_vec_f64()?
    };
    let want: Vec<f64> = (0..3 * 70).map(|i| bs[i % 70] + (0..40).map(|p| xs[i / 70 * 40 + p] * rounded[i % 70 * 40 + p]).sum::<f64>()).collect();
    assert_close(&y, &want, 1e-5);
    // Where the CPU has our GEMM (AVX-512 or AVX2 + FMA), the weight is packed.
    if beit_backend_cpu::bf16_linear() != beit_backend_cpu::Bf16Linear::Composed {
        let err = lin.forward(&x).unwrap_err().to_string();
        assert!(err.contains("pre-packed for inference"), "{err}");
    }
    Ok(())
}

#[test]
fn linear_gradients_are_keyed_by_the_param_tensor() -> Result<()> {
    let dev = cpu();
    let lin = Linear::new(&VarBuilder::new(&dev, DType::F64, 3), 3, 2, true)?;
    let xs = random(&[4, 3], 2);
    let x = Tensor::from_vec(xs.clone(), &[4, 3], &dev)?;
    let grads = lin.forward(&x)?.sum_all()?.backward()?;
    let gw = grads.get(&lin.weight().tensor()).expect("weight gradient").to_vec_f64()?;
    let gb = grads.get(&lin.bias().unwrap().tensor()).expect("bias gradient").to_vec_f64()?;
    // d(sum y)/dW[o, i] = Σ_r x[r, i]; d/db[o] = rows.
    let col: Vec<f64> = (0..3).map(|i| (0..4).map(|r| xs[r * 3 + i]).sum()).collect();
    assert_close(&gw, &[col.clone(), col].concat(), 1e-12);
    assert_eq!(gb, vec![4.0, 4.0]);
    Ok(())
}

/// Naive NCHW convolution in f64.
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f64],
    (b, c, h, w): (usize, usize, usize, usize),
    wt: &[f64],
    (o, kh, kw): (usize, usize, usize),
    bias: Option<&[f64]>,
    (sh, sw): (usize, usize),
    (ph, pw): (usize, usize),
) -> (Vec<f64>, usize, usize) {
    let (oh, ow) = ((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1);
    let mut out = vec![0.0; b * o * oh * ow];
    for n in 0..b {
        for oc in 0..o {
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = bias.map_or(0.0, |bb| bb[oc]);
                    for ic in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (iy, ix) =
                                    ((y * sh + ky) as isize - ph as isize, (xo * sw + kx) as isize - pw as isize);
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((n * c + ic) * h + iy as usize) * w + ix as usize];
                                acc += xv * wt[((oc * c + ic) * kh + ky) * kw + kx];
                            }
                        }
                    }
                    out[((n * o + oc) * oh + y) * ow + xo] = acc;
                }
            }
        }
    }
    (out, oh, ow)
}

#[test]
fn conv2d_forward_matches_naive_loops() -> Result<()> {
    let dev = cpu();
    let cases = [
        (Conv2dConfig::new(3).stride(2).padding(1), (2, 3, 7, 9), 4),
        (Conv2dConfig { kernel: (3, 2), stride: (1, 2), padding: (0, 1), bias: false }, (1, 2, 5, 6), 3),
        (Conv2dConfig::new(1), (2, 3, 4, 5), 2),
        (Conv2dConfig::new(4).stride(4), (1, 3, 8, 8), 5),
    ];
    for (cfg, (b, c, h, w), o) in cases {
        for dtype in [DType::F64, DType::F32] {
            let conv = Conv2d::new(&VarBuilder::new(&dev, dtype, 11), c, o, cfg)?;
            assert_eq!(conv.weight().shape(), vec![o, c, cfg.kernel.0, cfg.kernel.1]);
            let xs = random(&[b, c, h, w], 5);
            let x = Tensor::from_vec(xs.clone(), &[b, c, h, w], &dev)?.to_dtype(dtype)?;
            let y = conv.forward(&x)?;
            let wt = conv.weight().tensor().to_vec_f64()?;
            let bias = conv.bias().map(|p| p.tensor().to_vec_f64()).transpose()?;
            let (want, oh, ow) = conv_ref(
                &xs,
                (b, c, h, w),
                &wt,
                (o, cfg.kernel.0, cfg.kernel.1),
                bias.as_deref(),
                cfg.stride,
                cfg.padding,
            );
            assert_eq!(y.shape(), &[b, o, oh, ow], "{cfg:?}");
            let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert_close(&y.to_vec_f64()?, &want, tol);
        }
    }
    Ok(())
}

#[test]
fn conv2d_rejects_bad_geometry_and_inputs() -> Result<()> {
    let dev = cpu();
    let vb = VarBuilder::new(&dev, DType::F32, 0);
    assert!(Conv2d::new(&vb, 3, 4, Conv2dConfig::new(3).stride(0)).is_err());
    let conv = Conv2d::new(&vb, 3, 4, Conv2dConfig::new(3))?;
    // Wrong channel count and wrong rank are errors, not panics.
    assert!(conv.forward(&Tensor::zeros(&[1, 2, 5, 5], DType::F32, &dev)?).is_err());
    assert!(conv.forward(&Tensor::zeros(&[2, 5, 5], DType::F32, &dev)?).is_err());
    Ok(())
}

#[test]
fn layer_norm_matches_naive_loops() -> Result<()> {
    let dev = cpu();
    let ln = LayerNorm::new(&VarBuilder::new(&dev, DType::F64, 0), 6, 1e-5)?;
    ln.weight().set(Tensor::from_vec(random(&[6], 8), &[6], &dev)?)?;
    ln.bias().set(Tensor::from_vec(random(&[6], 9), &[6], &dev)?)?;
    let (g, b) = (ln.weight().tensor().to_vec_f64()?, ln.bias().tensor().to_vec_f64()?);
    let xs = random(&[3, 6], 10);
    let y = ln.forward(&Tensor::from_vec(xs.clone(), &[3, 6], &dev)?)?.to_vec_f64()?;
    let mut want = Vec::new();
    for row in xs.chunks(6) {
        let mean = row.iter().sum::<f64>() / 6.0;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 6.0;
        want.extend(row.iter().enumerate().map(|(i, v)| (v - mean) / (var + 1e-5).sqrt() * g[i] + b[i]));
    }
    assert_close(&y, &want, 1e-10);
    assert!(LayerNorm::new(&VarBuilder::new(&dev, DType::F64, 0), 6, -1.0).is_err());
    Ok(())
}

#[test]
fn dropout_and_drop_path() -> Result<()> {
    let dev = cpu();
    let x = Tensor::ones(&[8, 64], DType::F32, &dev)?;
    let d = Dropout::new(0.25)?;
    assert!(d.forward(&x, false, 1)?.same_storage(&x), "eval is the identity");
    let y = d.forward(&x, true, 1)?.to_vec_f64()?;
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    let dropped = y.iter().filter(|&&v| v == 0.0).count();
    assert!((64..=192).contains(&dropped), "dropped {dropped} of 512");
    assert_eq!(y, d.forward(&x, true, 1)?.to_vec_f64()?, "same seed, same mask");

    let dp = DropPath::new(0.5)?;
    let y = dp.forward(&x, true, 3, 0)?.to_vec_f64()?;
    for row in y.chunks(64) {
        assert!(row.iter().all(|&v| v == row[0]) && (row[0] == 0.0 || row[0] == 2.0), "whole samples dropped");
    }
    assert_eq!(dp.forward(&x, false, 3, 0)?.to_vec_f64()?, vec![1.0; 512]);
    // A shard (samples 5..8 of the batch) drops what the whole batch drops there.
    let shard = dp.forward(&x.narrow(0, 5, 3)?, true, 3, 5)?.to_vec_f64()?;
    assert_eq!(shard, y[5 * 64..].to_vec(), "a shard's draws are the batch's");
    assert!(Dropout::new(1.0).is_err() && DropPath::new(-0.1).is_err() && Dropout::new(f64::NAN).is_err());
    Ok(())
}

#[test]
fn initialisers_are_seeded_and_bounded() -> Result<()> {
    let dev = cpu();
    let mut rng = Rng::new(1);
    let t = Init::trunc_normal(0.02).tensor(&[1000], DType::F32, &dev, &mut rng)?.to_vec_f64()?;
    let std = (t.iter().map(|v| v * v).sum::<f64>() / 1000.0).sqrt();
    assert!((0.017..0.023).contains(&std), "std {std}");
    let narrow = Init::TruncNormal { std: 1.0, a: -0.5, b: 0.5 }.tensor(&[1000], DType::F64, &dev, &mut rng)?;
    assert!(narrow.to_vec_f64()?.iter().all(|v| v.abs() <= 0.5));
    let u = Init::pytorch_default(16).tensor(&[1000], DType::F64, &dev, &mut rng)?.to_vec_f64()?;
    assert!(u.iter().all(|v| v.abs() <= 0.25) && u.iter().any(|v| v.abs() > 0.2));
    assert!(Init::TruncNormal { std: 1.0, a: 1.0, b: 2.0 }.tensor(&[2], DType::F32, &dev, &mut rng).is_err());
    // One seed, one model.
    let a = Linear::new(&VarBuilder::new(&dev, DType::F32, 5), 4, 4, true)?;
    let b = Linear::new(&VarBuilder::new(&dev, DType::F32, 5), 4, 4, true)?;
    assert_eq!(a.weight().tensor().to_vec_f64()?, b.weight().tensor().to_vec_f64()?);
    Ok(())
}

#[test]
fn names_follow_the_builder_path() -> Result<()> {
    let dev = cpu();
    let vb = VarBuilder::new(&dev, DType::F32, 0);
    let block = Block::new(&vb.pp("encoder").pp("layer.0"))?;
    let names: Vec<String> = block.params().iter().map(|p| p.name().to_string()).collect();
    assert_eq!(
        names,
        [
            "encoder.layer.0.output.dense.weight",
            "encoder.layer.0.output.dense.bias",
            "encoder.layer.0.layernorm.weight",
            "encoder.layer.0.layernorm.bias",
        ]
    );
    let sd = block.state_dict();
    assert_eq!(sd.names().collect::<Vec<_>>(), names);
    assert_eq!(block.num_params(), 4 * 3 + 3 + 3 + 3);
    let buf = vb.buffer("relative_position_index", &Tensor::arange(5, &dev)?)?;
    assert!(!buf.is_trainable() && buf.name() == "relative_position_index" && buf.dtype() == DType::I64);
    Ok(())
}

#[test]
fn load_state_dict_copies_values_and_converts_dtypes() -> Result<()> {
    let dev = cpu();
    let src = Block::new(&VarBuilder::new(&dev, DType::F64, 1).pp("enc"))?;
    let dst = Block::new(&VarBuilder::new(&dev, DType::F32, 2).pp("enc"))?;
    let report = dst.load_state_dict(&src.state_dict(), true)?;
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    for (s, d) in src.params().iter().zip(dst.params()) {
        assert_eq!(d.dtype(), DType::F32, "{} keeps its dtype", d.name());
        assert!(d.tensor().is_leaf_param(), "{} is trainable again", d.name());
        assert_close(&d.tensor().to_vec_f64()?, &s.tensor().to_vec_f64()?, 1e-6);
    }
    let x = Tensor::from_vec(random(&[2, 4], 3), &[2, 4], &dev)?;
    let ys = src.norm.forward(&src.dense.forward(&x)?)?.to_vec_f64()?;
    let yd = dst.norm.forward(&dst.dense.forward(&x.to_dtype(DType::F32)?)?)?.to_vec_f64()?;
    assert_close(&yd, &ys, 1e-4);
    Ok(())
}

#[test]
fn load_state_dict_errors_name_the_culprit_and_change_nothing() -> Result<()> {
    let dev = cpu();
    let model = Block::new(&VarBuilder::new(&dev, DType::F32, 1))?;
    let before: Vec<Vec<f64>> = model.params().iter().map(|p| p.tensor().to_vec_f64()).collect::<Result<_>>()?;
    let full = || model.state_dict().tensors();

    // Missing key: strict fails naming it; non-strict reports it.
    let mut sd = StateDict::new();
    for (n, t) in full()? {
        if n != "layernorm.bias" {
            sd.insert(n, t.affine(2.0, 1.0)?);
        }
    }
    let err = model.load_state_dict(&sd, true).unwrap_err();
    assert!(matches!(&err, Error::StateDictMismatch { missing, unexpected, .. } if missing == &["layernorm.bias"] && unexpected.is_empty()), "{err}");
    assert!(err.to_string().contains("missing 1 tensor: `layernorm.bias`"), "{err}");
    let unchanged: Vec<Vec<f64>> = model.params().iter().map(|p| p.tensor().to_vec_f64()).collect::<Result<_>>()?;
    assert_eq!(unchanged, before, "a failed load changes nothing");
    let report = model.load_state_dict(&sd, false)?;
    assert_eq!(report.missing, ["layernorm.bias"]);
    assert_close(
        &model.params()[0].tensor().to_vec_f64()?,
        &before[0].iter().map(|v| 2.0 * v + 1.0).collect::<Vec<_>>(),
        1e-6,
    );

    // Shape mismatch: always an error naming the key and both shapes.
    let mut sd = StateDict::new();
    for (n, t) in full()? {
        sd.insert(n, t);
    }
    sd.insert("output.dense.weight", Tensor::zeros(&[4, 3], DType::F32, &dev)?);
    let err = model.load_state_dict(&sd, false).unwrap_err();
    match &err {
        Error::TensorShape { name, got, expected, .. } => {
            assert_eq!(
                (name.as_str(), got.as_slice(), expected.as_slice()),
                ("output.dense.weight", &[4, 3][..], &[3, 4][..])
            );
        }
        _ => panic!("unexpected error {err}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("output.dense.weight") && msg.contains("[4, 3]") && msg.contains("[3, 4]"), "{msg}");

    // Unexpected key: strict error naming it; non-strict report.
    let mut sd = model.state_dict();
    sd.insert("lm_head.weight", Tensor::zeros(&[2], DType::F32, &dev)?);
    let err = model.load_state_dict(&sd, true).unwrap_err();
    assert!(err.to_string().contains("lm_head.weight"), "{err}");
    assert_eq!(model.load_state_dict(&sd, false)?.unexpected, ["lm_head.weight"]);

    // An integer tensor cannot fill a float parameter.
    let mut sd = model.state_dict();
    sd.insert("layernorm.bias", Tensor::from_vec(vec![1i64, 2, 3], &[3], &dev)?);
    let err = model.load_state_dict(&sd, true).unwrap_err();
    assert!(err.to_string().contains("layernorm.bias") && err.to_string().contains("i64"), "{err}");
    Ok(())
}

#[test]
fn param_set_checks_shape_and_dtype() -> Result<()> {
    let dev = cpu();
    let p = Param::new("head.weight", Tensor::zeros(&[2, 3], DType::F32, &dev)?)?;
    let err = p.set(Tensor::zeros(&[3, 2], DType::F32, &dev)?).unwrap_err();
    assert!(
        matches!(&err, Error::Param { name, .. } if name == "head.weight") && err.to_string().contains("[3, 2]"),
        "{err}"
    );
    let err = p.set(Tensor::zeros(&[2, 3], DType::F64, &dev)?).unwrap_err();
    assert!(err.to_string().contains("head.weight") && err.to_string().contains("f64"), "{err}");
    assert!(Param::new("ids", Tensor::arange(3, &dev)?).is_err(), "integer tensors cannot be trained");
    let old = p.tensor();
    p.set(Tensor::ones(&[2, 3], DType::F32, &dev)?)?;
    assert_eq!(p.tensor().to_vec_f64()?, vec![1.0; 6]);
    assert_eq!(old.to_vec_f64()?, vec![0.0; 6], "old handles keep the old value");
    assert!(p.tensor().is_leaf_param());
    Ok(())
}
