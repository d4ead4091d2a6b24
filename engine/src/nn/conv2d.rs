//! [`Conv2d`]: NCHW convolution with an `[O, C, kh, kw]` weight.

use super::{Init, Module, Param, VarBuilder};
use crate::{Error, Result, Tensor};

/// Geometry of a [`Conv2d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Kernel (height, width).
    pub kernel: (usize, usize),
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// Zero padding (height, width), on both sides.
    pub padding: (usize, usize),
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl Conv2dConfig {
    /// A square `k`×`k` kernel with stride 1, no padding and a bias.
    pub fn new(k: usize) -> Self {
        Conv2dConfig { kernel: (k, k), stride: (1, 1), padding: (0, 0), bias: true }
    }

    /// The same with stride `s` in both dims.
    pub fn stride(self, s: usize) -> Self {
        Conv2dConfig { stride: (s, s), ..self }
    }

    /// The same with padding `p` in both dims.
    pub fn padding(self, p: usize) -> Self {
        Conv2dConfig { padding: (p, p), ..self }
    }

    /// The same with or without a bias.
    pub fn bias(self, bias: bool) -> Self {
        Conv2dConfig { bias, ..self }
    }
}

/// A 2-D convolution (groups = 1): `weight [O, C, kh, kw]`, optional `bias [O]`, named as
/// `torch.nn.Conv2d`'s.
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Param,
    bias: Option<Param>,
    config: Conv2dConfig,
}

impl Conv2d {
    /// A layer with PyTorch's default init (uniform in `±1/√(C·kh·kw)`).
    pub fn new(vb: &VarBuilder, in_channels: usize, out_channels: usize, config: Conv2dConfig) -> Result<Self> {
        let init = Init::pytorch_default(in_channels * config.kernel.0 * config.kernel.1);
        Self::with_init(vb, in_channels, out_channels, config, init, init)
    }

    /// A layer with the given initialisers: the weight in the builder's
    /// [`VarBuilder::weight_dtype`], the bias in its dtype.
    pub fn with_init(
        vb: &VarBuilder,
        in_channels: usize,
        out_channels: usize,
        config: Conv2dConfig,
        weight_init: Init,
        bias_init: Init,
    ) -> Result<Self> {
        let (kh, kw) = config.kernel;
        if kh == 0 || kw == 0 || config.stride.0 == 0 || config.stride.1 == 0 {
            return Err(Error::invalid("Conv2d", format!("kernel and stride must be positive: {config:?}")));
        }
        let weight = vb.param_in("weight", &[out_channels, in_channels, kh, kw], weight_init, vb.weight_dtype())?;
        let bias = if config.bias { Some(vb.param("bias", &[out_channels], bias_init)?) } else { None };
        Ok(Conv2d { weight, bias, config })
    }

    /// The weight, `[O, C, kh, kw]`.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias, `[O]`.
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }

    /// The geometry.
    pub fn config(&self) -> &Conv2dConfig {
        &self.config
    }

    /// Convolve NCHW `x` to `[B, O, out_h, out_w]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Param::tensor);
        x.conv2d(&self.weight.tensor(), bias.as_ref(), self.config.stride, self.config.padding)
    }
}

impl Module for Conv2d {
    fn params(&self) -> Vec<Param> {
        std::iter::once(self.weight.clone()).chain(self.bias.clone()).collect()
    }
}
