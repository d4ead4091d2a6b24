//! One BEiT-Base transformer block (pre-LN attention + GELU MLP with layer scale, 197 tokens,
//! 768 wide, 12 heads, MLP 3072) on the CPU backend at batch 8 (1576 rows, the sgemm bench
//! shapes): forward under `no_grad`, and forward + backward.

use beit::model::{Layer, Mode};
use beit::BeitConfig;
use beit_engine::nn::VarBuilder;
use beit_engine::rng::Rng;
use beit_engine::{no_grad, DType, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BATCH: usize = 8;
const TOKENS: usize = 197;

fn bench(c: &mut Criterion) {
    let dev = beit_backend_cpu::cpu();
    let config = BeitConfig::base(224);
    let block = Layer::fresh(&VarBuilder::new(&dev, DType::F32, 0).pp("block"), &config, 0).expect("block");
    let x = Tensor::randn(&[BATCH, TOKENS, config.hidden_size], 1.0, DType::F32, &mut Rng::new(1), &dev)
        .and_then(|x| x.requires_grad(true))
        .expect("input");
    let mut g = c.benchmark_group("vit_base_block_b8");
    g.sample_size(10).throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("forward", |b| {
        b.iter(|| {
            let _guard = no_grad();
            block.forward(&x, None, Mode::eval()).expect("forward")
        })
    });
    g.bench_function("forward_backward", |b| {
        b.iter(|| block.forward(&x, None, Mode::eval()).and_then(|y| y.sum_all()).and_then(|l| l.backward()).expect("backward"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
