//! CPU against CUDA on the same random inputs (built with `--features cuda` or `cuda-sim`): op outputs and
//! input gradients at sizes larger than the conformance cases (so the GPU's multi-block,
//! column and split paths run), and a small BEiT MIM model trained for three steps with
//! dropout/drop path (identical counter-based masks on both devices), whose per-step losses
//! and first-step gradients must agree within 1e-4 (relative to each tensor's largest
//! magnitude, TF32 off), and whose weights after three AdamW steps must agree to 1% of the
//! largest update: Adam divides by √v, which turns f32 rounding noise in near-zero gradient
//! entries into visible update differences. Without a usable GPU every test prints why and
//! passes; a `cuda-sim` build runs them on the simulated device.
#![cfg(any(feature = "cuda", feature = "cuda-sim"))]

use beit::engine::nn::Module;
use beit::engine::optim::{AdamW, AdamWConfig, ParamGroup};
use beit::engine::rng::Rng;
use beit::engine::{DType, Device, Result, Tensor};
use beit::masker::{Masker, RandomMasker};
use beit::{Beit, BeitConfig, Mode};

const TOL: f64 = 1e-4;

use beit_conformance::backends::cuda as gpu;

/// Error unless `gpu` is within TOL·max|cpu| of `cpu` everywhere.
fn agree(what: &str, cpu: &Tensor, gpu: &Tensor) -> Result<()> {
    let scale = cpu.to_vec_f64()?.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    within(what, cpu, gpu, TOL * scale)
}

/// Error unless `gpu` is within `tol` of `cpu` everywhere (a NaN never is).
fn within(what: &str, cpu: &Tensor, gpu: &Tensor, tol: f64) -> Result<()> {
    assert_eq!(cpu.shape(), gpu.shape(), "{what}: shapes");
    let (a, b) = (cpu.to_vec_f64()?, gpu.to_vec_f64()?);
    let scale = tol.max(1e-30);
    let (i, diff) = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).enumerate().fold((0, 0.0), |m, (i, d)| {
        if d > m.1 || d.is_nan() {
            (i, d)
        } else {
            m
        }
    });
    assert!(diff <= scale, "{what}: element {i}: cpu {} vs cuda {} (tolerance {scale:.3e})", a[i], b[i]);
    Ok(())
}

/// `f` on both devices: outputs agree, and so do the gradients of Σ out·w (w random) w.r.t.
/// every float input.
fn op(test: &str, cuda: &Device, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) -> Result<()> {
    let cpu = beit_backend_cpu::cpu();
    let run = |dev: &Device| -> Result<(Tensor, Vec<Option<Tensor>>)> {
        let xs: Vec<Tensor> = inputs
            .iter()
            .map(|x| {
                let x = x.to_device(dev)?;
                if x.dtype().is_float() {
                    x.requires_grad(true)
                } else {
                    Ok(x)
                }
            })
            .collect::<Result<_>>()?;
        let out = f(&xs)?;
        if !out.dtype().is_float() || !out.tracks_grad() {
            return Ok((out, vec![]));
        }
        let w = Tensor::randn(out.shape(), 1.0, DType::F32, &mut Rng::new(99), &beit_backend_cpu::cpu())?.to_device(dev)?;
        let grads = out.mul(&w)?.sum_all()?.backward()?;
        Ok((out, xs.iter().map(|x| grads.get(x).cloned()).collect()))
    };
    let (want, want_g) = run(&cpu)?;
    let (got, got_g) = run(cuda)?;
    agree(&format!("{test} output"), &want, &got)?;
    for (i, (w, g)) in want_g.iter().zip(&got_g).enumerate() {
        if let (Some(w), Some(g)) = (w, g) {
            agree(&format!("{test} gradient of input {i}"), w, g)?;
        }
    }
    Ok(())
}

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 1.0, DType::F32, &mut Rng::new(seed), &beit_backend_cpu::cpu()).expect("randn")
}

fn ids(n: usize, below: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let v: Vec<i64> = (0..n).map(|_| rng.below(below) as i64).collect();
    Tensor::from_vec(v, &[n], &beit_backend_cpu::cpu()).expect("ids")
}

#[test]
fn large_ops_agree_with_the_cpu() -> Result<()> {
    let Some(dev) = gpu("large_ops_agree_with_the_cpu") else { return Ok(()) };
    // Linear layer with a transposed weight, and batched attention scores.
    op("linear", &dev, &[randn(&[2, 197, 768], 1), randn(&[300, 768], 2)], |x| x[0].matmul(&x[1].t()?))?;
    op("scores", &dev, &[randn(&[4, 12, 197, 64], 3), randn(&[4, 12, 197, 64], 4)], |x| {
        x[0].matmul(&x[1].transpose(2, 3)?)
    })?;
    op("softmax", &dev, &[randn(&[64, 8192], 5)], |x| x[0].softmax_last())?;
    op("layer_norm", &dev, &[randn(&[1000, 768], 6), randn(&[768], 7), randn(&[768], 8)], |x| {
        x[0].layer_norm(Some(&x[1]), Some(&x[2]), 1e-12)
    })?;
    op("gelu", &dev, &[randn(&[1000, 3072], 9)], |x| x[0].gelu())?;
    op("bias_grad_sum", &dev, &[randn(&[12_608, 96], 10)], |x| x[0].sum(&[0], false))?;
    op("sum_all", &dev, &[randn(&[3_000_000], 11)], |x| x[0].sum_all())?;
    op("max_rows", &dev, &[randn(&[700, 1000], 12)], |x| x[0].max(&[1], true))?;
    op("cross_entropy", &dev, &[randn(&[300, 8192], 13), ids(300, 8192, 14)], |x| x[0].cross_entropy(&x[1], 0.1))?;
    op("relpos_gather", &dev, &[randn(&[732, 12], 15), ids(38_809, 732, 16)], |x| x[0].index_select(0, &x[1]))?;
    op("patch_embed", &dev, &[randn(&[4, 3, 64, 64], 17), randn(&[96, 3, 16, 16], 18)], |x| {
        x[0].conv2d(&x[1], None, (16, 16), (0, 0))
    })?;
    op("topk", &dev, &[randn(&[50, 1000], 19)], |x| Ok(x[0].detach().topk(5)?.0))?;
    op("dropout", &dev, &[randn(&[100_000], 20)], |x| x[0].dropout(0.3, 1234))?;
    Ok(())
}

#[test]
fn a_small_beit_trains_the_same_on_both_devices() -> Result<()> {
    let Some(dev) = gpu("a_small_beit_trains_the_same_on_both_devices") else { return Ok(()) };
    let config = BeitConfig {
        hidden_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 128,
        image_size: 32,
        patch_size: 8,
        vocab_size: 128,
        drop_path_rate: 0.1,
        hidden_dropout_prob: 0.1,
        ..BeitConfig::base(32)
    };
    /// One parameter of a run: its name, gradient at step 1, and value before and after.
    struct Trained {
        name: String,
        grad: Tensor,
        before: Tensor,
        after: Tensor,
    }
    let train = |dev: &Device| -> Result<(Vec<f64>, Vec<Trained>)> {
        let model = Beit::new(&config, dev, 3)?;
        let before: Vec<Tensor> = model.params().iter().map(|p| p.tensor().detach()).collect();
        let Beit::MaskedImageModeling(mim) = &model else { panic!("base() is a MIM configuration") };
        let mut opt = AdamW::new(vec![ParamGroup::new(model.trainable_params())], AdamWConfig::default())?;
        let mut rng = Rng::new(5);
        let pixels = Tensor::randn(&[4, 3, 32, 32], 1.0, DType::F32, &mut rng, dev)?;
        let mask = RandomMasker::new((4, 4), 6)?.sample_batch(4, &mut rng, dev)?;
        let labels: Vec<i64> = (0..24).map(|_| rng.below(128) as i64).collect();
        let labels = Tensor::from_vec(labels, &[24], dev)?;
        let (mut losses, mut first) = (vec![], vec![]);
        for step in 1..=3 {
            let loss = mim.loss(&pixels, &mask, &labels, Mode::train(step))?;
            losses.push(loss.to_scalar()?);
            let grads = loss.backward()?;
            if step == 1 {
                first = model.params().iter().map(|p| grads.get(&p.tensor()).cloned().expect("every parameter has a gradient")).collect();
            }
            opt.step(&grads, 1e-3)?;
        }
        let params = model.params().into_iter().zip(first.into_iter().zip(before));
        let trained = params.map(|(p, (grad, before))| Trained { name: p.name().to_string(), grad, before, after: p.tensor() });
        Ok((losses, trained.collect()))
    };
    let (want, want_p) = train(&beit_backend_cpu::cpu())?;
    let (got, got_p) = train(&dev)?;
    for (step, (w, g)) in want.iter().zip(&got).enumerate() {
        assert!((w - g).abs() <= TOL * w.abs(), "step {}: loss cpu {w} vs cuda {g}", step + 1);
    }
    for (w, g) in want_p.iter().zip(&got_p) {
        agree(&format!("gradient of {} at step 1", w.name), &w.grad, &g.grad)?;
        let (after, start) = (w.after.to_vec_f64()?, w.before.to_vec_f64()?);
        let update = after.iter().zip(&start).fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        within(&format!("{} after 3 steps", w.name), &w.after, &g.after, 1e-2 * update)?;
    }
    Ok(())
}

/// The Hugging Face parity fixtures (`tests/fixtures/make_beit_fixtures.py`) on the device:
/// the outputs of each tiny checkpoint, with and without its mask, within 1e-4 (absolute,
/// as on the CPU) of PyTorch's float64 outputs.
#[test]
fn parity_fixtures_forward_like_pytorch() -> Result<()> {
    use beit::engine::io::load_safetensors;
    let Some(dev) = gpu("parity_fixtures_forward_like_pytorch") else { return Ok(()) };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/beit");
    /// A fixture: its folder, the resolution to load it at, and its runs (masked or not, and
    /// the prefix of that run's expected outputs).
    type Fixture = (&'static str, Option<usize>, &'static [(bool, &'static str)]);
    let cases: [Fixture; 6] = [
        ("mim_shared_relpos", None, &[(true, "")]),
        ("cls_per_layer_relpos_meanpool", None, &[(false, "")]),
        ("cls_abs_pos_no_meanpool", None, &[(false, ""), (true, "masked.")]),
        ("model_no_layerscale_mask", None, &[(true, "")]),
        ("cls_both_relpos_384", None, &[(false, ""), (true, "masked.")]),
        ("cls_interpolate_32_to_48", Some(48), &[(false, ""), (true, "masked.")]),
    ];
    for (case, at, runs) in cases {
        let dir = root.join(case);
        let (model, _) = Beit::from_pretrained_with(&dir, &dev, beit::LoadOptions { image_size: at, ..Default::default() })?;
        let inputs = load_safetensors(dir.join("inputs.safetensors"), &dev)?;
        let expected = load_safetensors(dir.join("expected.safetensors"), &beit_backend_cpu::cpu())?;
        for &(masked, prefix) in runs {
            let pixels = inputs.get("pixel_values")?;
            let mask = if masked { Some(inputs.get("bool_masked_pos")?) } else { None };
            let (logits, o) = model.forward(&pixels, mask.as_ref(), Mode::eval())?;
            for (name, out) in [("last_hidden_state", Some(o.last_hidden_state)), ("pooler_output", o.pooler_output), ("logits", logits)] {
                let key = format!("{prefix}{name}");
                assert_eq!(out.is_some(), expected.contains(&key), "{case}: {key} presence");
                if let Some(out) = out {
                    within(&format!("{case}: {key}"), &expected.get(&key)?, &out.to_device(&beit_backend_cpu::cpu())?, 1e-4)?;
                }
            }
        }
    }
    Ok(())
}
