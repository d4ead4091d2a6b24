//! A minimal pre-LN ViT (patch embedding, attention + GELU MLP blocks, mean pooling,
//! linear head) on engine layers. It drives `beit demo` and the block benchmark until the
//! BEiT encoder (relative position bias, layer scale, mask token) lands.

use beit_engine::nn::{Init, LayerNorm, Linear, Module, Param, VarBuilder};
use beit_engine::{Error, Result, Tensor};

/// Sizes of a [`Vit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VitConfig {
    /// Square input side in pixels.
    pub image_size: usize,
    /// Square patch side in pixels.
    pub patch_size: usize,
    /// Input channels.
    pub channels: usize,
    /// Token width.
    pub dim: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width.
    pub mlp_dim: usize,
    /// Output classes.
    pub classes: usize,
}

/// Multi-head self-attention with a fused qkv projection.
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
}

impl Attention {
    /// Layers under `vb` for `dim`-wide tokens.
    pub fn new(vb: &VarBuilder, dim: usize, heads: usize) -> Result<Self> {
        if heads == 0 || !dim.is_multiple_of(heads) {
            return Err(Error::invalid("attention", format!("dim {dim} not divisible by {heads} heads")));
        }
        Ok(Attention { qkv: Linear::new(&vb.pp("qkv"), dim, 3 * dim, true)?, proj: Linear::new(&vb.pp("proj"), dim, dim, true)?, heads })
    }

    /// `x [B, N, D]` to `[B, N, D]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let [b, n, d] = *x.shape() else {
            return Err(Error::invalid("attention", format!("expects [B, N, D], got {:?}", x.shape())));
        };
        let (h, hd) = (self.heads, d / self.heads);
        let qkv = self.qkv.forward(x)?.reshape(&[b, n, 3, h, hd])?.permute(&[2, 0, 3, 1, 4])?;
        let part = |i| qkv.narrow(0, i, 1)?.squeeze(0);
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let attn = q.mul_scalar(1.0 / (hd as f64).sqrt())?.matmul(&k.t()?)?.softmax_last()?;
        let ctx = attn.matmul(&v)?.permute(&[0, 2, 1, 3])?.reshape(&[b, n, d])?;
        self.proj.forward(&ctx)
    }
}

/// A pre-LN transformer block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Block {
    /// Layers under `vb`.
    pub fn new(vb: &VarBuilder, dim: usize, heads: usize, mlp_dim: usize) -> Result<Self> {
        Ok(Block {
            norm1: LayerNorm::new(&vb.pp("norm1"), dim, 1e-6)?,
            attn: Attention::new(&vb.pp("attn"), dim, heads)?,
            norm2: LayerNorm::new(&vb.pp("norm2"), dim, 1e-6)?,
            fc1: Linear::new(&vb.pp("mlp.fc1"), dim, mlp_dim, true)?,
            fc2: Linear::new(&vb.pp("mlp.fc2"), mlp_dim, dim, true)?,
        })
    }

    /// `x [B, N, D]` to `[B, N, D]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.add(&self.attn.forward(&self.norm1.forward(x)?)?)?;
        let h = self.fc1.forward(&self.norm2.forward(&x)?)?.gelu()?;
        x.add(&self.fc2.forward(&h)?)
    }
}

impl Module for Block {
    fn params(&self) -> Vec<Param> {
        [&self.norm1 as &dyn Module, &self.attn.qkv, &self.attn.proj, &self.norm2, &self.fc1, &self.fc2]
            .iter()
            .flat_map(|m| m.params())
            .collect()
    }
}

/// Patch embedding + learned positions + blocks + mean pooling + LayerNorm + linear head.
pub struct Vit {
    config: VitConfig,
    patch: Param,
    patch_bias: Param,
    pos: Param,
    blocks: Vec<Block>,
    norm: LayerNorm,
    head: Linear,
}

impl Vit {
    /// A freshly initialised model (truncated-normal 0.02 weights).
    pub fn new(vb: &VarBuilder, config: VitConfig) -> Result<Self> {
        let c = config;
        if c.patch_size == 0 || !c.image_size.is_multiple_of(c.patch_size) {
            return Err(Error::invalid("vit", format!("image {} not divisible by patch {}", c.image_size, c.patch_size)));
        }
        let tokens = (c.image_size / c.patch_size).pow(2);
        let init = Init::trunc_normal(0.02);
        let pe = vb.pp("patch_embed.proj");
        Ok(Vit {
            config,
            patch: pe.param("weight", &[c.dim, c.channels, c.patch_size, c.patch_size], init)?,
            patch_bias: pe.param("bias", &[c.dim], Init::Const(0.0))?,
            pos: vb.param("pos_embed", &[1, tokens, c.dim], init)?,
            blocks: (0..c.depth).map(|i| Block::new(&vb.pp(format!("blocks.{i}")), c.dim, c.heads, c.mlp_dim)).collect::<Result<_>>()?,
            norm: LayerNorm::new(&vb.pp("fc_norm"), c.dim, 1e-6)?,
            head: Linear::new(&vb.pp("head"), c.dim, c.classes, true)?,
        })
    }

    /// The sizes.
    pub fn config(&self) -> &VitConfig {
        &self.config
    }

    /// `images [B, C, H, W]` to class logits `[B, classes]`.
    pub fn forward(&self, images: &Tensor) -> Result<Tensor> {
        let p = self.config.patch_size;
        let mut x = images.patchify_conv(&self.patch.tensor(), Some(&self.patch_bias.tensor()), p)?.add(&self.pos.tensor())?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        self.head.forward(&self.norm.forward(&x.mean(&[1], false)?)?)
    }
}

impl Module for Vit {
    fn params(&self) -> Vec<Param> {
        let mut out = vec![self.patch.clone(), self.patch_bias.clone(), self.pos.clone()];
        out.extend(self.blocks.iter().flat_map(Module::params));
        out.extend(self.norm.params());
        out.extend(self.head.params());
        out
    }
}
