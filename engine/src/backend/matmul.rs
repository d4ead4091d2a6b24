//! Matrix products: batched matmul, and Linear layers with fused epilogues.

use super::{on, BackendStorage, BinaryOp, Elementwise, Memory, StorageBox, UnaryOp, View};
use crate::checks::linear_shapes;
use crate::{Layout, Result};

/// What a fused [`Matmul::linear`] applies to `y = x·wᵀ`, in this order: `y + bias`,
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

/// Matrix products.
pub trait Matmul: Memory + Elementwise {
    /// Batched matmul: `lhs` is `[..., m, k]`, `rhs` is `[..., k, n]` with equal batch
    /// dims (possibly stride 0); any strides, so transposes cost nothing. Out: `[..., m, n]`.
    fn matmul(&self, lhs: View, rhs: View) -> Result<StorageBox>;

    /// `epilogue(x·wᵀ)` for `x [m, k]` and a weight `w [n, k]` (any strides): an inference
    /// Linear layer in one pass. The default composes [`Matmul::matmul`],
    /// [`Elementwise::binary`] and [`Elementwise::unary`] ([`linear`]).
    fn linear(&self, x: View, w: View, epilogue: &Epilogue) -> Result<StorageBox> {
        linear(self, x, w, epilogue)
    }

    /// The Linear weight `w [n, k]` (an exclusively owned contiguous buffer) in a form this
    /// backend's [`Matmul::linear`] multiplies faster (the CPU: the panels its GEMM reads,
    /// made once instead of on every call), of `w`'s dtype and `n·k` elements, for
    /// inference: besides `linear`, only [`Memory::to_host`] must read it (other ops may
    /// refuse it). The backend may take `w`'s memory for it (freeing it once packed),
    /// leaving `w` empty, to be dropped. None (the default): the backend has no such form,
    /// and `w` is untouched.
    fn pack_weight(&self, w: &mut dyn BackendStorage, n: usize, k: usize) -> Result<Option<StorageBox>> {
        let _ = (w, n, k);
        Ok(None)
    }
}

/// `epilogue(x·wᵀ)` by matmul, then one elementwise kernel per epilogue term; a bf16
/// weight is first cast to x's dtype.
pub fn linear<B: Matmul + ?Sized>(be: &B, x: View, w: View, epi: &Epilogue) -> Result<StorageBox> {
    let (m, _, n) = linear_shapes("linear", x, w, epi)?;
    if w.dtype() != x.dtype() {
        let cast = be.cast(w, x.dtype())?;
        let layout = Layout::contiguous(w.shape());
        return linear(be, x, on(&cast, &layout), epi);
    }
    let wt = w.layout.permute(&[1, 0])?;
    let out = Layout::contiguous(&[m, n]);
    let mut y = be.matmul(x, View { storage: w.storage, layout: &wt })?;
    if let Some(bias) = epi.bias {
        let rows = bias.layout.broadcast_to(&[m, n])?;
        y = be.binary(BinaryOp::Add, on(&y, &out), View { storage: bias.storage, layout: &rows })?;
    }
    if epi.gelu {
        y = be.unary(UnaryOp::Gelu, on(&y, &out))?;
    }
    if let Some(residual) = epi.residual {
        if let Some(scale) = epi.scale {
            let rows = scale.layout.broadcast_to(&[m, n])?;
            y = be.binary(BinaryOp::Mul, on(&y, &out), View { storage: scale.storage, layout: &rows })?;
        }
        y = be.binary(BinaryOp::Add, residual, on(&y, &out))?;
    }
    Ok(y)
}
