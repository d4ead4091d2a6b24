//! Elementwise kernels over views of one shape (broadcast by strides).

use super::{on, Memory, StorageBox, View};
use crate::{Layout, Result};

/// Elementwise unary ops (float dtypes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    /// -x
    Neg,
    /// e^x
    Exp,
    /// ln x
    Log,
    /// √x
    Sqrt,
    /// tanh x
    Tanh,
    /// The error function.
    Erf,
    /// |x|
    Abs,
    /// max(x, 0)
    Relu,
    /// x²
    Sqr,
    /// 1/x
    Recip,
    /// 1/(1+e^-x)
    Sigmoid,
    /// GELU, erf form: x·Φ(x).
    Gelu,
    /// x·mul + add
    Affine {
        /// Multiplier.
        mul: f64,
        /// Addend.
        add: f64,
    },
    /// x^p for a scalar p.
    Powf(f64),
}

/// Elementwise binary ops; both operands have the output's shape (broadcast by strides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
    /// max(a, b)
    Maximum,
    /// min(a, b)
    Minimum,
}

/// Elementwise comparisons; the output is [`crate::DType::Bool`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// a == b
    Eq,
    /// a != b
    Ne,
    /// a < b
    Lt,
    /// a <= b
    Le,
    /// a > b
    Gt,
    /// a >= b
    Ge,
}

/// Elementwise kernels.
pub trait Elementwise: Memory {
    /// Elementwise unary op.
    fn unary(&self, op: UnaryOp, src: View) -> Result<StorageBox>;
    /// Elementwise binary op; `lhs` and `rhs` have the same shape and dtype.
    fn binary(&self, op: BinaryOp, lhs: View, rhs: View) -> Result<StorageBox>;
    /// Elementwise comparison giving a [`crate::DType::Bool`] buffer.
    fn cmp(&self, op: CmpOp, lhs: View, rhs: View) -> Result<StorageBox>;
    /// `cond ? on_true : on_false`, all three of one shape; `cond` is u8/bool.
    fn where_cond(&self, cond: View, on_true: View, on_false: View) -> Result<StorageBox>;
    /// Gradient of GELU (erf form) at `x`, times `dy`. The default composes
    /// [`Elementwise::unary`] and [`Elementwise::binary`] ([`gelu_backward`]).
    fn gelu_backward(&self, x: View, dy: View) -> Result<StorageBox> {
        gelu_backward(self, x, dy)
    }
}

/// The gradient of GELU (erf form) times `dy`: `(Φ(x) + x·φ(x))·dy`, with
/// `Φ(x) = ½(1 + erf(x/√2))` and `φ(x) = e^(−x²/2)/√(2π)`.
pub fn gelu_backward<B: Elementwise + ?Sized>(be: &B, x: View, dy: View) -> Result<StorageBox> {
    const OP: &str = "gelu_backward";
    crate::checks::same_dtype(OP, x, dy)?;
    crate::checks::same_shape(OP, x.shape(), dy.shape())?;
    let full = Layout::contiguous(x.shape());
    let affine = |v: View, mul: f64, add: f64| be.unary(UnaryOp::Affine { mul, add }, v);
    let erf = be.unary(UnaryOp::Erf, on(&affine(x, std::f64::consts::FRAC_1_SQRT_2, 0.0)?, &full))?;
    let cdf = affine(on(&erf, &full), 0.5, 0.5)?;
    let sq = be.unary(UnaryOp::Sqr, x)?;
    let gauss = be.unary(UnaryOp::Exp, on(&affine(on(&sq, &full), -0.5, 0.0)?, &full))?;
    let pdf = affine(on(&gauss, &full), 1.0 / (2.0 * std::f64::consts::PI).sqrt(), 0.0)?;
    let xpdf = be.binary(BinaryOp::Mul, x, on(&pdf, &full))?;
    let slope = be.binary(BinaryOp::Add, on(&cdf, &full), on(&xpdf, &full))?;
    be.binary(BinaryOp::Mul, on(&slope, &full), dy)
}
