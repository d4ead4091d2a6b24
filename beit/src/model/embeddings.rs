//! Patch embedding, CLS token, mask token and absolute position embeddings.

use super::Inits;
use crate::BeitConfig;
use beit_engine::nn::{Module, Param, VarBuilder};
use beit_engine::{DType, Error, Result, Tensor};

/// Hugging Face `BeitEmbeddings`.
pub struct Embeddings {
    cls_token: Param,
    mask_token: Option<Param>,
    position_embeddings: Option<Param>,
    weight: Param,
    bias: Param,
    patch: usize,
    /// Every parameter and buffer the constructor created.
    params: Vec<Param>,
}

impl Embeddings {
    pub(crate) fn new(vb: &VarBuilder, c: &BeitConfig, init: &Inits) -> Result<Self> {
        let mark = vb.mark();
        let d = c.hidden_size;
        let (gh, gw) = c.grid();
        let proj = vb.pp("patch_embeddings.projection");
        Ok(Embeddings {
            cls_token: vb.param("cls_token", &[1, 1, d], init.token)?,
            mask_token: c.use_mask_token.then(|| vb.param("mask_token", &[1, 1, d], init.token)).transpose()?,
            position_embeddings: c
                .use_absolute_position_embeddings
                .then(|| vb.param("position_embeddings", &[1, gh * gw + 1, d], init.token))
                .transpose()?,
            weight: proj.param("weight", &[d, c.num_channels, c.patch_size, c.patch_size], init.weight)?,
            bias: proj.param("bias", &[d], init.zero)?,
            patch: c.patch_size,
            params: vb.created_since(mark),
        })
    }

    /// `pixels [B, C, H, W]` to tokens `[B, N+1, D]`; masked patches (`mask [B, N]`, u8/bool,
    /// 1 = masked) are replaced by the mask token before CLS and positions are added.
    pub fn forward(&self, pixels: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let mut x = pixels.patchify_conv(&self.weight.tensor(), Some(&self.bias.tensor()), self.patch)?;
        let (b, n, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        if let Some(mask) = mask {
            let token = self.mask_token.as_ref().ok_or_else(|| {
                Error::invalid("bool_masked_pos", "this model has no mask token (config.use_mask_token is false)")
            })?;
            if mask.shape() != [b, n] {
                return Err(Error::ShapeMismatch { op: "bool_masked_pos", lhs: vec![b, n], rhs: mask.shape().to_vec() });
            }
            let m = mask.to_dtype(DType::Bool)?.reshape(&[b, n, 1])?;
            x = x.mask_blend(&m, &token.tensor())?;
        }
        let cls = self.cls_token.tensor().broadcast_as(&[b, 1, d])?;
        let x = Tensor::cat(&[&cls, &x], 1)?;
        match &self.position_embeddings {
            Some(pos) => {
                let pos = pos.tensor();
                if pos.shape()[1] != n + 1 {
                    return Err(Error::invalid(
                        "position_embeddings",
                        format!("table has {} positions but the image gives {}", pos.shape()[1], n + 1),
                    ));
                }
                x.add(&pos)
            }
            None => Ok(x),
        }
    }
}

impl Module for Embeddings {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}
