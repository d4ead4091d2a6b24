//! The AVX-512 [`Arch`]: an `R × 32` tile of C (R ≤ [`MR`]) in 2·R zmm accumulators, from a
//! packed A micro-panel (`R` values per k) and a packed B micro-panel (32 per k); packing in
//! [`super::pack`].

use super::{pack, Arch, Blocking, Isa, Mat, NR};
use std::arch::x86_64::*;

/// Rows of the micro-kernel's tile (28 of the 32 zmm registers accumulate).
pub(super) const MR: usize = 14;

/// Blocks 256 deep (a B panel is 32 KiB); B blocks of 384 columns (384 KiB; BEiT's widths
/// are multiples) and A blocks of 64 tiles (896 KiB); each A tile stays in L1 while the B
/// panels stream past it from L2. On Zen 4's 1 MiB L2, B blocks of 384 rather than 768
/// columns ran the segmentation forward at 512 7% faster and BEiT-Base at batch 8 2–5%
/// (interleaved runs); each B block is still packed once per A block.
pub(super) const BLOCKING: Blocking = Blocking { mr: MR, kc: 256, mc: 64 * MR, nc: 384, panel_outer: false };

/// The AVX-512F GEMM.
pub(super) struct Avx512;

impl Arch for Avx512 {
    const ISA: Isa = Isa::Avx512;

    unsafe fn pack_a(a: Mat, r0: usize, k0: usize, mc: usize, kc: usize, dst: &mut [f32]) {
        pack::a_block(a, r0, k0, mc, kc, dst)
    }

    unsafe fn kernel(rows: usize, kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, ncols: usize, acc: bool) {
        debug_assert!((1..=MR).contains(&rows) && ncols <= NR);
        by_rows!(rows, MR, [1 2 3 4 5 6 7 8 9 10 11 12 13], tile(kc, a, b, c, ldc, ncols, acc))
    }
}

/// `C[R, ncols] (+)= A·B` over `kc` steps; `a` holds `R` values per step, `b` [`NR`].
/// With `accumulate`, C's old values are added; only the first `ncols` columns are written.
///
/// # Safety
/// The CPU has AVX-512F; `a` and `b` hold `kc` steps; C's `R` rows of `ncols` at stride
/// `ldc` are writable.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, ncols: usize, accumulate: bool) {
    if accumulate {
        super::prefetch_rows(R, c, ldc);
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let (b0, b1) = (_mm512_loadu_ps(b), _mm512_loadu_ps(b.add(16)));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm512_set1_ps(*a.add(i));
            row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
        }
        a = a.add(R);
        b = b.add(NR);
    }
    store(acc, c, ldc, ncols, accumulate)
}

/// Stores an `R × 32` tile of accumulators into C's first `ncols` columns, adding C's old
/// values with `accumulate`. Taken by value and marked `#[inline]`, so that the full-height
/// micro-kernels store their accumulators straight from registers (by reference, each call
/// zeroed a copy of them on the stack first).
///
/// # Safety
/// The CPU has AVX-512F; C's `R` rows of `ncols` at stride `ldc` are writable.
#[target_feature(enable = "avx512f")]
#[inline]
pub(super) unsafe fn store<const R: usize>(acc: [[__m512; 2]; R], c: *mut f32, ldc: usize, ncols: usize, accumulate: bool) {
    let (lo, hi) = super::pack::masks(ncols);
    for (i, [mut v0, mut v1]) in acc.into_iter().enumerate() {
        let p = c.add(i * ldc);
        if accumulate {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(lo, p));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(hi, p.add(16)));
        }
        _mm512_mask_storeu_ps(p, lo, v0);
        _mm512_mask_storeu_ps(p.add(16), hi, v1);
    }
}
