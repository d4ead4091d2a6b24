//! The BEiT model as composable layers: embeddings, relative position bias, blocks, the
//! encoder with its pooler, and the MIM, classification and segmentation heads.

mod embeddings;
mod encoder;
mod heads;
mod layer;
mod pretrained;
mod relpos;
mod resize;
mod seg_heads;
mod segmentation;
mod timm;
mod timm_config;
mod timm_preprocess;

pub use embeddings::Embeddings;
pub use encoder::{BeitModel, BeitOutput};
pub use heads::{Beit, BeitForImageClassification, BeitForMaskedImageModeling};
pub use layer::Layer;
pub use pretrained::{folder_image_processor, read_folder};
pub use relpos::{relative_position_index, RelativePositionBias};
pub use seg_heads::{ConvModule, FcnHead, SetrPupHead, UperHead};
pub use segmentation::{pixel_cross_entropy, BeitForSemanticSegmentation, SegOutput};
pub use resize::{resize_grid, resize_pos_embed, resize_rel_pos_table, Interp};

use beit_engine::nn::{Init, VarBuilder};
use beit_engine::DType;

/// Training or inference, with the seed of this step's stochastic layers (drop path), and
/// whether the encoder's intermediate outputs are returned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mode {
    /// Whether stochastic layers are active.
    pub train: bool,
    /// Seed of the step's random masks.
    pub seed: u64,
    /// Return the embeddings and every block's output in [`BeitOutput::hidden_states`]
    /// (Hugging Face's `output_hidden_states=True`; costs memory).
    pub hidden_states: bool,
    /// The position of the input's first sample in the step's whole batch (a
    /// data-parallel member's shard starts past 0): per-sample draws are those of the
    /// whole batch.
    pub first_sample: usize,
}

impl Mode {
    /// Inference: deterministic.
    pub fn eval() -> Self {
        Mode::default()
    }

    /// Training with the step's `seed`.
    pub fn train(seed: u64) -> Self {
        Mode { train: true, seed, ..Mode::default() }
    }

    /// The same mode for samples `first..` of the step's whole batch.
    pub fn from_sample(self, first: usize) -> Self {
        Mode { first_sample: first, ..self }
    }

    /// The same mode, also returning the encoder's hidden states.
    pub fn with_hidden_states(self) -> Self {
        Mode { hidden_states: true, ..self }
    }
}

/// How a Hugging Face folder is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// The input resolution to run at (position tables interpolated to its grid once, at
    /// load); None: the config's.
    pub image_size: Option<usize>,
    /// The dtype of the Linear and Conv2d layers' weights (all but the patch embedding's and
    /// the FPN's transposed convolutions'): f32, or bf16 for bf16 inference (converted
    /// once at load, half the memory; activations and accumulation stay f32). bf16 weights
    /// are for inference under [`beit_engine::no_grad`]: with gradients on, each forward
    /// casts them to f32 to track them, and an optimiser cannot step them.
    pub weight_dtype: DType,
    /// Keep each Linear weight in the backend's pre-packed inference form (the CPU: the
    /// panels its GEMM reads, packed once at load instead of on every call, in the same
    /// memory; f32, and bf16 where the CPU multiplies it with `vdpbf16ps`). Faster
    /// inference, for models run only under [`beit_engine::no_grad`]: with gradients on,
    /// and for an optimiser, those weights are an error; saving unpacks them.
    pub pack_weights: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { image_size: None, weight_dtype: DType::F32, pack_weights: false }
    }
}

impl LoadOptions {
    /// A builder for the parameters of a model loaded with these options.
    pub(crate) fn builder(&self, device: &beit_engine::Device, seed: u64) -> VarBuilder {
        VarBuilder::new(device, DType::F32, seed).with_weight_dtype(self.weight_dtype).with_packed_weights(self.pack_weights)
    }

    /// Error unless the weight dtype is f32 or bf16.
    pub(crate) fn check(&self) -> beit_engine::Result<()> {
        if !matches!(self.weight_dtype, DType::F32 | DType::BF16) {
            let msg = format!("weights can be f32 or bf16, not {}", self.weight_dtype);
            return Err(beit_engine::Error::invalid("LoadOptions.weight_dtype", msg));
        }
        Ok(())
    }
}

/// How new parameters are filled: BEiT's init for training from scratch, or zeros when
/// a checkpoint is about to overwrite them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Inits {
    pub(crate) weight: Init,
    pub(crate) token: Init,
    pub(crate) zero: Init,
    pub(crate) fresh: bool,
}

impl Inits {
    /// BEiT pretraining's init: truncated normal, std 0.02, cut at ±0.02 (unilm).
    pub(crate) fn beit(std: f64) -> Self {
        let tn = Init::TruncNormal { std, a: -std, b: std };
        Inits { weight: tn, token: tn, zero: Init::Const(0.0), fresh: true }
    }

    /// Zeros everywhere (fast; for loading).
    pub(crate) fn for_loading() -> Self {
        Inits { weight: Init::Const(0.0), token: Init::Const(0.0), zero: Init::Const(0.0), fresh: false }
    }
}
