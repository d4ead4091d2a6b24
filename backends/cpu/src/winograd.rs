//! 3×3 convolutions of stride 1 by Winograd's minimal filtering F(2×2, 3×3) (Lavin and
//! Gray, 2016).
//!
//! Each 2×2 block of output pixels (a tile) is `Aᵀ [U ⊙ V] A` summed over the input
//! channels, with `U = G w Gᵀ` (4×4) for each 3×3 kernel `w` and `V = Bᵀ d B` for the tile's
//! 4×4 input window `d`. For the 16 positions ξ of those 4×4 transforms, the sum over the
//! channels is a product `V_ξ [tiles, C] · U_ξ [C, O]`: 16·C multiply-adds per tile and
//! output channel where the direct convolution needs 4·9·C, 2.25× fewer. The 16 products run
//! on our GEMM, with `U` transformed into its B panels once per call ([`Prepacked`]) and
//! `V` a block of tiles and channels at a time in each thread, into its packed form of A
//! ([`PackedRows`]); both are read in place.
//! The transforms only add, subtract and halve, so the result stays within a few times
//! the direct convolution's rounding error (`tests`).

use crate::blocks::OutPtr;
use crate::gemm::{self, PackedRows, Post, Prepacked, KC, NR};
use crate::pool;
use beit_engine::ConvGeom;
use rayon::prelude::*;

/// Positions of the 4×4 transforms.
const XI: usize = 16;
/// At most about this many tiles in a block (the rows of its 16 products): from 96 to 384,
/// 192 was fastest on Zen 3, for BEiT's segmentation head and for the DALL-E encoder.
const TILES: usize = 192;
/// Fewer input or output channels than this leave the transforms too large a share: the
/// transformed inputs are 4× the input, and each of their values is written and read for
/// only `2·O` flops. On Zen 3, against the implicit GEMM: 512 → 512 channels 0.60–0.65× its
/// time, 768 → 768 0.60–0.80×; 128 → 128 at 56² 1.05–1.1×, 256 → 64 at 112² 1.25–1.35× ...
const MIN_CHANNELS: usize = 256;
/// ... and fewer tiles in the batch than this, transforming the weights (about as costly
/// as 100 tiles' products saved).
const MIN_TILES: usize = 256;

/// Whether a convolution `g` with `o` output channels runs here: [`fits`], with at least
/// [`MIN_CHANNELS`] channels in and out and [`MIN_TILES`] tiles.
pub(crate) fn suits(g: &ConvGeom, o: usize) -> bool {
    fits(g) && g.channels.min(o) >= MIN_CHANNELS && g.batch * tiles(g).1 >= MIN_TILES
}

/// Whether [`conv2d`] computes `g`: input channels, a 3×3 kernel of stride 1 with padding
/// below 3.
fn fits(g: &ConvGeom) -> bool {
    g.channels > 0 && g.kernel == (3, 3) && g.stride == (1, 1) && g.padding.0 < 3 && g.padding.1 < 3
}

/// Tiles to an output row, and to an image.
fn tiles(g: &ConvGeom) -> (usize, usize) {
    let tw = g.out_w().div_ceil(2);
    (tw, g.out_h().div_ceil(2) * tw)
}

/// The image, tile row and tile column of tile `t` of the batch.
fn tile_at(g: &ConvGeom, t: usize) -> (usize, usize, usize) {
    let (tw, per_image) = tiles(g);
    (t / per_image, t % per_image / tw, t % tw)
}

/// `out [B, O, oh, ow] = conv(x, w) + bias` for an NCHW `x`, a weight `w [O, C, 3, 3]`
/// (f32 or bf16, widened as it is transformed) and an optional `bias [O]`; `out` holds
/// `B·O·oh·ow` values.
///
/// # Safety
/// [`gemm::available`] is true.
pub(crate) unsafe fn conv2d<W: Copy + Into<f32> + Sync>(x: &[f32], w: &[W], bias: Option<&[f32]>, g: &ConvGeom, o: usize, out: &mut [f32]) {
    let c = g.channels;
    let (oh, ow) = (g.out_h(), g.out_w());
    assert!(fits(g), "winograd::conv2d: {g:?} is not a 3×3 convolution of stride 1");
    assert!(x.len() == g.batch * c * g.height * g.width && w.len() == o * c * 9 && out.len() == g.batch * o * oh * ow);
    assert!(bias.is_none_or(|b| b.len() == o), "winograd::conv2d: the bias has {o} values");
    if out.is_empty() {
        return;
    }
    let slab = o.div_ceil(NR) * NR * c;
    let mut u = pool::reuse::<f32>(XI * slab);
    transform_weights(w, c, o, &mut u);
    // Tiles numbered across the batch, image by image, row-major in each; cut into blocks
    // of about equal size, at least two per thread where there are enough tiles.
    let total = g.batch * tiles(g).1;
    let isa = gemm::isa().expect("winograd::conv2d runs only where the GEMM is available");
    let mr = isa.mr();
    let blocks = total.div_ceil(TILES / mr * mr).max(2 * rayon::current_num_threads()).min(total);
    let block = total.div_ceil(blocks).next_multiple_of(mr).min(total);
    let dst = OutPtr(out.as_mut_ptr());
    (0..total.div_ceil(block)).into_par_iter().for_each(|unit| {
        let t0 = unit * block;
        let tm = block.min(total - t0);
        let mut v = pool::reuse::<f32>(XI * Slab { tm, mr, kc: KC.min(c) }.len());
        let mut m = pool::reuse::<f32>(XI * tm * o);
        for c0 in (0..c).step_by(KC) {
            let slab_v = Slab { tm, mr, kc: KC.min(c - c0) };
            transform_inputs(x, g, t0, c0, slab_v, &mut v);
            for xi in 0..XI {
                let a = PackedRows { ptr: v.as_ptr().add(xi * slab_v.len()), m: tm, k: slab_v.kc, isa };
                let b = Prepacked { ptr: u.as_ptr().add(xi * slab + c0 * NR), k: c };
                let post = Post { accumulate: c0 > 0, ..Post::NONE };
                // SAFETY: V_ξ holds `tm × kc` packed rows, U_ξ's panels are `c` deep from
                // channel `c0` on, M_ξ holds `tm × o`.
                gemm::sgemm(tm, slab_v.kc, o, a, &b, m.as_mut_ptr().add(xi * tm * o), o, &post);
            }
        }
        // SAFETY: the units' tiles are disjoint.
        transform_outputs(&m, g, (t0, tm), o, bias, dst);
        pool::give_back(v);
        pool::give_back(m);
    });
    pool::give_back(u);
}

/// `U_ξ = (G w Gᵀ)_ξ` of every kernel of `w [O, C, 3, 3]` into `u`, as 16 slabs of B panels
/// of depth `C` ([`Prepacked`]; columns past `O` zero): slab ξ at `ξ·slab`, panel `j` at
/// `j·NR·C`, channel `c`'s [`NR`] values at `c·NR`. Panels shared out among the threads.
fn transform_weights<W: Copy + Into<f32> + Sync>(w: &[W], c: usize, o: usize, u: &mut [f32]) {
    let panels = o.div_ceil(NR);
    let slab = panels * NR * c;
    let dst = OutPtr(u.as_mut_ptr());
    (0..panels).into_par_iter().for_each(|j| {
        for ci in 0..c {
            for col in 0..NR {
                let oi = j * NR + col;
                let t = if oi < o { kernel_transform(|r, s| w[(oi * c + ci) * 9 + r * 3 + s].into()) } else { [0.0; XI] };
                for (xi, &val) in t.iter().enumerate() {
                    // SAFETY: inside slab ξ's panel `j`; each panel is written by one task.
                    unsafe { *dst.add(xi * slab + j * NR * c + ci * NR + col).0 = val };
                }
            }
        }
    });
}

/// `G k Gᵀ` of the 3×3 kernel `k(row, col)`, row-major, for
/// `G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]`.
fn kernel_transform(k: impl Fn(usize, usize) -> f32) -> [f32; XI] {
    let g = |v: [f32; 3]| [v[0], 0.5 * (v[0] + v[1] + v[2]), 0.5 * (v[0] - v[1] + v[2]), v[2]];
    let cols: [[f32; 4]; 3] = std::array::from_fn(|s| g([k(0, s), k(1, s), k(2, s)]));
    let mut u = [0.0; XI];
    for r in 0..4 {
        u[4 * r..4 * r + 4].copy_from_slice(&g([cols[0][r], cols[1][r], cols[2][r]]));
    }
    u
}

/// The layout of one of the 16 slabs of a block of transformed inputs, `tm` tiles by `kc`
/// channels: the GEMM's packed form of A ([`PackedRows`]), tiles of `mr` of our tiles, each
/// tile's channels in turn, so that the products read them in place.
#[derive(Clone, Copy)]
struct Slab {
    tm: usize,
    mr: usize,
    kc: usize,
}

impl Slab {
    /// Values in the slab.
    fn len(self) -> usize {
        self.tm.next_multiple_of(self.mr) * self.kc
    }

    /// Where our tile `t`'s value for channel 0 is, and how far apart its channels are.
    fn place(self, t: usize) -> (usize, usize) {
        let first = t / self.mr * self.mr;
        (first * self.kc + t - first, self.mr.min(self.tm - first))
    }
}

/// `V_ξ = (Bᵀ d B)_ξ` of the input windows `d` of tiles `t0..t0+tm` of the batch ([`tile_at`])
/// and channels `c0..c0+kc` of `x` into `v` (slab ξ at `ξ·len`, laid out as `slab` says),
/// for `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`; tile by tile, all
/// channels of each.
fn transform_inputs(x: &[f32], g: &ConvGeom, t0: usize, c0: usize, slab: Slab, v: &mut [f32]) {
    let Slab { tm, kc, .. } = slab;
    let len = slab.len();
    let (h, w) = (g.height as isize, g.width as isize);
    let plane = g.height * g.width;
    // Each tile's image (its channel 0), window corner, and place in the slab (channel 0)
    // and distance between channels there: found once here, not once per channel.
    let spots: Vec<(usize, isize, isize, usize, usize)> = (0..tm)
        .map(|t| {
            let (b, ty, tx) = tile_at(g, t0 + t);
            let (y0, x0) = (2 * ty as isize - g.padding.0 as isize, 2 * tx as isize - g.padding.1 as isize);
            let (at0, step) = slab.place(t);
            (b * g.channels * plane, y0, x0, at0, step)
        })
        .collect();
    for &(image, y0, x0, at0, step) in &spots {
        for ci in 0..kc {
            let p = &x[image + (c0 + ci) * plane..][..plane];
            let d: [[f32; 4]; 4] = if y0 >= 0 && x0 >= 0 && y0 + 4 <= h && x0 + 4 <= w {
                let at = y0 as usize * g.width + x0 as usize;
                std::array::from_fn(|r| p[at + r * g.width..][..4].try_into().expect("four values"))
            } else {
                std::array::from_fn(|r| {
                    std::array::from_fn(|s| {
                        let (y, x) = (y0 + r as isize, x0 + s as isize);
                        if y >= 0 && x >= 0 && y < h && x < w { p[y as usize * g.width + x as usize] } else { 0.0 }
                    })
                })
            };
            let bt = |u: [f32; 4]| [u[0] - u[2], u[1] + u[2], u[2] - u[1], u[1] - u[3]];
            let cols: [[f32; 4]; 4] = std::array::from_fn(|s| bt([d[0][s], d[1][s], d[2][s], d[3][s]]));
            for r in 0..4 {
                for (j, val) in bt([cols[0][r], cols[1][r], cols[2][r], cols[3][r]]).into_iter().enumerate() {
                    v[(4 * r + j) * len + at0 + ci * step] = val;
                }
            }
        }
    }
}

/// The output pixels of tiles `t0..t0+tm` of the batch ([`tile_at`]) from `m` (slab ξ at
/// `ξ·tm·o`, row-major `[tm, o]`) into `out [B, o, oh, ow]`: `Aᵀ M A + bias` for
/// `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`, the pixels past `oh` or `ow` dropped.
///
/// # Safety
/// `out` holds `B·o·oh·ow` values; no other thread writes these tiles' pixels.
unsafe fn transform_outputs(m: &[f32], g: &ConvGeom, (t0, tm): (usize, usize), o: usize, bias: Option<&[f32]>, out: OutPtr<f32>) {
    let (oh, ow) = (g.out_h(), g.out_w());
    let plane = oh * ow;
    for t in 0..tm {
        let (b, ty, tx) = tile_at(g, t0 + t);
        let out = out.add(b * o * plane);
        let (rows, cols) = ((oh - 2 * ty).min(2), (ow - 2 * tx).min(2));
        let at = 2 * ty * ow + 2 * tx;
        for oi in 0..o {
            let e = |xi: usize| m[xi * tm * o + t * o + oi];
            let a_t = |u: [f32; 4]| [u[0] + u[1] + u[2], u[1] - u[2] - u[3]];
            let half: [[f32; 2]; 4] = std::array::from_fn(|s| a_t([e(s), e(4 + s), e(8 + s), e(12 + s)]));
            let b = bias.map_or(0.0, |b| b[oi]);
            let y: [[f32; 2]; 2] = std::array::from_fn(|r| a_t([half[0][r], half[1][r], half[2][r], half[3][r]]));
            for (r, row) in y.iter().enumerate().take(rows) {
                for (s, &val) in row.iter().enumerate().take(cols) {
                    *out.add(oi * plane + at + r * ow + s).0 = val + b;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beit_engine::DType;

    /// The direct convolution in f64: `(value, Σ |w·x|)` for each output, the second
    /// bounding the rounding error.
    fn direct(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &ConvGeom, o: usize) -> Vec<(f64, f64)> {
        let (oh, ow, c) = (g.out_h(), g.out_w(), g.channels);
        let mut out = Vec::new();
        for b in 0..g.batch {
            for f in 0..o {
                for y in 0..oh {
                    for z in 0..ow {
                        let (mut acc, mut mag) = (bias.map_or(0.0, |b| b[f] as f64), bias.map_or(0.0, |b| (b[f] as f64).abs()));
                        for ci in 0..c {
                            for r in 0..3 {
                                for s in 0..3 {
                                    let (iy, ix) = ((y + r) as isize - g.padding.0 as isize, (z + s) as isize - g.padding.1 as isize);
                                    if iy < 0 || ix < 0 || iy >= g.height as isize || ix >= g.width as isize {
                                        continue;
                                    }
                                    let xv = x[((b * c + ci) * g.height + iy as usize) * g.width + ix as usize] as f64;
                                    let p = w[(f * c + ci) * 9 + r * 3 + s] as f64 * xv;
                                    acc += p;
                                    mag += p.abs();
                                }
                            }
                        }
                        out.push((acc, mag));
                    }
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        crate::testutil::rand_vals(n, seed).into_iter().map(|v| v as f32).collect()
    }

    /// Against the f64 direct convolution, within 4 f32 ulps of `Σ |w·x|` per output:
    /// odd and even sizes (ragged tiles), padding 0 to 2, channels across two depth blocks
    /// and a ragged panel, more tiles than a block, a batch, with and without a bias.
    #[test]
    fn matches_the_direct_convolution() {
        if !gemm::available() {
            return;
        }
        for (batch, c, o, (h, w), pad, with_bias) in [
            (2, 16, 16, (5, 7), (1, 1), true),
            (1, 300, 40, (9, 8), (1, 1), true),
            (2, 20, 33, (31, 29), (0, 2), false),
            (1, 17, 70, (2, 3), (2, 1), true),
            (3, 24, 16, (4, 4), (0, 0), true),
            (1, 256, 256, (16, 16), (1, 1), true),
        ] {
            let g = ConvGeom { batch, channels: c, height: h, width: w, kernel: (3, 3), stride: (1, 1), padding: pad };
            let x = values(batch * c * h * w, 1 + c as u64);
            let wt = values(o * c * 9, 2 + o as u64);
            let bias = with_bias.then(|| values(o, 3));
            let mut out = vec![f32::NAN; batch * o * g.out_h() * g.out_w()];
            // SAFETY: the GEMM is available and the geometry suits.
            unsafe { conv2d(&x, &wt, bias.as_deref(), &g, o, &mut out) };
            for (i, (&got, (want, mag))) in out.iter().zip(direct(&x, &wt, bias.as_deref(), &g, o)).enumerate() {
                let tol = 4.0 * f32::EPSILON as f64 * mag.max(1e-30);
                assert!((got as f64 - want).abs() <= tol, "{g:?} → {o}: output {i} is {got}, want {want} (± {tol:.2e})");
            }
        }
    }

    /// The CPU backend's conv2d takes this path where it suits, with the same values.
    #[test]
    fn the_backend_runs_suiting_convolutions_here() {
        use crate::testutil::{vals, Tt};
        if !gemm::available() {
            return;
        }
        let g = ConvGeom { batch: 1, channels: 256, height: 32, width: 32, kernel: (3, 3), stride: (1, 1), padding: (1, 1) };
        assert!(suits(&g, 256) && !suits(&ConvGeom { channels: 128, ..g }, 256) && !suits(&ConvGeom { height: 30, width: 30, ..g }, 256));
        let (x, w, b) = (Tt::rand(DType::F32, &[1, 256, 32, 32], 1), Tt::rand(DType::F32, &[256, 256, 3, 3], 2), Tt::rand(DType::F32, &[256], 3));
        let got = vals(&crate::conv2d::conv2d(x.view(), w.view(), Some(b.view()), &g).unwrap());
        let f = |t: &Tt| t.vals().into_iter().map(|v| v as f32).collect::<Vec<_>>();
        let mut want = vec![0.0; got.len()];
        // SAFETY: the GEMM is available.
        unsafe { conv2d(&f(&x), &f(&w), Some(&f(&b)), &g, 256, &mut want) };
        assert_eq!(got, want.iter().map(|&v| v as f64).collect::<Vec<_>>());
    }

    /// bf16 weights give the f32 result of their widened values.
    #[test]
    fn bf16_weights_are_widened() {
        if !gemm::available() {
            return;
        }
        let g = ConvGeom { batch: 1, channels: 16, height: 6, width: 5, kernel: (3, 3), stride: (1, 1), padding: (1, 1) };
        let x = values(16 * 30, 4);
        let wb: Vec<half::bf16> = values(20 * 16 * 9, 5).into_iter().map(half::bf16::from_f32).collect();
        let wf: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
        let (mut a, mut b) = (vec![0.0; 20 * 30], vec![1.0; 20 * 30]);
        // SAFETY: as above.
        unsafe {
            conv2d(&x, &wb, None, &g, 20, &mut a);
            conv2d(&x, &wf, None, &g, 20, &mut b);
        }
        assert_eq!(a, b);
    }

    /// Kernels of a single tap: the transform pair reproduces a shifted copy exactly.
    #[test]
    fn kernel_transform_of_the_centre_tap() {
        let u = kernel_transform(|r, s| if (r, s) == (1, 1) { 1.0 } else { 0.0 });
        let col = [0.0, 0.5, -0.5, 0.0];
        for r in 0..4 {
            for s in 0..4 {
                assert_eq!(u[4 * r + s], col[r] * col[s]);
            }
        }
    }
}
