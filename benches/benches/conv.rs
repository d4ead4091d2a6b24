//! Convolution throughput through [`beit_engine::backend::Conv::conv2d`] on the DALL-E encoder's and UperNet's
//! shapes (f32, batch 1 unless noted).
//!
//! Run with `cargo bench -p beit-benches --bench conv`; besides criterion's report it prints
//! the best GFLOP/s of each shape to stderr.

use beit_backend_cpu::cpu;
use beit_engine::{Backend, ConvGeom, HostData, Layout, View};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Instant;

/// (name, batch, C, H = W, O, kernel side): the dVAE's first-group 3×3s and 1×1, its output
/// 1×1 at batch 8, its 7×7 input conv, and a UperNet FPN 3×3 at 64².
const SHAPES: [(&str, usize, usize, usize, usize, usize); 6] = [
    ("dalle_conv1", 1, 256, 112, 64, 3),
    ("dalle_conv2", 1, 64, 112, 64, 3),
    ("dalle_conv4_1x1", 1, 64, 112, 256, 1),
    ("dalle_input_7x7", 1, 3, 112, 256, 7),
    ("dalle_output_1x1_b8", 8, 2048, 14, 8192, 1),
    ("upernet_fpn_64", 1, 768, 64, 768, 3),
];

fn values(n: usize, seed: usize) -> HostData {
    HostData::F32((0..n).map(|i| ((i * 7 + seed) % 13) as f32 * 0.1 - 0.6).collect())
}

fn conv(c: &mut Criterion) {
    let device = cpu();
    let be: &dyn Backend = device.backend();
    let mut group = c.benchmark_group("conv2d");
    group.sample_size(10);
    for (name, batch, ch, side, o, k) in SHAPES {
        let geom = ConvGeom { batch, channels: ch, height: side, width: side, kernel: (k, k), stride: (1, 1), padding: (k / 2, k / 2) };
        let x = be.from_host(&values(batch * ch * side * side, 1)).unwrap();
        let w = be.from_host(&values(o * ch * k * k, 2)).unwrap();
        let (xl, wl) = (Layout::contiguous(&[batch, ch, side, side]), Layout::contiguous(&[o, ch, k, k]));
        let (xv, wv) = (View { storage: &*x, layout: &xl }, View { storage: &*w, layout: &wl });
        let flops = 2 * batch * o * geom.patch_len() * geom.out_h() * geom.out_w();
        let best = (0..5)
            .map(|_| {
                let t = Instant::now();
                black_box(be.conv2d(xv, wv, None, &geom).unwrap());
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        eprintln!("conv2d {name}: {:.1} GFLOP/s (best of 5)", flops as f64 / best / 1e9);
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(name, |bch| bch.iter(|| be.conv2d(xv, wv, None, &geom).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, conv);
criterion_main!(benches);
