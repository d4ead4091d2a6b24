//! Convolution as an implicit GEMM: f32 on our GEMM, which packs the patches of each image
//! straight from the image ([`gemm::Patches`]) and writes NCHW output with the bias added in
//! its epilogue; a 1×1 convolution (stride 1, no padding) multiplies the image itself; a
//! 3×3 one of stride 1 with enough channels runs as Winograd's F(2×2, 3×3) ([`winograd`]),
//! on the same GEMM. No im2col buffer, forward or backward. A bf16 weight (bf16 inference)
//! is widened to f32 a block at a time as it is packed ([`gemm::Bf16Rows`]). Other dtypes and CPUs are composed
//! of im2col and matmul.

use crate::blocks::{for_blocks, OutPtr};
use crate::storage::{boxed, Src};
use crate::{gemm, pool, winograd, CpuBackend};
use gemm::Panels;
use beit_engine::checks::{conv2d_shapes, conv2d_weight_grad_shapes};
use beit_engine::backend::conv as composed;
use beit_engine::{ConvGeom, DType, Result, StorageBox, View};

/// Whether `g` runs on our GEMM (an f32 `x`, an f32 or bf16 weight, AVX-512 or AVX2,
/// offsets within i32).
fn implicit(x: DType, w: DType, g: &ConvGeom) -> bool {
    x == DType::F32 && matches!(w, DType::F32 | DType::BF16) && gemm::available() && gemm::Patches::fits(g)
}

/// Whether the patches of `g` are the image itself: `[C, H·W]`.
fn pointwise(g: &ConvGeom) -> bool {
    g.kernel == (1, 1) && g.stride == (1, 1) && g.padding == (0, 0)
}

/// `[B, O, oh, ow]`: for each image, `w [O, C·kh·kw] · patches [C·kh·kw, oh·ow] + bias`.
pub(crate) fn conv2d(x: View, w: View, bias: Option<View>, g: &ConvGeom) -> Result<StorageBox> {
    const OP: &str = "conv2d";
    let (o, oh, ow) = conv2d_shapes(OP, x, w, bias, g)?;
    if !implicit(x.dtype(), w.dtype(), g) {
        return composed::conv2d(&CpuBackend, x, w, bias, g);
    }
    let xs = Src::<f32>::new(OP, x)?.contiguous();
    let bias = bias.map(|b| Src::<f32>::new(OP, b).map(|s| s.contiguous())).transpose()?;
    let mut out = pool::reuse::<f32>(g.batch * o * (oh * ow));
    if winograd::suits(g, o) {
        let bias = bias.as_deref();
        // SAFETY: `implicit` checked that the GEMM runs here; the geometry suits.
        unsafe {
            match w.dtype() {
                DType::BF16 => winograd::conv2d(&xs, &Src::<half::bf16>::new(OP, w)?.contiguous(), bias, g, o, &mut out),
                _ => winograd::conv2d(&xs, &Src::<f32>::new(OP, w)?.contiguous(), bias, g, o, &mut out),
            }
        }
        return Ok(boxed(DType::F32, out));
    }
    let post = gemm::Post { row_bias: bias.as_ref().map_or(std::ptr::null(), |b| b.as_ptr()), ..gemm::Post::NONE };
    let k = g.patch_len();
    if w.dtype() == DType::BF16 {
        let ws = Src::<half::bf16>::new(OP, w)?.contiguous();
        products(&xs, gemm::Bf16Rows { ptr: ws.as_ptr(), ld: k }, &post, g, (o, oh * ow), &mut out);
    } else {
        let ws = Src::<f32>::new(OP, w)?.contiguous();
        products(&xs, gemm::Mat { ptr: ws.as_ptr(), rs: k as isize, cs: 1 }, &post, g, (o, oh * ow), &mut out);
    }
    Ok(boxed(DType::F32, out))
}

/// [`conv2d`]'s products into `out [B, O, p]` for the weight `a [O, C·kh·kw]`: `(o, p)` are
/// the output channels and pixels.
fn products(xs: &[f32], a: impl gemm::Rows, post: &gemm::Post, g: &ConvGeom, (o, p): (usize, usize), out: &mut [f32]) {
    let (k, image) = (g.patch_len(), g.channels * g.height * g.width);
    let c = OutPtr(out.as_mut_ptr());
    for_blocks(g.batch, o, k, p, gemm::tile(), |b, rows, cols| {
        // SAFETY: image `b` and the weight rows are inside their buffers; the blocks are
        // disjoint and inside the output; the bias has `o` values.
        unsafe {
            let img = xs.as_ptr().add(b * image);
            let a = a.rows_from(rows.start);
            let post = post.offset(rows.start, 0, p);
            let c = c.add((b * o + rows.start) * p + cols.start).0;
            let (m, n) = (rows.len(), cols.len());
            if pointwise(g) {
                let src = gemm::Mat { ptr: img, rs: p as isize, cs: 1 }.cols_from(cols.start);
                gemm::sgemm(m, k, n, a, &src, c, p, &post);
            } else {
                let src = gemm::Patches { x: img, geom: *g, by_pixel: false, first_col: 0 }.cols_from(cols.start);
                gemm::sgemm(m, k, n, a, &src, c, p, &post);
            }
        }
    });
}

/// `[O, C, kh, kw]`: `Σ_b dy[b] [O, oh·ow] · patches(x[b])ᵀ [oh·ow, C·kh·kw]`, accumulated
/// image by image in each output block.
pub(crate) fn conv2d_weight_grad(x: View, dy: View, g: &ConvGeom) -> Result<StorageBox> {
    const OP: &str = "conv2d_weight_grad";
    let (o, oh, ow) = conv2d_weight_grad_shapes(OP, x, dy, g)?;
    if !implicit(x.dtype(), x.dtype(), g) {
        return composed::conv2d_weight_grad(&CpuBackend, x, dy, g);
    }
    let (xs, dys) = (Src::<f32>::new(OP, x)?.contiguous(), Src::<f32>::new(OP, dy)?.contiguous());
    let (k, p, image) = (g.patch_len(), oh * ow, g.channels * g.height * g.width);
    let mut out = pool::reuse::<f32>(o * k);
    let c = OutPtr(out.as_mut_ptr());
    for_blocks(1, o, p * g.batch, k, gemm::tile(), |_, rows, cols| {
        for b in 0..g.batch {
            let post = gemm::Post { accumulate: b > 0, ..gemm::Post::NONE };
            // SAFETY: as in `conv2d`; `dy[b]` is `[O, p]` row-major.
            unsafe {
                let img = xs.as_ptr().add(b * image);
                let a = gemm::Mat { ptr: dys.as_ptr().add(b * o * p), rs: p as isize, cs: 1 }.from(rows.start, 0);
                let c = c.add(rows.start * k + cols.start).0;
                let (m, n) = (rows.len(), cols.len());
                if pointwise(g) {
                    let src = gemm::Mat { ptr: img, rs: 1, cs: p as isize }.cols_from(cols.start);
                    gemm::sgemm(m, p, n, a, &src, c, k, &post);
                } else {
                    let src = gemm::Patches { x: img, geom: *g, by_pixel: true, first_col: 0 }.cols_from(cols.start);
                    gemm::sgemm(m, p, n, a, &src, c, k, &post);
                }
            }
        }
    });
    Ok(boxed(DType::F32, out))
}
