//! Matrix products: batched matmul, and Linear layers with fused epilogues.

use super::{BackendStorage, Elementwise, Memory, StorageBox, View};
use crate::Result;

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
    /// [`Elementwise::binary`] and [`Elementwise::unary`] ([`crate::composed::linear`]).
    fn linear(&self, x: View, w: View, epilogue: &Epilogue) -> Result<StorageBox> {
        crate::composed::linear(self, x, w, epilogue)
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
