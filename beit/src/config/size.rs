//! What a [`BeitConfig`] costs before it is built: the bytes of its parameters and buffers,
//! and the parameters its checkpoint must hold, checked against the memory limit and the
//! weights file.

use super::{Architecture, BeitConfig, SegHead};
use crate::limits::{check_model_bytes, check_weights_file};
use beit_engine::Result;
use std::path::Path;

/// Saturating products of sizes, so that no config overflows the estimate.
fn mul(xs: &[usize]) -> u128 {
    xs.iter().fold(1u128, |acc, &x| acc.saturating_mul(x as u128))
}

impl BeitConfig {
    /// One term per group of fields: the bytes it costs, the field to blame and what makes it up.
    fn size_terms(&self) -> Vec<(u128, &'static str, String)> {
        let (d, l, i) = (self.hidden_size, self.num_hidden_layers, self.intermediate_size);
        let g = self.image_size / self.patch_size.max(1);
        let tokens = mul(&[g, g]).saturating_add(1);
        let tables = usize::from(self.use_shared_relative_position_bias)
            + if self.use_relative_position_bias { l } else { 0 };
        let side = 2 * g.max(1) as u128 - 1;
        let rows = side.saturating_mul(side).saturating_add(3);
        let positions = rows
            .saturating_mul(mul(&[self.num_attention_heads, 4]))
            .saturating_add(tokens.saturating_mul(tokens).saturating_mul(8))
            .saturating_mul(tables as u128)
            .saturating_add(if self.use_absolute_position_embeddings { tokens.saturating_mul(mul(&[d, 4])) } else { 0 });
        let (width, head) = match self.architecture().unwrap_or(Architecture::BeitModel) {
            Architecture::BeitModel => (0, "config.num_labels"),
            Architecture::BeitForMaskedImageModeling => (self.vocab_size, "config.vocab_size"),
            _ => (self.num_labels(), "config.num_labels"),
        };
        let mut terms = vec![
            (mul(&[l, 4]).saturating_mul(self.layer_params()), "config.num_hidden_layers", format!("num_hidden_layers {l} × (hidden_size {d}, intermediate_size {i})")),
            (positions, "config.image_size", format!("image_size {} / patch_size {} ({g}×{g} patches)", self.image_size, self.patch_size)),
            (mul(&[d, self.num_channels, self.patch_size, self.patch_size, 4]), "config.patch_size", format!("patch_size {} with num_channels {} and hidden_size {d}", self.patch_size, self.num_channels)),
            (mul(&[d, width, 4]), head, format!("a {width}-wide head on hidden_size {d}")),
        ];
        if self.architecture().ok() == Some(Architecture::BeitForSemanticSegmentation) {
            // Feature pyramid (3 transposed 2×2 convs), UperNet's PSP, lateral, FPN and bottleneck convs.
            let s = self.pool_scales.len();
            let decode = if self.seg_head == SegHead::Uper { mul(&[d, d]).saturating_mul(12 + s as u128 * 10 + 9 + 3 + 36 + 36) } else { 0 };
            terms.push((decode.saturating_mul(4), "config.hidden_size", format!("the decode head on hidden_size {d} with {s} pool scales")));
            let c = self.auxiliary_channels;
            let aux = mul(&[d, c, 9]).saturating_add(mul(&[c, c, 9, self.auxiliary_num_convs])).saturating_add(mul(&[c, self.num_labels()]));
            terms.push((aux.saturating_mul(4), "config.auxiliary_channels", format!("auxiliary_channels {c} × auxiliary_num_convs {}", self.auxiliary_num_convs)));
        }
        terms
    }

    /// Parameters of one encoder block: q/k/v/output projections, the MLP, biases, norms and
    /// layer scale.
    fn layer_params(&self) -> u128 {
        let (d, i) = (self.hidden_size, self.intermediate_size);
        mul(&[4, d, d]).saturating_add(mul(&[2, d, i])).saturating_add(mul(&[10, d])).saturating_add(i as u128)
    }

    /// An estimate of the bytes the built model holds (f32 parameters, the relative position
    /// index, the heads), from the sizes alone; saturates rather than overflows.
    pub fn memory_estimate(&self) -> u128 {
        self.size_terms().iter().fold(0u128, |acc, t| acc.saturating_add(t.0))
    }

    /// Parameters any checkpoint of this config must hold whatever its resolution: the
    /// encoder blocks and the patch embedding.
    pub fn min_checkpoint_params(&self) -> u128 {
        let embed = mul(&[self.hidden_size, self.num_channels, self.patch_size, self.patch_size]);
        mul(&[self.num_hidden_layers]).saturating_mul(self.layer_params()).saturating_add(embed)
    }

    /// Refuse a config whose model would not fit in memory ([`crate::limits::model_bytes_limit`]);
    /// the error names the largest term's field and sizes.
    pub(super) fn check_sizes(&self) -> Result<()> {
        let total = self.memory_estimate();
        let terms = self.size_terms();
        let Some((_, field, what)) = terms.into_iter().max_by_key(|t| t.0) else { return Ok(()) };
        check_model_bytes(field, total, &what)
    }

    /// Refuse a config that claims more encoder than `weights` (a safetensors file, when it
    /// exists) can hold, at 2 bytes per parameter; the error names the field and the file.
    pub fn check_weights_file(&self, weights: &Path) -> Result<()> {
        let (l, d, i) = (self.num_hidden_layers, self.hidden_size, self.intermediate_size);
        let what = format!("num_hidden_layers {l} × (hidden_size {d}, intermediate_size {i}) and patch_size {}", self.patch_size);
        check_weights_file(weights, "config.num_hidden_layers", self.min_checkpoint_params(), &what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_and_hostile_sizes() {
        // BEiT-Base/16 at 224: 86M parameters, 12 layers of 7.1M; shared relative position index of 197².
        let base = BeitConfig::base(224);
        assert_eq!(base.layer_params(), 4 * 768 * 768 + 2 * 768 * 3072 + 7680 + 3072);
        let est = base.memory_estimate();
        assert!(est > 4 * 85_000_000 && est < 4 * 120_000_000, "{est}");
        assert_eq!(base.min_checkpoint_params(), 12 * base.layer_params() + 768 * 3 * 256);
        let err = |j: &str| BeitConfig::from_json(j).unwrap_err().to_string();
        let e = err(r#"{"image_size": 1000000000, "patch_size": 16, "use_shared_relative_position_bias": true}"#);
        assert!(e.starts_with("config.image_size: image_size 1000000000 / patch_size 16") && e.contains("above the limit"), "{e}");
        assert!(err(r#"{"num_hidden_layers": 1000000}"#).starts_with("config.num_hidden_layers: num_hidden_layers 1000000"));
        assert!(err(r#"{"intermediate_size": 18446744073709551615}"#).starts_with("config.num_hidden_layers"));
        assert!(err(r#"{"architectures": ["BeitForMaskedImageModeling"], "vocab_size": 100000000000}"#).starts_with("config.vocab_size"));
        assert!(err(r#"{"architectures": ["BeitForImageClassification"], "num_labels": 100000000000}"#).starts_with("config.num_labels"));
        assert!(err(r#"{"image_size": 65536, "patch_size": 65536, "num_channels": 100000}"#).starts_with("config.patch_size"));
        let seg = r#"{"architectures": ["BeitForSemanticSegmentation"], "out_indices": [3, 5, 7, 11], "auxiliary_channels": 10000000}"#;
        assert!(err(seg).starts_with("config.auxiliary_channels"), "{}", err(seg));
        // The weights file must hold the encoder: 2 layers of a tiny config in 100 bytes do not fit.
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("model.safetensors");
        std::fs::write(&weights, [0u8; 100]).unwrap();
        let tiny = BeitConfig { hidden_size: 8, num_attention_heads: 2, intermediate_size: 16, num_hidden_layers: 2, ..Default::default() };
        let e = tiny.check_weights_file(&weights).unwrap_err().to_string();
        assert!(e.starts_with("config.num_hidden_layers: num_hidden_layers 2") && e.contains("model.safetensors holds only 100 B"), "{e}");
        std::fs::write(&weights, vec![0u8; 2 * tiny.min_checkpoint_params() as usize]).unwrap();
        tiny.check_weights_file(&weights).unwrap();
    }
}
