//! A batch of zero images is valid input: every model returns empty outputs of the right
//! shape instead of failing inside a strided copy.

use beit::engine::{DType, Tensor};
use beit::{Beit, BeitConfig};

#[test]
fn zero_images_give_empty_outputs() {
    let dev = beit::open_device("cpu").unwrap();
    let config = BeitConfig {
        image_size: 16,
        patch_size: 4,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        use_relative_position_bias: true,
        architectures: vec!["BeitForImageClassification".into()],
        num_labels: Some(3),
        ..BeitConfig::default()
    };
    let model = Beit::new(&config, &dev, 0).unwrap();
    let empty = Tensor::zeros(&[0, 3, 16, 16], DType::F32, &dev).unwrap();
    let (logits, out) = model.forward(&empty, None, beit::Mode::eval()).unwrap();
    assert_eq!(out.last_hidden_state.shape(), [0, 17, 16]);
    assert_eq!(out.pooler_output.unwrap().shape(), [0, 16]);
    assert_eq!(logits.unwrap().shape(), [0, 3]);
}
