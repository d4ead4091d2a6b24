//! One BEiT block (Hugging Face `BeitLayer`): pre-LN self-attention with q and v biases
//! (no k bias), optional per-layer relative position bias, layer scale and drop path,
//! then a GELU MLP.

use super::relpos::RelativePositionBias;
use super::{Inits, Mode};
use crate::BeitConfig;
use beit_engine::nn::{DropPath, LayerNorm, Linear, Module, Param, VarBuilder};
use beit_engine::{Error, LinearPost, Result, Tensor};

/// Multi-head self-attention with separate query/key/value projections.
pub struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    rel_pos: Option<RelativePositionBias>,
    heads: usize,
}

impl SelfAttention {
    fn new(vb: &VarBuilder, c: &BeitConfig, init: &Inits) -> Result<Self> {
        let d = c.hidden_size;
        let lin = |name: &str, bias| Linear::with_init(&vb.pp(name), d, d, bias, init.weight, init.zero);
        let rel_pos = c
            .use_relative_position_bias
            .then(|| RelativePositionBias::new(&vb.pp("relative_position_bias"), c.grid(), c.num_attention_heads, vb.device()))
            .transpose()?;
        Ok(SelfAttention {
            query: lin("query", true)?,
            key: lin("key", false)?,
            value: lin("value", true)?,
            rel_pos,
            heads: c.num_attention_heads,
        })
    }

    /// `x [B, L, D]` to the merged heads `[B, L, D]` (before the output projection).
    fn forward(&self, x: &Tensor, shared_bias: Option<&Tensor>) -> Result<Tensor> {
        let [b, l, d] = *x.shape() else {
            return Err(Error::invalid("attention", format!("expects [B, L, D], got {:?}", x.shape())));
        };
        let hd = d / self.heads;
        let split = |t: Tensor| t.reshape(&[b, l, self.heads, hd])?.permute(&[0, 2, 1, 3]);
        let (q, k, v) = (split(self.query.forward(x)?)?, split(self.key.forward(x)?)?, split(self.value.forward(x)?)?);
        let bias = match (self.rel_pos.as_ref().map(RelativePositionBias::forward).transpose()?, shared_bias) {
            (Some(own), Some(shared)) => Some(own.add(shared)?),
            (own, shared) => own.or_else(|| shared.cloned()),
        };
        q.attention(&k, &v, bias.as_ref(), 1.0 / (hd as f64).sqrt())
    }
}

/// A BEiT block.
pub struct Layer {
    layernorm_before: LayerNorm,
    attention: SelfAttention,
    attention_output: Linear,
    lambda_1: Option<Param>,
    layernorm_after: LayerNorm,
    intermediate: Linear,
    output: Linear,
    lambda_2: Option<Param>,
    drop_path: DropPath,
    /// Every parameter and buffer the constructor created.
    params: Vec<Param>,
}

impl Layer {
    /// A freshly initialised block `index` (0-based) with BEiT's init, e.g. for benchmarks.
    pub fn fresh(vb: &VarBuilder, c: &BeitConfig, index: usize) -> Result<Self> {
        Self::new(vb, c, index, &Inits::beit(c.initializer_range))
    }

    /// Block `index` (0-based) under `vb` (`encoder.layer.{index}`).
    pub(crate) fn new(vb: &VarBuilder, c: &BeitConfig, index: usize, init: &Inits) -> Result<Self> {
        let mark = vb.mark();
        let (d, f, eps) = (c.hidden_size, c.intermediate_size, c.layer_norm_eps);
        let lin = |name: &str, i, o| Linear::with_init(&vb.pp(name), i, o, true, init.weight, init.zero);
        let scale = |name: &str| {
            (c.layer_scale_init_value > 0.0)
                .then(|| vb.param(name, &[d], beit_engine::nn::Init::Const(c.layer_scale_init_value)))
                .transpose()
        };
        let rate = if c.num_hidden_layers > 1 {
            c.drop_path_rate * index as f64 / (c.num_hidden_layers - 1) as f64
        } else {
            0.0
        };
        let layer = Layer {
            layernorm_before: LayerNorm::new(&vb.pp("layernorm_before"), d, eps)?,
            attention: SelfAttention::new(&vb.pp("attention.attention"), c, init)?,
            attention_output: lin("attention.output.dense", d, d)?,
            lambda_1: scale("lambda_1")?,
            layernorm_after: LayerNorm::new(&vb.pp("layernorm_after"), d, eps)?,
            intermediate: lin("intermediate.dense", d, f)?,
            output: lin("output.dense", f, d)?,
            lambda_2: scale("lambda_2")?,
            drop_path: DropPath::new(rate)?,
            params: vb.created_since(mark),
        };
        if init.fresh {
            // BEiT's fix_init_weight: output projections scaled by 1/sqrt(2·l), l 1-based.
            let s = 1.0 / (2.0 * (index + 1) as f64).sqrt();
            for p in [layer.attention_output.weight(), layer.output.weight()] {
                p.set(p.tensor().mul_scalar(s)?)?;
            }
        }
        Ok(layer)
    }

    /// `x [B, L, D]` to `[B, L, D]`; `shared_bias` is the shared relative position bias.
    pub fn forward(&self, x: &Tensor, shared_bias: Option<&Tensor>, mode: Mode) -> Result<Tensor> {
        // x + drop_path(λ ⊙ dense(h)): one fused kernel when drop path is inactive.
        let residual = |dense: &Linear, h: &Tensor, x: &Tensor, lambda: &Option<Param>, salt: u64| -> Result<Tensor> {
            let scale = lambda.as_ref().map(Param::tensor);
            if mode.train && self.drop_path.p() > 0.0 {
                let h = dense.forward(h)?;
                let h = match &scale {
                    Some(l) => h.mul(l)?,
                    None => h,
                };
                return x.add(&self.drop_path.forward(&h, true, mode.seed ^ salt, mode.first_sample)?);
            }
            dense.forward_with(h, LinearPost { residual: Some(x), scale: scale.as_ref(), ..LinearPost::default() })
        };
        let a = self.attention.forward(&self.layernorm_before.forward(x)?, shared_bias)?;
        let x = residual(&self.attention_output, &a, x, &self.lambda_1, 1)?;
        let gelu = LinearPost { gelu: true, ..LinearPost::default() };
        let h = self.intermediate.forward_with(&self.layernorm_after.forward(&x)?, gelu)?;
        residual(&self.output, &h, &x, &self.lambda_2, 2)
    }
}

impl Module for Layer {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}
