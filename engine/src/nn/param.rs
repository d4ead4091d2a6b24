//! [`Param`]: a named, shared, updatable model tensor.

use crate::{BackendStorage, DType, Device, Error, Layout, Result, Tensor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

struct ParamInner {
    name: String,
    trainable: bool,
    /// Kept in the backend's pre-packed Linear-weight form ([`Tensor::packed_weight`]).
    packed: bool,
    tensor: RwLock<Tensor>,
    /// Bumped after each change of the value ([`Param::version`]).
    version: AtomicU64,
}

/// A named model tensor, shared between the layer that uses it and the optimiser that
/// updates it. Cloning is cheap and clones see each other's updates.
///
/// A trainable parameter holds a requires-grad leaf: use [`Param::tensor`] in the forward
/// pass and look its gradient up with `grads.get(&param.tensor())`. A buffer
/// ([`Param::buffer`]) is saved and loaded with the model but never trained.
#[derive(Clone)]
pub struct Param(Arc<ParamInner>);

impl std::fmt::Debug for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.tensor();
        let kind = if self.is_trainable() { "Param" } else { "Buffer" };
        write!(f, "{kind}({}: {:?}, {}, {})", self.name(), t.shape(), t.dtype(), t.device())
    }
}

impl Param {
    /// A trainable parameter named `name` (its full dotted name, e.g.
    /// `encoder.layer.0.output.dense.weight`); `tensor` must have a float dtype.
    pub fn new(name: impl Into<String>, tensor: Tensor) -> Result<Param> {
        let name = name.into();
        if !tensor.dtype().is_float() {
            return Err(Error::Param {
                name,
                msg: format!("a trainable parameter needs a float dtype, got {}", tensor.dtype()),
            });
        }
        let tensor = tensor.requires_grad(true)?;
        Ok(Param(Arc::new(ParamInner { name, trainable: true, packed: false, tensor: RwLock::new(tensor), version: AtomicU64::new(0) })))
    }

    /// A Linear weight `[n, k]` named `name` whose every value [`Param::set`] stores is kept
    /// in its backend's pre-packed inference form ([`Tensor::packed_weight`]), for inference
    /// without gradients (an optimiser cannot step it; saving it unpacks). The first value,
    /// `tensor`, is kept as it is: a placeholder that a checkpoint overwrites (zeros never
    /// written cost no memory; packing them would).
    pub fn packed(name: impl Into<String>, tensor: Tensor) -> Result<Param> {
        let mut p = Param::new(name, tensor)?;
        Arc::get_mut(&mut p.0).expect("a new parameter is not shared").packed = true;
        Ok(p)
    }

    /// A non-trainable buffer (e.g. an index table) named `name`, of any dtype.
    pub fn buffer(name: impl Into<String>, tensor: Tensor) -> Param {
        let tensor = tensor.detach();
        Param(Arc::new(ParamInner { name: name.into(), trainable: false, packed: false, tensor: RwLock::new(tensor), version: AtomicU64::new(0) }))
    }

    /// The full dotted name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Whether the optimiser may train it (false for buffers).
    pub fn is_trainable(&self) -> bool {
        self.0.trainable
    }

    /// The current value (a cheap handle; for trainable parameters, the requires-grad leaf
    /// that gradients are keyed by).
    pub fn tensor(&self) -> Tensor {
        self.0.tensor.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many times the value has changed ([`Param::set`], an optimiser step), bumped once
    /// each change is complete: a value derived from [`Param::tensor`] read after this
    /// version is at least as new as it, so it may be cached under it.
    pub fn version(&self) -> u64 {
        self.0.version.load(Ordering::Acquire)
    }

    /// The shape.
    pub fn shape(&self) -> Vec<usize> {
        self.tensor().shape().to_vec()
    }

    /// The dtype.
    pub fn dtype(&self) -> DType {
        self.tensor().dtype()
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.tensor().device().clone()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.tensor().numel()
    }

    /// Replace the value by `value`, which must have the same shape, dtype and device; the
    /// new value is a fresh leaf (earlier [`Param::tensor`] handles keep the old value),
    /// pre-packed for a [`Param::packed`] weight.
    pub fn set(&self, value: Tensor) -> Result<()> {
        let mut guard = self.0.tensor.write().unwrap_or_else(|e| e.into_inner());
        let cur = &*guard;
        let msg = if value.shape() != cur.shape() {
            format!("cannot set a value of shape {:?}, expected {:?}", value.shape(), cur.shape())
        } else if value.dtype() != cur.dtype() {
            format!("cannot set a value of dtype {}, expected {}", value.dtype(), cur.dtype())
        } else if !value.device().same(cur.device()) {
            format!("cannot set a value on device {}, expected {}", value.device(), cur.device())
        } else {
            let value = if self.0.packed { value.packed_weight()? } else { value };
            *guard = if self.0.trainable { value.requires_grad(true)? } else { value.detach() };
            self.0.version.fetch_add(1, Ordering::Release);
            return Ok(());
        };
        Err(Error::Param { name: self.name().to_string(), msg })
    }

    /// Run `f` on the value's buffer, exclusively. The buffer is updated in place when
    /// nothing else shares it; otherwise a private copy is made first (the old value stays
    /// intact for whoever holds it). The tensor's identity changes only in the latter case.
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut dyn BackendStorage) -> Result<R>) -> Result<R> {
        let mut guard = self.0.tensor.write().unwrap_or_else(|e| e.into_inner());
        let leaf = self.0.trainable;
        let out = f(exclusive_storage(&mut guard, leaf)?);
        // Also after a failed update, which may have written part of the buffer.
        self.0.version.fetch_add(1, Ordering::Release);
        out
    }
}

/// The buffer of `t` for an in-place update, replacing `t` by a private contiguous copy
/// (a requires-grad leaf again when `leaf`) if the buffer is shared.
pub(crate) fn exclusive_storage(t: &mut Tensor, leaf: bool) -> Result<&mut dyn BackendStorage> {
    if t.storage_mut().is_none() {
        *t = {
            let backend = t.device().backend();
            let mut out = backend.full(t.dtype(), t.numel(), 0.0)?;
            backend.copy_strided(t.view(), &mut *out, &Layout::contiguous(t.shape()))?;
            let copy = Tensor::from_storage(out, t.shape(), t.device())?;
            if leaf {
                copy.requires_grad(true)?
            } else {
                copy
            }
        };
    }
    let backend = t.device().name();
    t.storage_mut().ok_or_else(|| Error::Backend { backend, msg: "a freshly copied buffer is still shared".into() })
}
