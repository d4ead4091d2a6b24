//! BEiT on the beit-rs engine: Hugging Face configs and checkpoints, the encoder and heads
//! as composable layers, and device selection by name.

pub use beit_engine as engine;

mod config;
pub mod data;
mod device;
pub mod limits;
pub mod masker;
pub mod model;
pub mod preprocess;
pub mod segmentation;
pub mod tokenizer;
pub mod train;
pub use config::{Architecture, BeitConfig, SegHead};
pub use device::{bf16_linear, device_group, open_device, Bf16Linear};
pub use model::{Beit, BeitForImageClassification, BeitForMaskedImageModeling, BeitForSemanticSegmentation, BeitModel, LoadOptions, Mode};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
