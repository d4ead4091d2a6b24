//! [`Post`]: the epilogue [`super::sgemm`] applies to each output tile while it is in L1.

use crate::fastmath::widest;
use crate::vmath;

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

    /// Applies the epilogue to the `rows × cols` block at `c` (row stride `ldc`), compiled
    /// for the widest registers; GELU by [`vmath::gelu_in_place`], between the bias and the
    /// residual passes.
    ///
    /// # Safety
    /// The block and the epilogue's operands for it are in bounds.
    pub(super) unsafe fn apply(&self, rows: usize, cols: usize, c: *mut f32, ldc: usize) {
        let pass = |post: Post| {
            widest(
                #[inline(always)]
                || post.apply_any(rows, cols, c, ldc),
            )
        };
        if !self.gelu {
            return pass(*self);
        }
        if !(self.bias.is_null() && self.row_bias.is_null()) {
            pass(Post { residual: std::ptr::null(), ..*self });
        }
        for i in 0..rows {
            vmath::gelu_in_place(std::slice::from_raw_parts_mut(c.add(i * ldc), cols));
        }
        if !self.residual.is_null() {
            pass(Post { bias: std::ptr::null(), row_bias: std::ptr::null(), ..*self });
        }
    }

    /// The loops of [`Post::apply`] but GELU: bias, row bias, residual.
    ///
    /// # Safety
    /// As for [`Post::apply`].
    #[inline(always)]
    unsafe fn apply_any(&self, rows: usize, cols: usize, c: *mut f32, ldc: usize) {
        let at = |p: *const f32, j: usize, n: usize| if p.is_null() { None } else { Some(std::slice::from_raw_parts(p.add(j), n)) };
        for i in 0..rows {
            let out = std::slice::from_raw_parts_mut(c.add(i * ldc), cols);
            let residual = if self.residual.is_null() { self.residual } else { self.residual.add(i * ldc) };
            let row_bias = if self.row_bias.is_null() { None } else { Some(*self.row_bias.add(i)) };
            // 16 columns at a time in a fixed-size array: one vector register each, also for
            // the 32-column tiles, where a loop over the slice would run its scalar remainder.
            for (j, chunk) in out.chunks_mut(16).enumerate().map(|(q, ch)| (16 * q, ch)) {
                let n = chunk.len();
                let lanes = |src: &[f32]| -> [f32; 16] {
                    // A full chunk is one vector load; a copy of n < 16 would be a call.
                    <[f32; 16]>::try_from(src).unwrap_or_else(|_| std::array::from_fn(|q| src.get(q).copied().unwrap_or(0.0)))
                };
                let mut v = lanes(chunk);
                let lanes = |p: *const f32| at(p, j, n).map_or([0.0; 16], lanes);
                if !self.bias.is_null() {
                    let b = lanes(self.bias);
                    v.iter_mut().zip(b).for_each(|(x, b)| *x += b);
                }
                if let Some(b) = row_bias {
                    v.iter_mut().for_each(|x| *x += b);
                }
                if !residual.is_null() {
                    let r = lanes(residual);
                    if self.scale.is_null() {
                        v.iter_mut().zip(r).for_each(|(x, r)| *x += r);
                    } else {
                        let s = lanes(self.scale);
                        v.iter_mut().zip(r).zip(s).for_each(|((x, r), s)| *x = r + s * *x);
                    }
                }
                match <&mut [f32; 16]>::try_from(&mut *chunk) {
                    Ok(full) => *full = v,
                    Err(_) => chunk.iter_mut().zip(v).for_each(|(c, x)| *c = x),
                }
            }
        }
    }
}
