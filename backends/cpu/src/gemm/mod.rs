//! Our f32 GEMM for CPUs with AVX-512F (x86-64; elsewhere [`available`] is false), with an epilogue applied while each
//! output tile is still in L1: `+ bias`, GELU, `residual + scale ⊙ ·`.
//!
//! Goto/BLIS blocking: B in `KC × NC` blocks packed into 32-column panels (a transposed
//! weight is transposed 16×16 in registers while it is packed), A in `MC × KC` blocks
//! packed into 14-row tiles; the micro-kernel ([`kernel`]) keeps a 14 × 32 tile of C in 28
//! zmm registers, with one A tile in L1 while the B panels stream from L2. One call runs
//! on the calling thread; `matmul` splits the work between threads.

#[cfg(target_arch = "x86_64")]
mod kernel;
#[cfg(target_arch = "x86_64")]
mod pack;
mod patches;

pub(crate) use patches::Patches;

use crate::fastmath::gelu_f32;
use std::cell::RefCell;

/// Rows of the micro-kernel's tile.
pub(crate) const MR: usize = 14;
/// Columns of the micro-kernel's tile (two zmm registers).
pub(crate) const NR: usize = 32;
/// Depth of a packed block: a B panel (`KC × NR`) is 32 KiB, in L1.
const KC: usize = 256;
/// Columns of a packed B block (`KC × NC`, 768 KiB, in L2; BEiT's widths are multiples).
const NC: usize = 768;
/// Rows of a packed A block (`MC × KC`, 896 KiB, in L2 with a B block); a multiple of
/// [`MR`]. A is packed once per block, B once per A block (once when `m ≤ MC`).
const MC: usize = 64 * MR;

/// Whether this CPU runs [`sgemm`].
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

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
    unsafe fn at(&self, r: usize, c: usize) -> *const f32 {
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

/// A B operand that [`sgemm`] packs block by block: a strided matrix ([`Mat`]) or the
/// patches of a convolution ([`Patches`]), which are never stored whole.
pub(crate) trait Panels: Sync {
    /// Packs rows `k0..k0+kc`, columns `c0..c0+nc` into `dst`: panel `j` (columns `j·NR..`)
    /// at `j·NR·kc`, [`NR`] values per row, columns past `nc` zero.
    ///
    /// # Safety
    /// [`available`] is true; the block is inside the operand; `dst` holds
    /// `nc.div_ceil(NR)·NR·kc` values.
    unsafe fn pack(&self, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]);
}

impl Panels for Mat {
    unsafe fn pack(&self, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        pack::b_block(*self, k0, c0, kc, nc, dst);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("gemm runs only where `available()` ({k0}, {c0}, {kc}, {nc}, {})", dst.len());
    }
}

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
    fn is_none(&self) -> bool {
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

    /// Applies the epilogue to the `rows × cols` block at `c` (row stride `ldc`).
    ///
    /// # Safety
    /// The block and the epilogue's operands for it are in bounds.
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx512f"))]
    unsafe fn apply(&self, rows: usize, cols: usize, c: *mut f32, ldc: usize) {
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
                if self.gelu {
                    v.iter_mut().for_each(|x| *x = gelu_f32(*x));
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

thread_local! {
    /// This thread's packing buffers: one B block, then one A block.
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `C = post(A·B)` for strided `A [m, k]`, `B [k, n]` and row-major `C [m, n]` of row
/// stride `ldc`, on the calling thread.
///
/// # Safety
/// [`available`] is true; every element of A, B, C and of the epilogue's operands is in
/// bounds; C does not overlap A, B or the residual.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(m: usize, k: usize, n: usize, a: Mat, b: &impl Panels, c: *mut f32, ldc: usize, post: &Post) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !post.accumulate {
            for i in 0..m {
                std::ptr::write_bytes(c.add(i * ldc), 0, n);
            }
        }
        return post.apply(m, n, c, ldc);
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("gemm::sgemm runs only where `available()`");
    #[cfg(target_arch = "x86_64")]
    PACKED.with(|buf| {
        let mut buf = buf.borrow_mut();
        let b_len = NC * KC;
        buf.resize(b_len + MC * KC, 0.0);
        let (bp, ap) = buf.split_at_mut(b_len);
        for ic in (0..m).step_by(MC) {
            let mc = MC.min(m - ic);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                let last = pc + kc == k;
                pack::a_block(a, ic, pc, mc, kc, ap);
                for jc in (0..n).step_by(NC) {
                    let nc = NC.min(n - jc);
                    b.pack(pc, jc, kc, nc, bp);
                    for ir in (0..mc).step_by(MR) {
                        let rows = MR.min(mc - ir);
                        for jr in (0..nc).step_by(NR) {
                            let cols = NR.min(nc - jr);
                            let tile = c.add((ic + ir) * ldc + jc + jr);
                            kernel::run(rows, kc, ap.as_ptr().add(ir * kc), bp.as_ptr().add(jr * kc), tile, ldc, cols, pc > 0 || post.accumulate);
                            if last && !post.is_none() {
                                post.offset(ic + ir, jc + jr, ldc).apply(rows, cols, tile, ldc);
                            }
                        }
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erf;

    /// Deterministic values in [-1, 1).
    fn vals(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// `post(A·B)` with A `[m, k]` stored row-major (`a_t`: column-major), B `[k, n]`
    /// stored row-major (`b_t`: column-major, as a transposed weight) against f64 loops.
    fn check((m, k, n): (usize, usize, usize), (a_t, b_t): (bool, bool), (bias, gelu, res): (bool, bool, Option<bool>)) {
        let (av, bv) = (vals(m * k, 1), vals(k * n, 2));
        let a = if a_t { Mat { ptr: av.as_ptr(), rs: 1, cs: m as isize } } else { Mat { ptr: av.as_ptr(), rs: k as isize, cs: 1 } };
        let b = if b_t { Mat { ptr: bv.as_ptr(), rs: 1, cs: k as isize } } else { Mat { ptr: bv.as_ptr(), rs: n as isize, cs: 1 } };
        // The residual has C's row stride.
        let ldc = n + 3;
        let (bias_v, scale_v, res_v) = (vals(n, 3), vals(n, 4), vals(m * ldc, 5));
        let post = Post {
            bias: if bias { bias_v.as_ptr() } else { std::ptr::null() },
            gelu,
            scale: if res == Some(true) { scale_v.as_ptr() } else { std::ptr::null() },
            residual: if res.is_some() { res_v.as_ptr() } else { std::ptr::null() },
            ..Post::NONE
        };
        let mut c = vec![f32::NAN; m * ldc];
        // SAFETY: the operands cover the shapes; C is separate.
        unsafe { sgemm(m, k, n, a, &b, c.as_mut_ptr(), ldc, &post) };
        let at = |mat: &Mat, v: &[f32], r: usize, col: usize| v[(r as isize * mat.rs + col as isize * mat.cs) as usize] as f64;
        for i in 0..m {
            for j in 0..n {
                let mut want: f64 = (0..k).map(|p| at(&a, &av, i, p) * at(&b, &bv, p, j)).sum();
                if bias {
                    want += bias_v[j] as f64;
                }
                if gelu {
                    want = erf::gelu(want);
                }
                if let Some(scaled) = res {
                    want = res_v[i * ldc + j] as f64 + if scaled { scale_v[j] as f64 } else { 1.0 } * want;
                }
                let got = c[i * ldc + j] as f64;
                let tol = 2e-6 * (k as f64).sqrt().max(1.0) * (1.0 + want.abs());
                assert!((got - want).abs() <= tol, "{m}x{k}x{n} a_t={a_t} b_t={b_t}: C[{i},{j}] = {got}, want {want}");
            }
            assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|x| x.is_nan()), "wrote past column {n} in row {i}");
        }
    }

    #[test]
    fn products_match_f64_across_block_edges() {
        if !available() {
            eprintln!("gemm: this CPU has no AVX-512F; the kernel is not used here");
            return;
        }
        // Tiles of 1..14 rows and 1..32 columns, k not a multiple of 16, and shapes crossing
        // the MC (896), KC (256) and NC (768) block edges.
        for (m, k, n) in [(1, 1, 1), (5, 17, 33), (14, 16, 32), (29, 300, 70), (197, 64, 97), (900, 20, 40), (15, 5, 800)] {
            for (a_t, b_t) in [(false, false), (false, true), (true, false), (true, true)] {
                check((m, k, n), (a_t, b_t), (false, false, None));
            }
        }
    }

    #[test]
    fn epilogues_match_f64() {
        if !available() {
            return;
        }
        for (m, k, n) in [(3, 7, 5), (30, 270, 40)] {
            check((m, k, n), (false, true), (true, false, None));
            check((m, k, n), (false, true), (true, true, None));
            check((m, k, n), (false, true), (true, false, Some(true)));
            check((m, k, n), (false, true), (false, false, Some(false)));
            check((m, k, n), (true, false), (true, true, Some(true)));
        }
        // k = 0: C is the epilogue of zeros.
        check((4, 0, 6), (false, false), (true, true, Some(true)));
    }
}
