//! The im2col matrix of one NCHW image as a GEMM operand that is never stored: [`sgemm`]
//! packs it block by block straight from the image (an implicit-GEMM convolution), with
//! AVX-512 gathers whose masks are the zero padding.
//!
//! [`sgemm`]: super::sgemm

use super::{Isa, Panels};
use beit_engine::ConvGeom;

/// The patches of image `x` (`channels × height × width`, contiguous) under `geom`'s
/// kernel, stride and padding, as a matrix whose rows are kernel taps `(c, i, j)` and
/// columns output pixels `(oy, ox)` (the forward operand, `[C·kh·kw, oh·ow]`), or, when
/// `by_pixel`, its transpose (the weight gradient's operand, `[oh·ow, C·kh·kw]`). Column
/// `0` of the operand is column `first_col` of that matrix.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Patches {
    /// The image's first element.
    pub x: *const f32,
    /// The convolution (its `batch` is not used).
    pub geom: ConvGeom,
    /// Rows are output pixels and columns taps.
    pub by_pixel: bool,
    /// The matrix column that is the operand's column 0.
    pub first_col: usize,
}

// SAFETY: the image is only read, by threads that write disjoint outputs.
unsafe impl Send for Patches {}
unsafe impl Sync for Patches {}

impl Patches {
    /// Whether every offset into the image fits the gathers' i32 lanes.
    pub(crate) fn fits(geom: &ConvGeom) -> bool {
        let image = geom.channels * (geom.height + 2 * geom.padding.0 + 1) * (geom.width + 2 * geom.padding.1 + 1);
        image < i32::MAX as usize / 2
    }

    /// Tap `t`'s part of an input element's coordinates, `[dy, dx, channel offset]`: the
    /// element under a tap and a pixel is at `(tap[0] + pixel[0], tap[1] + pixel[1])` of the
    /// channel starting at `tap[2]`.
    fn tap(&self, t: usize) -> [i32; 3] {
        let (kh, kw) = self.geom.kernel;
        let (c, i, j) = (t / (kh * kw), t / kw % kh, t % kw);
        [i as i32, j as i32, (c * self.geom.height * self.geom.width) as i32]
    }

    /// Output pixel `p`'s part: its top-left input row and column, padding subtracted.
    fn pixel(&self, p: usize) -> [i32; 3] {
        let ow = self.geom.out_w();
        let g = &self.geom;
        let (oy, ox) = (p / ow, p % ow);
        [(oy * g.stride.0) as i32 - g.padding.0 as i32, (ox * g.stride.1) as i32 - g.padding.1 as i32, 0]
    }

    /// Row `r`'s part of the element's coordinates.
    fn row(&self, r: usize) -> [i32; 3] {
        if self.by_pixel {
            self.pixel(r)
        } else {
            self.tap(r)
        }
    }

    /// Operand column `q`'s part.
    fn col(&self, q: usize) -> [i32; 3] {
        if self.by_pixel {
            self.tap(self.first_col + q)
        } else {
            self.pixel(self.first_col + q)
        }
    }
}

impl Panels for Patches {
    unsafe fn pack(&self, isa: Isa, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        match (isa, self.by_pixel || self.geom.stride.1 != 1) {
            (Isa::Avx512, true) => gather_block(self, k0, c0, kc, nc, dst),
            (Isa::Avx2, true) => scalar_block(self, k0, c0, kc, nc, dst),
            (Isa::Avx512, false) => row_runs_avx512(self, k0, c0, kc, nc, dst),
            (Isa::Avx2, false) => row_runs_avx2(self, k0, c0, kc, nc, dst),
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("gemm runs only where `available()` ({isa:?}, {self:?}, {k0}, {c0}, {kc}, {nc}, {})", dst.len());
    }

    unsafe fn cols_from(&self, c: usize) -> Patches {
        Patches { first_col: self.first_col + c, ..*self }
    }
}

/// [`Panels::pack`] of [`Patches`] element by element: the AVX2 GEMM's for the weight
/// gradient's operand and horizontal strides (AVX2 has no gathers worth the name); a packed
/// element feeds a whole A block's rows.
///
/// # Safety
/// As for [`Panels::pack`]; the geometry [`Patches::fits`].
#[cfg(target_arch = "x86_64")]
unsafe fn scalar_block(src: &Patches, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]) {
    use super::NR;
    let (h, w) = (src.geom.height as i32, src.geom.width as i32);
    for (j, start) in (0..nc).step_by(NR).enumerate() {
        let cols = NR.min(nc - start);
        let panel: [[i32; 3]; NR] = std::array::from_fn(|q| if q < cols { src.col(c0 + start + q) } else { [0; 3] });
        for (p, row) in dst[j * NR * kc..][..NR * kc].chunks_exact_mut(NR).enumerate() {
            let [ry, rx, rc] = src.row(k0 + p);
            for (q, (v, &[cy, cx, cc])) in row.iter_mut().zip(&panel).enumerate() {
                let (iy, ix) = (ry + cy, rx + cx);
                let inside = q < cols && (0..h).contains(&iy) && (0..w).contains(&ix);
                *v = if inside { *src.x.offset((rc + cc + iy * w + ix) as isize) } else { 0.0 };
            }
        }
    }
}

/// [`row_runs_block`] with AVX-512F.
///
/// # Safety
/// As for [`row_runs_block`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_runs_avx512(src: &Patches, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]) {
    row_runs_block::<true>(src, k0, c0, kc, nc, dst)
}

/// [`row_runs_block`] with AVX2.
///
/// # Safety
/// As for [`row_runs_block`], on a CPU with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_runs_avx2(src: &Patches, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]) {
    row_runs_block::<false>(src, k0, c0, kc, nc, dst)
}

/// [`Panels::pack`] of [`Patches`] by tap rows at horizontal stride 1: a panel's pixels are
/// runs along output rows, and each run of a tap is a run of one input row: with `AVX512`,
/// loaded 16 at a time with the columns outside the image masked off; otherwise the
/// columns inside copied one by one.
///
/// # Safety
/// As for [`Panels::pack`]; `!src.by_pixel` and `src.geom.stride.1 == 1`; with `AVX512`,
/// the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn row_runs_block<const AVX512: bool>(src: &Patches, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]) {
    use super::NR;
    use std::arch::x86_64::*;
    let g = &src.geom;
    let (h, w, ow) = (g.height as isize, g.width as isize, g.out_w());
    let (sh, ph, pw) = (g.stride.0 as isize, g.padding.0 as isize, g.padding.1 as isize);
    let mut taps = [[0i32; 3]; super::KC];
    for (p, t) in taps.iter_mut().enumerate().take(kc) {
        *t = src.tap(k0 + p);
    }
    for (j, start) in (0..nc).step_by(NR).enumerate() {
        let cols = NR.min(nc - start);
        let out = dst[j * NR * kc..][..NR * kc].as_mut_ptr();
        // The panel's runs: (first lane, length, output row, first output column).
        let mut runs = [(0usize, 0usize, 0isize, 0isize); NR];
        let (mut n_runs, mut lane) = (0, 0);
        while lane < cols {
            let pixel = src.first_col + c0 + start + lane;
            let (oy, ox) = (pixel / ow, pixel % ow);
            let len = (cols - lane).min(ow - ox);
            runs[n_runs] = (lane, len, oy as isize, ox as isize);
            (n_runs, lane) = (n_runs + 1, lane + len);
        }
        for (p, &[i, jt, coff]) in taps.iter().enumerate().take(kc) {
            let row = out.add(p * NR);
            std::slice::from_raw_parts_mut(row, NR).fill(0.0);
            for &(lane, len, oy, ox) in &runs[..n_runs] {
                let iy = oy * sh + i as isize - ph;
                if !(0..h).contains(&iy) {
                    continue;
                }
                let line = src.x.wrapping_offset(coff as isize + iy * w);
                if !AVX512 {
                    // Input column of the run's first lane; lanes lo..hi are inside the row.
                    let ix = ox + jt as isize - pw;
                    for q in (-ix).max(0)..(w - ix).min(len as isize) {
                        *row.add(lane + q as usize) = *line.offset(ix + q);
                    }
                    continue;
                }
                for q in (0..len).step_by(16) {
                    let n = (len - q).min(16) as isize;
                    // Input column of the chunk's first lane; lanes lo..hi are inside the row.
                    let ix = ox + q as isize + jt as isize - pw;
                    let (lo, hi) = ((-ix).max(0), (w - ix).min(n));
                    if hi <= lo {
                        continue;
                    }
                    let inside = (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16;
                    let v = _mm512_maskz_loadu_ps(inside, line.wrapping_offset(ix));
                    _mm512_mask_storeu_ps(row.add(lane + q), ((1u32 << n) - 1) as u16, v);
                }
            }
        }
    }
}

/// [`Panels::pack`] of [`Patches`]: per panel, each column's coordinates in 2 × 16 lanes;
/// per row, its own added, the lanes outside the image masked off (they read as zero).
///
/// # Safety
/// As for [`Panels::pack`]; the CPU has AVX-512F and the geometry [`Patches::fits`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_block(src: &Patches, k0: usize, c0: usize, kc: usize, nc: usize, dst: &mut [f32]) {
    use super::NR;
    use std::arch::x86_64::*;
    let (h, w) = (_mm512_set1_epi32(src.geom.height as i32), _mm512_set1_epi32(src.geom.width as i32));
    let row_len = _mm512_set1_epi32(src.geom.width as i32);
    // Each row's coordinates once per block, for all its panels.
    let mut rows = [[0i32; 3]; super::KC];
    for (p, r) in rows.iter_mut().enumerate().take(kc) {
        *r = src.row(k0 + p);
    }
    for (j, start) in (0..nc).step_by(NR).enumerate() {
        let cols = NR.min(nc - start);
        let out = dst[j * NR * kc..][..NR * kc].as_mut_ptr();
        let (lo, hi) = super::pack::masks(cols);
        let mut lanes = [[[0i32; 16]; 3]; 2];
        for q in 0..cols {
            let [y, x, c] = src.col(c0 + start + q);
            let (half, l) = (q / 16, q % 16);
            (lanes[half][0][l], lanes[half][1][l], lanes[half][2][l]) = (y, x, c);
        }
        let load = |v: &[i32; 16]| _mm512_loadu_si512(v.as_ptr().cast());
        let cy = [load(&lanes[0][0]), load(&lanes[1][0])];
        let cx = [load(&lanes[0][1]), load(&lanes[1][1])];
        let cc = [load(&lanes[0][2]), load(&lanes[1][2])];
        for (p, &[ry, rx, rc]) in rows.iter().enumerate().take(kc) {
            for half in 0..2 {
                let valid = if half == 0 { lo } else { hi };
                let iy = _mm512_add_epi32(cy[half], _mm512_set1_epi32(ry));
                let ix = _mm512_add_epi32(cx[half], _mm512_set1_epi32(rx));
                // Unsigned compares: a negative coordinate is out too.
                let inside = _mm512_mask_cmplt_epu32_mask(_mm512_mask_cmplt_epu32_mask(valid, iy, h), ix, w);
                let at = _mm512_add_epi32(
                    _mm512_add_epi32(cc[half], _mm512_set1_epi32(rc)),
                    _mm512_add_epi32(_mm512_mullo_epi32(iy, row_len), ix),
                );
                let v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), inside, at, src.x.cast());
                _mm512_storeu_ps(out.add(p * NR + 16 * half), v);
            }
        }
    }
}
