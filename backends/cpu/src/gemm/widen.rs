//! bf16 operands of the f32 [`super::sgemm`], widened to f32 as they are packed.
//!
//! [`Bf16Weight`]: a bf16 weight `w [n, k]` as the B operand `wᵀ` of [`super::sgemm`],
//! widened to f32 while its panels are packed (exact: a bf16 is the top half of an f32),
//! so the f32 kernels run on it unchanged. bf16 inference this way halves the weights'
//! memory and bandwidth at f32's accuracy (and, on AVX-512, whose packing widens 16 columns
//! at a time, at f32's speed); it is the form of choice
//! where `vdpbf16ps` does fewer multiply-adds per cycle than f32 FMA ([`super::bf16`]).
//!
//! [`Bf16Rows`]: a row-major bf16 matrix as the A operand (a convolution's weight).

use super::{Isa, Mat, Panels, Rows, NR};
use half::bf16;

/// A bf16 weight `w [n, k]` of row stride `ld`, read as B = wᵀ: B's (k, c) is w's (c, k).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bf16Weight {
    /// w's element (0, 0).
    pub ptr: *const bf16,
    /// w's row stride, in elements.
    pub ld: usize,
}

// SAFETY: as for `Mat`.
unsafe impl Send for Bf16Weight {}
unsafe impl Sync for Bf16Weight {}

impl Panels for Bf16Weight {
    unsafe fn pack(&self, isa: Isa, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]) {
        for (j, start) in (0..nc).step_by(NR).enumerate() {
            let cols = NR.min(nc - start);
            let out = &mut dst[j * NR * kc..][..NR * kc];
            let src = self.ptr.add((c0 + start) * self.ld + k0);
            #[cfg(target_arch = "x86_64")]
            if isa == Isa::Avx512 && cols == NR {
                avx512_panel(src, self.ld, kc, out);
                continue;
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = isa;
            for (p, row) in out.chunks_exact_mut(NR).enumerate() {
                for (q, v) in row.iter_mut().enumerate() {
                    *v = if q < cols { (*src.add(q * self.ld + p)).to_f32() } else { 0.0 };
                }
            }
        }
    }

    /// B's columns from `c` on (w's rows).
    unsafe fn cols_from(&self, c: usize) -> Bf16Weight {
        Bf16Weight { ptr: self.ptr.add(c * self.ld), ..*self }
    }
}

/// One full panel: 16 depths of 16 columns at a time, widened and transposed in
/// registers, the ragged depths element by element.
///
/// # Safety
/// The CPU has AVX-512F; w's 32 rows from `src` hold `kc` values each; `out` holds `NR·kc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_panel(src: *const bf16, ld: usize, kc: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let full_k = kc / 16 * 16;
    for q0 in [0, 16] {
        for p in (0..full_k).step_by(16) {
            let mut r = [_mm512_setzero_ps(); 16];
            for (q, v) in r.iter_mut().enumerate() {
                let row = src.add((q0 + q) * ld + p);
                // 16 streams are more than the hardware prefetchers follow (256 bytes ahead).
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(128).cast());
                let h = _mm256_loadu_si256(row.cast());
                *v = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)));
            }
            super::pack::transpose16(&mut r);
            for (i, v) in r.iter().enumerate() {
                _mm512_storeu_ps(out.as_mut_ptr().add((p + i) * NR + q0), *v);
            }
        }
        for p in full_k..kc {
            for q in 0..16 {
                out[p * NR + q0 + q] = (*src.add((q0 + q) * ld + p)).to_f32();
            }
        }
    }
}

/// A row-major bf16 matrix `[m, k]` of row stride `ld` as the A operand of
/// [`super::sgemm`] (a bf16 convolution weight): each A block is widened to f32 into a
/// scratch matrix just before it is packed, so the f32 kernels run on it unchanged.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bf16Rows {
    /// Element (0, 0).
    pub ptr: *const bf16,
    /// Row stride, in elements.
    pub ld: usize,
}

// SAFETY: as for `Mat`.
unsafe impl Send for Bf16Rows {}
unsafe impl Sync for Bf16Rows {}

impl Rows for Bf16Rows {
    unsafe fn block(&self, r0: usize, k0: usize, mc: usize, kc: usize, scratch: &mut Vec<f32>) -> (Mat, usize, usize) {
        scratch.clear();
        scratch.reserve(mc * kc);
        for r in r0..r0 + mc {
            let row = std::slice::from_raw_parts(self.ptr.add(r * self.ld + k0), kc);
            scratch.extend(row.iter().map(|v| v.to_f32()));
        }
        (Mat { ptr: scratch.as_ptr(), rs: kc as isize, cs: 1 }, 0, 0)
    }

    unsafe fn rows_from(&self, r: usize) -> Self {
        Bf16Rows { ptr: self.ptr.add(r * self.ld), ..*self }
    }
}
