//! The engine's error type: every fallible call returns [`Result`].

use crate::DType;

/// Errors raised by the engine, its backends and its I/O.
#[allow(missing_docs)] // field names are self-describing: op, lhs/rhs, file, name, ...
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Two shapes that must agree do not.
    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?}")]
    ShapeMismatch { op: &'static str, lhs: Vec<usize>, rhs: Vec<usize> },
    /// Shapes cannot be broadcast together.
    #[error("{op}: cannot broadcast {lhs:?} with {rhs:?}")]
    Broadcast { op: &'static str, lhs: Vec<usize>, rhs: Vec<usize> },
    /// An argument is invalid for the op (bad dim, bad size, ...).
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    /// A dtype that the op does not accept.
    #[error("{op}: unsupported dtype {dtype:?}{}", expected.map(|e| format!(" (expected {e:?})")).unwrap_or_default())]
    DType { op: &'static str, dtype: DType, expected: Option<DType> },
    /// Two tensors of different dtypes meet in one op.
    #[error("{op}: dtype mismatch: {lhs:?} vs {rhs:?}")]
    DTypeMismatch { op: &'static str, lhs: DType, rhs: DType },
    /// Two tensors on different devices meet in one op.
    #[error("{op}: device mismatch: {lhs} vs {rhs}")]
    DeviceMismatch { op: &'static str, lhs: String, rhs: String },
    /// A device string that cannot be parsed or a backend that is not compiled in.
    #[error("device `{spec}`: {msg}")]
    Device { spec: String, msg: String },
    /// The backend failed (out of memory, kernel launch, driver).
    #[error("backend {backend}: {msg}")]
    Backend { backend: String, msg: String },
    /// Autograd misuse: an op without a backward, a graph used twice, ...
    #[error("autograd: {0}")]
    Autograd(String),
    /// A named tensor is missing from a state dict or file.
    #[error("{file}: missing tensor `{name}`")]
    MissingTensor { file: String, name: String },
    /// A state dict does not match a model: every tensor the model needs that it lacks, and
    /// (strict loads) every tensor no parameter is named for.
    #[error("{file}: does not match the model:{}{}", names(" missing", missing), names(" unexpected", unexpected))]
    StateDictMismatch { file: String, missing: Vec<String>, unexpected: Vec<String> },
    /// A named tensor has the wrong shape.
    #[error("{file}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    TensorShape { file: String, name: String, got: Vec<usize>, expected: Vec<usize> },
    /// A safetensors file is corrupt, truncated or holds an unsupported dtype.
    #[error("{file}: {msg}")]
    Format { file: String, msg: String },
    /// An I/O error with the path it concerns.
    #[error("{path}: {source}")]
    Io { path: String, #[source] source: std::io::Error },
    /// A parameter (or its gradient or optimiser state) has the wrong shape, dtype or
    /// device, or is used in a way its kind does not allow.
    #[error("parameter `{name}`: {msg}")]
    Param { name: String, msg: String },
    /// A non-finite value where a finite one is required (loss, gradient norm).
    #[error("non-finite value in {0}")]
    NonFinite(String),
}

/// Result alias used throughout the engine.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid { op, msg: msg.into() }
    }
}

/// ` missing 3 tensors: `a`, `b`, `c`;` for the mismatch message (up to 8 names, then a count).
fn names(what: &str, list: &[String]) -> String {
    if list.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = list.iter().take(8).map(|n| format!("`{n}`")).collect();
    let more = if list.len() > 8 { format!(" and {} more", list.len() - 8) } else { String::new() };
    format!("{what} {} tensor{}: {}{more};", list.len(), if list.len() == 1 { "" } else { "s" }, shown.join(", "))
}
