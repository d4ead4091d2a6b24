//! Our f32 GEMM for x86-64 CPUs with AVX-512F or AVX2 + FMA (elsewhere [`available`] is
//! false), with an epilogue ([`Post`]) applied while each output tile is still in L1:
//! `+ bias`, GELU, `residual + scale ⊙ ·`.
//!
//! Goto/BLIS blocking: B in `KC × NC` blocks packed into 32-column panels (a transposed
//! weight is transposed in registers while it is packed), A in `MC × KC` blocks packed
//! into tiles of `MR` rows; the micro-kernel keeps an `MR × 32` tile of C in registers.
//! Each instruction set is one [`Arch`] with its own [`Blocking`]: [`avx512`] (14 × 32 in
//! 28 zmm; one A tile in L1 while the B panels stream from L2) and [`avx2`] (6 × 32, in two
//! 6 × 16 halves of 12 ymm; BLIS's order, one B panel in L1 while the A tiles stream from
//! L2). One call runs on the calling thread; [`sgemm_threads`] cuts a product between the
//! threads and packs the operand they all read once, for all of them.

// Off x86-64 the callers check `available()` (false) first, so the kernels' operands and
// block sizes, which only the x86-64 kernels read, are never used there, and the entry
// points end at their early returns.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_variables, clippy::needless_return))]

/// `$tile::<R>(args…)` for the run-time row count `$rows`: one of the literals `1..$mr`,
/// or else `$mr`, so that each row count gets a kernel with its loops unrolled.
#[cfg(target_arch = "x86_64")]
macro_rules! by_rows {
    ($rows:expr, $mr:ident, [$($r:literal)*], $tile:ident $args:tt) => {
        match $rows {
            $($r => $tile::<$r> $args,)*
            _ => $tile::<$mr> $args,
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod bf16;
#[cfg(target_arch = "x86_64")]
mod pack;
mod operands;
mod patches;
mod post;
mod threads;
mod widen;

pub(crate) use operands::{prepack, Mat, PackedRows, Panels, Prepacked, Rows};
pub(crate) use threads::sgemm_threads;
#[cfg(test)]
use threads::sgemm_threads_with;
pub(crate) use patches::Patches;
pub(crate) use post::Post;
pub(crate) use widen::{Bf16Rows, Bf16Weight};

use std::cell::RefCell;

/// Columns of the micro-kernels' tile (two zmm or four ymm registers).
pub(crate) const NR: usize = 32;
/// The greatest depth of a packed block ([`Blocking::kc`]).
pub(crate) const KC: usize = 256;

/// The instruction set [`sgemm`] runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// AVX-512F: 16 f32 lanes, 32 registers.
    Avx512,
    /// AVX2 and FMA: 8 f32 lanes, 16 registers.
    Avx2,
}

/// The instruction set [`sgemm`] uses on this CPU: the widest it has, or none.
pub(crate) fn isa() -> Option<Isa> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some(Isa::Avx512);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Some(Isa::Avx2);
        }
    }
    None
}

/// Whether this CPU runs [`sgemm`].
pub(crate) fn available() -> bool {
    isa().is_some()
}

/// Whether this CPU runs [`bf16_gemm`] (AVX512_BF16, with AVX-512F).
pub(crate) fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f") && has!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// How a bf16 weight is multiplied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bf16Gemm {
    /// `vdpbf16ps` on pairs of adjacent depths, the activations rounded to bf16 as they are
    /// packed ([`bf16_gemm`]).
    Dot,
    /// The weight widened to f32 as it is packed, f32 FMA ([`Bf16Weight`] in [`sgemm`]).
    Widen,
}

/// This CPU's faster bf16 form, chosen once: `Dot` where AVX512_BF16 does a depth step
/// clearly faster than f32 FMA (never on Intel; elsewhere both micro-kernels are timed on
/// L1-resident tiles, about 10 ms), else `Widen`; the environment variable
/// `BEIT_BF16_GEMM=dot|widen` overrides. None where [`available`] is false.
pub(crate) fn bf16_form() -> Option<Bf16Gemm> {
    static FORM: std::sync::OnceLock<Option<Bf16Gemm>> = std::sync::OnceLock::new();
    *FORM.get_or_init(|| {
        if !available() {
            return None;
        }
        let dot = bf16_available();
        Some(match std::env::var("BEIT_BF16_GEMM").as_deref() {
            Ok("dot") if dot => Bf16Gemm::Dot,
            Ok("widen") => Bf16Gemm::Widen,
            #[cfg(target_arch = "x86_64")]
            _ if dot && isa() == Some(Isa::Avx512) && bf16::dot_beats_fma() => Bf16Gemm::Dot,
            _ => Bf16Gemm::Widen,
        })
    })
}

/// The micro-kernel's tile `(rows, columns)` on this CPU: callers that split a product
/// between threads cut it at multiples of these.
pub(crate) fn tile() -> (usize, usize) {
    if let Some(isa) = isa() {
        return (isa.mr(), NR);
    }
    (16, NR)
}

/// Block sizes of one instruction set's GEMM.
#[derive(Clone, Copy, Debug)]
struct Blocking {
    /// Rows of the micro-kernel's tile.
    mr: usize,
    /// Depth of a packed block, at most [`KC`].
    kc: usize,
    /// Rows of a packed A block (a multiple of `mr`). Without `panel_outer`, A is packed
    /// once per block and B once per A block (once when `m ≤ mc`); with it, B once per
    /// block and A once per B block (once when `n ≤ nc`). An operand packed whole
    /// ([`Prepacked`], [`PackedRows`]) is read in place instead.
    mc: usize,
    /// Columns of a packed B block (`kc × nc`; BEiT's widths are multiples).
    nc: usize,
    /// The order of the loops. False: A blocks outermost, each A tile in L1 while the B
    /// panels of a B block in L2 stream past it (a tall tile uses each B value many
    /// times). True (BLIS's order): B blocks outermost, in L3, each B panel in L1 while the
    /// A tiles of an A block in L2 stream past it (a short tile would use each B value too
    /// few times for L2's bandwidth).
    panel_outer: bool,
}

impl Isa {
    /// Rows of this instruction set's micro-kernel tile.
    pub(crate) fn mr(self) -> usize {
        #[cfg(target_arch = "x86_64")]
        return self.blocking().mr;
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("gemm runs only where `available()` ({self:?})")
    }

    /// The block sizes of this instruction set.
    #[cfg(target_arch = "x86_64")]
    fn blocking(self) -> Blocking {
        match self {
            Isa::Avx512 => avx512::BLOCKING,
            Isa::Avx2 => avx2::BLOCKING,
        }
    }
}

/// One instruction set's A packing and micro-kernel, which [`sgemm`] drives.
#[cfg(target_arch = "x86_64")]
trait Arch {
    /// The instruction set.
    const ISA: Isa;

    /// Packs rows `r0..r0+mc`, columns `k0..k0+kc` of `a` into `dst`: tile `t` (rows
    /// `t·mr..`) starts at `t·mr·kc` and holds `rows_t` values per k.
    ///
    /// # Safety
    /// The CPU has [`Arch::ISA`]; every element of the block is readable; `dst` holds
    /// `mc.div_ceil(mr)·mr·kc` values.
    unsafe fn pack_a(a: Mat, r0: usize, k0: usize, mc: usize, kc: usize, dst: &mut [f32]);

    /// `C[rows, ncols] (+)= A·B` over `kc` steps: `a` holds `rows` values per step, `b`
    /// [`NR`]; with `accumulate`, C's old values are added; only `ncols` columns are written.
    ///
    /// # Safety
    /// The CPU has [`Arch::ISA`]; `rows ≤ mr`, `ncols ≤ NR`; `a` and `b` hold `kc` steps;
    /// C's `rows` rows of `ncols` at stride `ldc` are writable.
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(rows: usize, kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, ncols: usize, accumulate: bool);
}

thread_local! {
    /// This thread's packing buffers: one B block, then one A block.
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// This thread's A block widened to f32 ([`Rows::block`]), before it is packed.
    static WIDE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `C = post(A·B)` for strided `A [m, k]`, `B [k, n]` and row-major `C [m, n]` of row
/// stride `ldc`, on the calling thread, with this CPU's [`isa`].
///
/// # Safety
/// [`available`] is true; every element of A, B, C and of the epilogue's operands is in
/// bounds; C does not overlap A, B or the residual.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(m: usize, k: usize, n: usize, a: impl Rows, b: &impl Panels, c: *mut f32, ldc: usize, post: &Post) {
    let isa = isa().expect("gemm::sgemm runs only where `available()`");
    sgemm_with(isa, m, k, n, a, b, c, ldc, post)
}

/// [`sgemm`] with instruction set `isa`.
///
/// # Safety
/// As for [`sgemm`]; the CPU has `isa`.
#[allow(clippy::too_many_arguments)]
unsafe fn sgemm_with(isa: Isa, m: usize, k: usize, n: usize, a: impl Rows, b: &impl Panels, c: *mut f32, ldc: usize, post: &Post) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        return empty_product(isa, m, n, c, ldc, post);
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("gemm::sgemm runs only where `available()`");
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => drive::<avx512::Avx512>(m, k, n, a, b, c, ldc, post),
        Isa::Avx2 => drive::<avx2::Avx2>(m, k, n, a, b, c, ldc, post),
    }
}

/// `C = post(A·B)` for an f32 `A [m, 2·pairs]` of unit column stride, rounded to bf16 as it
/// is packed, and a bf16 `B [2·pairs, n]` read as 32-bit pairs of adjacent depths (a bf16
/// weight `w [n, k]` of even row stride: `Mat { rs: 1, cs: row stride / 2 }`); f32
/// accumulation, on the calling thread.
///
/// # Safety
/// [`bf16_available`] is true; `a.cs == 1`; B's pointer is 4-byte aligned; otherwise as
/// for [`sgemm`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn bf16_gemm(m: usize, pairs: usize, n: usize, a: Mat, b: &impl Panels, c: *mut f32, ldc: usize, post: &Post) {
    assert!(bf16_available() && a.cs == 1, "gemm::bf16_gemm runs only where `bf16_available()`, on unit-stride rows");
    if m == 0 || n == 0 {
        return;
    }
    if pairs == 0 {
        return empty_product(Isa::Avx512, m, n, c, ldc, post);
    }
    #[cfg(target_arch = "x86_64")]
    drive::<bf16::Avx512Bf16>(m, pairs, n, a, b, c, ldc, post)
}

/// Packs rows `r0..r0+mc` of `a [·, k]` whole (depth `k`) into `dst` in the form of
/// [`PackedRows`] for instruction set `isa`: tile `t` at `t·mr·k`.
///
/// # Safety
/// The CPU has `isa`; every element of the rows is readable; `dst` holds
/// `mc.div_ceil(mr)·mr·k` values.
pub(super) unsafe fn pack_rows(isa: Isa, a: Mat, r0: usize, mc: usize, k: usize, dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => avx512::Avx512::pack_a(a, r0, 0, mc, k, dst),
        Isa::Avx2 => avx2::Avx2::pack_a(a, r0, 0, mc, k, dst),
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("gemm runs only where `available()` ({isa:?}, {a:?}, {r0}, {mc}, {k}, {})", dst.len());
}

/// Starts loading the `rows` rows of an output tile (32 f32 from `c`, stride `ldc`) into
/// L1: a tile that accumulates over depth blocks is out of cache by the time its kernel
/// ends (its rows are far apart), so the kernel calls this first and its final adds do
/// not wait on memory.
///
/// # Safety
/// Always sound (a prefetch does not fault); `unsafe` as `_mm_prefetch` is.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_rows(rows: usize, c: *const f32, ldc: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for i in 0..rows {
        let row = c.wrapping_add(i * ldc).cast::<i8>();
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64));
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(124));
    }
}

/// `C = post(0)`: the product of depth 0, the epilogue with instruction set `isa`.
///
/// # Safety
/// As for [`sgemm`]; the CPU has `isa`.
unsafe fn empty_product(isa: Isa, m: usize, n: usize, c: *mut f32, ldc: usize, post: &Post) {
    if !post.accumulate {
        for i in 0..m {
            std::ptr::write_bytes(c.add(i * ldc), 0, n);
        }
    }
    post.apply(isa, m, n, c, ldc)
}

/// The blocked loops of [`sgemm_with`] for `k > 0`, on [`Arch`] `A`.
///
/// # Safety
/// As for [`sgemm_with`] with `A::ISA`.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn drive<A: Arch>(m: usize, k: usize, n: usize, a: impl Rows, b: &impl Panels, c: *mut f32, ldc: usize, post: &Post) {
    let Blocking { mr, kc: block_k, mc: block_m, nc: block_n, panel_outer } = A::ISA.blocking();
    PACKED.with_borrow_mut(|buf| WIDE.with_borrow_mut(|wide| {
        let b_len = block_n * block_k;
        // 16 spare values, so that the panels can start on a cache line: a vector load
        // that straddles two lines costs two.
        buf.resize(b_len + block_m * block_k + 16, 0.0);
        let skip = buf.as_ptr().align_offset(64).min(16);
        let (bp, ap) = buf[skip..].split_at_mut(b_len);
        // The kernel reads through these while the packing writes through slices made from them.
        let (b_ptr, b_len, a_ptr, a_len) = (bp.as_mut_ptr(), bp.len(), ap.as_mut_ptr(), ap.len());
        let (bp, ap) = (|| std::slice::from_raw_parts_mut(b_ptr, b_len), || std::slice::from_raw_parts_mut(a_ptr, a_len));
        let whole = a.packed();
        assert!(whole.is_none_or(|p| (p.isa, p.m, p.k) == (A::ISA, m, k)), "gemm: packed rows of another shape or instruction set");
        // A block (ic, pc)'s tiles: packed into `ap`, or where `a` keeps them packed whole;
        // tile `ir` at `first + ir·per_row + depth·rows`.
        let mut pack_a = |ic: usize, pc: usize, mc: usize, kc: usize| match whole {
            Some(p) => (p.ptr.add(ic * p.k), p.k, pc),
            None => {
                let (a, r0, k0) = a.block(ic, pc, mc, kc, wide);
                A::pack_a(a, r0, k0, mc, kc, ap());
                (a_ptr.cast_const(), kc, 0)
            }
        };
        // B block (pc, jc)'s panels: where `b` keeps them, or packed into `bp`; the first
        // panel and the distance between panels.
        let panels = |pc: usize, jc: usize, kc: usize, nc: usize| {
            b.prepacked(pc, jc).unwrap_or_else(|| {
                b.pack(A::ISA, pc, jc, kc, nc, bp());
                (b_ptr.cast_const(), NR * kc)
            })
        };
        // One micro-kernel call on the packed blocks at (ic, pc, jc) (A's tiles from
        // `pack_a`, B's panels from `panels`), plus the epilogue after the last depth block.
        type Tiles = (*const f32, usize, usize);
        let tile = |(ic, mc): (usize, usize), (pc, kc): (usize, usize), (jc, nc): (usize, usize), (aq, per_row, depth): Tiles, (bq, bs): (*const f32, usize), ir: usize, jr: usize| {
            let (rows, cols) = (mr.min(mc - ir), NR.min(nc - jr));
            let tile = c.add((ic + ir) * ldc + jc + jr);
            let a = aq.add(ir * per_row + depth * rows);
            A::kernel(rows, kc, a, bq.add(jr / NR * bs), tile, ldc, cols, pc > 0 || post.accumulate);
            if pc + kc == k && !post.is_none() {
                post.offset(ic + ir, jc + jr, ldc).apply(A::ISA, rows, cols, tile, ldc);
            }
        };
        let blocks = |len: usize, step: usize| (0..len).step_by(step).map(move |i| (i, step.min(len - i)));
        if panel_outer {
            // BLIS's order: each B block packed once, each A block once per B block.
            for (jc, nc) in blocks(n, block_n) {
                for (pc, kc) in blocks(k, block_k) {
                    let bq = panels(pc, jc, kc, nc);
                    for (ic, mc) in blocks(m, block_m) {
                        let aq = pack_a(ic, pc, mc, kc);
                        for jr in (0..nc).step_by(NR) {
                            (0..mc).step_by(mr).for_each(|ir| tile((ic, mc), (pc, kc), (jc, nc), aq, bq, ir, jr));
                        }
                    }
                }
            }
            return;
        }
        for (ic, mc) in blocks(m, block_m) {
            for (pc, kc) in blocks(k, block_k) {
                let aq = pack_a(ic, pc, mc, kc);
                for (jc, nc) in blocks(n, block_n) {
                    let bq = panels(pc, jc, kc, nc);
                    for ir in (0..mc).step_by(mr) {
                        (0..nc).step_by(NR).for_each(|jr| tile((ic, mc), (pc, kc), (jc, nc), aq, bq, ir, jr));
                    }
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests;
