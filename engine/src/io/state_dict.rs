//! [`StateDict`]: named tensors, in memory or lazily read from a memory-mapped file.

use super::safetensors::Mapped;
use crate::{DType, Error, Result, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Where an entry's value lives.
pub(super) enum Entry {
    /// A tensor in memory (on any device).
    Tensor(Tensor),
    /// A tensor in a memory-mapped safetensors file, read (and converted) on access.
    Mapped(Mapped),
}

/// An ordered map from exact names (`encoder.layer.0.attention.attention.query.weight`) to
/// tensors: what [`crate::nn::Module::state_dict`] returns and what
/// [`super::load_safetensors`] reads. Entries of a loaded file stay in the memory map
/// until [`StateDict::get`] uploads them.
pub struct StateDict {
    source: String,
    metadata: Option<HashMap<String, String>>,
    entries: Vec<(String, Entry)>,
    index: HashMap<String, usize>,
}

impl Default for StateDict {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for StateDict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateDict({}, {} tensors)", self.source, self.entries.len())
    }
}

impl StateDict {
    /// An empty state dict held in memory.
    pub fn new() -> Self {
        Self::with_source("<memory>".into(), None, Vec::new())
    }

    pub(super) fn with_source(
        source: String,
        metadata: Option<HashMap<String, String>>,
        entries: Vec<(String, Entry)>,
    ) -> Self {
        let mut sd = StateDict { source, metadata, entries, index: HashMap::new() };
        sd.reindex();
        sd
    }

    fn reindex(&mut self) {
        self.index = self.entries.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
    }

    /// The file it was read from (`<memory>` otherwise): errors name it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The file's `__metadata__` string map, if any.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.metadata.as_ref()
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether a tensor is named `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The names, in order (file order for a loaded file, insertion order otherwise).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// Insert or replace the tensor `name`.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        let name = name.into();
        match self.index.get(&name) {
            Some(&i) => self.entries[i].1 = Entry::Tensor(tensor),
            None => {
                self.index.insert(name.clone(), self.entries.len());
                self.entries.push((name, Entry::Tensor(tensor)));
            }
        }
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        let missing = || Error::MissingTensor { file: self.source.clone(), name: name.to_string() };
        self.index.get(name).map(|&i| &self.entries[i].1).ok_or_else(missing)
    }

    /// The shape of `name`, without reading its data.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        match self.entry(name).ok()? {
            Entry::Tensor(t) => Some(t.shape()),
            Entry::Mapped(m) => Some(m.shape()),
        }
    }

    /// The dtype [`StateDict::get`] gives for `name` (f16/bf16 read as f32, i32 as i64),
    /// without reading its data; an error names a missing tensor or an unsupported dtype.
    pub fn dtype(&self, name: &str) -> Result<DType> {
        match self.entry(name)? {
            Entry::Tensor(t) => Ok(t.dtype()),
            Entry::Mapped(m) => m.dtype(name),
        }
    }

    /// The tensor `name`; a mapped one is read and converted on every call (not cached).
    /// An error names the file and the tensor.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        match self.entry(name)? {
            Entry::Tensor(t) => Ok(t.clone()),
            Entry::Mapped(m) => m.load(name),
        }
    }

    /// Remove and return the tensor `name`.
    pub fn remove(&mut self, name: &str) -> Result<Tensor> {
        let t = self.get(name)?;
        let i = self.index[name];
        self.entries.remove(i);
        self.reindex();
        Ok(t)
    }

    /// Every `(name, tensor)` pair, in order (reads every mapped tensor).
    pub fn tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.names().map(|n| Ok((n.to_string(), self.get(n)?))).collect()
    }

    /// Rename entries: `f` gives the new name, or `None` to drop the entry. Two entries
    /// mapped to one name are an error naming both.
    pub fn map_names(self, mut f: impl FnMut(&str) -> Option<String>) -> Result<StateDict> {
        let StateDict { source, metadata, entries, .. } = self;
        let mut out: Vec<(String, Entry)> = Vec::with_capacity(entries.len());
        let mut from: HashMap<String, String> = HashMap::new();
        for (name, entry) in entries {
            let Some(new) = f(&name) else { continue };
            if let Some(prev) = from.insert(new.clone(), name.clone()) {
                let msg = format!("renaming maps both `{prev}` and `{name}` to `{new}`");
                return Err(Error::Format { file: source, msg });
            }
            out.push((new, entry));
        }
        Ok(Self::with_source(source, metadata, out))
    }

    /// Strip the leading `prefix.` (e.g. `beit` of a Hugging Face task checkpoint) from the
    /// names that have it; other names are kept as they are.
    pub fn strip_prefix(self, prefix: &str) -> Result<StateDict> {
        let dotted = format!("{prefix}.");
        self.map_names(|n| Some(n.strip_prefix(&dotted).unwrap_or(n).to_string()))
    }

    /// Prepend `prefix.` to every name.
    pub fn add_prefix(self, prefix: &str) -> Result<StateDict> {
        self.map_names(|n| Some(format!("{prefix}.{n}")))
    }

    /// Write every tensor to a safetensors file at `path`; see [`super::save_safetensors`].
    pub fn save(&self, path: impl AsRef<Path>, metadata: Option<&HashMap<String, String>>) -> Result<()> {
        let tensors = self.tensors()?;
        super::save_safetensors(path, tensors.iter().map(|(n, t)| (n.as_str(), t)), metadata)
    }
}
