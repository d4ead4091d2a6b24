//! A Linear layer with its epilogue (bias, GELU, `residual + scale ⊙ ·`) in one pass: f32 on
//! our GEMM, which applies the epilogue to each output tile while it is in L1; other
//! dtypes and CPUs composed of the primitive kernels.

use crate::matmul::{for_blocks, OutPtr};
use crate::storage::{boxed, Src};
use crate::{gemm, pool, CpuBackend};
use beit_engine::checks::linear_shapes;
use beit_engine::{composed, DType, Epilogue, Result, StorageBox, View};
use std::borrow::Cow;

/// `epilogue(x·wᵀ)` for `x [m, k]`, `w [n, k]`.
pub(crate) fn linear(x: View, w: View, epi: &Epilogue) -> Result<StorageBox> {
    const OP: &str = "linear";
    let (m, k, n) = linear_shapes(OP, x, w, epi)?;
    if x.dtype() != DType::F32 || !gemm::available() {
        return composed::linear(&CpuBackend, x, w, epi);
    }
    let (xs, ws) = (Src::<f32>::new(OP, x)?, Src::<f32>::new(OP, w)?);
    let (bias, scale, residual) = (contiguous(epi.bias)?, contiguous(epi.scale)?, contiguous(epi.residual)?);
    let ptr = |v: &Option<Cow<[f32]>>| v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
    let post = gemm::Post { bias: ptr(&bias), gelu: epi.gelu, scale: ptr(&scale), residual: ptr(&residual), ..gemm::Post::NONE };
    let (xl, wl) = (x.layout.strides(), w.layout.strides());
    // SAFETY: `Src::new` checked that both layouts stay inside their buffers.
    let a = gemm::Mat { ptr: unsafe { xs.data.as_ptr().add(x.layout.offset()) }, rs: xl[0] as isize, cs: xl[1] as isize };
    // B = wᵀ: element (k, n) is w's (n, k).
    let b = gemm::Mat { ptr: unsafe { ws.data.as_ptr().add(w.layout.offset()) }, rs: wl[1] as isize, cs: wl[0] as isize };
    let mut out = pool::reuse::<f32>(m * n);
    let c = OutPtr(out.as_mut_ptr());
    for_blocks(1, m, k, n, gemm::tile(), |_, rows, cols| {
        // SAFETY: the blocks are disjoint and inside the output; the epilogue's operands
        // are contiguous with the output's shape.
        unsafe {
            let (a, b) = (a.from(rows.start, 0), b.from(0, cols.start));
            let post = post.offset(rows.start, cols.start, n);
            gemm::sgemm(rows.len(), k, cols.len(), a, &b, c.add(rows.start * n + cols.start).0, n, &post);
        }
    });
    Ok(boxed(DType::F32, out))
}

/// An epilogue operand's elements in row-major order.
fn contiguous(v: Option<View<'_>>) -> Result<Option<Cow<'_, [f32]>>> {
    v.map(|v| Src::<f32>::new("linear", v).map(|s| s.contiguous())).transpose()
}
