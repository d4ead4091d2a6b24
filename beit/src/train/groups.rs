//! Optimiser parameter groups: BEiT's weight-decay exemptions and layer-wise learning-rate
//! decay for fine-tuning.

use beit_engine::nn::Param;
use beit_engine::optim::ParamGroup;
use std::collections::BTreeMap;

/// Whether a parameter is exempt from weight decay: biases and every 1-D tensor (norm
/// weights, layer-scale gammas), CLS/mask tokens, position embeddings and relative
/// position bias tables (unilm's skip list).
pub fn no_weight_decay(p: &Param) -> bool {
    let name = p.name();
    p.shape().len() <= 1
        || name.ends_with(".bias")
        || name.ends_with("cls_token")
        || name.ends_with("mask_token")
        || name.ends_with("position_embeddings")
        || name.ends_with("relative_position_bias_table")
}

/// The layer id of a parameter for layer-wise decay in a model of `layers` blocks: 0 for
/// the embeddings, `i + 1` for block `i`, `layers + 1` for everything after (head, pooler,
/// a shared relative position bias).
pub fn layer_id(name: &str, layers: usize) -> usize {
    let name = name.strip_prefix("beit.").unwrap_or(name);
    if name.starts_with("embeddings.") {
        return 0;
    }
    if let Some(rest) = name.strip_prefix("encoder.layer.") {
        if let Some(i) = rest.split('.').next().and_then(|i| i.parse::<usize>().ok()) {
            return i + 1;
        }
    }
    layers + 1
}

/// Groups for AdamW: per (layer scale, decays) pair, with learning-rate scale
/// `layer_decay^(layers + 1 - id)` (`layer_decay` 1: every scale is 1) and weight decay
/// `weight_decay` or 0 for the exempt parameters.
pub fn param_groups(params: Vec<Param>, layers: usize, layer_decay: f64, weight_decay: f64) -> Vec<ParamGroup> {
    let mut groups: BTreeMap<(usize, bool), Vec<Param>> = BTreeMap::new();
    for p in params.into_iter().filter(Param::is_trainable) {
        let id = if layer_decay == 1.0 { layers + 1 } else { layer_id(p.name(), layers) };
        groups.entry((id, no_weight_decay(&p))).or_default().push(p);
    }
    groups
        .into_iter()
        .map(|((id, exempt), params)| {
            let scale = layer_decay.powi((layers + 1 - id) as i32);
            ParamGroup::new(params).lr_scale(scale).weight_decay(if exempt { 0.0 } else { weight_decay })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Beit, BeitConfig};

    fn tiny(arch: &str) -> Beit {
        let config = BeitConfig {
            architectures: vec![arch.into()],
            hidden_size: 8,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 16,
            image_size: 8,
            patch_size: 4,
            vocab_size: 5,
            use_mask_token: true,
            use_shared_relative_position_bias: true,
            num_labels: Some(3),
            ..BeitConfig::default()
        };
        Beit::new(&config, &beit_backend_cpu::cpu(), 0).unwrap()
    }

    #[test]
    fn decay_exemptions_follow_unilm() {
        use beit_engine::nn::Module;
        let m = tiny("BeitForMaskedImageModeling");
        let exempt: Vec<String> = m.trainable_params().iter().filter(|p| no_weight_decay(p)).map(|p| p.name().to_string()).collect();
        let decayed: Vec<String> = m.trainable_params().iter().filter(|p| !no_weight_decay(p)).map(|p| p.name().to_string()).collect();
        for name in ["beit.embeddings.cls_token", "beit.embeddings.mask_token", "beit.encoder.relative_position_bias.relative_position_bias_table", "beit.encoder.layer.0.lambda_1", "lm_head.bias", "layernorm.weight"] {
            assert!(exempt.iter().any(|n| n == name), "{name} should be exempt: {exempt:?}");
        }
        for name in ["beit.embeddings.patch_embeddings.projection.weight", "beit.encoder.layer.1.attention.attention.query.weight", "lm_head.weight"] {
            assert!(decayed.iter().any(|n| n == name), "{name} should decay: {decayed:?}");
        }
    }

    #[test]
    fn layer_ids_and_scales() {
        assert_eq!(layer_id("beit.embeddings.cls_token", 12), 0);
        assert_eq!(layer_id("beit.encoder.layer.0.output.dense.weight", 12), 1);
        assert_eq!(layer_id("beit.encoder.layer.11.lambda_2", 12), 12);
        assert_eq!(layer_id("classifier.weight", 12), 13);
        assert_eq!(layer_id("beit.pooler.layernorm.weight", 12), 13);
        use beit_engine::nn::Module;
        let m = tiny("BeitForImageClassification");
        let groups = param_groups(m.trainable_params(), 2, 0.5, 0.05);
        for g in &groups {
            for p in &g.params {
                let id = layer_id(p.name(), 2);
                assert_eq!(g.lr_scale, 0.5f64.powi(3 - id as i32), "{}", p.name());
                assert_eq!(g.weight_decay, Some(if no_weight_decay(p) { 0.0 } else { 0.05 }), "{}", p.name());
            }
        }
        assert_eq!(groups.iter().map(|g| g.params.len()).sum::<usize>(), m.trainable_params().len());
    }
}
