//! A Linear layer with its epilogue (bias, GELU, `residual + scale ⊙ ·`) in one pass: f32 on
//! our GEMM, which applies the epilogue to each output tile while it is in L1, and f32
//! activations against bf16 weights in the faster bf16 form of this CPU
//! ([`gemm::bf16_form`]); other dtypes and CPUs composed of the primitive kernels.

use crate::blocks::{for_blocks, OutPtr};
use crate::packed::PackedWeight;
use crate::storage::{boxed, CpuStorage, Src};
use crate::{gemm, pool, CpuBackend};
use beit_engine::backend::Memory;
use beit_engine::checks::linear_shapes;
use beit_engine::backend::matmul as composed;
use beit_engine::{DType, Epilogue, Layout, Result, StorageBox, View};
use gemm::{Bf16Gemm, Panels};
use std::borrow::Cow;
use std::ops::Range;

/// `epilogue(x·wᵀ)` for `x [m, k]`, `w [n, k]` (f32, or bf16 against an f32 `x`; either
/// possibly pre-packed, [`PackedWeight`]).
pub(crate) fn linear(x: View, w: View, epi: &Epilogue) -> Result<StorageBox> {
    if let Some(p) = PackedWeight::of(w.storage) {
        return linear_packed(x, w, p, epi);
    }
    let form = if w.dtype() == DType::BF16 { bf16_form(x, w, gemm::bf16_form())? } else { None };
    linear_in(x, w, weight(w, form)?, epi)
}

/// The unpacked weight `w` as the GEMM's B operand, a bf16 one multiplied in `form`.
fn weight(w: View, form: Option<Bf16Gemm>) -> Result<Weight> {
    let ws = w.layout.strides();
    Ok(match (w.dtype(), form) {
        // B = wᵀ: element (k, n) is w's (n, k).
        (DType::F32, _) => Weight::F32(gemm::Mat { ptr: at::<f32>(w)?, rs: ws[1] as isize, cs: ws[0] as isize }),
        (DType::BF16, Some(Bf16Gemm::Widen)) => Weight::Widen(gemm::Bf16Weight { ptr: at::<half::bf16>(w)?, ld: ws[0] }),
        // B = wᵀ in pairs of adjacent depths: pair (p, c) is the 32 bits at w's (c, 2p);
        // `bf16_form` checked the strides and the alignment.
        (DType::BF16, Some(Bf16Gemm::Dot)) => Weight::Dot(gemm::Mat { ptr: at::<half::bf16>(w)?.cast(), rs: 1, cs: ws[0] as isize / 2 }),
        _ => Weight::Composed,
    })
}

/// [`linear`] against a pre-packed weight: in place when `w` views all of it as `[n, k]`,
/// else on the unpacked elements that `w` picks.
fn linear_packed(x: View, w: View, p: &PackedWeight, epi: &Epilogue) -> Result<StorageBox> {
    if !(w.layout.is_contiguous() && w.layout.offset() == 0 && w.shape() == p.shape()) {
        let unpacked = CpuStorage::new(p.to_host(w.layout)?);
        return linear(x, View { storage: &unpacked, layout: &Layout::contiguous(w.shape()) }, epi);
    }
    let b = p.operand();
    if w.dtype() == DType::F32 || x.layout.strides()[1] == 1 {
        return linear_in(x, w, if w.dtype() == DType::F32 { Weight::PackedF32(b) } else { Weight::PackedDot(b) }, epi);
    }
    // `vdpbf16ps` reads x's rows in pairs: they must be contiguous.
    let xs = CpuStorage::new(CpuBackend.to_host(x)?);
    linear_in(View { storage: &xs, layout: &Layout::contiguous(x.shape()) }, w, Weight::PackedDot(b), epi)
}

/// A Linear weight as the B operand `wᵀ` of our GEMM.
enum Weight {
    /// f32, strided.
    F32(gemm::Mat),
    /// bf16 widened to f32 as it is packed.
    Widen(gemm::Bf16Weight),
    /// bf16 pairs of adjacent depths for `vdpbf16ps`.
    Dot(gemm::Mat),
    /// f32, pre-packed.
    PackedF32(gemm::Prepacked),
    /// bf16 pairs, pre-packed.
    PackedDot(gemm::Prepacked),
    /// Another dtype, or bf16 on a CPU without our bf16 GEMM: composed.
    Composed,
}

/// Pointer to the first element of `v`'s layout, of type `T`.
fn at<T: crate::scalar::Scalar>(v: View) -> Result<*const T> {
    let s = Src::<T>::new("linear", v)?;
    // SAFETY: `Src::new` checked that the layout stays inside the buffer.
    Ok(unsafe { s.data.as_ptr().add(v.layout.offset()) })
}

/// [`linear`] with the weight `w` as the GEMM operand `weight`.
fn linear_in(x: View, w: View, weight: Weight, epi: &Epilogue) -> Result<StorageBox> {
    const OP: &str = "linear";
    let (m, k, n) = linear_shapes(OP, x, w, epi)?;
    if x.dtype() != DType::F32 || !gemm::available() || matches!(weight, Weight::Composed) {
        return composed::linear(&CpuBackend, x, w, epi);
    }
    let (bias, scale, residual) = (contiguous(epi.bias)?, contiguous(epi.scale)?, contiguous(epi.residual)?);
    let ptr = |v: &Option<Cow<[f32]>>| v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
    let post = gemm::Post { bias: ptr(&bias), gelu: epi.gelu, scale: ptr(&scale), residual: ptr(&residual), ..gemm::Post::NONE };
    let xl = x.layout.strides();
    let a = gemm::Mat { ptr: at::<f32>(x)?, rs: xl[0] as isize, cs: xl[1] as isize };
    let mut out = pool::reuse::<f32>(m * n);
    let c = OutPtr(out.as_mut_ptr());
    // Runs `gemm(rows, cols, a, c, post)` on each thread's block of the output: `rows` rows
    // of A from `a`, output columns `cols`, C from `c` (the bf16 products, whose A is packed
    // as bf16 pairs).
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
    // SAFETY (each arm): the operands are inside their buffers (`at`, `bf16_form`,
    // `PackedWeight`); the epilogue's operands are contiguous with the output's shape.
    match weight {
        Weight::F32(b) => unsafe { gemm::sgemm_threads(m, k, n, a, &b, c, n, &post) },
        Weight::Widen(b) => unsafe { gemm::sgemm_threads(m, k, n, a, &b, c, n, &post) },
        Weight::PackedF32(b) => unsafe { gemm::sgemm_threads(m, k, n, a, &b, c, n, &post) },
        Weight::Dot(b) => blocks(&|rows, cols, a, c, post| unsafe { gemm::bf16_gemm(rows, k / 2, cols.len(), a, &b.cols_from(cols.start), c, n, post) }),
        Weight::PackedDot(b) => blocks(&|rows, cols, a, c, post| unsafe { gemm::bf16_gemm(rows, k / 2, cols.len(), a, &b.cols_from(cols.start), c, n, post) }),
        Weight::Composed => unreachable!("handled above"),
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
            let got = crate::testutil::vals(&linear_in(x.view(), wt.view(), weight(wt.view(), Some(form)).unwrap(), &epi).unwrap());
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
    /// A pre-packed weight (f32, and bf16 where the CPU packs it) gives exactly the output of
    /// the same weight unpacked against a contiguous x, with every epilogue term; so do a
    /// column-strided x (copied for `vdpbf16ps`) and a view of rows 8.. (unpacked on the fly).
    #[test]
    fn packed_weights_match_unpacked() {
        if !gemm::available() {
            return;
        }
        let (m, k, n) = (37, 66, 80);
        let x = Tt::rand(DType::F32, &[m, k], 1);
        let strided = x.scrambled();
        let (bias, scale, res) = (Tt::rand(DType::F32, &[n], 3), Tt::rand(DType::F32, &[n], 4), Tt::rand(DType::F32, &[m, n], 5));
        let epi = Epilogue { bias: Some(bias.view()), gelu: true, scale: Some(scale.view()), residual: Some(res.view()) };
        let tail = Layout::new(vec![n - 8, k], vec![k, 1], 8 * k);
        let (tail_bias, tail_res) = (Tt::rand(DType::F32, &[n - 8], 3), Tt::rand(DType::F32, &[m, n - 8], 5));
        let tail_epi = Epilogue { bias: Some(tail_bias.view()), residual: Some(tail_res.view()), ..Epilogue::default() };
        let run = |x: &Tt, w: View, epi: &Epilogue| crate::testutil::vals(&linear(x.view(), w, epi).unwrap());
        for dtype in [DType::F32, DType::BF16] {
            let w = Tt::rand(dtype, &[n, k], 2);
            let Some(packed) = crate::packed::pack(&mut w.s.clone(), n, k).unwrap() else { continue };
            let (whole, rows) = (View { storage: &*packed, layout: &w.l }, View { storage: &*packed, layout: &tail });
            let want = run(&x, w.view(), &epi);
            assert!(run(&x, whole, &epi) == want, "{dtype}: packed");
            assert!(run(&strided, whole, &epi) == want, "{dtype}: packed, strided x");
            let want = run(&x, View { storage: &w.s, layout: &tail }, &tail_epi);
            assert!(run(&x, rows, &tail_epi) == want, "{dtype}: rows 8.. of a packed weight");
        }
    }
}
