//! `--dtype` of the inference commands: the dtype of the Linear and convolution weights.

use beit::engine::{DType, Device, Error, Result};
use beit::{Bf16Linear, LoadOptions};

/// The dtype of the Linear and convolution weights at inference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// f32 throughout.
    #[default]
    F32,
    /// bf16 Linear and Conv2d weights (converted once at load: half the memory), f32
    /// activations and accumulation; LayerNorm, softmax and attention stay f32. CPU only.
    Bf16,
}

impl Precision {
    /// The load options for this precision on `device`. bf16 is CPU-only; on a CPU without
    /// AVX512_BF16 it runs with the weights widened inside the GEMM (said once on stderr),
    /// and where the CPU has neither AVX-512 nor AVX2 + FMA it falls back to f32, saying so.
    pub fn load_options(self, device: &Device, image_size: Option<usize>) -> Result<LoadOptions> {
        let weight_dtype = match self {
            Precision::F32 => DType::F32,
            Precision::Bf16 if device.name() != "cpu" => {
                return Err(Error::invalid("--dtype", format!("bf16 inference runs on the CPU only, not on {}", device.name())));
            }
            Precision::Bf16 => match beit::bf16_linear() {
                Bf16Linear::Composed => {
                    eprintln!("warning: --dtype bf16: this CPU has neither AVX-512 nor AVX2 + FMA; running in f32");
                    DType::F32
                }
                Bf16Linear::Widened { native: false } => {
                    eprintln!("note: --dtype bf16: this CPU has no AVX512_BF16; the bf16 weights are widened to f32 inside the GEMM (half the weight memory, f32 speed)");
                    DType::BF16
                }
                Bf16Linear::Dot | Bf16Linear::Widened { native: true } => DType::BF16,
            },
        };
        // The CPU pre-packs its Linear weights; other backends have no packed form.
        Ok(LoadOptions { image_size, weight_dtype, pack_weights: device.name() == "cpu" })
    }
}
