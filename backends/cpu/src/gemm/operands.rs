//! The operands of [`super::sgemm`]: a strided f32 matrix ([`Mat`]), the traits by which
//! the GEMM packs its B ([`Panels`]) and A ([`Rows`]) operands block by block, and the
//! operands it reads packed whole, in place ([`Prepacked`], [`PackedRows`]).

use super::{Isa, NR};
#[cfg(target_arch = "x86_64")]
use super::{avx2, pack};

/// A strided f32 matrix: element `(r, c)` at `ptr + r·rs + c·cs`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat {
    /// Element (0, 0).
    pub ptr: *const f32,
    /// Row stride, in elements.
    pub rs: isize,
    /// Column stride, in elements.
    pub cs: isize,
}

// SAFETY: a `Mat` is only read through, by threads that write disjoint outputs.
unsafe impl Send for Mat {}
unsafe impl Sync for Mat {}

impl Mat {
    /// Pointer to element `(r, c)`.
    ///
    /// # Safety
    /// The element must be inside the matrix's buffer.
    pub(super) unsafe fn at(&self, r: usize, c: usize) -> *const f32 {
        self.ptr.offset(r as isize * self.rs + c as isize * self.cs)
    }

    /// The sub-matrix whose element (0, 0) is `(r, c)`.
    ///
    /// # Safety
    /// As for [`Mat::at`].
    pub(crate) unsafe fn from(&self, r: usize, c: usize) -> Mat {
        Mat { ptr: self.at(r, c), ..*self }
    }
}

/// A B operand that [`super::sgemm`] packs block by block: a strided matrix ([`Mat`]) or
/// the patches of a convolution ([`super::Patches`]), which are never stored whole.
pub(crate) trait Panels: Sync {
    /// Packs rows `k0..k0+kc`, columns `c0..c0+nc` into `dst`: panel `j` (columns `j·NR..`)
    /// at `j·NR·kc`, [`super::NR`] values per row, columns past `nc` zero.
    ///
    /// # Safety
    /// The CPU has `isa`; the block is inside the operand; `dst` holds
    /// `nc.div_ceil(NR)·NR·kc` values.
    unsafe fn pack(&self, isa: Isa, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]);

    /// The panels of the block at rows `k0..`, columns `c0..` where the operand already
    /// keeps them in packed form: the first panel and the distance between panels (then
    /// [`Panels::pack`] is not called). None: the block is packed.
    fn prepacked(&self, k0: usize, c0: usize) -> Option<(*const f32, usize)> {
        let _ = (k0, c0);
        None
    }

    /// The operand from column `c` on (a multiple of [`NR`] for a [`Prepacked`] one).
    ///
    /// # Safety
    /// Column `c` is inside the operand.
    unsafe fn cols_from(&self, c: usize) -> Self
    where
        Self: Sized;
}

/// A B operand `[k, n]` stored whole in packed form ([`prepack`]): panel `j` (columns
/// `j·NR..`) at `j·NR·k`, [`NR`] values per row, columns past `n` zero. The GEMM reads its
/// panels in place.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prepacked {
    /// Panel 0, row 0.
    pub ptr: *const f32,
    /// Rows (the depth of the product).
    pub k: usize,
}

// SAFETY: as for `Mat`.
unsafe impl Send for Prepacked {}
unsafe impl Sync for Prepacked {}

impl Panels for Prepacked {
    unsafe fn pack(&self, _: Isa, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]) {
        unreachable!("the GEMM reads a prepacked operand's panels in place ({k0}, {c0}, {kc}, {nc}, {})", dst.len())
    }

    fn prepacked(&self, k0: usize, c0: usize) -> Option<(*const f32, usize)> {
        Some((self.ptr.wrapping_add(c0 * self.k + k0 * NR), NR * self.k))
    }

    unsafe fn cols_from(&self, c: usize) -> Prepacked {
        debug_assert!(c.is_multiple_of(NR));
        Prepacked { ptr: self.ptr.add(c * self.k), ..*self }
    }
}

/// `b [k, n]` packed into `dst` (`n.div_ceil(NR)·NR·k` values, every one written) in the
/// form that [`Prepacked`] reads, by all threads.
///
/// # Safety
/// [`super::available`] is true; every element of `b` is readable.
pub(crate) unsafe fn prepack(b: &impl Panels, k: usize, n: usize, dst: &mut [f32]) {
    let isa = super::isa().expect("gemm::prepack runs only where `available()`");
    prepack_with(isa, b, k, n, dst)
}

/// [`prepack`] with instruction set `isa`: whole panels shared out among the threads.
///
/// # Safety
/// As for [`prepack`]; the CPU has `isa`.
pub(super) unsafe fn prepack_with(isa: Isa, b: &impl Panels, k: usize, n: usize, dst: &mut [f32]) {
    assert_eq!(dst.len(), n.div_ceil(NR) * NR * k, "gemm::prepack: the destination's length");
    super::threads::in_parts(dst, n.div_ceil(NR), NR * k, |first, count, part| {
        let c0 = first * NR;
        // SAFETY: columns `c0..` of the block are inside `b`; `part` holds `count` panels.
        unsafe { b.pack(isa, 0, c0, k, (count * NR).min(n - c0), part) }
    })
}
impl Panels for Mat {
    unsafe fn pack(&self, isa: Isa, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        match isa {
            Isa::Avx512 => pack::b_block(*self, k0, c0, kc, nc, dst),
            Isa::Avx2 => avx2::b_block(*self, k0, c0, kc, nc, dst),
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("gemm runs only where `available()` ({isa:?}, {k0}, {c0}, {kc}, {nc}, {})", dst.len());
    }

    unsafe fn cols_from(&self, c: usize) -> Mat {
        self.from(0, c)
    }
}

/// An A operand of [`super::sgemm`]: a strided f32 matrix ([`Mat`]) or a row-major bf16
/// matrix ([`super::Bf16Rows`]) widened to f32 a block at a time, which the GEMM packs block
/// by block, or rows packed whole ([`PackedRows`]), which it reads in place.
pub(crate) trait Rows: Copy + Sync {
    /// The f32 matrix holding block `(r0.., k0..)` of `mc × kc` and the block's origin in
    /// it: the operand itself, or the block widened into `scratch` (then the matrix points
    /// into `scratch` and is valid until `scratch` next changes).
    ///
    /// # Safety
    /// The block is inside the operand.
    unsafe fn block(&self, r0: usize, k0: usize, mc: usize, kc: usize, scratch: &mut Vec<f32>) -> (Mat, usize, usize);

    /// The operand from row `r` on.
    ///
    /// # Safety
    /// Row `r` is inside the operand's buffer.
    unsafe fn rows_from(&self, r: usize) -> Self;

    /// The operand's rows packed whole, when it keeps them so (then [`Rows::block`] is not
    /// called). None: the GEMM packs it block by block.
    fn packed(&self) -> Option<PackedRows> {
        None
    }
}

/// An A operand `[m, k]` stored whole in the packed form of [`super::Arch::pack_a`] with
/// depth `k` ([`super::pack_rows`]): tile `t` (rows `t·mr..`) at `t·mr·k`, `rows_t` values
/// per k, for instruction set `isa`'s `mr`. The GEMM reads its tiles in place, for a
/// product of exactly these `m` rows and depth `k`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PackedRows {
    /// Tile 0, depth 0.
    pub ptr: *const f32,
    /// Rows.
    pub m: usize,
    /// The depth of the product.
    pub k: usize,
    /// The instruction set whose tiles these are.
    pub isa: Isa,
}

// SAFETY: as for `Mat`.
unsafe impl Send for PackedRows {}
unsafe impl Sync for PackedRows {}

impl Rows for PackedRows {
    unsafe fn block(&self, r0: usize, k0: usize, mc: usize, kc: usize, _: &mut Vec<f32>) -> (Mat, usize, usize) {
        unreachable!("the GEMM reads packed rows in place ({r0}, {k0}, {mc}, {kc})")
    }

    /// # Safety
    /// As for [`Rows::rows_from`]; row `r` also starts a tile (a multiple of `mr`), else the
    /// tiles from there on are not those of a packing from row `r`.
    unsafe fn rows_from(&self, r: usize) -> PackedRows {
        debug_assert!(r <= self.m && r.is_multiple_of(self.isa.mr()), "PackedRows::rows_from({r}): not the start of a tile");
        PackedRows { ptr: self.ptr.add(r * self.k), m: self.m - r, ..*self }
    }

    fn packed(&self) -> Option<PackedRows> {
        Some(*self)
    }
}

impl Rows for Mat {
    unsafe fn block(&self, r0: usize, k0: usize, _: usize, _: usize, _: &mut Vec<f32>) -> (Mat, usize, usize) {
        (*self, r0, k0)
    }

    unsafe fn rows_from(&self, r: usize) -> Self {
        self.from(r, 0)
    }
}
