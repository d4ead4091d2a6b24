//! Selection: `where_cond` and the mask blend (float and bool masks, differentiable), and
//! the ops without gradients, forward only: comparisons, argmax, top-k.

use beit_conformance::{assert_close, conformance, float_dtypes, op_cases, Array, Gen, Input, OpCase};
use beit_engine::{CmpOp, DType, Device, HostData, Result, Tensor};

/// A 0/1 condition of `shape` drawn from `seed`, as an [`Array`].
fn condition(seed: u64, shape: &[usize]) -> Array {
    let n = shape.iter().product();
    Array::new(shape, Gen::new(seed).bools(n, 0.5).into_iter().map(f64::from).collect())
}

/// `cond` uploaded as a bool (or u8) tensor.
fn mask_tensor(cond: &Array, as_u8: bool, dev: &Device) -> Result<Tensor> {
    let bytes: Vec<u8> = cond.data.iter().map(|&c| c as u8).collect();
    let host = if as_u8 { HostData::U8(bytes) } else { HostData::Bool(bytes) };
    Tensor::from_host(&host, &cond.shape, dev)
}

/// `cond.where_cond(x0, x1)` for a fixed condition.
fn where_case(cond: Array, as_u8: bool, on_true: Input, on_false: Input) -> OpCase {
    let c = cond.clone();
    OpCase::new(
        vec![on_true, on_false],
        move |x| mask_tensor(&c, as_u8, x[0].device())?.where_cond(&x[0], &x[1]),
        move |x| r::where_cond(&cond, &x[0], &x[1]),
    )
}

op_cases! {
    /// A bool `[3, 1]` condition choosing between `[1, 4]` and `[3, 4]`.
    where_cond_bool => {
        let mut g = Gen::new(1);
        where_case(condition(2, &[3, 1]), false, g.normal(&[1, 4], 1.0).into(), g.normal(&[3, 4], 1.0).into())
    };
    /// A u8 `[2, 1, 4]` condition, a transposed `[3, 4]` and a 0-dim operand.
    where_cond_u8 => {
        let mut g = Gen::new(3);
        let t = Input::new(g.normal(&[3, 4], 1.0)).transposed();
        where_case(condition(4, &[2, 1, 4]), true, t, Array::scalar(-0.5).into())
    };
    /// BEiT's mask token: `x·(1−m) + t·m` with a float mask `[2, 7, 1]` (differentiable in
    /// all three) and a token `[3]`.
    mask_blend_float => {
        let mut g = Gen::new(5);
        let x = Input::new(g.normal(&[2, 7, 3], 1.0)).padded();
        OpCase::new(
            vec![x, g.uniform(&[2, 7, 1], 0.0, 1.0).into(), g.normal(&[3], 1.0).into()],
            |x| x[0].mask_blend(&x[1], &x[2]),
            |x| x[0].zip(&x[1].map(|m| 1.0 - m), |a, b| a * b).zip(&x[2].zip(&x[1], |t, m| t * m), |a, b| a + b),
        )
    };
    /// The same with a bool mask.
    mask_blend_bool => {
        let mut g = Gen::new(6);
        let m = condition(7, &[2, 7, 1]);
        let c = m.clone();
        OpCase::new(
            vec![g.normal(&[2, 7, 3], 1.0).into(), g.normal(&[3], 1.0).into()],
            move |x| x[0].mask_blend(&mask_tensor(&c, false, x[0].device())?, &x[1]),
            move |x| r::where_cond(&m, &x[1], &x[0]),
        )
    };
}

/// A comparison: the engine op and its reference.
type Comparison = (CmpOp, fn(&f64, &f64) -> bool);

/// Every comparison.
const COMPARISONS: [Comparison; 6] = [
    (CmpOp::Eq, f64::eq),
    (CmpOp::Ne, f64::ne),
    (CmpOp::Lt, f64::lt),
    (CmpOp::Le, f64::le),
    (CmpOp::Gt, f64::gt),
    (CmpOp::Ge, f64::ge),
];

conformance! {
    /// Every comparison on whole numbers (many ties), `[3, 1, 4]` against a transposed
    /// `[5, 4]`, in every float dtype: a bool result.
    fn compare(dev: &Device) -> Result<()> {
        let mut g = Gen::new(8);
        let (a, b) = (Input::new(g.whole(&[3, 1, 4], 3)), Input::new(g.whole(&[5, 4], 3)).transposed());
        for dtype in float_dtypes(dev) {
            for (op, f) in COMPARISONS {
                let got = a.tensor(dtype, dev)?.compare(&b.tensor(dtype, dev)?, op)?;
                assert_eq!(got.dtype(), DType::Bool, "{op:?}: dtype");
                let want = a.values.zip(&b.values, |x, y| f64::from(u8::from(f(&x, &y))));
                assert_close(&format!("{op:?} in {dtype}"), &Array::from_tensor(&got)?, &want, 0.0);
            }
        }
        Ok(())
    }

    /// Top-5 of the rows of 197 of a transposed view: values exactly, indices exactly.
    fn topk(dev: &Device) -> Result<()> {
        let x = Input::new(Gen::new(9).normal(&[3, 197], 1.0)).transposed();
        for dtype in float_dtypes(dev) {
            let (values, indices) = x.tensor(dtype, dev)?.topk(5)?;
            let (want_values, want_indices) = r::topk_last(&x.values.rounded(dtype), 5);
            assert_close(&format!("topk values in {dtype}"), &Array::from_tensor(&values)?, &want_values, 0.0);
            assert_eq!(indices.dtype(), DType::I64, "topk indices dtype");
            assert_eq!(indices.to_vec::<i64>()?, want_indices, "topk indices in {dtype}");
        }
        Ok(())
    }

    /// Argmax of rows of 197, on an input that tracks gradients (allowed: integer output).
    fn argmax(dev: &Device) -> Result<()> {
        let x = Gen::new(10).normal(&[7, 197], 1.0);
        for dtype in float_dtypes(dev) {
            let got = x.to_tensor(dtype, dev)?.requires_grad(true)?.argmax()?;
            assert_eq!(got.shape(), &[7], "argmax shape");
            assert_eq!(got.to_vec::<i64>()?, r::topk_last(&x.rounded(dtype), 1).1, "argmax in {dtype}");
        }
        Ok(())
    }
}

/// Float64 references of this file's ops, in plain loops (no code shared with the engine).
mod r {
    use beit_conformance::Array;
    use beit_conformance::array::broadcast_shape;

    /// `cond != 0 ? on_true : on_false`, all three broadcast.
    pub fn where_cond(cond: &Array, on_true: &Array, on_false: &Array) -> Array {
        let shape = broadcast_shape(&cond.shape, &broadcast_shape(&on_true.shape, &on_false.shape));
        let (c, t, f) = (cond.broadcast_to(&shape), on_true.broadcast_to(&shape), on_false.broadcast_to(&shape));
        let data = (0..c.numel()).map(|i| if c.data[i] != 0.0 { t.data[i] } else { f.data[i] }).collect();
        Array::new(&shape, data)
    }

    /// The `k` largest entries of each last-dim row, descending, with their indices.
    pub fn topk_last(x: &Array, k: usize) -> (Array, Vec<i64>) {
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("topk of a 0-dim array") = k;
        let (mut values, mut indices) = (Vec::new(), Vec::new());
        for row in x.rows() {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            for &i in &order[..k] {
                values.push(row[i]);
                indices.push(i as i64);
            }
        }
        (Array::new(&shape, values), indices)
    }
}
