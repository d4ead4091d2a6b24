//! One product on all threads, with the operand that the threads share packed once.
//!
//! A product cut between threads by rows has every thread read all of B, and cut by
//! columns, all of A ([`Split`]). Packed block by block in each thread, that operand would be
//! packed once per thread; here the threads first pack it whole together, each its own
//! part, into one buffer, and then run their blocks on it in place ([`Prepacked`],
//! [`PackedRows`]).

use super::operands::prepack_with;
use super::{isa, pack_rows, sgemm_with, tile, Isa, Mat, PackedRows, Panels, Post, Prepacked, Rows, NR};
use crate::blocks::{OutPtr, Shared, Split};
use crate::pool;
use rayon::prelude::*;

/// `C = post(A·B)` for a strided `A [m, k]`, `B [k, n]` and row-major `C [m, n]` of row
/// stride `ldc`, cut between the threads as [`Split`] cuts it; the shared operand is packed
/// once, unless B is pre-packed already.
///
/// # Safety
/// As for [`super::sgemm`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm_threads(m: usize, k: usize, n: usize, a: Mat, b: &impl Panels, c: OutPtr<f32>, ldc: usize, post: &Post) {
    let isa = isa().expect("gemm::sgemm_threads runs only where `available()`");
    sgemm_threads_with(isa, m, k, n, a, b, c, ldc, post)
}

/// [`sgemm_threads`] with instruction set `isa`.
///
/// # Safety
/// As for [`sgemm_threads`]; the CPU has `isa`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sgemm_threads_with(isa: Isa, m: usize, k: usize, n: usize, a: Mat, b: &impl Panels, c: OutPtr<f32>, ldc: usize, post: &Post) {
    let split = Split::new(1, m, k, n, tile());
    match split.shared() {
        Some(Shared::B) if b.prepacked(0, 0).is_none() => {
            let mut panels = pool::reuse::<f32>(n.div_ceil(NR) * NR * k);
            prepack_with(isa, b, k, n, &mut panels);
            run(isa, &split, k, a, &Prepacked { ptr: panels.as_ptr(), k }, c, ldc, post);
            pool::give_back(panels);
        }
        Some(Shared::A) => {
            let mr = isa.mr();
            let mut tiles = pool::reuse::<f32>(m.div_ceil(mr) * mr * k);
            in_parts(&mut tiles, m.div_ceil(mr), mr * k, |first, count, part| {
                let r0 = first * mr;
                // SAFETY: rows `r0..` are inside `a`; `part` holds `count` tiles.
                unsafe { pack_rows(isa, a, r0, (count * mr).min(m - r0), k, part) }
            });
            run(isa, &split, k, PackedRows { ptr: tiles.as_ptr(), m, k, isa }, b, c, ldc, post);
            pool::give_back(tiles);
        }
        _ => run(isa, &split, k, a, b, c, ldc, post),
    }
}

/// `pack(first, count, part)` on the threads, each packing `count` whole units (panels,
/// tiles) from unit `first` on into its own `part` of `dst`, which holds `units` units of
/// `len` values.
pub(super) fn in_parts(dst: &mut [f32], units: usize, len: usize, pack: impl Fn(usize, usize, &mut [f32]) + Sync) {
    if dst.is_empty() {
        return;
    }
    let per = units.div_ceil(rayon::current_num_threads());
    dst.par_chunks_mut(per * len).enumerate().for_each(|(i, part)| pack(i * per, part.len() / len, part));
}

/// The blocks of `split`, each by [`sgemm_with`] on its rows of `a` and its columns of `b`.
///
/// # Safety
/// As for [`sgemm_threads_with`].
#[allow(clippy::too_many_arguments)]
unsafe fn run(isa: Isa, split: &Split, k: usize, a: impl Rows, b: &impl Panels, c: OutPtr<f32>, ldc: usize, post: &Post) {
    split.run(|_, rows, cols| {
        // SAFETY: the blocks are disjoint and inside the operands and the output.
        unsafe {
            let post = post.offset(rows.start, cols.start, ldc);
            let c = c.add(rows.start * ldc + cols.start).0;
            sgemm_with(isa, rows.len(), k, cols.len(), a.rows_from(rows.start), &b.cols_from(cols.start), c, ldc, &post)
        }
    })
}
