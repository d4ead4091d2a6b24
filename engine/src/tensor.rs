//! [`Tensor`]: a strided view of a device buffer, with autograd bookkeeping.

use crate::autograd::{self, BackwardFn, Node};
use crate::{BackendStorage, DType, Device, Element, Error, HostData, Layout, Result, StorageBox, View};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A process-unique tensor identity; gradients are keyed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

struct Inner {
    id: TensorId,
    storage: Arc<dyn BackendStorage>,
    layout: Layout,
    device: Device,
    node: Option<Arc<Node>>,
    requires_grad: bool,
}

/// An n-dimensional array on a [`Device`]. Cloning is cheap (shared buffer).
///
/// Views (reshape, permute, narrow, broadcast) share the buffer; ops return new tensors.
/// A tensor that [`Tensor::tracks_grad`] records the op that made it, so that
/// [`Tensor::backward`] can compute gradients.
#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor[{:?}, {}, {}]", self.shape(), self.dtype(), self.device())
    }
}

impl Tensor {
    /// Wrap a fresh contiguous buffer (no gradient tracking).
    pub fn from_storage(storage: StorageBox, shape: &[usize], device: &Device) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if storage.len() != numel {
            return Err(Error::invalid(
                "from_storage",
                format!("buffer holds {} elements, shape {shape:?} needs {numel}", storage.len()),
            ));
        }
        Ok(Self::make(Arc::from(storage), Layout::contiguous(shape), device.clone(), None, false))
    }

    fn make(
        storage: Arc<dyn BackendStorage>,
        layout: Layout,
        device: Device,
        node: Option<Arc<Node>>,
        requires_grad: bool,
    ) -> Tensor {
        Tensor(Arc::new(Inner { id: TensorId::fresh(), storage, layout, device, node, requires_grad }))
    }

    /// Upload host data with the given shape.
    pub fn from_host(data: &HostData, shape: &[usize], device: &Device) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if data.len() != numel {
            return Err(Error::invalid("from_host", format!("{} values for shape {shape:?} ({numel})", data.len())));
        }
        Self::from_storage(device.backend().from_host(data)?, shape, device)
    }

    /// Upload host data the caller no longer needs (no host-side copy where the backend can
    /// take the buffer).
    pub fn from_host_owned(data: HostData, shape: &[usize], device: &Device) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if data.len() != numel {
            return Err(Error::invalid("from_host", format!("{} values for shape {shape:?} ({numel})", data.len())));
        }
        Self::from_storage(device.backend().from_host_owned(data)?, shape, device)
    }

    /// Upload a vector with the given shape.
    pub fn from_vec<T: Element>(data: Vec<T>, shape: &[usize], device: &Device) -> Result<Tensor> {
        Self::from_host_owned(T::into_host(data), shape, device)
    }

    /// Upload a slice with the given shape.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize], device: &Device) -> Result<Tensor> {
        Self::from_vec(data.to_vec(), shape, device)
    }

    /// A 0-dim tensor holding `value`.
    pub fn scalar(value: f64, dtype: DType, device: &Device) -> Result<Tensor> {
        Self::full(value, &[], dtype, device)
    }

    /// A tensor filled with `value`.
    pub fn full(value: f64, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let n = shape.iter().product();
        Self::from_storage(device.backend().full(dtype, n, value)?, shape, device)
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        Self::full(0.0, shape, dtype, device)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        Self::full(1.0, shape, dtype, device)
    }

    /// Zeros with this tensor's shape, dtype and device.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Self::zeros(self.shape(), self.dtype(), self.device())
    }

    /// Ones with this tensor's shape, dtype and device.
    pub fn ones_like(&self) -> Result<Tensor> {
        Self::ones(self.shape(), self.dtype(), self.device())
    }

    /// `0, 1, ..., n-1` as i64.
    pub fn arange(n: usize, device: &Device) -> Result<Tensor> {
        Self::from_vec((0..n as i64).collect::<Vec<_>>(), &[n], device)
    }

    /// Uniform values in `[lo, hi)` drawn on the host from `rng`.
    pub fn rand_uniform(
        shape: &[usize],
        lo: f64,
        hi: f64,
        dtype: DType,
        rng: &mut crate::rng::Rng,
        device: &Device,
    ) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| rng.uniform_range(lo, hi)).collect();
        Tensor::from_vec(v, shape, device)?.to_dtype(dtype)
    }

    /// Normal(0, std) values drawn on the host from `rng`.
    pub fn randn(shape: &[usize], std: f64, dtype: DType, rng: &mut crate::rng::Rng, device: &Device) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| rng.normal() * std).collect();
        Tensor::from_vec(v, shape, device)?.to_dtype(dtype)
    }

    /// The tensor's identity (gradients are keyed by it).
    pub fn id(&self) -> TensorId {
        self.0.id
    }

    /// The dims.
    pub fn shape(&self) -> &[usize] {
        self.0.layout.shape()
    }

    /// Size of dim `d`, which may be negative (from the end).
    pub fn dim(&self, d: isize) -> Result<usize> {
        Ok(self.shape()[self.norm_dim(d, "dim")?])
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        self.0.layout.rank()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.0.storage.dtype()
    }

    /// The device holding the buffer.
    pub fn device(&self) -> &Device {
        &self.0.device
    }

    /// Shape, strides and offset into the buffer.
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }

    /// Whether the view is contiguous row-major.
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }

    /// The view that backend kernels read.
    pub fn view(&self) -> View<'_> {
        View { storage: &*self.0.storage, layout: &self.0.layout }
    }

    /// This tensor's buffer seen through another layout (e.g. a broadcast of it).
    pub fn view_with<'a>(&'a self, layout: &'a Layout) -> View<'a> {
        View { storage: &*self.0.storage, layout }
    }

    /// Resolve a possibly negative dim index; errors name `op`.
    pub fn norm_dim(&self, d: isize, op: &'static str) -> Result<usize> {
        let r = self.rank() as isize;
        let n = if d < 0 { d + r } else { d };
        if n < 0 || n >= r.max(1) || (r == 0) {
            return Err(Error::invalid(op, format!("dim {d} out of range for shape {:?}", self.shape())));
        }
        Ok(n as usize)
    }

    /// Download as host data in row-major order.
    pub fn to_host(&self) -> Result<HostData> {
        self.device().backend().to_host(self.view())
    }

    /// Download as a vector of `T` (which must match the dtype).
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>> {
        let h = self.to_host()?;
        let dtype = h.dtype();
        T::from_host(h).ok_or(Error::DType { op: "to_vec", dtype, expected: Some(T::DTYPE) })
    }

    /// Download every element as f64, whatever the dtype.
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        Ok(self.to_host()?.to_f64_vec())
    }

    /// The value of a one-element tensor, as f64.
    pub fn to_scalar(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::invalid("to_scalar", format!("tensor of shape {:?} is not a scalar", self.shape())));
        }
        Ok(self.to_vec_f64()?[0])
    }

    /// Copy to another device (through the host). Gradients do not flow across.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if device.same(self.device()) {
            return Ok(self.clone());
        }
        Tensor::from_host(&self.to_host()?, self.shape(), device)
    }

    /// Whether this tensor is a leaf that gradients are computed for.
    pub fn is_leaf_param(&self) -> bool {
        self.0.requires_grad
    }

    /// Whether gradients flow through this tensor (a requires-grad leaf or an op result on one).
    pub fn tracks_grad(&self) -> bool {
        self.0.requires_grad || self.0.node.is_some()
    }

    /// A new leaf sharing this buffer, with gradient tracking on or off.
    pub fn requires_grad(&self, on: bool) -> Result<Tensor> {
        if on && !self.dtype().is_float() {
            return Err(Error::DType { op: "requires_grad", dtype: self.dtype(), expected: None });
        }
        Ok(Self::make(self.0.storage.clone(), self.0.layout.clone(), self.0.device.clone(), None, on))
    }

    /// A new tensor sharing this buffer, cut from the graph.
    pub fn detach(&self) -> Tensor {
        Self::make(self.0.storage.clone(), self.0.layout.clone(), self.0.device.clone(), None, false)
    }

    /// Whether two tensors share one buffer.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }

    pub(crate) fn node(&self) -> Option<&Arc<Node>> {
        self.0.node.as_ref()
    }

    /// Exclusive access to the buffer for an in-place update, when nothing else shares it.
    pub(crate) fn storage_mut(&mut self) -> Option<&mut dyn BackendStorage> {
        let inner = Arc::get_mut(&mut self.0)?;
        if !inner.layout.is_contiguous() || inner.layout.offset() != 0 {
            return None;
        }
        Arc::get_mut(&mut inner.storage)
    }

    /// Result of an op: wraps `storage` and records `backward` when grad mode is on and an
    /// input tracks gradients.
    pub(crate) fn from_op(
        storage: StorageBox,
        shape: &[usize],
        device: &Device,
        name: &'static str,
        parents: &[&Tensor],
        backward: impl FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    ) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if storage.len() != numel {
            return Err(Error::Backend {
                backend: device.name(),
                msg: format!("{name}: kernel returned {} elements for shape {shape:?}", storage.len()),
            });
        }
        Ok(Self::from_storage(storage, shape, device)?.track_as(name, parents, backward))
    }

    /// This (untracked, freshly computed) tensor's buffer as the result of an op on
    /// `parents`; used when the backward needs the op's own output.
    pub(crate) fn track_as(
        &self,
        name: &'static str,
        parents: &[&Tensor],
        backward: impl FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    ) -> Tensor {
        let (storage, layout, device) = (self.0.storage.clone(), self.0.layout.clone(), self.0.device.clone());
        Self::with_grad(storage, layout, device, name, parents, Box::new(backward))
    }

    /// A view of this tensor's buffer with another layout, recorded like an op.
    pub(crate) fn view_op(
        &self,
        layout: Layout,
        name: &'static str,
        backward: impl FnOnce(&Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + Send + Sync + 'static,
    ) -> Tensor {
        Self::with_grad(self.0.storage.clone(), layout, self.0.device.clone(), name, &[self], Box::new(backward))
    }

    fn with_grad(
        storage: Arc<dyn BackendStorage>,
        layout: Layout,
        device: Device,
        name: &'static str,
        parents: &[&Tensor],
        backward: BackwardFn,
    ) -> Tensor {
        let track = storage.dtype().is_float() && autograd::records(parents);
        let node = track.then(|| Arc::new(Node::new(name, parents, backward)));
        Self::make(storage, layout, device, node, false)
    }

    /// Error unless `self` and `other` share device and dtype.
    pub(crate) fn check_same(&self, other: &Tensor, op: &'static str) -> Result<()> {
        if !self.device().same(other.device()) {
            return Err(Error::DeviceMismatch { op, lhs: self.device().name(), rhs: other.device().name() });
        }
        if self.dtype() != other.dtype() {
            return Err(Error::DTypeMismatch { op, lhs: self.dtype(), rhs: other.dtype() });
        }
        Ok(())
    }

    /// Error unless the dtype is a float type.
    pub(crate) fn check_float(&self, op: &'static str) -> Result<()> {
        if !self.dtype().is_float() {
            return Err(Error::DType { op, dtype: self.dtype(), expected: Some(DType::F32) });
        }
        Ok(())
    }

    /// Error for ops that have no backward, when an input tracks gradients.
    pub(crate) fn check_no_grad(&self, op: &'static str) -> Result<()> {
        if autograd::is_grad_enabled() && self.tracks_grad() {
            return Err(Error::Autograd(format!(
                "`{op}` has no backward but its input tracks gradients; call .detach() or use no_grad()"
            )));
        }
        Ok(())
    }
}
