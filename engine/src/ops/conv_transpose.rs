//! Transposed convolution: a GEMM into patches, then col2im (`fold2d`) sums the
//! overlapping patches into the output image.

use crate::{ConvGeom, Error, Result, Tensor};

impl Tensor {
    /// col2im of patches `self [B, L, C·kh·kw]` into NCHW `[B, C, height, width]`, where `L`
    /// is the number of kernel positions of that image (as [`Tensor::unfold2d`] lays them
    /// out); overlapping patches add up. Its backward is im2col.
    pub fn fold2d(
        &self,
        (channels, height, width): (usize, usize, usize),
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        self.check_float("fold2d")?;
        let [batch, positions, patch] = *self.shape() else {
            return Err(Error::invalid("fold2d", format!("expects [B, L, C·kh·kw] patches, got {:?}", self.shape())));
        };
        if kernel.0 == 0 || kernel.1 == 0 || stride.0 == 0 || stride.1 == 0 {
            return Err(Error::invalid("fold2d", "kernel and stride must be positive"));
        }
        if height + 2 * padding.0 < kernel.0 || width + 2 * padding.1 < kernel.1 {
            return Err(Error::invalid("fold2d", format!("kernel {kernel:?} larger than the padded {height}x{width} output")));
        }
        let geom = ConvGeom { batch, channels, height, width, kernel, stride, padding };
        if positions != geom.out_h() * geom.out_w() || patch != geom.patch_len() {
            return Err(Error::invalid(
                "fold2d",
                format!(
                    "patches {:?} do not match a {channels}x{height}x{width} image with kernel {kernel:?}, stride \
                     {stride:?}, padding {padding:?} (expected [{batch}, {}, {}])",
                    self.shape(),
                    geom.out_h() * geom.out_w(),
                    geom.patch_len()
                ),
            ));
        }
        let out = self.device().backend().col2im(self.view(), &geom)?;
        let shape = [batch, channels, height, width];
        Tensor::from_op(out, &shape, self.device(), "fold2d", &[self], move |g, _| {
            let dcols = g.device().backend().im2col(g.view(), &geom)?;
            Ok(vec![Some(Tensor::from_storage(dcols, &[batch, positions, patch], g.device())?)])
        })
    }

    /// Transposed 2-D convolution (groups = 1, no output padding or dilation) of NCHW `self`
    /// with `weight [C, O, kh, kw]` (PyTorch's `ConvTranspose2d` layout) and optional
    /// `bias [O]`: out side `(H−1)·stride − 2·padding + k`.
    pub fn conv_transpose2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        let [c, o, kh, kw] = *weight.shape() else {
            return Err(Error::invalid(
                "conv_transpose2d",
                format!("weight must be [C, O, kh, kw], got {:?}", weight.shape()),
            ));
        };
        if self.rank() != 4 || self.shape()[1] != c {
            return Err(Error::ShapeMismatch { op: "conv_transpose2d", lhs: self.shape().to_vec(), rhs: weight.shape().to_vec() });
        }
        if stride.0 == 0 || stride.1 == 0 {
            return Err(Error::invalid("conv_transpose2d", "stride must be positive"));
        }
        let (b, h, w) = (self.shape()[0], self.shape()[2], self.shape()[3]);
        let (full_h, full_w) = ((h.max(1) - 1) * stride.0 + kh, (w.max(1) - 1) * stride.1 + kw);
        if full_h < 2 * padding.0 + 1 || full_w < 2 * padding.1 + 1 {
            return Err(Error::invalid("conv_transpose2d", format!("padding {padding:?} leaves an empty output")));
        }
        let (oh, ow) = (full_h - 2 * padding.0, full_w - 2 * padding.1);
        let cols = self.reshape(&[b, c, h * w])?.transpose(1, 2)?.matmul(&weight.reshape(&[c, o * kh * kw])?)?;
        let y = cols.fold2d((o, oh, ow), (kh, kw), stride, padding)?;
        match bias {
            Some(bias) => y.add(&bias.reshape(&[o, 1, 1])?),
            None => Ok(y),
        }
    }
}
