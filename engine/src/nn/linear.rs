//! [`Linear`]: `y = x·Wᵀ + b` with PyTorch's `[out, in]` weight layout.

use super::{Init, Module, Param, VarBuilder};
use crate::{DType, Error, LinearPost, Result, Tensor};

/// A fully connected layer: `weight [out, in]`, optional `bias [out]`, named `weight` and
/// `bias` under its builder's prefix (as `torch.nn.Linear`).
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Param,
    bias: Option<Param>,
}

impl Linear {
    /// A layer with PyTorch's default init (uniform in `±1/√in` for weight and bias).
    pub fn new(vb: &VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let init = Init::pytorch_default(in_dim);
        Self::with_init(vb, in_dim, out_dim, bias, init, init)
    }

    /// A layer with the given initialisers (BEiT: `Init::trunc_normal(0.02)`, `Init::Const(0.0)`);
    /// the weight from [`VarBuilder::linear_weight`] (in the builder's weight dtype, maybe
    /// pre-packed), the bias in its dtype.
    pub fn with_init(
        vb: &VarBuilder,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        weight_init: Init,
        bias_init: Init,
    ) -> Result<Self> {
        let weight = vb.linear_weight("weight", &[out_dim, in_dim], weight_init)?;
        let bias = if bias { Some(vb.param("bias", &[out_dim], bias_init)?) } else { None };
        Ok(Linear { weight, bias })
    }

    /// A layer from existing parameters; the shapes must be `[out, in]` and `[out]`, the
    /// bias of the weight's dtype (f32 for a bf16 weight).
    pub fn from_params(weight: Param, bias: Option<Param>) -> Result<Self> {
        let ws = weight.shape();
        if ws.len() != 2 {
            let msg = format!("a Linear weight must be [out, in], got {ws:?}");
            return Err(Error::Param { name: weight.name().to_string(), msg });
        }
        if let Some(b) = &bias {
            let dtype = if weight.dtype() == DType::BF16 { DType::F32 } else { weight.dtype() };
            if b.shape() != [ws[0]] || b.dtype() != dtype {
                let msg = format!(
                    "a Linear bias must be [{}] of {}, got {:?} of {}",
                    ws[0],
                    dtype,
                    b.shape(),
                    b.dtype()
                );
                return Err(Error::Param { name: b.name().to_string(), msg });
            }
        }
        Ok(Linear { weight, bias })
    }

    /// The weight, `[out, in]`.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias, `[out]`.
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }

    /// `x [..., in]` to `[..., out]`: one GEMM against the transposed view of the weight.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, LinearPost::default())
    }

    /// [`Linear::forward`] followed by `post` (GELU, `residual + scale ⊙ ·`), fused into
    /// one kernel at inference ([`Tensor::linear`]).
    pub fn forward_with(&self, x: &Tensor, post: LinearPost) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(Param::tensor);
        x.linear(&self.weight.tensor(), bias.as_ref(), post)
    }
}

impl Module for Linear {
    fn params(&self) -> Vec<Param> {
        std::iter::once(self.weight.clone()).chain(self.bias.clone()).collect()
    }
}
