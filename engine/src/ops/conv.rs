//! Convolution family: conv2d (one backend call), im2col (`unfold2d`), BEiT's patch
//! embedding (stride = kernel as reshape + matmul), and 2x2 max pooling as a reshaped max.

use crate::autograd::records;
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

    /// 2-D convolution (groups = 1): NCHW `self`, weight `[O, C, kh, kw]`, optional bias `[O]`;
    /// one [`crate::backend::Conv::conv2d`] call. Backward: the input gradient is the convolution
    /// of `dy` with the flipped kernel (stride 1) or patches folded back (col2im), the
    /// weight gradient one [`crate::backend::Conv::conv2d_weight_grad`] call. A bf16 `weight`
    /// against an f32 `self` is bf16 inference, as in [`Tensor::linear`]: the CPU widens it
    /// inside its GEMM, other backends cast it; when gradients are tracked it is cast to f32
    /// first.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        let [o, c, kh, kw] = *weight.shape() else {
            return Err(Error::invalid(OP, format!("weight must be [O, C, kh, kw], got {:?}", weight.shape())));
        };
        if self.rank() != 4 || self.shape()[1] != c {
            return Err(Error::ShapeMismatch { op: OP, lhs: self.shape().to_vec(), rhs: weight.shape().to_vec() });
        }
        let (batch, height, width) = (self.shape()[0], self.shape()[2], self.shape()[3]);
        if height + 2 * padding.0 < kh || width + 2 * padding.1 < kw {
            return Err(Error::invalid(OP, format!("kernel ({kh}, {kw}) larger than padded input {:?}", self.shape())));
        }
        self.check_float(OP)?;
        let parents: Vec<&Tensor> = [Some(self), Some(weight), bias].into_iter().flatten().collect();
        if weight.dtype() != self.dtype() {
            crate::checks::weight_dtype(OP, self.dtype(), weight.dtype())?;
            if records(&parents) {
                return self.conv2d(&weight.to_dtype(self.dtype())?, bias, stride, padding);
            }
        }
        if !self.device().same(weight.device()) {
            return Err(Error::DeviceMismatch { op: OP, lhs: self.device().name(), rhs: weight.device().name() });
        }
        if let Some(b) = bias {
            self.check_same(b, OP)?;
        }
        let geom = ConvGeom { batch, channels: c, height, width, kernel: (kh, kw), stride, padding };
        let out = self.device().backend().conv2d(self.view(), weight.view(), bias.map(Tensor::view), &geom)?;
        let shape = [batch, o, geom.out_h(), geom.out_w()];
        let (x, w) = (self.clone(), weight.clone());
        Tensor::from_op(out, &shape, self.device(), OP, &parents, move |g, needs| {
            let dx = if needs[0] { Some(conv2d_input_grad(g, &w, &geom)?) } else { None };
            let dw = if needs[1] {
                let dw = g.device().backend().conv2d_weight_grad(x.view(), g.view(), &geom)?;
                Some(Tensor::from_storage(dw, w.shape(), g.device())?)
            } else {
                None
            };
            let mut grads = vec![dx, dw];
            if needs.len() > 2 {
                grads.push(if needs[2] { Some(g.sum(&[0, 2, 3], false)?) } else { None });
            }
            Ok(grads)
        })
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

/// The input gradient of a convolution with weight `w` under `g`, for `dy [B, O, oh, ow]`.
/// At stride 1 (and padding below the kernel) it is itself a convolution: `dy`, padded by
/// `k − 1 − padding`, with the kernel flipped and its channels swapped. Otherwise the
/// patches' gradient `dyᵀ·w` is folded back into the image (col2im).
fn conv2d_input_grad(dy: &Tensor, w: &Tensor, g: &ConvGeom) -> Result<Tensor> {
    let ((kh, kw), (ph, pw)) = (g.kernel, g.padding);
    if g.stride == (1, 1) && ph < kh && pw < kw {
        let reversed = |n: usize| Tensor::from_vec((0..n as i64).rev().collect(), &[n], dy.device());
        let flipped = w.permute(&[1, 0, 2, 3])?.index_select(2, &reversed(kh)?)?.index_select(3, &reversed(kw)?)?;
        return dy.conv2d(&flipped, None, (1, 1), (kh - 1 - ph, kw - 1 - pw));
    }
    let (o, pixels) = (w.shape()[0], g.out_h() * g.out_w());
    let cols = dy.reshape(&[g.batch, o, pixels])?.transpose(1, 2)?.matmul(&w.reshape(&[o, g.patch_len()])?)?;
    cols.fold2d((g.channels, g.height, g.width), g.kernel, g.stride, g.padding)
}
