//! [`ConvTranspose2d`]: NCHW transposed convolution with a `[C, O, kh, kw]` weight.

use super::{Init, Module, Param, VarBuilder};
use crate::{Error, Result, Tensor};

/// A transposed 2-D convolution (groups = 1): `weight [C, O, kh, kw]`, `bias [O]`, named
/// as `torch.nn.ConvTranspose2d`'s.
#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    weight: Param,
    bias: Option<Param>,
    stride: (usize, usize),
    padding: (usize, usize),
}

impl ConvTranspose2d {
    /// A `k`×`k` layer with stride `stride`, no padding and a bias, PyTorch's default init
    /// (uniform in `±1/√(O·k·k)`: PyTorch's fan-in of this weight layout).
    pub fn new(vb: &VarBuilder, in_channels: usize, out_channels: usize, k: usize, stride: usize) -> Result<Self> {
        if k == 0 || stride == 0 {
            return Err(Error::invalid("ConvTranspose2d", format!("kernel {k} and stride {stride} must be positive")));
        }
        let init = Init::pytorch_default(out_channels * k * k);
        Ok(ConvTranspose2d {
            weight: vb.param("weight", &[in_channels, out_channels, k, k], init)?,
            bias: Some(vb.param("bias", &[out_channels], init)?),
            stride: (stride, stride),
            padding: (0, 0),
        })
    }

    /// The weight, `[C, O, kh, kw]`.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// Upsample NCHW `x` to `[B, O, (H−1)·s + k, (W−1)·s + k]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Param::tensor);
        x.conv_transpose2d(&self.weight.tensor(), bias.as_ref(), self.stride, self.padding)
    }
}

impl Module for ConvTranspose2d {
    fn params(&self) -> Vec<Param> {
        std::iter::once(self.weight.clone()).chain(self.bias.clone()).collect()
    }
}
