//! BEiT's initialisation for training from scratch.

use beit::engine::nn::Module;
use beit::{Beit, BeitConfig};

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

#[test]
fn truncated_normal_rescaled_outputs_layer_scale_and_zero_tables() {
    let dev = beit::open_device("cpu").unwrap();
    let config = BeitConfig {
        hidden_size: 64,
        num_hidden_layers: 3,
        num_attention_heads: 4,
        intermediate_size: 128,
        image_size: 32,
        patch_size: 8,
        vocab_size: 100,
        ..BeitConfig::base(32)
    };
    let model = Beit::new(&config, &dev, 7).unwrap();
    let params = model.params();
    let get = |name: &str| {
        params.iter().find(|p| p.name() == name).unwrap_or_else(|| panic!("no {name}")).tensor().to_vec_f64().unwrap()
    };
    // Truncated normal, std 0.02, cut at ±0.02 (unilm pretraining): std of the cut normal is ~0.54σ.
    let q = get("beit.encoder.layer.0.attention.attention.query.weight");
    let std = (q.iter().map(|x| x * x).sum::<f64>() / q.len() as f64).sqrt();
    assert!(max_abs(&q) <= 0.02 && (std - 0.0108).abs() < 0.001, "std {std}");
    // fix_init_weight: layer l (1-based) output projections scaled by 1/sqrt(2l).
    for l in 0..3 {
        let s = 1.0 / (2.0 * (l + 1) as f64).sqrt();
        for name in ["attention.output.dense.weight", "output.dense.weight"] {
            let w = get(&format!("beit.encoder.layer.{l}.{name}"));
            assert!(max_abs(&w) <= 0.02 * s + 1e-9 && max_abs(&w) > 0.015 * s, "layer {l} {name}");
        }
        assert!(get(&format!("beit.encoder.layer.{l}.lambda_1")).iter().all(|&x| (x - 0.1).abs() < 1e-7));
    }
    let table = get("beit.encoder.relative_position_bias.relative_position_bias_table");
    assert_eq!((table.len(), max_abs(&table)), (((2 * 4 - 1) * (2 * 4 - 1) + 3) * 4, 0.0));
    assert!(get("beit.encoder.layer.0.attention.attention.query.bias").iter().all(|&x| x == 0.0));
    assert!(max_abs(&get("beit.embeddings.mask_token")) > 0.0);
    assert!(get("beit.encoder.layer.1.layernorm_before.weight").iter().all(|&x| x == 1.0));
}
