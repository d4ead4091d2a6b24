//! Data: the built-in digits ([`Digits`]), image folders, transforms, a prefetching
//! loader, and segmentation datasets (ADE20K-layout folders, generated shapes).

mod digits;
mod folder;
mod loader;
mod seg;
pub mod transforms;

pub use digits::Digits;
pub use folder::ImageFolder;
pub use loader::{Batch, Loader, LoaderConfig, SampleTransform, Shard};
pub(crate) use loader::epoch_order;
pub use seg::{seg_batch, SegDataset, SegFolder, SegSample, Shapes, Split, IGNORE_LABEL};
