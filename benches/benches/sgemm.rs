//! Matmul throughput through the `Backend` trait on Linear-layer shapes:
//! `x [M, K] · Wᵀ` with `W` a contiguous `[N, K]` weight seen transposed.
//!
//! Run with `cargo bench -p beit-benches --bench sgemm`; besides criterion's report it
//! prints the best GFLOP/s of each shape to stderr.

use beit_backend_cpu::cpu;
use beit_engine::{Backend, HostData, Layout, View};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Instant;

/// (M, K, N): ViT-B/16 at batch 8 (1576 tokens) and batch 1 (197 tokens): qkv, fc1, fc2.
const SHAPES: [(usize, usize, usize); 6] =
    [(1576, 768, 2304), (1576, 768, 3072), (1576, 3072, 768), (197, 768, 2304), (197, 768, 3072), (197, 3072, 768)];

fn values(n: usize, seed: usize) -> HostData {
    HostData::F32((0..n).map(|i| ((i * 7 + seed) % 13) as f32 * 0.1 - 0.6).collect())
}

fn sgemm(c: &mut Criterion) {
    let device = cpu();
    let be: &dyn Backend = device.backend();
    let mut group = c.benchmark_group("sgemm");
    group.sample_size(10);
    for (m, k, n) in SHAPES {
        let x = be.from_host(&values(m * k, 1)).unwrap();
        let w = be.from_host(&values(n * k, 2)).unwrap();
        let (xl, wl) = (Layout::contiguous(&[m, k]), Layout::contiguous(&[n, k]).permute(&[1, 0]).unwrap());
        let (a, b) = (View { storage: &*x, layout: &xl }, View { storage: &*w, layout: &wl });
        let flops = 2 * m * n * k;
        let best = (0..20)
            .map(|_| {
                let t = Instant::now();
                black_box(be.matmul(a, b).unwrap());
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        eprintln!("sgemm {m}x{k}x{n}: {:.1} GFLOP/s (best of 20)", flops as f64 / best / 1e9);
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(format!("{m}x{k}x{n}"), |bch| bch.iter(|| be.matmul(a, b).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, sgemm);
criterion_main!(benches);
