//! Packing of operand blocks into the micro-kernel's order: A in tiles of [`MR`] rows
//! (`rows` values per k), B in panels of [`NR`] columns (32 values per k, zero padded).

use super::avx512::MR;
use super::{Mat, NR};
use std::arch::x86_64::*;

/// Packs rows `r0..r0+mc`, columns `k0..k0+kc` of `a` into `dst`: tile `t` (rows
/// `t·MR..`) starts at `t·MR·kc` and holds `rows_t` values per k.
///
/// # Safety
/// The CPU has AVX-512F; every element of the block is readable; `dst` holds
/// `mc.div_ceil(MR)·MR·kc` values.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn a_block(a: Mat, r0: usize, k0: usize, mc: usize, kc: usize, dst: &mut [f32]) {
    for (t, start) in (0..mc).step_by(MR).enumerate() {
        let rows = MR.min(mc - start);
        let out = dst[t * MR * kc..][..rows * kc].as_mut_ptr();
        let src = |i: usize| a.at(r0 + start + i, k0);
        // Row-major A: 16 k-steps of every row at a time, transposed in registers.
        let full_k = if a.cs == 1 && a.rs != 1 { kc / 16 * 16 } else { 0 };
        let mask = (1u16 << rows) - 1;
        for p in (0..full_k).step_by(16) {
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, v) in r.iter_mut().enumerate().take(rows) {
                *v = _mm512_loadu_ps(src(i).add(p));
            }
            transpose16(&mut r);
            for (q, v) in r.iter().enumerate() {
                _mm512_mask_storeu_ps(out.add((p + q) * rows), mask, *v);
            }
        }
        if a.rs == 1 {
            // Column-major A (a transposed activation, as in weight gradients): each k-step's
            // rows are contiguous, one masked load and store (a call to copy so few values
            // costs more than the copy).
            let s = src(0);
            for p in 0..kc {
                _mm512_mask_storeu_ps(out.add(p * rows), mask, _mm512_maskz_loadu_ps(mask, s.offset(p as isize * a.cs)));
            }
            continue;
        }
        for i in 0..rows {
            let s = src(i);
            for p in full_k..kc {
                *out.add(p * rows + i) = *s.offset(p as isize * a.cs);
            }
        }
    }
}

/// Packs rows `k0..k0+kc`, columns `c0..c0+nc` of `b` into `dst`: panel `j` (columns
/// `j·NR..`) starts at `j·NR·kc`, 32 values per k, columns past `nc` zero.
///
/// # Safety
/// The CPU has AVX-512F; every element of the block is readable; `dst` holds
/// `nc.div_ceil(NR)·NR·kc` values.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn b_block(b: Mat, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]) {
    for (j, start) in (0..nc).step_by(NR).enumerate() {
        let cols = NR.min(nc - start);
        let out = dst[j * NR * kc..][..NR * kc].as_mut_ptr();
        let src = b.at(k0, c0 + start);
        if b.cs == 1 {
            let (lo, hi) = masks(cols);
            for p in 0..kc {
                let s = src.offset(p as isize * b.rs);
                _mm512_storeu_ps(out.add(p * NR), _mm512_maskz_loadu_ps(lo, s));
                _mm512_storeu_ps(out.add(p * NR + 16), _mm512_maskz_loadu_ps(hi, s.wrapping_add(16)));
            }
        } else if b.rs == 1 {
            transposed_panel(src, b.cs, kc, cols, out);
        } else {
            for p in 0..kc {
                for q in 0..NR {
                    let v = if q < cols { *src.offset(p as isize * b.rs + q as isize * b.cs) } else { 0.0 };
                    *out.add(p * NR + q) = v;
                }
            }
        }
    }
}

/// How far ahead (in elements) the transposing pack prefetches each column.
const PREFETCH: usize = 64;

/// Lane masks of the two halves of a 32-column panel with `cols` valid columns.
#[inline(always)]
pub(super) fn masks(cols: usize) -> (u16, u16) {
    let lo = if cols >= 16 { u16::MAX } else { (1u16 << cols) - 1 };
    let hi = if cols >= 32 {
        u16::MAX
    } else if cols > 16 {
        (1u16 << (cols - 16)) - 1
    } else {
        0
    };
    (lo, hi)
}

/// One panel of a column-major block (column `q` contiguous at `src + q·ld`): 16×16
/// blocks transposed in registers, the ragged rest element by element.
///
/// # Safety
/// As for [`b_block`]; `out` holds `NR·kc` values.
#[target_feature(enable = "avx512f")]
unsafe fn transposed_panel(src: *const f32, ld: isize, kc: usize, cols: usize, out: *mut f32) {
    let full_k = kc / 16 * 16;
    for half in 0..2 {
        let q0 = half * 16;
        let valid = cols.saturating_sub(q0).min(16);
        if valid == 16 {
            for p in (0..full_k).step_by(16) {
                let mut r = [_mm512_setzero_ps(); 16];
                for (q, v) in r.iter_mut().enumerate() {
                    let row = src.offset((q0 + q) as isize * ld).add(p);
                    // 16 streams are more than the hardware prefetchers follow.
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(PREFETCH).cast());
                    *v = _mm512_loadu_ps(row);
                }
                transpose16(&mut r);
                for (i, v) in r.iter().enumerate() {
                    _mm512_storeu_ps(out.add((p + i) * NR + q0), *v);
                }
            }
        }
        let start = if valid == 16 { full_k } else { 0 };
        for p in start..kc {
            for q in 0..16 {
                let v = if q < valid { *src.offset((q0 + q) as isize * ld).add(p) } else { 0.0 };
                *out.add(p * NR + q0 + q) = v;
            }
        }
    }
}

/// `permutex2var` indices of the transpose stages (bit s = 8, 4, 2, 1): the new row `i`
/// keeps row `i`'s lanes without bit s and takes row `i+s`'s lanes `l-s` for the others;
/// the new row `i+s` takes row `i`'s lanes `l+s` and keeps its own lanes with bit s.
const SWAP: [[[i32; 16]; 2]; 4] = {
    let mut t = [[[0; 16]; 2]; 4];
    let mut stage = 0;
    while stage < 4 {
        let s = 8 >> stage;
        let mut l = 0;
        while l < 16 {
            let (lo, hi) = if l & s == 0 { (l, l + s) } else { (16 + l - s, 16 + l) };
            t[stage][0][l] = lo as i32;
            t[stage][1][l] = hi as i32;
            l += 1;
        }
        stage += 1;
    }
    t
};

/// Transposes the 16×16 matrix whose rows are `r` (lane = column), by swapping bit `s`
/// of the row index with bit `s` of the lane index for s = 3, 2, 1, 0.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose16(r: &mut [__m512; 16]) {
    for (stage, s) in [8usize, 4, 2, 1].into_iter().enumerate() {
        let [lo, hi] = SWAP[stage];
        let (lo, hi) = (_mm512_loadu_si512(lo.as_ptr().cast()), _mm512_loadu_si512(hi.as_ptr().cast()));
        for i in (0..16).filter(|i| i & s == 0) {
            let (x, y) = (r[i], r[i + s]);
            r[i] = _mm512_permutex2var_ps(x, lo, y);
            r[i + s] = _mm512_permutex2var_ps(x, hi, y);
        }
    }
}
