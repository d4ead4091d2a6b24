//! CUDA backend for beit-rs. Not implemented yet: [`open`] reports that clearly, so that
//! builds with the `cuda` feature fail at run time with an error, never a panic.

use beit_engine::{Device, Error, Result};

/// Open CUDA device `ordinal`.
pub fn open(ordinal: usize) -> Result<Device> {
    Err(Error::Device { spec: format!("cuda:{ordinal}"), msg: "the CUDA backend is not implemented yet".into() })
}
