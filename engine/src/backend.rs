//! The object-safe [`Backend`] trait that every device implements.
//!
//! A backend works on opaque buffers ([`BackendStorage`]) described by explicit
//! [`Layout`]s (shape, strides, offset). Inputs may be arbitrary strided views,
//! including broadcast (stride 0) dims; outputs are always fresh contiguous
//! row-major buffers. Every method returns [`Result`] so that device errors
//! (out of memory, bad index) surface instead of panicking.

use crate::{DType, HostData, Layout, Result};
use std::any::Any;
use std::fmt::Debug;

/// An opaque device buffer owned by one backend.
pub trait BackendStorage: Send + Sync + Debug + Any {
    /// The element type.
    fn dtype(&self) -> DType;
    /// Number of elements.
    fn len(&self) -> usize;
    /// Whether the buffer has no elements.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether this is a pre-packed Linear weight ([`Backend::pack_weight`]), which only
    /// `linear` and `to_host` are sure to read.
    fn is_packed(&self) -> bool {
        false
    }
    /// For the owning backend to downcast.
    fn as_any(&self) -> &dyn Any;
    /// For the owning backend to downcast mutably.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// A freshly allocated, exclusively owned buffer.
pub type StorageBox = Box<dyn BackendStorage>;

/// A strided view of a buffer: what backend kernels read.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// The buffer.
    pub storage: &'a dyn BackendStorage,
    /// Which elements of it, in which order.
    pub layout: &'a Layout,
}

impl View<'_> {
    /// The view's shape.
    pub fn shape(&self) -> &[usize] {
        self.layout.shape()
    }
    /// The buffer's dtype.
    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }
}

/// Elementwise unary ops (float dtypes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// -x
    Neg,
    /// e^x
    Exp,
    /// ln x
    Log,
    /// √x
    Sqrt,
    /// tanh x
    Tanh,
    /// The error function.
    Erf,
    /// |x|
    Abs,
    /// max(x, 0)
    Relu,
    /// x²
    Sqr,
    /// 1/x
    Recip,
    /// 1/(1+e^-x)
    Sigmoid,
    /// GELU, erf form: x·Φ(x).
    Gelu,
    /// x·mul + add
    Affine {
        /// Multiplier.
        mul: f64,
        /// Addend.
        add: f64,
    },
    /// x^p for a scalar p.
    Powf(f64),
}

/// Elementwise binary ops; both operands have the output's shape (broadcast by strides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
    /// max(a, b)
    Maximum,
    /// min(a, b)
    Minimum,
}

/// Elementwise comparisons; the output is [`DType::Bool`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// a == b
    Eq,
    /// a != b
    Ne,
    /// a < b
    Lt,
    /// a <= b
    Le,
    /// a > b
    Gt,
    /// a >= b
    Ge,
}

/// Reductions over a set of dims (kept as size 1 in the output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
}

/// Geometry of a 2-D convolution (NCHW input, OIHW weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Kernel (height, width).
    pub kernel: (usize, usize),
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// Zero padding (height, width), on both sides.
    pub padding: (usize, usize),
}

impl ConvGeom {
    /// Output height.
    pub fn out_h(&self) -> usize {
        (self.height + 2 * self.padding.0 - self.kernel.0) / self.stride.0 + 1
    }
    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.width + 2 * self.padding.1 - self.kernel.1) / self.stride.1 + 1
    }
    /// Length of one im2col row: channels · kh · kw.
    pub fn patch_len(&self) -> usize {
        self.channels * self.kernel.0 * self.kernel.1
    }
}

/// Hyper-parameters of one AdamW step (PyTorch semantics, decoupled weight decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε added to √v̂.
    pub eps: f64,
    /// Decoupled weight decay coefficient.
    pub weight_decay: f64,
    /// 1-based step count, for bias correction.
    pub step: u64,
}

/// What a fused [`Backend::linear`] applies to `y = x·wᵀ`, in this order: `y + bias`,
/// GELU, `residual + scale ⊙ y` (a Linear layer and what follows it in a transformer block).
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// `[n]`, added to every row.
    pub bias: Option<View<'a>>,
    /// GELU (erf form) after the bias.
    pub gelu: bool,
    /// `[m, n]`, added last.
    pub residual: Option<View<'a>>,
    /// `[n]`, multiplies `y` before the residual is added (layer scale); needs `residual`.
    pub scale: Option<View<'a>>,
}

/// A compute device. Implementations: `beit-backend-cpu`, `beit-backend-cuda`.
///
/// Float kernels must support [`DType::F32`]; [`DType::F64`] is required on the CPU
/// (references, gradient checks) and optional elsewhere.
pub trait Backend: Send + Sync + Debug {
    /// Device name, e.g. `cpu` or `cuda:0`.
    fn name(&self) -> String;
    /// Wait until all queued work is done (no-op on synchronous backends).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    /// A buffer of `len` elements all equal to `value` (cast to `dtype`).
    fn full(&self, dtype: DType, len: usize, value: f64) -> Result<StorageBox>;
    /// Upload host data.
    #[allow(clippy::wrong_self_convention)]
    fn from_host(&self, data: &HostData) -> Result<StorageBox>;
    /// Upload host data the caller gives up (backends that can adopt the buffer skip a copy).
    #[allow(clippy::wrong_self_convention)]
    fn from_host_owned(&self, data: HostData) -> Result<StorageBox> {
        self.from_host(&data)
    }
    /// Download a view, gathered into row-major order.
    fn to_host(&self, src: View) -> Result<HostData>;
    /// Copy a view into `dst` at `dst_layout` (same shape, same dtype).
    fn copy_strided(&self, src: View, dst: &mut dyn BackendStorage, dst_layout: &Layout) -> Result<()>;
    /// Convert a view to another dtype (floats to integers truncate toward zero).
    fn cast(&self, src: View, dtype: DType) -> Result<StorageBox>;

    /// Elementwise unary op.
    fn unary(&self, op: UnaryOp, src: View) -> Result<StorageBox>;
    /// Elementwise binary op; `lhs` and `rhs` have the same shape and dtype.
    fn binary(&self, op: BinaryOp, lhs: View, rhs: View) -> Result<StorageBox>;
    /// Elementwise comparison giving a [`DType::Bool`] buffer.
    fn cmp(&self, op: CmpOp, lhs: View, rhs: View) -> Result<StorageBox>;
    /// `cond ? on_true : on_false`, all three of one shape; `cond` is u8/bool.
    fn where_cond(&self, cond: View, on_true: View, on_false: View) -> Result<StorageBox>;
    /// Reduce over `dims` (sorted, unique); the output keeps them with size 1.
    fn reduce(&self, op: ReduceOp, src: View, dims: &[usize]) -> Result<StorageBox>;

    /// Batched matmul: `lhs` is `[..., m, k]`, `rhs` is `[..., k, n]` with equal batch
    /// dims (possibly stride 0); any strides, so transposes cost nothing. Out: `[..., m, n]`.
    fn matmul(&self, lhs: View, rhs: View) -> Result<StorageBox>;

    /// `epilogue(x·wᵀ)` for `x [m, k]` and a weight `w [n, k]` (any strides): an inference
    /// Linear layer in one pass. The default composes [`Backend::matmul`],
    /// [`Backend::binary`] and [`Backend::unary`] ([`crate::composed::linear`]).
    fn linear(&self, x: View, w: View, epilogue: &Epilogue) -> Result<StorageBox> {
        crate::composed::linear(self, x, w, epilogue)
    }

    /// The Linear weight `w [n, k]` (an exclusively owned contiguous buffer) in a form this
    /// backend's [`Backend::linear`] multiplies faster (the CPU: the panels its GEMM reads,
    /// made once instead of on every call), of `w`'s dtype and `n·k` elements, for
    /// inference: besides `linear`, only [`Backend::to_host`] must read it (other ops may
    /// refuse it). The backend may take `w`'s memory for it (freeing it once packed),
    /// leaving `w` empty, to be dropped. None (the default): the backend has no such form,
    /// and `w` is untouched.
    fn pack_weight(&self, w: &mut dyn BackendStorage, n: usize, k: usize) -> Result<Option<StorageBox>> {
        let _ = (w, n, k);
        Ok(None)
    }

    /// Free the buffers this backend keeps for reuse (the CPU's pool of dropped buffers),
    /// e.g. after loading a model, whose checkpoint buffers were copied into packed or
    /// converted weights and are garbage now. The default does nothing: the backend keeps
    /// none, or frees them itself under memory pressure.
    fn release_cached(&self) {}

    /// Attention at inference: `softmax(scale·q·kᵀ + bias)·v` per batch entry and head, for
    /// `q`, `k`, `v` `[B, H, L, D]` and `bias` broadcastable to `[B, H, L, L]` (any strides);
    /// the output is `[B, L, H, D]` (heads merged). The default composes the primitive ops
    /// ([`crate::composed::attention`]); a backend may keep the `L × L` scores on chip.
    fn attention(&self, q: View, k: View, v: View, bias: Option<View>, scale: f64) -> Result<StorageBox> {
        crate::composed::attention(self, q, k, v, bias, scale)
    }

    /// Softmax over the last dim.
    fn softmax_last(&self, src: View) -> Result<StorageBox>;
    /// Gradient of softmax: `y ⊙ (dy − Σ dy ⊙ y)` over the last dim.
    fn softmax_last_backward(&self, y: View, dy: View) -> Result<StorageBox>;
    /// LayerNorm over the last dim; returns `(y, mean, rstd)`, the stats with one value per row.
    fn layer_norm(
        &self,
        x: View,
        weight: Option<View>,
        bias: Option<View>,
        eps: f64,
    ) -> Result<(StorageBox, StorageBox, StorageBox)>;
    /// Gradient of LayerNorm: `(dx, dweight, dbias)`; the last two when `weight` is given.
    fn layer_norm_backward(
        &self,
        x: View,
        weight: Option<View>,
        mean: View,
        rstd: View,
        dy: View,
    ) -> Result<(StorageBox, Option<StorageBox>, Option<StorageBox>)>;
    /// Gradient of GELU (erf form) at `x`, times `dy`.
    fn gelu_backward(&self, x: View, dy: View) -> Result<StorageBox>;

    /// Cross-entropy of `logits [R, C]` against i64 `targets [R]`, with label smoothing;
    /// rows whose target is `ignore_index` are skipped; the mean over the other rows, as a
    /// 1-element buffer (NaN when no row is selected). A target outside `0..C` is an error.
    fn cross_entropy(&self, logits: View, targets: View, smoothing: f64, ignore_index: i64) -> Result<StorageBox>;
    /// Gradient of [`Backend::cross_entropy`] w.r.t. the logits; `dloss` has 1 element.
    fn cross_entropy_backward(
        &self,
        logits: View,
        targets: View,
        smoothing: f64,
        ignore_index: i64,
        dloss: View,
    ) -> Result<StorageBox>;

    /// Select entries along `dim` by i64/u32 `indices` (1-D). Out-of-range is an error.
    fn index_select(&self, src: View, dim: usize, indices: View) -> Result<StorageBox>;
    /// A copy of `dst` with `src` added at `indices` along `dim` (repeats accumulate).
    fn index_add(&self, dst: View, dim: usize, indices: View, src: View) -> Result<StorageBox>;

    /// 2-D convolution (groups = 1) of NCHW `x` with a weight `[O, C, kh, kw]` and optional
    /// bias `[O]` (any strides): `[B, O, out_h, out_w]`. The default composes
    /// [`Backend::im2col`] and [`Backend::matmul`] ([`crate::composed::conv2d`]); a backend
    /// may gather the patches as it multiplies (implicit GEMM) instead of storing them.
    fn conv2d(&self, x: View, w: View, bias: Option<View>, geom: &ConvGeom) -> Result<StorageBox> {
        crate::composed::conv2d(self, x, w, bias, geom)
    }
    /// The weight gradient of [`Backend::conv2d`]: `Σ_b dy[b]·patches(x[b])ᵀ` for
    /// `dy [B, O, out_h, out_w]`, as `[O, C, kh, kw]`. The default is
    /// [`crate::composed::conv2d_weight_grad`].
    fn conv2d_weight_grad(&self, x: View, dy: View, geom: &ConvGeom) -> Result<StorageBox> {
        crate::composed::conv2d_weight_grad(self, x, dy, geom)
    }

    /// im2col: NCHW `x` to `[batch, out_h·out_w, channels·kh·kw]` (zero padding).
    fn im2col(&self, x: View, geom: &ConvGeom) -> Result<StorageBox>;
    /// col2im, the adjoint of [`Backend::im2col`]: sums the patches back into `[B, C, H, W]`.
    fn col2im(&self, cols: View, geom: &ConvGeom) -> Result<StorageBox>;

    /// A buffer whose element `i` is `1/keep` with probability `keep`, else 0, drawn from
    /// [`crate::rng::uniform`]`(seed, i)` so that every backend gives the same mask.
    fn bernoulli_scaled(&self, dtype: DType, len: usize, keep: f64, seed: u64) -> Result<StorageBox>;

    /// The `k` largest entries of the last dim, sorted descending: `(values, i64 indices)`.
    fn topk_last(&self, src: View, k: usize) -> Result<(StorageBox, StorageBox)>;

    /// One AdamW step in place on contiguous `param`, `m`, `v`.
    fn adamw_step(
        &self,
        param: &mut dyn BackendStorage,
        grad: View,
        m: &mut dyn BackendStorage,
        v: &mut dyn BackendStorage,
        hp: &AdamWStep,
    ) -> Result<()>;
}
