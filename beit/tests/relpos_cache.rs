//! The relative position bias is gathered once without gradients and kept until its table
//! changes (`Param::version`): after `Param::set` and after an optimiser step in place, the
//! next forward gathers the new table; with gradients it is gathered (and tracked) each time.

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
