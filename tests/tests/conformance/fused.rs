//! Fused row kernels: softmax and log-softmax over the last dim, LayerNorm (with and
//! without affine parameters), and cross-entropy with label smoothing over selected rows.

use beit_conformance::{assert_close, conformance, op_cases, Array, Gen, Input, OpCase};
use beit_engine::{Device, HostData, Result, Tensor, IGNORE_INDEX};

/// Targets of the `[7, 5]` cross-entropy cases: two rows ignored.
const TARGETS: [i64; 7] = [3, IGNORE_INDEX, 0, 4, 4, IGNORE_INDEX, 1];
/// Row selection of the masked cross-entropy case.
const MASK: [bool; 7] = [true, false, true, true, false, true, true];
/// Targets of the 197-class case.
const TARGETS_197: [i64; 3] = [196, 0, 88];

/// Upload i64 targets.
fn targets(t: &[i64], dev: &Device) -> Result<Tensor> {
    Tensor::from_slice(t, &[t.len()], dev)
}

/// LayerNorm of `x [rows, d]` with optional affine parameters (passed as extra inputs, in
/// the order weight, bias).
fn layer_norm(x: Input, weight: Option<Array>, bias: Option<Array>, eps: f64) -> OpCase {
    let (has_w, has_b) = (weight.is_some(), bias.is_some());
    let inputs = [Some(x), weight.map(Input::new), bias.map(Input::new)].into_iter().flatten().collect();
    OpCase::new(
        inputs,
        move |x| x[0].layer_norm(has_w.then(|| &x[1]), has_b.then(|| &x[1 + has_w as usize]), eps),
        move |x| r::layer_norm(&x[0], has_w.then(|| &x[1]), has_b.then(|| &x[1 + has_w as usize]), eps),
    )
}

op_cases! {
    /// Rows of 197.
    softmax_197 => {
        let x = Gen::new(1).normal(&[3, 197], 2.0);
        OpCase::new(vec![x.into()], |x| x[0].softmax_last(), |x| r::softmax_last(&x[0]))
    };
    /// A transposed `[2, 7, 5]` view, with large logits (stability).
    softmax_strided => {
        let x = Input::new(Gen::new(2).normal(&[2, 7, 5], 10.0)).transposed();
        OpCase::new(vec![x], |x| x[0].softmax_last(), |x| r::softmax_last(&x[0]))
    };
    /// A single element per row.
    softmax_width_1 => {
        let x = Gen::new(3).normal(&[7, 1], 1.0);
        OpCase::new(vec![x.into()], |x| x[0].softmax_last(), |x| r::softmax_last(&x[0]))
    };
    log_softmax_strided => {
        let x = Input::new(Gen::new(4).normal(&[4, 7], 3.0)).padded();
        OpCase::new(vec![x], |x| x[0].log_softmax_last(), |x| r::log_softmax_last(&x[0]))
    };
    log_softmax_197 => {
        let x = Gen::new(5).normal(&[2, 197], 1.0);
        OpCase::new(vec![x.into()], |x| x[0].log_softmax_last(), |x| r::log_softmax_last(&x[0]))
    };
    /// D = 197 with weight and bias, eps 1e-12 (BEiT's).
    layer_norm_affine_197 => {
        let mut g = Gen::new(6);
        let x = Input::new(g.normal(&[2, 197], 1.0).map(|v| v + 0.5));
        layer_norm(x, Some(g.normal(&[197], 1.0)), Some(g.normal(&[197], 1.0)), 1e-12)
    };
    /// No affine parameters, a transposed `[3, 7]` view, eps 1e-5.
    layer_norm_plain => {
        let x = Input::new(Gen::new(7).normal(&[3, 7], 2.0)).transposed();
        layer_norm(x, None, None, 1e-5)
    };
    /// Weight only, a narrowed `[2, 3, 7]` view with a large eps (eps matters).
    layer_norm_weight_only => {
        let mut g = Gen::new(8);
        let x = Input::new(g.normal(&[2, 3, 7], 0.5)).padded();
        layer_norm(x, Some(g.normal(&[7], 1.0)), None, 0.1)
    };
    /// Bias only.
    layer_norm_bias_only => {
        let mut g = Gen::new(9);
        layer_norm(g.normal(&[5, 7], 1.0).into(), None, Some(g.normal(&[7], 1.0)), 1e-6)
    };
    /// Smoothing 0.1, two rows ignored through [`IGNORE_INDEX`]; 0-dim result.
    cross_entropy_ignore => {
        let x = Input::new(Gen::new(10).normal(&[7, 5], 2.0)).padded();
        OpCase::new(
            vec![x],
            |x| x[0].cross_entropy(&targets(&TARGETS, x[0].device())?, 0.1),
            |x| r::cross_entropy(&x[0], &TARGETS, 0.1),
        )
    };
    /// 197 classes, no smoothing.
    cross_entropy_197 => {
        let x = Gen::new(11).normal(&[3, 197], 1.0);
        OpCase::new(
            vec![x.into()],
            |x| x[0].cross_entropy(&targets(&TARGETS_197, x[0].device())?, 0.0),
            |x| r::cross_entropy(&x[0], &TARGETS_197, 0.0),
        )
    };
    /// Rows selected by a bool mask, smoothing 0.2, transposed logits.
    cross_entropy_masked => {
        let x = Input::new(Gen::new(12).normal(&[7, 5], 2.0)).transposed();
        OpCase::new(
            vec![x],
            |x| {
                let dev = x[0].device();
                let mask = Tensor::from_host(&HostData::Bool(MASK.map(u8::from).to_vec()), &[7], dev)?;
                x[0].cross_entropy_masked(&targets(&TARGETS.map(|t| t.max(0)), dev)?, &mask, 0.2)
            },
            |x| {
                let selected = TARGETS.map(|t| t.max(0));
                let t: Vec<i64> = selected.iter().zip(MASK).map(|(&t, m)| if m { t } else { IGNORE_INDEX }).collect();
                r::cross_entropy(&x[0], &t, 0.2)
            },
        )
    };
}

conformance! {
    /// No row selected: the mean over zero rows is NaN (not an error, not a panic).
    fn cross_entropy_no_rows(dev: &Device) -> Result<()> {
        let x = Gen::new(13).normal(&[3, 5], 1.0);
        for dtype in beit_conformance::float_dtypes(dev) {
            let loss = x.to_tensor(dtype, dev)?.cross_entropy(&targets(&[IGNORE_INDEX; 3], dev)?, 0.1)?;
            assert_close("loss", &Array::from_tensor(&loss)?, &Array::scalar(f64::NAN), 0.0);
        }
        Ok(())
    }
}

/// Float64 references of this file's ops, in plain loops (no code shared with the engine),
/// and the shared building blocks of [`beit_conformance::reference`].
mod r {
    pub use beit_conformance::reference::*;
    use beit_conformance::Array;
    use beit_engine::IGNORE_INDEX;

    /// Log-softmax over the last dim.
    pub fn log_softmax_last(x: &Array) -> Array {
        x.map_rows(|row| {
            let lse = log_sum_exp(row);
            row.iter().map(|&v| v - lse).collect()
        })
    }

    /// LayerNorm over the last dim (biased variance), then `· weight + bias` where given.
    pub fn layer_norm(x: &Array, weight: Option<&Array>, bias: Option<&Array>, eps: f64) -> Array {
        x.map_rows(|row| {
            let d = row.len() as f64;
            let mu = row.iter().sum::<f64>() / d;
            let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d;
            let rstd = 1.0 / (var + eps).sqrt();
            row.iter()
                .enumerate()
                .map(|(j, &v)| {
                    let w = weight.map_or(1.0, |w| w.data[j]);
                    let b = bias.map_or(0.0, |b| b.data[j]);
                    (v - mu) * rstd * w + b
                })
                .collect()
        })
    }

    /// Mean over the rows whose target is not [`IGNORE_INDEX`] of the label-smoothed
    /// cross-entropy `(1 − s)·(−log p[target]) + s·mean_c(−log p[c])`; NaN when no row counts.
    pub fn cross_entropy(logits: &Array, targets: &[i64], smoothing: f64) -> Array {
        let mut total = 0.0;
        let mut count = 0;
        for (row, &t) in logits.rows().zip(targets) {
            if t == IGNORE_INDEX {
                continue;
            }
            let lse = log_sum_exp(row);
            let nll = lse - row[t as usize];
            let smooth = lse - row.iter().sum::<f64>() / row.len() as f64;
            total += (1.0 - smoothing) * nll + smoothing * smooth;
            count += 1;
        }
        Array::scalar(if count == 0 { f64::NAN } else { total / count as f64 })
    }
}
