//! Data: the built-in digits ([`Digits`]), image folders, transforms, and a prefetching
//! loader.

mod digits;
mod folder;
mod loader;
pub mod transforms;

pub use digits::Digits;
pub use folder::ImageFolder;
pub use loader::{Batch, Loader, LoaderConfig, SampleTransform};
pub(crate) use loader::epoch_order;
