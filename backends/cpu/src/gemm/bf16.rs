//! The AVX512_BF16 [`Arch`]: `f32 A · bf16 B` with A rounded to bf16 while it is packed and
//! the products accumulated in f32 by `vdpbf16ps`.
//!
//! Both operands are packed as pairs: one 32-bit element holds the two bf16 values at
//! depths `2p` and `2p + 1`, so a product of depth `k` runs as one of depth `k/2` over
//! pairs. A bf16 weight `w [n, k]` read as 32-bit elements is already B's transpose in
//! pairs, so [`super::pack`] packs it as it packs an f32 weight; A is converted while its
//! tiles are packed, 16 pairs of each row at a time, transposed in registers.

use super::avx512::{self, Avx512, MR};
use super::{pack, Arch, Isa, Mat, NR};
use std::arch::x86_64::*;
use std::time::{Duration, Instant};

/// Whether the `vdpbf16ps` micro-kernel does a depth step clearly faster (by a quarter) than
/// the f32 FMA one. Intel's cores run `vdpbf16ps` at a half or a quarter of FMA's rate per
/// instruction (on the Xeon of #13, 1.3–1.6× slower in BEiT-Base's forward than FMA on
/// widened weights), so there it is never faster. Elsewhere (AMD's Zen 4 and later) both
/// run on the same L1-resident tile (256 steps: 512 depths in pairs, 256 in f32), in
/// alternating rounds of 256 calls after 2 warm-up rounds each (the first AVX-512 work runs
/// slowly while the core changes clock), best round of 5 each: about 10 ms.
pub(super) fn dot_beats_fma() -> bool {
    let vendor = __cpuid(0);
    if [vendor.ebx, vendor.edx, vendor.ecx] == [0x756e_6547, 0x4965_6e69, 0x6c65_746e] {
        return false; // "GenuineIntel"
    }
    type Kernel = unsafe fn(usize, usize, *const f32, *const f32, *mut f32, usize, usize, bool);
    let (a, b, mut c) = (vec![0.5f32; MR * 256], vec![0.25f32; NR * 256], vec![0.0f32; MR * NR]);
    let mut round = |kernel: Kernel| -> Duration {
        let t = Instant::now();
        for _ in 0..256 {
            // SAFETY: the caller checked the CPU; the operands hold 256 steps of a full tile.
            unsafe { kernel(MR, 256, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), NR, NR, false) };
        }
        std::hint::black_box(&mut c);
        t.elapsed()
    };
    let (fma, dot): (Kernel, Kernel) = (Avx512::kernel, Avx512Bf16::kernel);
    let (mut best_fma, mut best_dot) = (Duration::MAX, Duration::MAX);
    for r in 0..7 {
        let (f, d) = (round(fma), round(dot));
        if r >= 2 {
            (best_fma, best_dot) = (best_fma.min(f), best_dot.min(d));
        }
    }
    best_dot * 5 < best_fma * 8
}

/// The AVX512_BF16 GEMM: AVX-512's blocking and B packing, in pairs.
pub(super) struct Avx512Bf16;

impl Arch for Avx512Bf16 {
    const ISA: Isa = Isa::Avx512;

    /// `a` is f32 with unit column stride; `k0`, `kc` count pairs (columns `2·k0..`).
    unsafe fn pack_a(a: Mat, r0: usize, k0: usize, mc: usize, kc: usize, dst: &mut [f32]) {
        pack_a_pairs(a, r0, k0, mc, kc, dst)
    }

    unsafe fn kernel(rows: usize, kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, ncols: usize, acc: bool) {
        debug_assert!((1..=MR).contains(&rows) && ncols <= NR);
        by_rows!(rows, MR, [1 2 3 4 5 6 7 8 9 10 11 12 13], tile(kc, a, b, c, ldc, ncols, acc))
    }
}

/// Packs rows `r0..r0+mc` of the f32 matrix `a` (unit column stride), pairs `k0..k0+kc`,
/// rounded to bf16 (to nearest even), into tiles of [`MR`] rows: tile `t` starts at
/// `t·MR·kc` and holds `rows_t` pairs per step.
///
/// # Safety
/// The CPU has AVX512_BF16; `a.cs == 1` and the block's `2·kc` columns of each
/// row are readable; `dst` holds `mc.div_ceil(MR)·MR·kc` elements.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pack_a_pairs(a: Mat, r0: usize, k0: usize, mc: usize, kc: usize, dst: &mut [f32]) {
    debug_assert_eq!(a.cs, 1);
    for (t, start) in (0..mc).step_by(MR).enumerate() {
        let rows = MR.min(mc - start);
        let out = dst[t * MR * kc..][..rows * kc].as_mut_ptr();
        let row_mask = (1u16 << rows) - 1;
        for p in (0..kc).step_by(16) {
            let pairs = 16.min(kc - p);
            let (lo, hi) = pack::masks(2 * pairs);
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, v) in r.iter_mut().enumerate().take(rows) {
                let s = a.at(r0 + start + i, 2 * (k0 + p));
                let (x0, x1) = (_mm512_maskz_loadu_ps(lo, s), _mm512_maskz_loadu_ps(hi, s.wrapping_add(16)));
                // The second operand fills the low half: lane j holds columns 2j, 2j + 1.
                *v = _mm512_castsi512_ps(std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(x1, x0)));
            }
            pack::transpose16(&mut r);
            for (q, v) in r.iter().enumerate().take(pairs) {
                _mm512_mask_storeu_ps(out.add((p + q) * rows), row_mask, *v);
            }
        }
    }
}

/// `C[R, ncols] (+)= A·B` over `kc` pair steps; `a` holds `R` pairs per step, `b` 32.
///
/// # Safety
/// The CPU has AVX512_BF16; `a` and `b` hold `kc` steps; C's `R` rows of `ncols` at stride
/// `ldc` are writable.
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, ncols: usize, accumulate: bool) {
    let bh = |v: __m512i| std::mem::transmute::<__m512i, __m512bh>(v);
    if accumulate {
        super::prefetch_rows(R, c, ldc);
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; R];
    let (mut a, mut b) = (a.cast::<i32>(), b.cast::<i32>());
    for _ in 0..kc {
        let (b0, b1) = (bh(_mm512_loadu_si512(b.cast())), bh(_mm512_loadu_si512(b.add(16).cast())));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = bh(_mm512_set1_epi32(*a.add(i)));
            row[0] = _mm512_dpbf16_ps(row[0], ai, b0);
            row[1] = _mm512_dpbf16_ps(row[1], ai, b1);
        }
        a = a.add(R);
        b = b.add(NR);
    }
    avx512::store(acc, c, ldc, ncols, accumulate)
}
