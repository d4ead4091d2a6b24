//! AdamW against a float64 transcription of PyTorch's formula, schedules, gradient clipping,
//! optimiser checkpoints and a small training loop.

use beit_backend_cpu::cpu;
use beit_engine::io::{load_safetensors, StateDict};
use beit_engine::nn::{Linear, Module, Param, VarBuilder};
use beit_engine::optim::{clip_factor, clip_grad_norm, grad_norm, AdamW, AdamWConfig, ParamGroup, Schedule};
use beit_engine::rng::Rng;
use beit_engine::{DType, Device, Error, Gradients, Result, Tensor};

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "element {i}: got {g}, want {w}");
    }
}

fn param(name: &str, values: &[f64], shape: &[usize], dev: &Device) -> Result<Param> {
    Param::new(name, Tensor::from_slice(values, shape, dev)?)
}

/// PyTorch's `torch.optim.AdamW` for one parameter, in plain f64.
struct RefAdamW {
    p: Vec<f64>,
    m: Vec<f64>,
    v: Vec<f64>,
    step: i32,
}

impl RefAdamW {
    fn new(p: &[f64]) -> Self {
        RefAdamW { p: p.to_vec(), m: vec![0.0; p.len()], v: vec![0.0; p.len()], step: 0 }
    }

    fn step(&mut self, g: &[f64], lr: f64, wd: f64, c: &AdamWConfig) {
        self.step += 1;
        let bc1 = 1.0 - c.beta1.powi(self.step);
        let bc2 = 1.0 - c.beta2.powi(self.step);
        for (i, &g) in g.iter().enumerate() {
            self.p[i] *= 1.0 - lr * wd;
            self.m[i] = c.beta1 * self.m[i] + (1.0 - c.beta1) * g;
            self.v[i] = c.beta2 * self.v[i] + (1.0 - c.beta2) * g * g;
            let denom = self.v[i].sqrt() / bc2.sqrt() + c.eps;
            self.p[i] -= lr / bc1 * self.m[i] / denom;
        }
    }
}

/// loss = Σ k·a² + Σ kb·b (+ Σ c² on even steps): gradients 2k·a, kb, 2c.
fn loss_grads(a: &Param, b: &Param, c: &Param, with_c: bool, dev: &Device) -> Result<Gradients> {
    let k = Tensor::from_vec(vec![1.0, -0.5, 2.0, 0.25, 3.0, -1.0], &[3, 2], dev)?;
    let kb = Tensor::from_vec(vec![0.3, -0.7, 1e-3, 5.0], &[4], dev)?;
    let mut loss = a.tensor().sqr()?.mul(&k)?.sum_all()?.add(&b.tensor().mul(&kb)?.sum_all()?)?;
    if with_c {
        loss = loss.add(&c.tensor().sqr()?.sum_all()?)?;
    }
    loss.backward()
}

#[test]
fn adamw_matches_pytorch_formula_with_two_groups() -> Result<()> {
    let dev = cpu();
    let a0 = [0.5, -1.0, 0.25, 2.0, -0.75, 1.5];
    let (b0, c0) = ([1.0, 2.0, -3.0, 0.1], [0.3, -0.4]);
    let (a, b, c) = (param("a", &a0, &[3, 2], &dev)?, param("b", &b0, &[4], &dev)?, param("c", &c0, &[2], &dev)?);
    let config = AdamWConfig { beta1: 0.8, beta2: 0.99, eps: 1e-6, weight_decay: 0.1 };
    let groups = vec![
        ParamGroup::new(vec![a.clone(), c.clone()]),
        ParamGroup::new(vec![b.clone()]).lr_scale(0.5).weight_decay(0.0),
    ];
    let mut opt = AdamW::new(groups, config)?;
    let (mut ra, mut rb, mut rc) = (RefAdamW::new(&a0), RefAdamW::new(&b0), RefAdamW::new(&c0));
    let k = [1.0, -0.5, 2.0, 0.25, 3.0, -1.0];
    let kb = [0.3, -0.7, 1e-3, 5.0];
    for t in 0..6 {
        let lr = 0.05 * (1.0 + t as f64);
        let with_c = t % 2 == 0;
        let grads = loss_grads(&a, &b, &c, with_c, &dev)?;
        opt.step(&grads, lr)?;
        let ga: Vec<f64> = ra.p.iter().zip(k).map(|(p, k)| 2.0 * k * p).collect();
        ra.step(&ga, lr, 0.1, &config);
        rb.step(&kb, lr * 0.5, 0.0, &config);
        if with_c {
            let gc: Vec<f64> = rc.p.iter().map(|p| 2.0 * p).collect();
            rc.step(&gc, lr, 0.1, &config);
        }
        assert_close(&a.tensor().to_vec_f64()?, &ra.p, 1e-12);
        assert_close(&b.tensor().to_vec_f64()?, &rb.p, 1e-12);
        assert_close(&c.tensor().to_vec_f64()?, &rc.p, 1e-12);
    }
    // c had gradients on 3 of 6 steps: its own step count drives its bias correction.
    let sd = opt.state_dict()?;
    assert_eq!(sd.get("optim.c.step")?.to_scalar()?, 3.0);
    assert_eq!(sd.get("optim.a.step")?.to_scalar()?, 6.0);
    assert_close(&sd.get("optim.a.exp_avg_sq")?.to_vec_f64()?, &ra.v, 1e-12);
    Ok(())
}

#[test]
fn adamw_f32_tracks_the_f64_reference() -> Result<()> {
    let dev = cpu();
    let p0 = [0.5, -1.0, 0.25, 2.0];
    let p = Param::new("w", Tensor::from_slice(&p0, &[4], &dev)?.to_dtype(DType::F32)?)?;
    let config = AdamWConfig::default();
    let mut opt = AdamW::new(vec![ParamGroup::new(vec![p.clone()])], config)?;
    let mut r = RefAdamW::new(&p0);
    for _ in 0..5 {
        let grads = p.tensor().sqr()?.sum_all()?.backward()?;
        opt.step(&grads, 1e-2)?;
        let g: Vec<f64> = r.p.iter().map(|v| 2.0 * v).collect();
        r.step(&g, 1e-2, config.weight_decay, &config);
    }
    assert_eq!(p.dtype(), DType::F32);
    assert_close(&p.tensor().to_vec_f64()?, &r.p, 1e-5);
    Ok(())
}

#[test]
fn adamw_updates_in_place_unless_the_buffer_is_shared() -> Result<()> {
    let dev = cpu();
    let p = param("w", &[1.0, 2.0], &[2], &dev)?;
    let mut opt = AdamW::new(vec![ParamGroup::new(vec![p.clone()])], AdamWConfig::default())?;
    let id = p.tensor().id();
    let grads = p.tensor().sum_all()?.backward()?;
    opt.step(&grads, 0.1)?;
    assert_eq!(p.tensor().id(), id, "a sole buffer is updated in place");
    assert!(p.tensor().is_leaf_param());

    // A snapshot shares the buffer: the step must copy, leaving the snapshot intact.
    let snapshot = p.tensor().detach();
    let before = snapshot.to_vec_f64()?;
    let grads = p.tensor().sum_all()?.backward()?;
    opt.step(&grads, 0.1)?;
    assert_eq!(snapshot.to_vec_f64()?, before);
    assert_ne!(p.tensor().to_vec_f64()?, before);
    assert!(p.tensor().is_leaf_param(), "the copy is a requires-grad leaf again");
    // The new leaf still trains.
    let grads = p.tensor().sum_all()?.backward()?;
    assert!(grads.get(&p.tensor()).is_some());
    Ok(())
}

#[test]
fn adamw_rejects_bad_setups_and_gradients() -> Result<()> {
    let dev = cpu();
    let p = param("enc.w", &[1.0, 2.0], &[2], &dev)?;
    let q = param("enc.b", &[3.0], &[1], &dev)?;
    let buf = Param::buffer("enc.index", Tensor::arange(3, &dev)?);
    let err = AdamW::new(vec![ParamGroup::new(vec![p.clone(), buf])], AdamWConfig::default()).expect_err("buffer");
    assert!(matches!(&err, Error::Param { name, .. } if name == "enc.index"), "{err}");
    let groups = vec![ParamGroup::new(vec![p.clone()]), ParamGroup::new(vec![p.clone()])];
    let err = AdamW::new(groups, AdamWConfig::default()).expect_err("duplicate");
    assert!(err.to_string().contains("enc.w"), "{err}");
    let bad = AdamWConfig { beta2: 1.0, ..AdamWConfig::default() };
    assert!(AdamW::new(vec![ParamGroup::new(vec![p.clone()])], bad).is_err());

    let mut opt = AdamW::new(vec![ParamGroup::new(vec![p.clone(), q.clone()])], AdamWConfig::default())?;
    let mut grads = Gradients::default();
    grads.insert(&p.tensor(), Tensor::ones(&[2], DType::F64, &dev)?);
    grads.insert(&q.tensor(), Tensor::ones(&[2], DType::F64, &dev)?);
    let err = opt.step(&grads, 0.1).unwrap_err();
    assert!(matches!(&err, Error::Param { name, .. } if name == "enc.b") && err.to_string().contains("[2]"), "{err}");
    assert_eq!(p.tensor().to_vec_f64()?, vec![1.0, 2.0], "nothing changes when one gradient is bad");
    grads.insert(&q.tensor(), Tensor::ones(&[1], DType::F32, &dev)?);
    assert!(opt.step(&grads, 0.1).unwrap_err().to_string().contains("f32"));
    grads.insert(&q.tensor(), Tensor::ones(&[1], DType::F64, &dev)?);
    assert!(opt.step(&grads, f64::NAN).is_err());
    opt.step(&grads, 0.1)?;
    Ok(())
}

#[test]
fn optimiser_state_round_trips_through_a_checkpoint() -> Result<()> {
    let dev = cpu();
    let make = |seed| -> Result<(Linear, AdamW)> {
        let lin = Linear::new(&VarBuilder::new(&dev, DType::F64, seed).pp("head"), 3, 2, true)?;
        let groups = vec![
            ParamGroup::new(vec![lin.weight().clone()]),
            ParamGroup::new(vec![lin.bias().unwrap().clone()]).weight_decay(0.0).lr_scale(0.3),
        ];
        let opt = AdamW::new(groups, AdamWConfig::default())?;
        Ok((lin, opt))
    };
    let x = Tensor::from_vec(vec![0.1, -0.2, 0.3, 0.4, 0.5, -0.6], &[2, 3], &dev)?;
    let step = |lin: &Linear, opt: &mut AdamW| -> Result<()> {
        let grads = lin.forward(&x)?.sqr()?.sum_all()?.backward()?;
        opt.step(&grads, 0.01)
    };
    let (a, mut opt_a) = make(1)?;
    for _ in 0..3 {
        step(&a, &mut opt_a)?;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ckpt.safetensors");
    let mut sd = a.state_dict();
    for (n, t) in opt_a.state_dict()?.tensors()? {
        sd.insert(n, t);
    }
    sd.save(&path, None)?;

    let (b, mut opt_b) = make(2)?;
    let loaded = load_safetensors(&path, &dev)?;
    assert_eq!(b.load_state_dict(&loaded, false)?.unexpected.len(), 6, "optim.* entries are not model weights");
    opt_b.load_state_dict(&loaded)?;
    step(&a, &mut opt_a)?;
    step(&b, &mut opt_b)?;
    for (pa, pb) in a.params().iter().zip(b.params()) {
        assert_eq!(pa.tensor().to_vec_f64()?, pb.tensor().to_vec_f64()?, "{}", pa.name());
    }

    // Errors name the entry; a failed load keeps the state.
    let mut bad = StateDict::new();
    bad.insert("optim.head.gone.exp_avg", Tensor::zeros(&[2], DType::F64, &dev)?);
    assert!(opt_b.load_state_dict(&bad).unwrap_err().to_string().contains("optim.head.gone.exp_avg"));
    let mut bad = StateDict::new();
    bad.insert("optim.head.bias.exp_avg", Tensor::zeros(&[3], DType::F64, &dev)?);
    bad.insert("optim.head.bias.exp_avg_sq", Tensor::zeros(&[2], DType::F64, &dev)?);
    bad.insert("optim.head.bias.step", Tensor::from_vec(vec![4i64], &[], &dev)?);
    let err = opt_b.load_state_dict(&bad).unwrap_err();
    assert!(matches!(&err, Error::TensorShape { name, .. } if name == "optim.head.bias.exp_avg"), "{err}");
    let mut bad = StateDict::new();
    bad.insert("optim.head.bias.exp_avg", Tensor::zeros(&[2], DType::F64, &dev)?);
    let err = opt_b.load_state_dict(&bad).unwrap_err();
    assert!(matches!(&err, Error::MissingTensor { name, .. } if name == "optim.head.bias.exp_avg_sq"), "{err}");
    assert_eq!(opt_b.state_dict()?.len(), 6);
    Ok(())
}

/// BEiT's `utils.cosine_scheduler`, transcribed: the whole array, then indexed.
fn beit_cosine(base: f64, fin: f64, total: usize, warmup: usize, start: f64) -> Vec<f64> {
    let mut s: Vec<f64> = (0..warmup)
        .map(|i| if warmup == 1 { start } else { start + (base - start) * i as f64 / (warmup - 1) as f64 })
        .collect();
    let n = total - warmup;
    s.extend((0..n).map(|i| fin + 0.5 * (base - fin) * (1.0 + (std::f64::consts::PI * i as f64 / n as f64).cos())));
    s
}

#[test]
fn warmup_cosine_schedule_matches_beit() -> Result<()> {
    let s =
        Schedule::WarmupCosine { base: 1e-3, final_value: 1e-6, warmup_start: 0.0, warmup_steps: 10, total_steps: 110 };
    s.validate()?;
    let reference = beit_cosine(1e-3, 1e-6, 110, 10, 0.0);
    for (t, want) in reference.iter().enumerate() {
        assert!((s.at(t as u64) - want).abs() < 1e-15, "step {t}: {} vs {want}", s.at(t as u64));
    }
    assert_eq!(s.at(0), 0.0);
    assert!((s.at(9) - 1e-3).abs() < 1e-18, "warmup ends at the base value");
    assert!((s.at(10) - 1e-3).abs() < 1e-18, "the cosine starts at the base value");
    assert!((s.at(60) - (1e-6 + 0.5 * (1e-3 - 1e-6))).abs() < 1e-15, "half way down");
    assert_eq!((s.at(110), s.at(10_000)), (1e-6, 1e-6), "the final value after the end");
    assert_eq!(Schedule::Constant { value: 0.5 }.at(123), 0.5);

    let one =
        Schedule::WarmupCosine { base: 2.0, final_value: 0.0, warmup_start: 0.5, warmup_steps: 1, total_steps: 3 };
    assert_eq!([one.at(0), one.at(1)], [0.5, 2.0]);
    let bad =
        Schedule::WarmupCosine { base: 1.0, final_value: 0.0, warmup_start: 0.0, warmup_steps: 5, total_steps: 4 };
    assert!(bad.validate().is_err());

    let json = r#"{"kind": "warmup_cosine", "base": 0.001, "final": 1e-6, "warmup_steps": 10, "total_steps": 110}"#;
    let parsed: Schedule = serde_json::from_str(json).expect("parses");
    assert_eq!(parsed, s);
    let back: Schedule = serde_json::from_str(&serde_json::to_string(&parsed).expect("serialises")).expect("parses");
    assert_eq!(back, s);
    assert!(serde_json::from_str::<Schedule>(r#"{"kind": "constant", "value": 1, "typo": 2}"#).is_err());
    let cfg: AdamWConfig = serde_json::from_str(r#"{"weight_decay": 0.05}"#).expect("parses");
    assert_eq!(cfg, AdamWConfig { weight_decay: 0.05, ..AdamWConfig::default() });
    Ok(())
}

#[test]
fn clip_grad_norm_scales_to_the_max_norm() -> Result<()> {
    let dev = cpu();
    let (p, q) = (param("p", &[0.0, 0.0], &[2], &dev)?, param("q", &[0.0, 0.0], &[2], &dev)?);
    let r = param("r", &[0.0], &[1], &dev)?;
    let make = |gq: [f64; 2]| -> Result<Gradients> {
        let mut g = Gradients::default();
        g.insert(&p.tensor(), Tensor::from_vec(vec![3.0, 0.0], &[2], &dev)?);
        g.insert(&q.tensor(), Tensor::from_vec(gq.to_vec(), &[2], &dev)?);
        Ok(g)
    };
    let params = [p.clone(), q.clone(), r];
    let mut grads = make([0.0, 4.0])?;
    let norm = clip_grad_norm(&mut grads, &params, 1.0)?;
    assert!((norm - 5.0).abs() < 1e-12);
    let s = 1.0 / (5.0 + 1e-6);
    assert_close(&grads.get(&p.tensor()).unwrap().to_vec_f64()?, &[3.0 * s, 0.0], 1e-12);
    assert_close(&grads.get(&q.tensor()).unwrap().to_vec_f64()?, &[0.0, 4.0 * s], 1e-12);

    let mut grads = make([0.0, 4.0])?;
    assert!((clip_grad_norm(&mut grads, &params, 10.0)? - 5.0).abs() < 1e-12);
    assert_eq!(grads.get(&q.tensor()).unwrap().to_vec_f64()?, vec![0.0, 4.0], "below the max: unchanged");

    for bad in [f64::NAN, f64::INFINITY] {
        let mut grads = make([bad, 4.0])?;
        let err = clip_grad_norm(&mut grads, &params, 1.0).unwrap_err();
        assert!(matches!(&err, Error::NonFinite(msg) if msg.contains("`q`")), "{err}");
        assert_eq!(grads.get(&p.tensor()).unwrap().to_vec_f64()?, vec![3.0, 0.0], "left unchanged");
    }
    assert!(clip_grad_norm(&mut make([0.0, 1.0])?, &params, 0.0).is_err());
    Ok(())
}

/// The clip applied inside AdamW's update (`grad_norm`, `clip_factor`, `step_scaled`, as the
/// training loop runs it) moves f32 parameters bit for bit as clipping the gradients first
/// and stepping does: three steps of two Linear layers, clipped (norm above the max) and
/// not (below it).
#[test]
fn clipping_inside_the_update_equals_clipping_first() -> Result<()> {
    let dev = cpu();
    for max_norm in [0.5, 1e3] {
        let build = || Linear::new(&VarBuilder::new(&dev, DType::F32, 7).pp("fc"), 13, 5, true);
        let (first, inside) = (build()?, build()?);
        let opt = |m: &Linear| AdamW::new(vec![ParamGroup::new(m.params())], AdamWConfig { weight_decay: 0.05, ..AdamWConfig::default() });
        let (mut opt_first, mut opt_inside) = (opt(&first)?, opt(&inside)?);
        let mut rng = Rng::new(3);
        for step in 0..3 {
            let x = Tensor::randn(&[9, 13], 2.0, DType::F32, &mut rng, &dev)?;
            let loss = |m: &Linear| m.forward(&x)?.sqr()?.mean_all();
            let mut grads = loss(&first)?.backward()?;
            let norm = clip_grad_norm(&mut grads, &first.params(), max_norm)?;
            opt_first.step(&grads, 1e-2)?;
            let grads = loss(&inside)?.backward()?;
            let same_norm = grad_norm(&grads, &inside.params())?;
            assert_eq!(norm.to_bits(), same_norm.to_bits(), "step {step}");
            assert_eq!(max_norm < norm, clip_factor(norm, max_norm)? < 1.0, "step {step}: norm {norm}");
            assert_eq!(max_norm < norm, max_norm == 0.5, "step {step}: the first case clips and the second does not (norm {norm})");
            opt_inside.step_scaled(&grads, 1e-2, clip_factor(norm, max_norm)?)?;
        }
        for (a, b) in first.params().iter().zip(inside.params()) {
            let bits = |p: &Param| -> Result<Vec<u32>> { Ok(p.tensor().to_vec_f64()?.iter().map(|&x| (x as f32).to_bits()).collect()) };
            assert_eq!(bits(a)?, bits(&b)?, "{} (max norm {max_norm})", a.name());
        }
    }
    let mut opt = AdamW::new(vec![], AdamWConfig::default())?;
    for bad in [f64::NAN, -0.5, f64::INFINITY] {
        assert!(opt.step_scaled(&Gradients::default(), 1e-3, bad).is_err(), "scale {bad}");
        assert!(clip_factor(1.0, bad).is_err(), "max norm {bad}");
        assert!(clip_factor(bad, 1.0).is_err(), "norm {bad}");
    }
    Ok(())
}

#[test]
fn linear_regression_trains() -> Result<()> {
    let dev = cpu();
    let mut rng = Rng::new(42);
    let (n, d) = (64, 3);
    let xs: Vec<f32> = (0..n * d).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
    let (w_true, b_true) = ([1.5f32, -2.0, 0.5], 0.3f32);
    let ys: Vec<f32> = xs.chunks(d).map(|r| r.iter().zip(w_true).map(|(x, w)| x * w).sum::<f32>() + b_true).collect();
    let x = Tensor::from_vec(xs, &[n, d], &dev)?;
    let y = Tensor::from_vec(ys, &[n, 1], &dev)?;

    let model = Linear::new(&VarBuilder::new(&dev, DType::F32, 0).pp("head"), d, 1, true)?;
    let groups = vec![
        ParamGroup::new(vec![model.weight().clone()]),
        ParamGroup::new(vec![model.bias().unwrap().clone()]).weight_decay(0.0),
    ];
    let mut opt = AdamW::new(groups, AdamWConfig { weight_decay: 1e-4, ..AdamWConfig::default() })?;
    let schedule =
        Schedule::WarmupCosine { base: 0.05, final_value: 1e-4, warmup_start: 0.0, warmup_steps: 20, total_steps: 400 };
    let mut losses = Vec::new();
    for step in 0..400 {
        let loss = model.forward(&x)?.sub(&y)?.sqr()?.mean_all()?;
        losses.push(loss.to_scalar()?);
        let mut grads = loss.backward()?;
        clip_grad_norm(&mut grads, &model.params(), 1.0)?;
        opt.step(&grads, schedule.at(step))?;
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(last < first / 100.0 && last < 1e-3, "loss {first} -> {last}");
    let w = model.weight().tensor().to_vec_f64()?;
    assert_close(&w, &[1.5, -2.0, 0.5], 0.05);
    Ok(())
}
