//! [`Nccl`] as a group of one on cuda:0 (`--features cuda`): sums and broadcasts give the
//! input back bit for bit, bad arguments are errors, and gradients summed through
//! [`GradBuckets`] equal a plain backward pass. Each test prints `SKIPPED` and passes when no
//! GPU can be opened or NCCL cannot be loaded (`$BEIT_NCCL`, `libnccl.so.2`, `libnccl.so`).
#![cfg(feature = "cuda")]

use beit_backend_cuda::Nccl;
use std::sync::Arc;
use beit_engine::collective::{Collective, CommThread, GradBuckets, Single};
use beit_engine::nn::{Linear, VarBuilder};
use beit_engine::{DType, Device, Tensor};

/// cuda:0 and a one-member NCCL group on it, or `None` after saying why the test is skipped.
fn group(test: &str) -> Option<(Device, Nccl)> {
    let dev = Nccl::available(0).map_err(|why| eprintln!("SKIPPED {test} on cuda:0 ({why})")).ok()?;
    let id = Nccl::unique_id().expect("ncclGetUniqueId");
    let nccl = Nccl::new(&dev, 0, 1, id).expect("a one-member NCCL group");
    Some((dev, nccl))
}

#[test]
fn one_member_sums_are_the_input() {
    let Some((dev, nccl)) = group("one_member_sums_are_the_input") else { return };
    assert_eq!((nccl.rank(), nccl.world_size()), (0, 1));
    let f32s: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
    let t = Tensor::from_slice(&f32s, &[10, 100], &dev).unwrap();
    let sum = nccl.all_reduce_sum(&t).unwrap();
    assert_eq!(sum.shape(), &[10, 100]);
    assert!(sum.device().same(&dev));
    assert_eq!(sum.to_vec::<f32>().unwrap(), f32s);

    let f64s: Vec<f64> = (0..77).map(|i| 1.0 / (i as f64 + 0.5)).collect();
    let t = Tensor::from_slice(&f64s, &[7, 11], &dev).unwrap();
    assert_eq!(nccl.all_reduce_sum(&t).unwrap().to_vec::<f64>().unwrap(), f64s);

    let i64s: Vec<i64> = (0..33).map(|i| (i - 16) * (1 << 40)).collect();
    let t = Tensor::from_slice(&i64s, &[33], &dev).unwrap();
    assert_eq!(nccl.all_reduce_sum(&t).unwrap().to_vec::<i64>().unwrap(), i64s);

    // A strided view is made contiguous first.
    let t = Tensor::from_slice(&f32s[..12], &[3, 4], &dev).unwrap().transpose(0, 1).unwrap();
    let want = t.to_vec::<f32>().unwrap();
    assert_eq!(nccl.all_reduce_sum(&t).unwrap().to_vec::<f32>().unwrap(), want);

    // No elements: nothing to send.
    let empty = Tensor::zeros(&[0, 3], DType::F32, &dev).unwrap();
    assert_eq!(nccl.all_reduce_sum(&empty).unwrap().shape(), &[0, 3]);
    nccl.barrier().unwrap();
}

#[test]
fn one_member_broadcast_is_the_input() {
    let Some((dev, nccl)) = group("one_member_broadcast_is_the_input") else { return };
    let f32s: Vec<f32> = (0..300).map(|i| i as f32 - 150.5).collect();
    let t = Tensor::from_slice(&f32s, &[3, 100], &dev).unwrap();
    let got = nccl.broadcast(&t, 0).unwrap();
    assert_eq!(got.shape(), &[3, 100]);
    assert_eq!(got.to_vec::<f32>().unwrap(), f32s);
    let bytes: Vec<u8> = (0..=255).collect();
    let t = Tensor::from_slice(&bytes, &[256], &dev).unwrap();
    assert_eq!(nccl.broadcast(&t, 0).unwrap().to_vec::<u8>().unwrap(), bytes);
}

#[test]
fn bad_arguments_are_errors() {
    let Some((dev, nccl)) = group("bad_arguments_are_errors") else { return };
    let t = Tensor::ones(&[4], DType::F32, &dev).unwrap();
    let e = nccl.broadcast(&t, 1).unwrap_err().to_string();
    assert!(e.contains("root 1 outside a group of 1"), "{e}");

    let cpu = beit_backend_cpu::cpu();
    let on_cpu = Tensor::ones(&[4], DType::F32, &cpu).unwrap();
    for e in [nccl.all_reduce_sum(&on_cpu).unwrap_err(), nccl.broadcast(&on_cpu, 0).unwrap_err()] {
        let e = e.to_string();
        assert!(e.contains("cpu") && e.contains("cuda:0"), "{e}");
    }

    let bools = Tensor::ones(&[4], DType::U8, &dev).unwrap();
    let e = nccl.all_reduce_sum(&bools).unwrap_err().to_string();
    assert!(e.contains("cannot sum"), "{e}");

    let e = Nccl::new(&dev, 1, 1, [0; 128]).unwrap_err().to_string();
    assert!(e.contains("rank 1 outside a group of 1"), "{e}");
    let e = Nccl::new(&cpu, 0, 1, [0; 128]).unwrap_err().to_string();
    assert!(e.contains("device `cpu`"), "{e}");
}

#[test]
fn over_a_bootstrap_group() {
    let Some((dev, _)) = group("over_a_bootstrap_group") else { return };
    let nccl = Nccl::over(Arc::new(Single), &dev).unwrap();
    assert_eq!((nccl.rank(), nccl.world_size()), (0, 1));
    let t = Tensor::from_slice(&[1.5f32, -2.0, 3.25], &[3], &dev).unwrap();
    assert_eq!(nccl.all_reduce_sum(&t).unwrap().to_vec::<f32>().unwrap(), [1.5, -2.0, 3.25]);
}

#[test]
fn grad_buckets_through_nccl_match_a_plain_backward() {
    let Some((dev, nccl)) = group("grad_buckets_through_nccl_match_a_plain_backward") else { return };
    let vb = VarBuilder::new(&dev, DType::F32, 3);
    let (l1, l2) = (Linear::new(&vb.pp("l1"), 16, 32, true).unwrap(), Linear::new(&vb.pp("l2"), 32, 4, true).unwrap());
    let params = vb.created_since(0);
    assert_eq!(params.len(), 4);
    let x: Vec<f32> = (0..8 * 16).map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0).collect();
    let x = Tensor::from_slice(&x, &[8, 16], &dev).unwrap();
    let loss = || l2.forward(&l1.forward(&x).unwrap().gelu().unwrap()).unwrap().sqr().unwrap().mean_all().unwrap();

    let want = loss().backward().unwrap();
    // Buckets of 1 KiB: the 2.6 KiB of parameters go in two all-reduces.
    let buckets = GradBuckets::new(&params, 1024);
    assert!(buckets.len() > 1);
    let (got, _times) = buckets.backward(&loss(), &CommThread::new(Arc::new(nccl)).unwrap()).unwrap();
    for p in &params {
        let w = want.get(&p.tensor()).unwrap().to_vec::<f32>().unwrap();
        let g = got.get(&p.tensor()).unwrap();
        assert!(g.device().same(&dev), "{}", p.name());
        let g = g.to_vec::<f32>().unwrap();
        let worst = w.iter().zip(&g).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-6, "`{}`: gradients differ by {worst}", p.name());
    }
}
