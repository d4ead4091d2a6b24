//! The operands of [`super::sgemm`]: a strided f32 matrix ([`Mat`]), and the traits by which
//! the GEMM packs its B ([`Panels`]) and A ([`Rows`]) operands block by block.

use super::Isa;
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
}

/// An A operand that [`super::sgemm`] packs block by block: a strided f32 matrix ([`Mat`])
/// or a row-major bf16 matrix ([`super::Bf16Rows`]) widened to f32 a block at a time.
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
}

impl Rows for Mat {
    unsafe fn block(&self, r0: usize, k0: usize, _: usize, _: usize, _: &mut Vec<f32>) -> (Mat, usize, usize) {
        (*self, r0, k0)
    }

    unsafe fn rows_from(&self, r: usize) -> Self {
        self.from(r, 0)
    }
}
