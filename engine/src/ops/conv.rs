//! Convolution family: im2col-based conv2d, BEiT's patch embedding (stride = kernel as
//! reshape + matmul), and 2x2 max pooling as a reshaped max.

use crate::{ConvGeom, Error, Result, Tensor};

impl Tensor {
    /// im2col of NCHW `self`: `[B, out_h·out_w, C·kh·kw]`; its backward is col2im.
    pub fn unfold2d(&self, kernel: (usize, usize), stride: (usize, usize), padding: (usize, usize)) -> Result<Tensor> {
        self.check_float("unfold2d")?;
        let [batch, channels, height, width] = *self.shape() else {
            return Err(Error::invalid("unfold2d", format!("expects NCHW input, got {:?}", self.shape())));
        };
        let geom = ConvGeom { batch, channels, height, width, kernel, stride, padding };
        if kernel.0 == 0 || kernel.1 == 0 || stride.0 == 0 || stride.1 == 0 {
            return Err(Error::invalid("unfold2d", "kernel and stride must be positive"));
        }
        if height + 2 * padding.0 < kernel.0 || width + 2 * padding.1 < kernel.1 {
            return Err(Error::invalid("unfold2d", format!("kernel {kernel:?} larger than padded input {:?}", self.shape())));
        }
        let out = self.device().backend().im2col(self.view(), &geom)?;
        let shape = [batch, geom.out_h() * geom.out_w(), geom.patch_len()];
        Tensor::from_op(out, &shape, self.device(), "unfold2d", &[self], move |g, _| {
            let dx = g.device().backend().col2im(g.view(), &geom)?;
            Ok(vec![Some(Tensor::from_storage(dx, &[batch, channels, height, width], g.device())?)])
        })
    }

    /// 2-D convolution (groups = 1): NCHW `self`, weight `[O, C, kh, kw]`, optional bias `[O]`.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        let [o, c, kh, kw] = *weight.shape() else {
            return Err(Error::invalid("conv2d", format!("weight must be [O, C, kh, kw], got {:?}", weight.shape())));
        };
        if self.rank() != 4 || self.shape()[1] != c {
            return Err(Error::ShapeMismatch { op: "conv2d", lhs: self.shape().to_vec(), rhs: weight.shape().to_vec() });
        }
        let (b, h, w) = (self.shape()[0], self.shape()[2], self.shape()[3]);
        if h + 2 * padding.0 < kh || w + 2 * padding.1 < kw {
            return Err(Error::invalid("conv2d", format!("kernel ({kh}, {kw}) larger than padded input {:?}", self.shape())));
        }
        let cols = if (kh, kw) == (1, 1) && stride == (1, 1) && padding == (0, 0) {
            // 1x1 convolution: channels-last view, no im2col.
            self.reshape(&[b, c, h * w])?.transpose(1, 2)?
        } else {
            self.unfold2d((kh, kw), stride, padding)?
        };
        let oh = (h + 2 * padding.0 - kh) / stride.0 + 1;
        let ow = (w + 2 * padding.1 - kw) / stride.1 + 1;
        let mut y = cols.matmul(&weight.reshape(&[o, c * kh * kw])?.t()?)?;
        if let Some(bias) = bias {
            y = y.add(bias)?;
        }
        y.transpose(1, 2)?.reshape(&[b, o, oh, ow])
    }

    /// Patch embedding: a conv with stride = kernel = `patch`, as reshape + matmul.
    /// Returns `[B, (H/p)·(W/p), O]` tokens (row-major over the patch grid).
    pub fn patchify_conv(&self, weight: &Tensor, bias: Option<&Tensor>, patch: usize) -> Result<Tensor> {
        let [b, c, h, w] = *self.shape() else {
            return Err(Error::invalid("patchify", format!("expects NCHW input, got {:?}", self.shape())));
        };
        let [o, wc, kh, kw] = *weight.shape() else {
            return Err(Error::invalid("patchify", format!("weight must be [O, C, p, p], got {:?}", weight.shape())));
        };
        if wc != c || kh != patch || kw != patch || patch == 0 || h % patch != 0 || w % patch != 0 {
            return Err(Error::invalid(
                "patchify",
                format!("input {:?} / weight {:?} do not tile with patch {patch}", self.shape(), weight.shape()),
            ));
        }
        let (gh, gw) = (h / patch, w / patch);
        let cols = self
            .reshape(&[b, c, gh, patch, gw, patch])?
            .permute(&[0, 2, 4, 1, 3, 5])?
            .reshape(&[b, gh * gw, c * patch * patch])?;
        let y = cols.matmul(&weight.reshape(&[o, c * patch * patch])?.t()?)?;
        match bias {
            Some(bias) => y.add(bias),
            None => Ok(y),
        }
    }

    /// 2x2 max pooling with stride 2 (floor mode: a trailing odd row/column is dropped).
    pub fn max_pool2x2(&self) -> Result<Tensor> {
        let [b, c, h, w] = *self.shape() else {
            return Err(Error::invalid("max_pool2x2", format!("expects NCHW input, got {:?}", self.shape())));
        };
        let (oh, ow) = (h / 2, w / 2);
        if oh == 0 || ow == 0 {
            return Err(Error::invalid("max_pool2x2", format!("input {:?} smaller than 2x2", self.shape())));
        }
        let x = if (h, w) == (2 * oh, 2 * ow) { self.clone() } else { self.narrow(2, 0, 2 * oh)?.narrow(3, 0, 2 * ow)? };
        x.reshape(&[b, c, oh, 2, ow, 2])?.max(&[3, 5], false)
    }
}
