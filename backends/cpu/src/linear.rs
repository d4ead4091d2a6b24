//! A Linear layer with its epilogue (bias, GELU, `residual + scale ⊙ ·`) in one pass: f32 on
//! our GEMM, which applies the epilogue to each output tile while it is in L1, and f32
//! activations against bf16 weights in the faster bf16 form of this CPU
//! ([`gemm::bf16_form`]); other dtypes and CPUs composed of the primitive kernels.

use crate::matmul::{for_blocks, OutPtr};
use crate::storage::{boxed, Src};
use crate::{gemm, pool, CpuBackend};
use beit_engine::checks::linear_shapes;
use beit_engine::{composed, DType, Epilogue, Result, StorageBox, View};
use gemm::Bf16Gemm;
use std::borrow::Cow;
use std::ops::Range;

/// `epilogue(x·wᵀ)` for `x [m, k]`, `w [n, k]` (f32, or bf16 against an f32 `x`).
pub(crate) fn linear(x: View, w: View, epi: &Epilogue) -> Result<StorageBox> {
    let form = if w.dtype() == DType::BF16 { bf16_form(x, w, gemm::bf16_form())? } else { None };
    linear_in(x, w, epi, form)
}

/// [`linear`] with a bf16 `w` multiplied in `form` (None: f32 `w`, or composed).
fn linear_in(x: View, w: View, epi: &Epilogue, form: Option<Bf16Gemm>) -> Result<StorageBox> {
    const OP: &str = "linear";
    let (m, k, n) = linear_shapes(OP, x, w, epi)?;
    if x.dtype() != DType::F32 || !gemm::available() || (w.dtype() == DType::BF16 && form.is_none()) {
        return composed::linear(&CpuBackend, x, w, epi);
    }
    let (bias, scale, residual) = (contiguous(epi.bias)?, contiguous(epi.scale)?, contiguous(epi.residual)?);
    let ptr = |v: &Option<Cow<[f32]>>| v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
    let post = gemm::Post { bias: ptr(&bias), gelu: epi.gelu, scale: ptr(&scale), residual: ptr(&residual), ..gemm::Post::NONE };
    let (xl, wl) = (x.layout.strides(), w.layout.strides());
    let xs = Src::<f32>::new(OP, x)?;
    // SAFETY (here and below): `Src::new` checked that the layouts stay inside their buffers.
    let a = gemm::Mat { ptr: unsafe { xs.data.as_ptr().add(x.layout.offset()) }, rs: xl[0] as isize, cs: xl[1] as isize };
    let mut out = pool::reuse::<f32>(m * n);
    let c = OutPtr(out.as_mut_ptr());
    // Runs `gemm(rows, cols, a, c, post)` on each thread's block of the output: `rows` rows
    // of A from `a`, output columns `cols`, C from `c`.
    let blocks = |gemm: &BlockGemm| {
        for_blocks(1, m, k, n, gemm::tile(), |_, rows, cols| {
            // SAFETY: the blocks are disjoint and inside the output; the epilogue's operands
            // are contiguous with the output's shape.
            unsafe {
                let post = post.offset(rows.start, cols.start, n);
                gemm(rows.len(), cols.clone(), a.from(rows.start, 0), c.add(rows.start * n + cols.start).0, &post);
            }
        })
    };
    match form {
        None => {
            let ws = Src::<f32>::new(OP, w)?;
            // B = wᵀ: element (k, n) is w's (n, k).
            let b = gemm::Mat { ptr: unsafe { ws.data.as_ptr().add(w.layout.offset()) }, rs: wl[1] as isize, cs: wl[0] as isize };
            // SAFETY: as above.
            blocks(&|rows, cols, a, c, post| unsafe { gemm::sgemm(rows, k, cols.len(), a, &b.from(0, cols.start), c, n, post) });
        }
        Some(form) => {
            let ws = Src::<half::bf16>::new(OP, w)?;
            let w0 = unsafe { ws.data.as_ptr().add(w.layout.offset()) };
            match form {
                Bf16Gemm::Widen => {
                    let b = gemm::Bf16Weight { ptr: w0, ld: wl[0] };
                    // SAFETY: as above.
                    blocks(&|rows, cols, a, c, post| unsafe { gemm::sgemm(rows, k, cols.len(), a, &b.from(cols.start), c, n, post) });
                }
                Bf16Gemm::Dot => {
                    // B = wᵀ in pairs of adjacent depths: pair (p, c) is the 32 bits at w's (c, 2p).
                    let b = gemm::Mat { ptr: w0.cast(), rs: 1, cs: wl[0] as isize / 2 };
                    // SAFETY: as above; `bf16_form` checked the strides and the alignment.
                    blocks(&|rows, cols, a, c, post| unsafe { gemm::bf16_gemm(rows, k / 2, cols.len(), a, &b.from(0, cols.start), c, n, post) });
                }
            }
        }
    }
    Ok(boxed(DType::F32, out))
}

/// One thread's block of a Linear's GEMM: rows, output columns, A, C and the epilogue there.
type BlockGemm<'a> = dyn Fn(usize, Range<usize>, gemm::Mat, *mut f32, &gemm::Post) + Sync + 'a;

/// How our GEMM takes `x [m, k]` against the bf16 `w [n, k]`: `preferred` (this CPU's
/// faster form) when w's rows are unit-stride; `Dot` also needs unit-stride rows of x and
/// w's pairs of adjacent depths to be aligned 32-bit elements (k, w's row stride and offset
/// even, its buffer 4-byte aligned), else `Widen`. None: composed.
fn bf16_form(x: View, w: View, preferred: Option<Bf16Gemm>) -> Result<Option<Bf16Gemm>> {
    let ws = Src::<half::bf16>::new("linear", w)?;
    let (xl, wl) = (x.layout.strides(), w.layout.strides());
    if wl[1] != 1 {
        return Ok(None);
    }
    let even = |v: usize| v.is_multiple_of(2);
    let aligned = (ws.data.as_ptr() as usize).is_multiple_of(4);
    let pairs = xl[1] == 1 && even(x.shape()[1]) && even(wl[0]) && even(w.layout.offset()) && aligned;
    Ok(preferred.map(|f| if f == Bf16Gemm::Dot && !pairs { Bf16Gemm::Widen } else { f }))
}

/// How this CPU runs a Linear layer whose weight is bf16 (against f32 activations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Linear {
    /// AVX512_BF16's `vdpbf16ps`: activations rounded to bf16, f32 accumulation.
    Dot,
    /// The weight widened to f32 inside the GEMM (f32 FMA): this CPU has no AVX512_BF16
    /// (`native: false`), or its `vdpbf16ps` does fewer multiply-adds per cycle than FMA.
    Widened {
        /// Whether the CPU has AVX512_BF16.
        native: bool,
    },
    /// The weight cast to f32 on every call (no AVX-512 or AVX2 + FMA): slow.
    Composed,
}

impl std::fmt::Display for Bf16Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bf16Linear::Dot => "vdpbf16ps",
            Bf16Linear::Widened { .. } => "widened",
            Bf16Linear::Composed => "composed",
        })
    }
}

/// How this CPU runs bf16 Linear weights (decided once per process; see [`Bf16Linear`]).
pub fn bf16_linear() -> Bf16Linear {
    match gemm::bf16_form() {
        Some(Bf16Gemm::Dot) => Bf16Linear::Dot,
        Some(Bf16Gemm::Widen) => Bf16Linear::Widened { native: gemm::bf16_available() },
        None => Bf16Linear::Composed,
    }
}

/// An epilogue operand's elements in row-major order.
fn contiguous(v: Option<View<'_>>) -> Result<Option<Cow<'_, [f32]>>> {
    v.map(|v| Src::<f32>::new("linear", v).map(|s| s.contiguous())).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::Tt;
    use beit_engine::Layout;

    /// Both bf16 forms through the threaded Linear (column blocks split between threads) on
    /// a weight of padded row stride, with every epilogue term, against f64 loops over the
    /// bf16 weight: the widened form at f32 tolerance, `vdpbf16ps` (where the CPU has it)
    /// within the bound of rounding the activations, 2⁻⁸·Σ|x||w|.
    #[test]
    fn both_bf16_forms_match_f64() {
        if !gemm::available() {
            return;
        }
        let (m, k, n, ld) = (197, 600, 800, 602);
        let x = Tt::rand(DType::F32, &[m, k], 1);
        let wt = Tt { l: Layout::new(vec![n, k], vec![ld, 1], 2), ..Tt::rand(DType::BF16, &[n * ld + 2], 2) };
        let (bias, scale, res) = (Tt::rand(DType::F32, &[n], 3), Tt::rand(DType::F32, &[n], 4), Tt::rand(DType::F32, &[m, n], 5));
        let epi = Epilogue { bias: Some(bias.view()), gelu: true, scale: Some(scale.view()), residual: Some(res.view()) };
        let (xv, wv, bv, sv, rv) = (x.vals(), wt.vals(), bias.vals(), scale.vals(), res.vals());
        let forms = [Some(Bf16Gemm::Widen), gemm::bf16_available().then_some(Bf16Gemm::Dot)];
        for form in forms.into_iter().flatten() {
            assert_eq!(bf16_form(x.view(), wt.view(), Some(form)).unwrap(), Some(form));
            let got = crate::testutil::vals(&linear_in(x.view(), wt.view(), &epi, Some(form)).unwrap());
            for i in 0..m {
                for j in 0..n {
                    let dot: f64 = (0..k).map(|p| xv[i * k + p] * wv[j * k + p]).sum();
                    let abs: f64 = (0..k).map(|p| (xv[i * k + p] * wv[j * k + p]).abs()).sum();
                    let want = rv[i * n + j] + sv[j] * crate::erf::gelu(dot + bv[j]);
                    // GELU's slope is below 1.13; the scale multiplies the error.
                    let slack = if form == Bf16Gemm::Dot { abs / 256.0 * 1.13 * sv[j].abs() } else { 0.0 };
                    let tol = slack + 1e-5 * (1.0 + want.abs()) * (k as f64).sqrt();
                    let g = got[i * n + j];
                    assert!((g - want).abs() <= tol, "{form:?} ({i}, {j}): {g}, want {want} ± {tol:.2e}");
                }
            }
        }
    }
}
