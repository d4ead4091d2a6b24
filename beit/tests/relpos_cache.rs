//! The relative position bias is gathered once without gradients and kept until its table
//! changes (`Param::version`): after `Param::set` and after an optimiser step in place, the
//! next forward gathers the new table; with gradients it is gathered (and tracked) each time.
//! Only small biases are kept: a large one is gathered again on every forward.

use beit::engine::nn::{Module, VarBuilder};
use beit::engine::optim::{AdamW, AdamWConfig, ParamGroup};
use beit::engine::{no_grad, DType, Tensor};
use beit::model::{relative_position_index, RelativePositionBias};

/// The bias `[heads, N+1, N+1]` gathered by hand from the table values `[rows, heads]`.
fn gathered(table: &[f32], heads: usize, window: (usize, usize)) -> Vec<f32> {
    let index = relative_position_index(window.0, window.1);
    (0..heads).flat_map(|h| index.iter().map(move |&i| table[i as usize * heads + h])).collect()
}

#[test]
fn kept_bias_follows_every_change_of_the_table() {
    let dev = beit::open_device("cpu").unwrap();
    let (window, heads) = ((3, 2), 4);
    let bias = RelativePositionBias::new(&VarBuilder::new(&dev, DType::F32, 0), window, heads, &dev).unwrap();
    let table = bias.params().remove(0);
    let rows = table.shape()[0];
    let values = |seed: f32| -> Vec<f32> { (0..rows * heads).map(|i| (i as f32 * 0.37 + seed).sin()).collect() };
    let forward = || {
        let _guard = no_grad();
        bias.forward().unwrap().to_vec::<f32>().unwrap()
    };

    table.set(Tensor::from_vec(values(1.0), &[rows, heads], &dev).unwrap()).unwrap();
    assert_eq!(forward(), gathered(&values(1.0), heads, window));
    assert_eq!(forward(), gathered(&values(1.0), heads, window), "the kept bias");

    table.set(Tensor::from_vec(values(2.0), &[rows, heads], &dev).unwrap()).unwrap();
    assert_eq!(forward(), gathered(&values(2.0), heads, window), "after Param::set");

    // An AdamW step updates the table in place (same buffer, same tensor identity).
    let loss = bias.forward().unwrap().sqr().unwrap().sum_all().unwrap();
    assert!(bias.forward().unwrap().tracks_grad(), "with gradients the bias is tracked");
    let grads = loss.backward().unwrap();
    let config = AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };
    let mut opt = AdamW::new(vec![ParamGroup::new(vec![table.clone()])], config).unwrap();
    let before = table.version();
    opt.step(&grads, 0.1).unwrap();
    assert!(table.version() > before);
    let stepped = table.tensor().to_vec::<f32>().unwrap();
    assert_ne!(stepped, values(2.0));
    assert_eq!(forward(), gathered(&stepped, heads, window), "after an optimiser step");
}

#[test]
fn only_small_biases_are_kept() {
    let dev = beit::open_device("cpu").unwrap();
    let _guard = no_grad();
    // 4 heads: 5 × 5 patches, 26² logits (11 KB); 24 × 24 patches, 577² logits (5.3 MB).
    for (window, kept) in [((5, 5), true), ((24, 24), false)] {
        let bias = RelativePositionBias::new(&VarBuilder::new(&dev, DType::F32, 0), window, 4, &dev).unwrap();
        let table = bias.params().remove(0);
        let rows = table.shape()[0];
        let values: Vec<f32> = (0..rows * 4).map(|i| (i as f32 * 0.61).cos()).collect();
        table.set(Tensor::from_vec(values.clone(), &[rows, 4], &dev).unwrap()).unwrap();
        let (first, second) = (bias.forward().unwrap(), bias.forward().unwrap());
        assert_eq!(first.same_storage(&second), kept, "window {window:?}");
        assert_eq!(second.to_vec::<f32>().unwrap(), gathered(&values, 4, window), "window {window:?}");
    }
}
