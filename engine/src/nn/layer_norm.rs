//! [`LayerNorm`] over the last dim.

use super::{Init, Module, Param, VarBuilder};
use crate::{Error, Result, Tensor};

/// LayerNorm over the last dim with an affine `weight [D]` (ones) and `bias [D]` (zeros),
/// named as `torch.nn.LayerNorm`'s.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Param,
    bias: Param,
    eps: f64,
}

impl LayerNorm {
    /// A layer over `dim` features with ones/zeros init; `eps` is added to the variance
    /// (Hugging Face BEiT: `layer_norm_eps = 1e-12`; timm BEiT: 1e-6).
    pub fn new(vb: &VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        let weight = vb.param("weight", &[dim], Init::Const(1.0))?;
        let bias = vb.param("bias", &[dim], Init::Const(0.0))?;
        Self::from_params(weight, bias, eps)
    }

    /// A layer from existing `[D]` parameters.
    pub fn from_params(weight: Param, bias: Param, eps: f64) -> Result<Self> {
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(Error::invalid("LayerNorm", format!("eps must be finite and non-negative, got {eps}")));
        }
        let ws = weight.shape();
        if ws.len() != 1 {
            let msg = format!("a LayerNorm weight must be 1-D, got {ws:?}");
            return Err(Error::Param { name: weight.name().to_string(), msg });
        }
        if bias.shape() != ws || bias.dtype() != weight.dtype() {
            let msg = format!(
                "a LayerNorm bias must be {ws:?} of {}, got {:?} of {}",
                weight.dtype(),
                bias.shape(),
                bias.dtype()
            );
            return Err(Error::Param { name: bias.name().to_string(), msg });
        }
        Ok(LayerNorm { weight, bias, eps })
    }

    /// The scale, `[D]`.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The shift, `[D]`.
    pub fn bias(&self) -> &Param {
        &self.bias
    }

    /// The ε added to the variance.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// Normalise `x [..., D]` over its last dim.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(Some(&self.weight.tensor()), Some(&self.bias.tensor()), self.eps)
    }
}

impl Module for LayerNorm {
    fn params(&self) -> Vec<Param> {
        vec![self.weight.clone(), self.bias.clone()]
    }
}
