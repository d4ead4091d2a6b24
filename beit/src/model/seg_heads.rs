//! Segmentation decode heads on NCHW feature maps, named as Hugging Face's (mmseg's)
//! modules: the UperNet head (PSP module + FPN fusion), the auxiliary FCN head and the
//! SETR progressive-upsampling head.

use crate::BeitConfig;
use beit_engine::nn::{BatchNorm2d, Conv2d, Conv2dConfig, LayerNorm, Module, NormStats, Param, VarBuilder};
use beit_engine::{Error, Result, Tensor};

/// mmseg's `ConvModule`: conv (no bias) → BatchNorm → ReLU, as `conv.*` and `bn.*`.
pub struct ConvModule {
    conv: Conv2d,
    bn: BatchNorm2d,
    /// Every parameter and buffer the constructor created.
    params: Vec<Param>,
}

impl ConvModule {
    /// A `k`×`k` conv with padding `k/2`.
    pub fn new(vb: &VarBuilder, in_channels: usize, out_channels: usize, k: usize) -> Result<Self> {
        let (mark, config) = (vb.mark(), Conv2dConfig::new(k).padding(k / 2).bias(false));
        Ok(ConvModule {
            conv: Conv2d::new(&vb.pp("conv"), in_channels, out_channels, config)?,
            bn: BatchNorm2d::new(&vb.pp("bn"), out_channels)?,
            params: vb.created_since(mark),
        })
    }

    /// `relu(bn(conv(x)))`, BatchNorm by `stats`; each intermediate map is dropped as soon
    /// as the next exists.
    pub fn forward(&self, x: &Tensor, stats: NormStats) -> Result<Tensor> {
        let normed = self.bn.forward(&self.conv.forward(x)?, stats)?;
        normed.relu()
    }
}

impl Module for ConvModule {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}

/// A 1x1 classifier conv with a bias.
fn classifier(vb: &VarBuilder, channels: usize, classes: usize) -> Result<Conv2d> {
    Conv2d::new(&vb.pp("classifier"), channels, classes, Conv2dConfig::new(1))
}

fn spatial(x: &Tensor) -> (usize, usize) {
    (x.shape()[2], x.shape()[3])
}

/// UperNet (Hugging Face's `BeitUperHead`): a PSP module on the coarsest level, lateral
/// 1x1 convs, a top-down pathway with bilinear upsampling, 3x3 FPN convs, fusion of all
/// levels at the finest resolution and a 1x1 classifier. Width = the encoder's.
pub struct UperHead {
    pool_scales: Vec<usize>,
    psp_modules: Vec<ConvModule>,
    bottleneck: ConvModule,
    lateral_convs: Vec<ConvModule>,
    fpn_convs: Vec<ConvModule>,
    fpn_bottleneck: ConvModule,
    classifier: Conv2d,
    /// Every parameter and buffer the constructor created.
    params: Vec<Param>,
}

impl UperHead {
    /// The head under `vb` (`decode_head`).
    pub fn new(vb: &VarBuilder, c: &BeitConfig) -> Result<Self> {
        let (mark, d) = (vb.mark(), c.hidden_size);
        let scales = c.pool_scales.clone();
        let each = |name: &str, k| -> Result<Vec<ConvModule>> {
            (0..3).map(|i| ConvModule::new(&vb.pp(format!("{name}.{i}")), d, d, k)).collect()
        };
        Ok(UperHead {
            psp_modules: (0..scales.len())
                .map(|i| ConvModule::new(&vb.pp(format!("psp_modules.{i}.1")), d, d, 1))
                .collect::<Result<_>>()?,
            bottleneck: ConvModule::new(&vb.pp("bottleneck"), d * (1 + scales.len()), d, 3)?,
            lateral_convs: each("lateral_convs", 1)?,
            fpn_convs: each("fpn_convs", 3)?,
            fpn_bottleneck: ConvModule::new(&vb.pp("fpn_bottleneck"), 4 * d, d, 3)?,
            classifier: classifier(vb, d, c.num_labels())?,
            pool_scales: scales,
            params: vb.created_since(mark),
        })
    }

    /// Logits at the finest level's resolution from four maps, finest first.
    pub fn forward(&self, features: &[Tensor], stats: NormStats) -> Result<Tensor> {
        let [f0, f1, f2, top] = features else {
            return Err(Error::invalid("UperHead", format!("needs 4 feature maps, got {}", features.len())));
        };
        // PSP: the top level with its pooled, projected and re-upsampled copies.
        let size = spatial(top);
        let mut psp = vec![top.clone()];
        for (&scale, module) in self.pool_scales.iter().zip(&self.psp_modules) {
            let pooled = module.forward(&top.adaptive_avg_pool2d((scale, scale))?, stats)?;
            psp.push(pooled.upsample_bilinear2d(size)?);
        }
        let joined = Tensor::cat(&psp.iter().collect::<Vec<_>>(), 1)?;
        drop(psp);
        let top = self.bottleneck.forward(&joined, stats)?;
        drop(joined);
        let mut laterals = [f0, f1, f2]
            .iter()
            .zip(&self.lateral_convs)
            .map(|(f, conv)| conv.forward(f, stats))
            .collect::<Result<Vec<_>>>()?;
        laterals.push(top);
        for i in (1..4).rev() {
            let up = laterals[i].upsample_bilinear2d(spatial(&laterals[i - 1]))?;
            laterals[i - 1] = laterals[i - 1].add(&up)?;
        }
        let finest = spatial(&laterals[0]);
        let mut outs = Vec::with_capacity(4);
        for (i, lateral) in laterals.iter().enumerate() {
            let out = if i < 3 { self.fpn_convs[i].forward(lateral, stats)? } else { lateral.clone() };
            outs.push(if i == 0 { out } else { out.upsample_bilinear2d(finest)? });
        }
        // At 512 px each finest map is 50 MB: the laterals are dropped once used, the four
        // outputs once concatenated, before the largest convolution runs.
        drop(laterals);
        let cat = Tensor::cat(&outs.iter().collect::<Vec<_>>(), 1)?;
        drop(outs);
        let fused = self.fpn_bottleneck.forward(&cat, stats)?;
        drop(cat);
        self.classifier.forward(&fused)
    }
}

impl Module for UperHead {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}

/// The auxiliary FCN head (`BeitFCNHead`) on the third feature map: `auxiliary_num_convs`
/// 3x3 conv modules, optionally the input concatenated back (`conv_cat`), a 1x1 classifier.
pub struct FcnHead {
    convs: Vec<ConvModule>,
    conv_cat: Option<ConvModule>,
    classifier: Conv2d,
    /// Every parameter and buffer the constructor created.
    params: Vec<Param>,
}

impl FcnHead {
    /// Which of the four feature maps the head reads (Hugging Face's `in_index`).
    pub const IN_INDEX: usize = 2;

    /// The head under `vb` (`auxiliary_head`).
    pub fn new(vb: &VarBuilder, c: &BeitConfig) -> Result<Self> {
        let (mark, d, ch) = (vb.mark(), c.hidden_size, c.auxiliary_channels);
        let convs = (0..c.auxiliary_num_convs)
            .map(|i| ConvModule::new(&vb.pp(format!("convs.{i}")), if i == 0 { d } else { ch }, ch, 3))
            .collect::<Result<_>>()?;
        let conv_cat = c.auxiliary_concat_input.then(|| ConvModule::new(&vb.pp("conv_cat"), d + ch, ch, 3)).transpose()?;
        let classifier = classifier(vb, ch, c.num_labels())?;
        Ok(FcnHead { convs, conv_cat, classifier, params: vb.created_since(mark) })
    }

    /// Logits at the resolution of `features[2]`.
    pub fn forward(&self, features: &[Tensor], stats: NormStats) -> Result<Tensor> {
        let input = features
            .get(Self::IN_INDEX)
            .ok_or_else(|| Error::invalid("FcnHead", format!("needs 3+ feature maps, got {}", features.len())))?;
        let mut x = input.clone();
        for conv in &self.convs {
            x = conv.forward(&x, stats)?;
        }
        if let Some(cat) = &self.conv_cat {
            x = cat.forward(&Tensor::cat(&[input, &x], 1)?, stats)?;
        }
        self.classifier.forward(&x)
    }
}

impl Module for FcnHead {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}

/// SETR's progressive upsampling head (mmseg `SETRUPHead`, BEiT paper Table 3): LayerNorm
/// over the channels of the last feature map, then four stages of 3x3 conv module + 2x
/// bilinear upsampling (patch grid → full resolution at patch 16), then a 1x1 classifier.
/// Width `auxiliary_channels`.
pub struct SetrPupHead {
    norm: LayerNorm,
    stages: Vec<ConvModule>,
    classifier: Conv2d,
    /// Every parameter and buffer the constructor created.
    params: Vec<Param>,
}

impl SetrPupHead {
    /// Upsampling stages.
    pub const STAGES: usize = 4;

    /// The head under `vb` (`decode_head`).
    pub fn new(vb: &VarBuilder, c: &BeitConfig) -> Result<Self> {
        let (mark, d, ch) = (vb.mark(), c.hidden_size, c.auxiliary_channels);
        Ok(SetrPupHead {
            norm: LayerNorm::new(&vb.pp("norm"), d, 1e-6)?,
            stages: (0..Self::STAGES)
                .map(|i| ConvModule::new(&vb.pp(format!("up_convs.{i}")), if i == 0 { d } else { ch }, ch, 3))
                .collect::<Result<_>>()?,
            classifier: classifier(vb, ch, c.num_labels())?,
            params: vb.created_since(mark),
        })
    }

    /// Logits at 16x the last feature map's resolution.
    pub fn forward(&self, features: &[Tensor], stats: NormStats) -> Result<Tensor> {
        let top = features.last().ok_or_else(|| Error::invalid("SetrPupHead", "no feature map"))?;
        let mut x = self.norm.forward(&top.permute(&[0, 2, 3, 1])?)?.permute(&[0, 3, 1, 2])?;
        for stage in &self.stages {
            let (h, w) = spatial(&x);
            x = stage.forward(&x, stats)?.upsample_bilinear2d((2 * h, 2 * w))?;
        }
        self.classifier.forward(&x)
    }
}

impl Module for SetrPupHead {
    fn params(&self) -> Vec<Param> {
        self.params.clone()
    }
}
