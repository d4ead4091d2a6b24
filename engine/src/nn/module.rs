//! The [`Module`] trait: a tree of named parameters that saves and loads as a state dict.

use super::Param;
use crate::io::StateDict;
use crate::{Error, Result};
use std::collections::HashSet;

/// A layer or model: the owner of named parameters. Forward passes are inherent methods,
/// since their arguments differ (dropout takes a seed, attention a mask, ...).
pub trait Module {
    /// Every parameter and buffer with its full dotted name, in a stable order.
    fn params(&self) -> Vec<Param>;

    /// The parameters the optimiser trains (buffers left out).
    fn trainable_params(&self) -> Vec<Param> {
        self.params().into_iter().filter(Param::is_trainable).collect()
    }

    /// Number of trainable scalars.
    fn num_params(&self) -> usize {
        self.trainable_params().iter().map(Param::numel).sum()
    }

    /// The current values by name (sharing buffers with the model: taking a state dict is
    /// cheap, and a later optimiser step copies rather than changing the snapshot).
    fn state_dict(&self) -> StateDict {
        let mut sd = StateDict::new();
        for p in self.params() {
            sd.insert(p.name(), p.tensor().detach());
        }
        sd
    }

    /// Load values by exact name; see [`load_params`].
    fn load_state_dict(&self, sd: &StateDict, strict: bool) -> Result<LoadReport> {
        load_params(&self.params(), sd, strict)
    }
}

/// What a non-strict load skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Parameters that the state dict lacks (left unchanged).
    pub missing: Vec<String>,
    /// State-dict entries that name no parameter (ignored).
    pub unexpected: Vec<String>,
}

impl LoadReport {
    /// An error listing every missing parameter `optional` does not accept (those a model
    /// initialises itself, e.g. a fresh head), naming `file`.
    pub fn require(&self, file: &str, optional: impl Fn(&str) -> bool) -> Result<()> {
        let missing: Vec<String> = self.missing.iter().filter(|n| !optional(n)).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::StateDictMismatch { file: file.to_string(), missing, unexpected: Vec::new() })
    }
}

/// Set each of `params` from the entry of `sd` with the same name, converting the dtype
/// (f16/bf16/f64 files into f32 parameters, ...) and moving to the parameter's device;
/// then the backend frees the buffers it kept for reuse ([`crate::backend::Memory::release_cached`]).
///
/// Every entry is checked before any parameter changes, so a failed load leaves the model
/// as it was. A shape mismatch or a float/integer mismatch is always an error naming the
/// tensor; with `strict`, so are missing parameters and unexpected entries, all listed in one
/// [`Error::StateDictMismatch`] (as PyTorch's `load_state_dict`); otherwise they are listed
/// in the [`LoadReport`].
pub fn load_params(params: &[Param], sd: &StateDict, strict: bool) -> Result<LoadReport> {
    let mut report = LoadReport::default();
    let mut found = Vec::with_capacity(params.len());
    for p in params {
        let name = p.name();
        let Some(shape) = sd.shape(name) else {
            report.missing.push(name.to_string());
            continue;
        };
        let expected = p.shape();
        if shape != expected.as_slice() {
            let (file, name, got) = (sd.source().to_string(), name.to_string(), shape.to_vec());
            return Err(Error::TensorShape { file, name, got, expected });
        }
        let (dtype, want) = (sd.dtype(name)?, p.dtype());
        if dtype.is_float() != want.is_float() {
            let msg = format!("tensor `{name}` has dtype {dtype}, which cannot be loaded into a {want} parameter");
            return Err(Error::Format { file: sd.source().to_string(), msg });
        }
        found.push(p);
    }
    let known: HashSet<&str> = params.iter().map(Param::name).collect();
    report.unexpected = sd.names().filter(|n| !known.contains(n)).map(str::to_string).collect();
    if strict && !(report.missing.is_empty() && report.unexpected.is_empty()) {
        let LoadReport { missing, unexpected } = report;
        return Err(Error::StateDictMismatch { file: sd.source().to_string(), missing, unexpected });
    }
    for p in &found {
        let value = sd.get(p.name())?.to_dtype(p.dtype())?.to_device(&p.device())?;
        p.set(value)?;
    }
    // Values converted or packed as they were set left their loaded buffers behind.
    if let Some(p) = found.first() {
        p.device().backend().release_cached();
    }
    Ok(report)
}
