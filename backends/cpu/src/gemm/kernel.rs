//! The AVX-512 micro-kernel: an `R × 32` tile of C (R ≤ [`MR`]) in 2·R zmm accumulators,
//! from a packed A micro-panel (`R` values per k) and a packed B micro-panel (32 per k).

use super::{MR, NR};
use std::arch::x86_64::*;

/// `C[R, ncols] (+)= A·B` over `kc` steps; `a` holds `R` values per step, `b` [`NR`].
/// With `accumulate`, C's old values are added; only the first `ncols` columns are written.
///
/// # Safety
/// The CPU has AVX-512F; `a` and `b` hold `kc` steps; C's `R` rows of `ncols` at stride
/// `ldc` are writable.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, ncols: usize, accumulate: bool) {
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
    let (lo, hi) = super::pack::masks(ncols);
    for (i, row) in acc.iter().enumerate() {
        let p = c.add(i * ldc);
        let (mut v0, mut v1) = (row[0], row[1]);
        if accumulate {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(lo, p));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(hi, p.add(16)));
        }
        _mm512_mask_storeu_ps(p, lo, v0);
        _mm512_mask_storeu_ps(p.add(16), hi, v1);
    }
}

/// [`tile`] for a run-time row count `rows` in `1..=MR`.
///
/// # Safety
/// As for [`tile`] with `R = rows`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run(rows: usize, kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, ncols: usize, acc: bool) {
    debug_assert!((1..=MR).contains(&rows) && ncols <= NR);
    macro_rules! by_rows {
        ($($r:literal)*) => {
            match rows {
                $($r => tile::<$r>(kc, a, b, c, ldc, ncols, acc),)*
                _ => tile::<MR>(kc, a, b, c, ldc, ncols, acc),
            }
        };
    }
    by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13)
}
