//! `BeitModel`: embeddings, blocks with an optional shared relative position bias, the
//! final LayerNorm (without mean pooling) and the pooler.

use super::{Embeddings, Inits, Layer, Mode, RelativePositionBias};
use crate::BeitConfig;
use beit_engine::nn::{LayerNorm, Module, Param, VarBuilder};
use beit_engine::{Result, Tensor};

/// What [`BeitModel::forward`] returns.
pub struct BeitOutput {
    /// `[B, N+1, D]`.
    pub last_hidden_state: Tensor,
    /// `[B, D]` when the model has a pooler.
    pub pooler_output: Option<Tensor>,
    /// With [`Mode::hidden_states`]: the embeddings and every block's output (before any
    /// final LayerNorm), Hugging Face's `hidden_states`.
    pub hidden_states: Vec<Tensor>,
}

/// The BEiT encoder (Hugging Face `BeitModel`).
pub struct BeitModel {
    config: BeitConfig,
    embeddings: Embeddings,
    shared_rel_pos: Option<RelativePositionBias>,
    layers: Vec<Layer>,
    layernorm: Option<LayerNorm>,
    pooler: Option<Option<LayerNorm>>,
    /// Every parameter and buffer the constructor created.
    params: Vec<Param>,
}

impl BeitModel {
    /// Build under `vb` (root for `BeitModel` checkpoints, `beit` under a head).
    pub(crate) fn new(vb: &VarBuilder, c: &BeitConfig, pooling: bool, init: &Inits) -> Result<Self> {
        let mark = vb.mark();
        let ln = |name: &str| LayerNorm::new(&vb.pp(name), c.hidden_size, c.layer_norm_eps);
        let enc = vb.pp("encoder");
        Ok(BeitModel {
            config: c.clone(),
            embeddings: Embeddings::new(&vb.pp("embeddings"), c, init)?,
            shared_rel_pos: c
                .use_shared_relative_position_bias
                .then(|| RelativePositionBias::new(&enc.pp("relative_position_bias"), c.grid(), c.num_attention_heads, vb.device()))
                .transpose()?,
            layers: (0..c.num_hidden_layers).map(|i| Layer::new(&enc.pp(format!("layer.{i}")), c, i, init)).collect::<Result<_>>()?,
            layernorm: (!c.use_mean_pooling).then(|| ln("layernorm")).transpose()?,
            pooler: pooling.then(|| c.use_mean_pooling.then(|| ln("pooler.layernorm")).transpose()).transpose()?,
            params: vb.created_since(mark),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BeitConfig {
        &self.config
    }

    /// Encode `pixels [B, C, H, W]`, with masked patches (`mask [B, N]`) replaced by the
    /// mask token.
    pub fn forward(&self, pixels: &Tensor, mask: Option<&Tensor>, mode: Mode) -> Result<BeitOutput> {
        let keep_hidden = mode.hidden_states;
        let mut x = self.embeddings.forward(pixels, mask)?;
        let shared = self.shared_rel_pos.as_ref().map(RelativePositionBias::forward).transpose()?;
        let mut hidden_states = if keep_hidden { vec![x.clone()] } else { Vec::new() };
        for (i, layer) in self.layers.iter().enumerate() {
            let m = Mode { seed: mode.seed.wrapping_add((i as u64 + 1) << 32), ..mode };
            x = layer.forward(&x, shared.as_ref(), m)?;
            if keep_hidden {
                hidden_states.push(x.clone());
            }
        }
        if let Some(ln) = &self.layernorm {
            x = ln.forward(&x)?;
        }
        let pooler_output = match &self.pooler {
            None => None,
            Some(Some(ln)) => {
                let n = x.shape()[1];
                Some(ln.forward(&x.narrow(1, 1, n - 1)?.mean(&[1], false)?)?)
            }
            Some(None) => Some(x.narrow(1, 0, 1)?.squeeze(1)?),
        };
        Ok(BeitOutput { last_hidden_state: x, pooler_output, hidden_states })
    }
}

impl Module for BeitModel {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}
