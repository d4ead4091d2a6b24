//! [`Post`]: the epilogue [`super::sgemm`] applies to each output tile while it is in L1.

use super::Isa;
#[cfg(target_arch = "x86_64")]
use crate::{
    fastmath::gelu_f32,
    lanes::{spans, Lanes, Pair},
    vmath,
};

/// What is applied to each element `v` of `A·B` at `(r, c)`, in this order: `C[r, c] + v`
/// (with `accumulate`), `v + bias[c] + row_bias[r]`, GELU, `residual[r, c] + scale[c]·v`.
/// Null pointers are absent terms; the pointers are for the output block's row / column 0
/// / element (0, 0), the residual with C's row stride.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Post {
    /// Adds the product to C's old values instead of overwriting them.
    pub accumulate: bool,
    /// Per-column bias.
    pub bias: *const f32,
    /// Per-row bias (a convolution's, whose rows are output channels).
    pub row_bias: *const f32,
    /// GELU (erf form) after the bias.
    pub gelu: bool,
    /// Per-column scale of the product (layer scale), with `residual`; null: 1.
    pub scale: *const f32,
    /// The row-major residual added last.
    pub residual: *const f32,
}

// SAFETY: as for `Mat`.
unsafe impl Send for Post {}
unsafe impl Sync for Post {}

impl Post {
    /// No epilogue: C = A·B.
    pub(crate) const NONE: Post = Post {
        accumulate: false,
        bias: std::ptr::null(),
        row_bias: std::ptr::null(),
        gelu: false,
        scale: std::ptr::null(),
        residual: std::ptr::null(),
    };

    /// Whether nothing is applied after the product is stored.
    pub(super) fn is_none(&self) -> bool {
        self.bias.is_null() && self.row_bias.is_null() && !self.gelu && self.residual.is_null()
    }

    /// The epilogue of the block at `(r, c)` of this one, for outputs of row stride `ldc`.
    ///
    /// # Safety
    /// The offsets stay inside the buffers the pointers point into.
    pub(crate) unsafe fn offset(&self, r: usize, c: usize, ldc: usize) -> Post {
        let at = |p: *const f32, i: usize| if p.is_null() { p } else { p.add(i) };
        Post {
            bias: at(self.bias, c),
            row_bias: at(self.row_bias, r),
            scale: at(self.scale, c),
            residual: at(self.residual, r * ldc + c),
            ..*self
        }
    }

    /// Applies the epilogue to the `rows × cols` block at `c` (row stride `ldc`) in one pass,
    /// in explicit SIMD for instruction set `isa` (the GEMM's); each row's last
    /// `cols mod lanes` elements, as every element elsewhere, by [`Post::element`].
    ///
    /// # Safety
    /// The block and the epilogue's operands for it are in bounds; the CPU has `isa`.
    pub(super) unsafe fn apply(&self, isa: Isa, rows: usize, cols: usize, c: *mut f32, ldc: usize) {
        #[cfg(target_arch = "x86_64")]
        match isa {
            Isa::Avx512 => x86::apply_avx512(self, rows, cols, c, ldc),
            Isa::Avx2 => x86::apply_avx2(self, rows, cols, c, ldc),
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("gemm runs only where `available()` ({isa:?}, {rows} × {cols} at {c:?}, {ldc})")
    }

    /// [`Post::element`] on columns `first..cols` of each row of the block.
    ///
    /// # Safety
    /// As for [`Post::apply`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn apply_from(&self, first: usize, rows: usize, cols: usize, c: *mut f32, ldc: usize) {
        for i in 0..rows {
            for j in first..cols {
                let p = c.add(i * ldc + j);
                *p = self.element(i, j, ldc, *p);
            }
        }
    }

    /// The epilogue of element `(i, j)` of the block, whose product is `v`.
    ///
    /// # Safety
    /// As for [`Post::apply`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn element(&self, i: usize, j: usize, ldc: usize, mut v: f32) -> f32 {
        if !self.bias.is_null() {
            v += *self.bias.add(j);
        }
        if !self.row_bias.is_null() {
            v += *self.row_bias.add(i);
        }
        if self.gelu {
            v = gelu_f32(v);
        }
        if self.residual.is_null() {
            return v;
        }
        let r = *self.residual.add(i * ldc + j);
        if self.scale.is_null() {
            r + v
        } else {
            r + *self.scale.add(j) * v
        }
    }

    /// [`Post::apply`] in vectors of `V`: the same operations as [`Post::element`] (GELU by
    /// [`vmath::gelu_lanes`]), in the same order, with no fused multiply-adds outside GELU;
    /// in pairs of vectors first ([`Pair`], for GELU's sake), then one vector, then by element.
    ///
    /// # Safety
    /// As for [`Post::apply`], in a function compiled for `V`'s instruction set.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn apply_lanes<V: Lanes>(&self, rows: usize, cols: usize, c: *mut f32, ldc: usize) {
        let (in_pairs, whole) = spans::<V>(cols);
        self.apply_columns::<Pair<V>>(0..in_pairs, rows, c, ldc);
        self.apply_columns::<V>(in_pairs..whole, rows, c, ldc);
        self.apply_from(whole, rows, cols, c, ldc)
    }

    /// [`Post::apply_lanes`] on `columns` (a whole number of vectors `V`) of each row.
    ///
    /// # Safety
    /// As for [`Post::apply_lanes`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn apply_columns<V: Lanes>(&self, columns: std::ops::Range<usize>, rows: usize, c: *mut f32, ldc: usize) {
        if columns.is_empty() {
            return;
        }
        let load = |p: *const f32, j: usize| if p.is_null() { None } else { Some(V::load(p.add(j))) };
        for i in 0..rows {
            let out = c.add(i * ldc);
            let row_bias = (!self.row_bias.is_null()).then(|| V::splat(*self.row_bias.add(i)));
            let residual = if self.residual.is_null() { self.residual } else { self.residual.add(i * ldc) };
            for j in columns.clone().step_by(V::N) {
                let mut v = V::load(out.add(j));
                if let Some(b) = load(self.bias, j) {
                    v = v.add(b);
                }
                if let Some(b) = row_bias {
                    v = v.add(b);
                }
                if self.gelu {
                    v = vmath::gelu_lanes(v);
                }
                if let Some(r) = load(residual, j) {
                    v = r.add(load(self.scale, j).map_or(v, |s| s.mul(v)));
                }
                v.store(out.add(j));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Post;
    use std::arch::x86_64::*;

    /// [`Post::apply`] with AVX-512F.
    ///
    /// # Safety
    /// As for [`Post::apply`]; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn apply_avx512(post: &Post, rows: usize, cols: usize, c: *mut f32, ldc: usize) {
        post.apply_lanes::<__m512>(rows, cols, c, ldc)
    }

    /// [`Post::apply`] with AVX2 and FMA.
    ///
    /// # Safety
    /// As for [`Post::apply`]; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn apply_avx2(post: &Post, rows: usize, cols: usize, c: *mut f32, ldc: usize) {
        post.apply_lanes::<__m256>(rows, cols, c, ldc)
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::Post;
    use crate::{gemm, vmath};

    /// The vector epilogue equals its per-element form bit for bit, with GELU as
    /// `vmath::gelu_to` computes it over each row (vectors, then elements), for blocks that end
    /// in each part of its loops: pairs of vectors, one vector, elements.
    #[test]
    fn epilogue_is_its_element_form_bit_for_bit() {
        let Some(isa) = gemm::isa() else {
            return;
        };
        let val = |i: usize| ((i * 7919) % 1000) as f32 / 250.0 - 2.0;
        for cols in [5, 8, 16, 24, 29, 32, 47, 64] {
            let (rows, ldc) = (3, cols + 2);
            let bias: Vec<f32> = (0..cols).map(|j| val(j + 11)).collect();
            let row_bias: Vec<f32> = (0..rows).map(|i| val(i + 23)).collect();
            let scale: Vec<f32> = (0..cols).map(|j| val(j + 37)).collect();
            let residual: Vec<f32> = (0..rows * ldc).map(|i| val(i + 41)).collect();
            let product: Vec<f32> = (0..rows * ldc).map(val).collect();
            for (gelu, terms) in [(false, 0), (false, 1), (false, 2), (true, 0), (true, 2)] {
                let ptr = |on: bool, v: &[f32]| if on { v.as_ptr() } else { std::ptr::null() };
                let post = Post {
                    accumulate: false,
                    bias: ptr(terms >= 1, &bias),
                    row_bias: ptr(terms >= 2, &row_bias),
                    gelu,
                    scale: ptr(terms >= 2, &scale),
                    residual: ptr(terms >= 1, &residual),
                };
                let mut got = product.clone();
                // SAFETY: the block, its operands and the padding columns are inside the vectors.
                unsafe { post.apply(isa, rows, cols, got.as_mut_ptr(), ldc) };
                let mut want = product.clone();
                for (i, row) in want.chunks_mut(ldc).enumerate() {
                    let row = &mut row[..cols];
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = if terms >= 1 { *v + bias[j] } else { *v };
                        *v = if terms >= 2 { *v + row_bias[i] } else { *v };
                    }
                    if gelu {
                        let pre = row.to_vec();
                        vmath::gelu_to(&pre, row);
                    }
                    for (j, v) in row.iter_mut().enumerate() {
                        let r = residual[i * ldc + j];
                        *v = match terms {
                            0 => *v,
                            1 => r + *v,
                            _ => r + scale[j] * *v,
                        };
                    }
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{cols} columns, gelu {gelu}, terms {terms}");
            }
        }
    }
}
