//! timm's BEiT state-dict layout (`timm/models/beit.py`: fused `qkv` with `q_bias`/`v_bias`,
//! `gamma_1/2`, `rel_pos_bias`, `norm`/`fc_norm`, `head`) renamed to Hugging Face's at load,
//! and how to tell a timm folder from a Hugging Face one.

use crate::BeitConfig;
use beit_engine::io::StateDict;
use beit_engine::{Error, Result, Tensor};
use serde_json::Value;

/// timm's shared relative position bias table.
pub(super) const SHARED: &str = "rel_pos_bias.relative_position_bias_table";

/// Whether a parsed `config.json` is timm's: one `architecture` name and no Hugging Face
/// `model_type` or `architectures`.
pub(super) fn is_timm_config(config: &Value) -> bool {
    config.get("architecture").is_some_and(Value::is_string) && config.get("model_type").is_none() && config.get("architectures").is_none()
}

/// Whether a state dict holds timm's names (`patch_embed.proj.weight`, `blocks.{i}.…`).
pub(super) fn is_timm_layout(sd: &StateDict) -> bool {
    sd.contains("patch_embed.proj.weight") || sd.names().any(|n| n.starts_with("blocks."))
}

/// Rename a timm state dict (`sd`, for a model of `config`) to Hugging Face's names: the
/// fused `qkv` weight is split into query/key/value, `q_bias`/`v_bias` become the query and
/// value biases (key has none, as in Hugging Face; zeros when timm had `qkv_bias=False`),
/// `gamma_1/2` become `lambda_1/2`; `relative_position_index` buffers are dropped (we
/// recompute them) and names timm's BEiT does not have are kept as they are, to be reported.
pub(super) fn to_hf_layout(sd: StateDict, config: &BeitConfig) -> Result<StateDict> {
    let file = sd.source().to_string();
    let mut sd = sd.map_names(rename)?;
    let d = config.hidden_size;
    for i in 0..config.num_hidden_layers {
        let (timm, hf) = (format!("blocks.{i}.attn.qkv.weight"), format!("beit.encoder.layer.{i}.attention.attention"));
        let qkv = sd.remove(&timm)?;
        if qkv.shape() != [3 * d, d] {
            return Err(Error::TensorShape { file, name: timm, got: qkv.shape().to_vec(), expected: vec![3 * d, d] });
        }
        for (k, part) in ["query", "key", "value"].iter().enumerate() {
            sd.insert(format!("{hf}.{part}.weight"), qkv.narrow(0, k * d, d)?.contiguous()?);
        }
        let (q, v) = (format!("{hf}.query.bias"), format!("{hf}.value.bias"));
        if !sd.contains(&q) && !sd.contains(&v) {
            let zeros = Tensor::zeros(&[d], qkv.dtype(), qkv.device())?;
            sd.insert(q, zeros.clone());
            sd.insert(v, zeros);
        }
    }
    Ok(sd)
}

/// timm name → Hugging Face name (`None`: drop). `blocks.{i}.attn.qkv.weight` is kept for
/// [`to_hf_layout`] to split.
fn rename(name: &str) -> Option<String> {
    if name.ends_with("relative_position_index") || name.ends_with(".attn.k_bias") {
        return None;
    }
    let top = [
        ("cls_token", "beit.embeddings.cls_token"),
        ("pos_embed", "beit.embeddings.position_embeddings"),
        ("patch_embed.proj.", "beit.embeddings.patch_embeddings.projection."),
        (SHARED, "beit.encoder.relative_position_bias.relative_position_bias_table"),
        ("norm.", "beit.layernorm."),
        ("fc_norm.", "beit.pooler.layernorm."),
        ("head.", "classifier."),
    ];
    for (from, to) in top {
        if let Some(rest) = name.strip_prefix(from) {
            return Some(format!("{to}{rest}"));
        }
    }
    let Some((i, rest)) = name.strip_prefix("blocks.").and_then(|r| r.split_once('.')) else { return Some(name.into()) };
    let block = [
        ("norm1.", "layernorm_before."),
        ("norm2.", "layernorm_after."),
        ("attn.q_bias", "attention.attention.query.bias"),
        ("attn.v_bias", "attention.attention.value.bias"),
        ("attn.relative_position_bias_table", "attention.attention.relative_position_bias.relative_position_bias_table"),
        ("attn.proj.", "attention.output.dense."),
        ("mlp.fc1.", "intermediate.dense."),
        ("mlp.fc2.", "output.dense."),
        ("gamma_1", "lambda_1"),
        ("gamma_2", "lambda_2"),
    ];
    for (from, to) in block {
        if let Some(tail) = rest.strip_prefix(from) {
            return Some(format!("beit.encoder.layer.{i}.{to}{tail}"));
        }
    }
    Some(name.into())
}

#[cfg(test)]
mod tests {
    use super::rename;

    #[test]
    fn timm_names_map_to_hugging_face_names() {
        let r = |n: &str| rename(n);
        assert_eq!(r("blocks.3.attn.q_bias").as_deref(), Some("beit.encoder.layer.3.attention.attention.query.bias"));
        assert_eq!(r("blocks.11.gamma_2").as_deref(), Some("beit.encoder.layer.11.lambda_2"));
        assert_eq!(r("blocks.0.mlp.fc2.bias").as_deref(), Some("beit.encoder.layer.0.output.dense.bias"));
        assert_eq!(r("fc_norm.weight").as_deref(), Some("beit.pooler.layernorm.weight"));
        assert_eq!(r("norm.bias").as_deref(), Some("beit.layernorm.bias"));
        assert_eq!(r("head.weight").as_deref(), Some("classifier.weight"));
        assert_eq!(r("blocks.1.attn.relative_position_index"), None);
        assert_eq!(r("rel_pos_bias.relative_position_index"), None);
        assert_eq!(r("blocks.0.attn.qkv.weight").as_deref(), Some("blocks.0.attn.qkv.weight"));
        assert_eq!(r("mask_token").as_deref(), Some("mask_token"));
    }
}
