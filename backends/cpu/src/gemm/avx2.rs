//! The AVX2 + FMA [`Arch`], for x86-64 CPUs without AVX-512 (Zen 1–3, Intel client cores):
//! an `R × 32` tile of C (R ≤ [`MR`]) computed as two `R × 16` halves, each in 2·R ymm
//! accumulators (12 of the 16 registers, with two for B and one for the broadcast of A), and
//! the packing of A and B in the same layouts as [`super::pack`].

use super::{Arch, Blocking, Isa, Mat, NR};
use std::arch::x86_64::*;

/// Rows of the micro-kernel's tile.
const MR: usize = 6;

/// Blocks 256 deep (half as many passes over C as 128, which a 3×3 convolution's 6912-deep
/// products feel most): the A tiles (6 KiB each) of an A block (24 tiles, 144 KiB, in L2)
/// stream past each B panel; B blocks of up to 3072 columns (3 MiB, in L3), so that BEiT's
/// products pack each operand once.
pub(super) const BLOCKING: Blocking = Blocking { mr: MR, kc: 256, mc: 24 * MR, nc: 3072, panel_outer: true };

/// The AVX2 + FMA GEMM.
pub(super) struct Avx2;

impl Arch for Avx2 {
    const ISA: Isa = Isa::Avx2;

    unsafe fn pack_a(a: Mat, r0: usize, k0: usize, mc: usize, kc: usize, dst: &mut [f32]) {
        a_block(a, r0, k0, mc, kc, dst)
    }

    unsafe fn kernel(rows: usize, kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, ncols: usize, acc: bool) {
        debug_assert!((1..=MR).contains(&rows) && ncols <= NR);
        by_rows!(rows, MR, [1 2 3 4 5], tile(kc, a, b, c, ldc, ncols, acc))
    }
}

/// `C[R, ncols] (+)= A·B`: the tile's two 16-column halves one after the other.
///
/// # Safety
/// As for [`Arch::kernel`] with `rows = R`.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile<const R: usize>(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, ncols: usize, accumulate: bool) {
    if accumulate {
        super::prefetch_rows(R, c, ldc);
    }
    for half in 0..2 {
        let q0 = 16 * half;
        if ncols > q0 {
            half_tile::<R>(kc, a, b.add(q0), c.add(q0), ldc, (ncols - q0).min(16), accumulate);
        }
    }
}

/// `C[R, ncols] (+)= A·B[:, ..16]` for `ncols ≤ 16`, `b` advancing [`NR`] per step.
///
/// # Safety
/// As for [`tile`].
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn half_tile<const R: usize>(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, ncols: usize, accumulate: bool) {
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let (b0, b1) = (_mm256_loadu_ps(b), _mm256_loadu_ps(b.add(8)));
        for (i, row) in acc.iter_mut().enumerate() {
            let ai = _mm256_broadcast_ss(&*a.add(i));
            row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
            row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
        }
        a = a.add(R);
        // The second half's pointer ends 16 values past its panel, which may be the end of a
        // pre-packed weight: it is never read there.
        b = b.wrapping_add(NR);
    }
    let [lo, hi] = masks(ncols);
    for (i, row) in acc.iter().enumerate() {
        let p = c.add(i * ldc);
        let (mut v0, mut v1) = (row[0], row[1]);
        if ncols == 16 {
            if accumulate {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(p));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(p.add(8)));
            }
            _mm256_storeu_ps(p, v0);
            _mm256_storeu_ps(p.add(8), v1);
            continue;
        }
        if accumulate {
            v0 = _mm256_add_ps(v0, _mm256_maskload_ps(p, lo));
            v1 = _mm256_add_ps(v1, _mm256_maskload_ps(p.add(8), hi));
        }
        _mm256_maskstore_ps(p, lo, v0);
        _mm256_maskstore_ps(p.add(8), hi, v1);
    }
}

/// Lane masks (all ones: written) of two 8-lane vectors covering `ncols ≤ 16` columns.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn masks(ncols: usize) -> [__m256i; 2] {
    [lane_mask(ncols.min(8)), lane_mask(ncols.saturating_sub(8))]
}

/// Packs rows `r0..r0+mc`, columns `k0..k0+kc` of `a`: tile `t` (rows `t·MR..`) starts at
/// `t·MR·kc` and holds `rows_t` values per k. A row-major A is transposed 8×8 in registers.
///
/// # Safety
/// As for [`Arch::pack_a`].
#[target_feature(enable = "avx2,fma")]
unsafe fn a_block(a: Mat, r0: usize, k0: usize, mc: usize, kc: usize, dst: &mut [f32]) {
    for (t, start) in (0..mc).step_by(MR).enumerate() {
        let rows = MR.min(mc - start);
        let out = &mut dst[t * MR * kc..];
        let src = |i: usize| a.at(r0 + start + i, k0);
        if a.rs == 1 {
            // Column-major A (a transposed activation, as in weight gradients): each k-step's
            // rows are contiguous, one masked load (a call to copy so few values costs more
            // than the copy); full stores as below.
            let lanes = lane_mask(rows);
            for p in 0..kc {
                let v = _mm256_maskload_ps(src(0).offset(p as isize * a.cs), lanes);
                store_step(out, p * rows, rows, v);
            }
            continue;
        }
        let full_k = if a.cs == 1 { kc / 8 * 8 } else { 0 };
        for p in (0..full_k).step_by(8) {
            let r: [__m256; 8] = std::array::from_fn(|i| if i < rows { _mm256_loadu_ps(src(i).add(p)) } else { _mm256_setzero_ps() });
            for (q, v) in transpose8(r).iter().enumerate() {
                store_step(out, (p + q) * rows, rows, *v);
            }
        }
        for i in 0..rows {
            for p in full_k..kc {
                out[p * rows + i] = *src(i).offset(p as isize * a.cs);
            }
        }
    }
}

/// Stores the first `rows` lanes of `v`, one k-step of a tile, at `out[at..]`. A full store's
/// lanes past `rows` land where the next steps go, which are written after it; past the end
/// of `out`, only `rows` lanes are stored.
///
/// # Safety
/// The CPU has AVX2; `at + rows ≤ out.len()`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn store_step(out: &mut [f32], at: usize, rows: usize, v: __m256) {
    if at + 8 <= out.len() {
        _mm256_storeu_ps(out.as_mut_ptr().add(at), v);
    } else {
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), v);
        out[at..at + rows].copy_from_slice(&lanes[..rows]);
    }
}

/// The mask (all ones: loaded) of the first `n ≤ 8` lanes of a vector.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn lane_mask(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Packs rows `k0..k0+kc`, columns `c0..c0+nc` of `b` into `dst`: panel `j` (columns
/// `j·NR..`) starts at `j·NR·kc`, 32 values per k, columns past `nc` zero. A transposed
/// weight (column-major B) is transposed 8×8 in registers.
///
/// # Safety
/// The CPU has AVX2; every element of the block is readable; `dst` holds
/// `nc.div_ceil(NR)·NR·kc` values.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn b_block(b: Mat, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]) {
    for (j, start) in (0..nc).step_by(NR).enumerate() {
        let cols = NR.min(nc - start);
        let out = &mut dst[j * NR * kc..][..NR * kc];
        let src = b.at(k0, c0 + start);
        if b.cs == 1 {
            // Row-major B (a weight in the input gradient): each k-step's columns are
            // contiguous, four masked loads; masked-off lanes load as zero.
            let lanes: [__m256i; 4] = std::array::from_fn(|q| lane_mask(cols.saturating_sub(8 * q).min(8)));
            for p in 0..kc {
                let (from, to) = (src.offset(p as isize * b.rs), out.as_mut_ptr().add(p * NR));
                for (q, &mask) in lanes.iter().enumerate() {
                    _mm256_storeu_ps(to.add(8 * q), _mm256_maskload_ps(from.wrapping_add(8 * q), mask));
                }
            }
        } else if b.rs == 1 {
            transposed_panel(src, b.cs, kc, cols, out.as_mut_ptr());
        } else {
            for (p, row) in out.chunks_exact_mut(NR).enumerate() {
                for (q, v) in row.iter_mut().enumerate() {
                    *v = if q < cols { *src.offset(p as isize * b.rs + q as isize * b.cs) } else { 0.0 };
                }
            }
        }
    }
}

/// One panel of a column-major block (column `q` contiguous at `src + q·ld`): 8×8 blocks
/// transposed in registers, the ragged rest element by element.
///
/// # Safety
/// As for [`b_block`]; `out` holds `NR·kc` values.
#[target_feature(enable = "avx2,fma")]
unsafe fn transposed_panel(src: *const f32, ld: isize, kc: usize, cols: usize, out: *mut f32) {
    let full_k = kc / 8 * 8;
    for q0 in (0..NR).step_by(8) {
        let valid = cols.saturating_sub(q0).min(8);
        if valid == 8 {
            for p in (0..full_k).step_by(8) {
                let r: [__m256; 8] = std::array::from_fn(|q| _mm256_loadu_ps(src.offset((q0 + q) as isize * ld).add(p)));
                for (i, v) in transpose8(r).iter().enumerate() {
                    _mm256_storeu_ps(out.add((p + i) * NR + q0), *v);
                }
            }
        }
        let first = if valid == 8 { full_k } else { 0 };
        for p in first..kc {
            for q in 0..8 {
                let v = if q < valid { *src.offset((q0 + q) as isize * ld).add(p) } else { 0.0 };
                *out.add(p * NR + q0 + q) = v;
            }
        }
    }
}

/// The transpose of the 8×8 matrix whose rows are `r`: pairs interleaved, then quads, then
/// the 128-bit halves swapped across rows.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    // t0 = r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5], ...
    let t = [
        _mm256_unpacklo_ps(r[0], r[1]),
        _mm256_unpackhi_ps(r[0], r[1]),
        _mm256_unpacklo_ps(r[2], r[3]),
        _mm256_unpackhi_ps(r[2], r[3]),
        _mm256_unpacklo_ps(r[4], r[5]),
        _mm256_unpackhi_ps(r[4], r[5]),
        _mm256_unpacklo_ps(r[6], r[7]),
        _mm256_unpackhi_ps(r[6], r[7]),
    ];
    // u0 = column 0 of rows 0..4 | column 4 of rows 0..4, ...
    let u = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    [
        _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
        _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
        _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
        _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
        _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
        _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
        _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
        _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
    ]
}
