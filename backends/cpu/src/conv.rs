//! 2-D convolutions (NCHW input, OIHW weight order): im2col and its adjoint col2im here,
//! the implicit-GEMM convolution and its weight gradient in `conv2d.rs`.

use crate::pool;
use crate::scalar::Real;
use crate::storage::{boxed, float_dispatch, same_shape, Src};
use crate::strided::par_rows;
use crate::{conv2d, CpuBackend};
use beit_engine::backend::Conv;
use beit_engine::checks::conv_out;
use beit_engine::{ConvGeom, Result, StorageBox, View};

/// The input coordinate of kernel tap `i` at output position `o`, if inside `0..size`.
fn tap(o: usize, i: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
    (o * stride + i).checked_sub(pad).filter(|&v| v < size)
}

impl Conv for CpuBackend {
    fn conv2d(&self, x: View, w: View, bias: Option<View>, geom: &ConvGeom) -> Result<StorageBox> {
        conv2d::conv2d(x, w, bias, geom)
    }

    fn conv2d_weight_grad(&self, x: View, dy: View, geom: &ConvGeom) -> Result<StorageBox> {
        conv2d::conv2d_weight_grad(x, dy, geom)
    }

    /// NCHW `x` to `[batch, out_h·out_w, channels·kh·kw]`, zero padded.
    fn im2col(&self, x: View, g: &ConvGeom) -> Result<StorageBox> {
        const OP: &str = "im2col";
        let (oh, ow) = conv_out(OP, g)?;
        same_shape(OP, x.shape(), &[g.batch, g.channels, g.height, g.width])?;
        let dtype = x.dtype();
        float_dispatch!(OP, dtype, T => {
            let xs = Src::<T>::new(OP, x)?.contiguous();
            Ok(boxed(dtype, im2col_t(&xs, g, oh, ow)))
        })
    }

    /// The adjoint of [`Conv::im2col`]: `[batch, out_h·out_w, channels·kh·kw]` summed back into NCHW.
    fn col2im(&self, cols: View, g: &ConvGeom) -> Result<StorageBox> {
        const OP: &str = "col2im";
        let (oh, ow) = conv_out(OP, g)?;
        same_shape(OP, cols.shape(), &[g.batch, oh * ow, g.patch_len()])?;
        let dtype = cols.dtype();
        float_dispatch!(OP, dtype, T => {
            let cs = Src::<T>::new(OP, cols)?.contiguous();
            Ok(boxed(dtype, col2im_t(&cs, g, oh, ow)))
        })
    }
}


fn im2col_t<T: Real>(x: &[T], g: &ConvGeom, oh: usize, ow: usize) -> Vec<T> {
    let (c_in, h, w) = (g.channels, g.height, g.width);
    let ((kh, kw), (sh, sw), (ph, pw)) = (g.kernel, g.stride, g.padding);
    let pl = g.patch_len();
    let mut out = pool::filled(g.batch * oh * ow * pl, T::zero());
    // One task row per output image row.
    par_rows(&mut out, ow * pl, |row, out| {
        let (b, oy) = (row / oh, row % oh);
        for (ox, patch) in out.chunks_mut(pl).enumerate() {
            for c in 0..c_in {
                for i in 0..kh {
                    let Some(iy) = tap(oy, i, sh, ph, h) else { continue };
                    let src = &x[((b * c_in + c) * h + iy) * w..][..w];
                    let dst = &mut patch[(c * kh + i) * kw..][..kw];
                    match (ox * sw).checked_sub(pw) {
                        Some(x0) if x0 + kw <= w => dst.copy_from_slice(&src[x0..x0 + kw]),
                        _ => {
                            for (j, d) in dst.iter_mut().enumerate() {
                                if let Some(ix) = tap(ox, j, sw, pw, w) {
                                    *d = src[ix];
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    out
}


fn col2im_t<T: Real>(cols: &[T], g: &ConvGeom, oh: usize, ow: usize) -> Vec<T> {
    let (c_in, h, w) = (g.channels, g.height, g.width);
    let ((kh, kw), (sh, sw), (ph, pw)) = (g.kernel, g.stride, g.padding);
    let pl = g.patch_len();
    let mut out = pool::filled(g.batch * c_in * h * w, T::zero());
    // One task per (batch, channel) plane.
    par_rows(&mut out, h * w, |plane, out| {
        let (b, c) = (plane / c_in, plane % c_in);
        for oy in 0..oh {
            for ox in 0..ow {
                let patch = &cols[((b * oh + oy) * ow + ox) * pl + c * kh * kw..][..kh * kw];
                for i in 0..kh {
                    let Some(iy) = tap(oy, i, sh, ph, h) else { continue };
                    for j in 0..kw {
                        if let Some(ix) = tap(ox, j, sw, pw, w) {
                            out[iy * w + ix] += patch[i * kw + j];
                        }
                    }
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use crate::testutil::{assert_close, vals, Tt, B};
    use beit_engine::backend::prelude::*;
    use beit_engine::{ConvGeom, DType, Error};

    fn geom(batch: usize, channels: usize, hw: (usize, usize), kernel: (usize, usize), stride: (usize, usize), pad: (usize, usize)) -> ConvGeom {
        ConvGeom { batch, channels, height: hw.0, width: hw.1, kernel, stride, padding: pad }
    }

    /// Naive im2col from the definition.
    fn naive(x: &[f64], g: &ConvGeom) -> Vec<f64> {
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut out = vec![];
        for b in 0..g.batch {
            for oy in 0..oh {
                for ox in 0..ow {
                    for c in 0..g.channels {
                        for i in 0..g.kernel.0 {
                            for j in 0..g.kernel.1 {
                                let iy = (oy * g.stride.0 + i) as isize - g.padding.0 as isize;
                                let ix = (ox * g.stride.1 + j) as isize - g.padding.1 as isize;
                                let inside =
                                    (0..g.height as isize).contains(&iy) && (0..g.width as isize).contains(&ix);
                                out.push(if inside {
                                    x[((b * g.channels + c) * g.height + iy as usize) * g.width + ix as usize]
                                } else {
                                    0.0
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn im2col_matches_naive_and_col2im_is_its_adjoint() {
        let geoms = [
            geom(2, 3, (7, 6), (3, 2), (2, 1), (1, 2)),
            geom(1, 1, (1, 1), (1, 1), (1, 1), (0, 0)),
            geom(1, 3, (32, 32), (16, 16), (16, 16), (0, 0)),
            geom(3, 2, (9, 11), (3, 3), (1, 1), (1, 1)),
        ];
        for dtype in [DType::F64, DType::F32] {
            for g in &geoms {
                let x = Tt::rand(dtype, &[g.batch, g.channels, g.height, g.width], 1).scrambled();
                let cols = vals(&B.im2col(x.view(), g).unwrap());
                assert_eq!(cols, naive(&x.vals(), g));
                // <im2col(x), c> == <x, col2im(c)>
                let c = Tt::rand(dtype, &[g.batch, g.out_h() * g.out_w(), g.patch_len()], 2).scrambled();
                let back = vals(&B.col2im(c.view(), g).unwrap());
                let lhs: f64 = cols.iter().zip(c.vals()).map(|(a, b)| a * b).sum();
                let rhs: f64 = x.vals().iter().zip(&back).map(|(a, b)| a * b).sum();
                assert_close(&[lhs], &[rhs], 1e-5);
            }
        }
    }

    #[test]
    fn bad_geometry_is_an_error() {
        let x = Tt::rand(DType::F32, &[1, 1, 4, 4], 1);
        assert!(matches!(B.im2col(x.view(), &geom(1, 1, (4, 4), (5, 5), (1, 1), (0, 0))), Err(Error::Invalid { .. })));
        assert!(matches!(B.im2col(x.view(), &geom(1, 1, (4, 4), (2, 2), (0, 1), (0, 0))), Err(Error::Invalid { .. })));
        assert!(matches!(
            B.im2col(x.view(), &geom(1, 2, (4, 4), (2, 2), (1, 1), (0, 0))),
            Err(Error::ShapeMismatch { .. })
        ));
        let cols = Tt::rand(DType::F32, &[1, 3, 4], 1);
        assert!(matches!(
            B.col2im(cols.view(), &geom(1, 1, (4, 4), (2, 2), (1, 1), (0, 0))),
            Err(Error::ShapeMismatch { .. })
        ));
    }
}
