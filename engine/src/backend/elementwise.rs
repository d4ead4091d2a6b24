//! Elementwise kernels over views of one shape (broadcast by strides).

use super::{Memory, StorageBox, View};
use crate::Result;

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
    /// [`Elementwise::unary`] and [`Elementwise::binary`] ([`crate::composed::gelu_backward`]).
    fn gelu_backward(&self, x: View, dy: View) -> Result<StorageBox> {
        crate::composed::gelu_backward(self, x, dy)
    }
}
