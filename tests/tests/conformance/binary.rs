//! Broadcasting binary ops: add, sub, mul, div, maximum, minimum. Each runs on broadcast
//! shapes (`[2, 1, 7]` with `[3, 1]`) and on non-contiguous operands; add and mul also
//! against a 0-dim operand.

use beit_conformance::{op_cases, Array, Gen, Input, OpCase};
use beit_engine::{Result, Tensor};

type EngineOp = fn(&Tensor, &Tensor) -> Result<Tensor>;

/// `op(a, b)` against `f` applied elementwise with broadcasting.
fn binary(op: EngineOp, f: fn(f64, f64) -> f64, a: Input, b: Input) -> OpCase {
    OpCase::new(vec![a, b], move |x| op(&x[0], &x[1]), move |x| x[0].zip(&x[1], f))
}

/// `[2, 1, 7]` with `[3, 1]`; the rhs magnitudes in [0.5, 2) keep division tame.
fn broadcast(seed: u64, op: EngineOp, f: fn(f64, f64) -> f64) -> OpCase {
    let mut g = Gen::new(seed);
    binary(op, f, g.normal(&[2, 1, 7], 1.0).into(), g.signed(&[3, 1], 0.5, 2.0).into())
}

/// `[5, 7]` stored transposed with a `[5, 7]` narrowed view.
fn strided(seed: u64, op: EngineOp, f: fn(f64, f64) -> f64) -> OpCase {
    let mut g = Gen::new(seed);
    let a = Input::new(g.normal(&[5, 7], 1.0)).transposed();
    binary(op, f, a, Input::new(g.signed(&[5, 7], 0.5, 2.0)).padded())
}

/// `[3, 4]` with a 0-dim rhs.
fn with_scalar(seed: u64, op: EngineOp, f: fn(f64, f64) -> f64) -> OpCase {
    let mut g = Gen::new(seed);
    binary(op, f, g.normal(&[3, 4], 1.0).into(), Array::scalar(g.signed(&[], 0.5, 2.0).data[0]).into())
}

op_cases! {
    add_broadcast => broadcast(1, Tensor::add, |a, b| a + b);
    add_strided => strided(2, Tensor::add, |a, b| a + b);
    add_scalar_operand => with_scalar(3, Tensor::add, |a, b| a + b);
    sub_broadcast => broadcast(4, Tensor::sub, |a, b| a - b);
    sub_strided => strided(5, Tensor::sub, |a, b| a - b);
    mul_broadcast => broadcast(6, Tensor::mul, |a, b| a * b);
    mul_strided => strided(7, Tensor::mul, |a, b| a * b);
    mul_scalar_operand => with_scalar(8, Tensor::mul, |a, b| a * b);
    div_broadcast => broadcast(9, Tensor::div, |a, b| a / b);
    div_strided => strided(10, Tensor::div, |a, b| a / b);
    maximum_broadcast => broadcast(11, Tensor::maximum, f64::max);
    maximum_strided => strided(12, Tensor::maximum, f64::max);
    minimum_broadcast => broadcast(13, Tensor::minimum, f64::min);
    minimum_strided => strided(14, Tensor::minimum, f64::min);
}
