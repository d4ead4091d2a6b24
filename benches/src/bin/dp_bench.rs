//! Data-parallel pretraining step time: BEiT MIM steps on random images, alone or as one
//! rank of `mpirun -np N` (each rank on its shard of the global batch). Rank 0 prints one
//! JSON line: `world`, `threads` (rayon's, per rank), the global `batch`, `step_s` (median
//! over the timed steps), `all_reduce_s` (median seconds the communication thread spent
//! in all-reduces) and `exposed_s` (the part of it the backward pass did not hide),
//! `peak_rss_mib`.
//!
//! ```text
//! cargo build --release -p beit-benches --features mpi --bin dp_bench
//! RAYON_NUM_THREADS=2 target/release/dp_bench --preset base --batch 8
//! RAYON_NUM_THREADS=1 mpirun -np 2 -x RAYON_NUM_THREADS target/release/dp_bench --preset base --batch 8
//! ```
//! `benches/dp_scaling.sh` runs both and the one-thread baseline, and prints the scaling.

use beit::engine::collective::Collective;
use beit::engine::rng::Rng;
use beit::engine::{DType, Result, Tensor};
use beit::tokenizer::Tokenizer;
use beit::train::{pretrain, pretrain_model_config, Observer, PretrainConfig, PretrainData, RunControl, StepMetrics, TrainConfig};
use beit::{Beit, BeitConfig};
use beit_benches::{median, peak_rss_mib};
use clap::{Parser, ValueEnum};
use std::sync::Arc;

/// Command-line arguments (a flag given twice takes its last value).
#[derive(Parser)]
#[command(args_override_self = true)]
struct Args {
    /// The model: BEiT-Base/16, or small (6 layers, 384 wide).
    #[arg(long, value_enum, default_value_t = Preset::Base)]
    preset: Preset,
    /// Image side in pixels.
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Global batch (split over the ranks).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 6)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
}

/// The model size.
#[derive(Clone, Copy, ValueEnum)]
enum Preset {
    /// BEiT-Base/16.
    Base,
    /// 6 layers, 384 wide.
    Small,
}

/// The model of `preset` at `size`.
fn model_config(preset: Preset, size: usize) -> BeitConfig {
    let base = BeitConfig { image_size: size, ..BeitConfig::default() };
    match preset {
        Preset::Base => base,
        Preset::Small => BeitConfig { hidden_size: 384, num_hidden_layers: 6, num_attention_heads: 6, intermediate_size: 1536, ..base },
    }
}

/// Visual tokens from a fixed random patch projection (tokenised once, before the steps).
struct PatchTokenizer {
    weight: Tensor,
    size: usize,
}

impl Tokenizer for PatchTokenizer {
    fn vocab_size(&self) -> usize {
        self.weight.shape()[0]
    }
    fn input_size(&self) -> usize {
        self.size
    }
    fn logits(&self, pixels: &Tensor) -> Result<Tensor> {
        let k = self.weight.shape()[2];
        pixels.conv2d(&self.weight, None, (k, k), (0, 0))
    }
}

/// Step times (of the global `batch`) and communication times, per step.
struct Times {
    batch: usize,
    step: Vec<f64>,
    all_reduce: Vec<f64>,
    exposed: Vec<f64>,
}

impl Observer for Times {
    fn step(&mut self, m: &StepMetrics, _total: u64) {
        self.step.push(self.batch as f64 / m.samples_per_sec);
        self.all_reduce.push(m.parts.get("all_reduce_s").copied().unwrap_or(0.0));
        self.exposed.push(m.parts.get("all_reduce_exposed_s").copied().unwrap_or(0.0));
    }
}

fn main() -> Result<()> {
    let a = Args::parse();
    let group = beit_mpi::launched_group()?.map(|g| Arc::new(g) as Arc<dyn Collective>);
    let (rank, world) = group.as_ref().map_or((0, 1), |g| (g.rank(), g.world_size()));
    let device = beit_backend_cpu::cpu();
    let config = model_config(a.preset, a.size);
    let cfg = PretrainConfig {
        train: TrainConfig { epochs: 1, batch_size: a.batch, warmup_epochs: 0.0, ..PretrainConfig::default().train },
        ..PretrainConfig::default()
    };
    let Beit::MaskedImageModeling(model) = Beit::new(&pretrain_model_config(&config, &cfg), &device, 0)? else { unreachable!("a MIM config") };
    let n = a.batch * (a.warmup + a.steps);
    let mut rng = Rng::new(1);
    let grid = a.size / config.patch_size;
    let tokenizer = PatchTokenizer { weight: Tensor::randn(&[config.vocab_size, 3, 4, 4], 0.1, DType::F32, &mut rng, &device)?, size: grid * 4 };
    let data = PretrainData::Memory {
        images: Tensor::randn(&[n, 3, a.size, a.size], 1.0, DType::F32, &mut rng, &device)?,
        tokenizer_view: Tensor::rand_uniform(&[n, 3, grid * 4, grid * 4], 0.0, 1.0, DType::F32, &mut rng, &device)?,
    };
    let mut times = Times { batch: a.batch, step: Vec::new(), all_reduce: Vec::new(), exposed: Vec::new() };
    pretrain(&model, &tokenizer, &data, &cfg, &RunControl { group, ..RunControl::default() }, &mut times)?;
    if rank == 0 {
        let timed = |v: &[f64]| median(&v[a.warmup.min(v.len())..]);
        println!(
            "{{\"world\":{world},\"threads\":{},\"preset\":\"{}\",\"size\":{},\"batch\":{},\"step_s\":{:.4},\"all_reduce_s\":{:.4},\"exposed_s\":{:.4},\"peak_rss_mib\":{:.0}}}",
            rayon::current_num_threads(),
            a.preset.to_possible_value().expect("every preset is a value").get_name(),
            a.size,
            a.batch,
            timed(&times.step),
            timed(&times.all_reduce),
            timed(&times.exposed),
            peak_rss_mib().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
