//! Elementwise unary ops and scalar arithmetic.

use crate::{CmpOp, Result, Tensor, UnaryOp};

impl Tensor {
    fn unary(&self, op: UnaryOp, name: &'static str) -> Result<Tensor> {
        self.check_float(name)?;
        let out = self.device().backend().unary(op, self.view())?;
        // Save only what the derivative needs: the output for these, the input for the rest.
        let keep_y = matches!(op, UnaryOp::Exp | UnaryOp::Sqrt | UnaryOp::Tanh | UnaryOp::Recip | UnaryOp::Sigmoid);
        let keep_x = !keep_y && !matches!(op, UnaryOp::Neg | UnaryOp::Affine { .. });
        let y = Tensor::from_storage(out, self.shape(), self.device())?;
        let (y_saved, x_saved) = (keep_y.then(|| y.clone()), keep_x.then(|| self.clone()));
        Ok(y.track_as(name, &[self], move |g, _| {
            let y = || y_saved.clone().expect("output saved for this op");
            let x = x_saved.unwrap_or_else(|| g.clone());
            let gx = match op {
                UnaryOp::Neg => g.neg()?,
                UnaryOp::Exp => g.mul(&y())?,
                UnaryOp::Log => g.div(&x)?,
                UnaryOp::Sqrt => g.div(&y())?.affine(0.5, 0.0)?,
                UnaryOp::Tanh => g.mul(&y().sqr()?.affine(-1.0, 1.0)?)?,
                UnaryOp::Erf => g.mul(&x.sqr()?.affine(-1.0, 0.0)?.exp()?.affine(std::f64::consts::FRAC_2_SQRT_PI, 0.0)?)?,
                UnaryOp::Abs => {
                    let zero = Tensor::zeros(&[], x.dtype(), x.device())?;
                    x.compare(&zero, CmpOp::Ge)?.where_cond(g, &g.neg()?)?
                }
                UnaryOp::Relu => {
                    let zero = Tensor::zeros(&[], x.dtype(), x.device())?;
                    x.compare(&zero, CmpOp::Gt)?.where_cond(g, &zero)?
                }
                UnaryOp::Sqr => g.mul(&x)?.affine(2.0, 0.0)?,
                UnaryOp::Recip => g.mul(&y().sqr()?)?.neg()?,
                UnaryOp::Sigmoid => g.mul(&y().mul(&y().affine(-1.0, 1.0)?)?)?,
                UnaryOp::Gelu => {
                    let s = x.device().backend().gelu_backward(x.view(), g.view())?;
                    Tensor::from_storage(s, x.shape(), x.device())?
                }
                UnaryOp::Affine { mul, .. } => g.affine(mul, 0.0)?,
                UnaryOp::Powf(p) => g.mul(&x.powf(p - 1.0)?)?.affine(p, 0.0)?,
            };
            Ok(vec![Some(gx)])
        }))
    }

    /// -x
    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg, "neg")
    }
    /// e^x
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp, "exp")
    }
    /// ln x
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log, "log")
    }
    /// √x
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt, "sqrt")
    }
    /// tanh x
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh, "tanh")
    }
    /// erf x
    pub fn erf(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Erf, "erf")
    }
    /// |x|
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Abs, "abs")
    }
    /// max(x, 0)
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu, "relu")
    }
    /// x²
    pub fn sqr(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqr, "sqr")
    }
    /// 1/x
    pub fn recip(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Recip, "recip")
    }
    /// 1/(1+e^-x)
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sigmoid, "sigmoid")
    }
    /// Fused GELU, erf form (as BEiT, `hidden_act = "gelu"`).
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Gelu, "gelu")
    }
    /// `x·mul + add`.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Affine { mul, add }, "affine")
    }
    /// `x + s`.
    pub fn add_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0, s)
    }
    /// `x · s`.
    pub fn mul_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(s, 0.0)
    }
    /// `x^p`.
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Powf(p), "powf")
    }
}
