//! Can data loading keep up with training? Images/s decoded and transformed into BEiT's
//! 224 two-view batches (64 generated 500×375 JPEGs, the 2-core rayon pool), the full-size
//! DALL-E encoder (54M parameters, random weights) tokenizing 112×112 views, and one MIM
//! training step of BEiT-Base at batch 8 (forward, backward, AdamW) on the CPU.

use beit::data::transforms::TwoViewTransform;
use beit::data::{ImageFolder, Loader, LoaderConfig};
use beit::engine::nn::Module;
use beit::engine::optim::{AdamW, AdamWConfig, ParamGroup};
use beit::engine::rng::Rng;
use beit::engine::{DType, Tensor};
use beit::masker::{BlockwiseMasker, Masker};
use beit::tokenizer::{DalleConfig, DalleEncoder, Tokenizer};
use beit::{Beit, BeitConfig, Mode};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const IMAGES: usize = 64;

fn jpeg_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for i in 0..IMAGES as u32 {
        let img = image::RgbImage::from_fn(500, 375, |x, y| {
            image::Rgb([((x * 7 + y * i) % 256) as u8, ((y * 3 + i * 11) % 256) as u8, ((x ^ y) % 256) as u8])
        });
        img.save(dir.path().join(format!("{i:03}.jpg"))).expect("write jpeg");
    }
    dir
}

fn loading(c: &mut Criterion) {
    let dir = jpeg_folder();
    let folder = ImageFolder::flat(dir.path()).expect("folder");
    let mut g = c.benchmark_group("two_view_224");
    g.sample_size(10).throughput(Throughput::Elements(IMAGES as u64));
    g.bench_function("batch64", |b| {
        b.iter(|| Loader::new(folder.clone(), TwoViewTransform::beit(224), LoaderConfig::new(IMAGES)).next().expect("batch"))
    });
    g.finish();
}

fn tokenize(c: &mut Criterion) {
    let dev = beit_backend_cpu::cpu();
    let enc = DalleEncoder::new(DalleConfig::default(), &dev, 0).expect("encoder");
    let mut g = c.benchmark_group("dalle_encoder_112");
    g.sample_size(10);
    for batch in [1usize, 8] {
        let x = Tensor::rand_uniform(&[batch, 3, 112, 112], 0.1, 0.9, DType::F32, &mut Rng::new(2), &dev).expect("pixels");
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("batch{batch}"), |b| b.iter(|| enc.tokenize(&x).expect("tokens")));
    }
    g.finish();
}

fn mim_step(c: &mut Criterion) {
    let dev = beit_backend_cpu::cpu();
    let config = BeitConfig { drop_path_rate: 0.1, ..BeitConfig::base(224) };
    let model = Beit::new(&config, &dev, 0).expect("model");
    let Beit::MaskedImageModeling(mim) = &model else { unreachable!("base() is a MIM config") };
    let mut opt = AdamW::new(vec![ParamGroup::new(model.trainable_params())], AdamWConfig::default()).expect("adamw");
    let mut rng = Rng::new(0);
    let pixels = Tensor::randn(&[8, 3, 224, 224], 1.0, DType::F32, &mut rng, &dev).expect("pixels");
    let mask = BlockwiseMasker::beit((14, 14)).expect("masker").sample_batch(8, &mut rng, &dev).expect("mask");
    let labels: Vec<i64> = (0..mask.count()).map(|_| rng.below(8192) as i64).collect();
    let labels = Tensor::from_vec(labels, &[mask.count()], &dev).expect("labels");
    let mut g = c.benchmark_group("beit_base_mim_step");
    g.sample_size(10).throughput(Throughput::Elements(8));
    let mut step = 0;
    g.bench_function("batch8", |b| {
        b.iter(|| {
            step += 1;
            let loss = mim.loss(&pixels, &mask, &labels, Mode::train(step)).expect("loss");
            let grads = loss.backward().expect("backward");
            opt.step(&grads, 1e-4).expect("step");
        })
    });
    g.finish();
}

criterion_group!(benches, loading, tokenize, mim_step);
criterion_main!(benches);
