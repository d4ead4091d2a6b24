//! Parameter initialisers (drawn on the host from a seeded [`Rng`], then uploaded).

use crate::rng::Rng;
use crate::{DType, Device, Error, Result, Tensor};

/// How to fill a new parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Every element equal to the value (ones/zeros of LayerNorm, zero biases).
    Const(f64),
    /// Uniform in `[lo, hi)`.
    Uniform {
        /// Lower bound.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// Normal(0, std).
    Normal {
        /// Standard deviation.
        std: f64,
    },
    /// Normal(0, std) truncated to the absolute bounds `[a, b]` by rejection.
    TruncNormal {
        /// Standard deviation.
        std: f64,
        /// Lower bound (absolute, not in units of `std`).
        a: f64,
        /// Upper bound (absolute).
        b: f64,
    },
}

impl Init {
    /// timm's / BEiT's `trunc_normal_(std=std)`: bounds ±2 (absolute, as timm's defaults).
    pub fn trunc_normal(std: f64) -> Init {
        Init::TruncNormal { std, a: -2.0, b: 2.0 }
    }

    /// PyTorch's default for `nn.Linear` / `nn.Conv2d` weights and biases
    /// (`kaiming_uniform_(a=√5)`): uniform in `±1/√fan_in`.
    pub fn pytorch_default(fan_in: usize) -> Init {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        Init::Uniform { lo: -bound, hi: bound }
    }

    /// A tensor of `shape` filled as described, drawing from `rng`.
    pub fn tensor(&self, shape: &[usize], dtype: DType, device: &Device, rng: &mut Rng) -> Result<Tensor> {
        self.validate()?;
        let n: usize = shape.iter().product();
        let values: Vec<f64> = match *self {
            Init::Const(c) => return Tensor::full(c, shape, dtype, device),
            Init::Uniform { lo, hi } => (0..n).map(|_| rng.uniform_range(lo, hi)).collect(),
            Init::Normal { std } => (0..n).map(|_| rng.normal() * std).collect(),
            Init::TruncNormal { std, a, b } => (0..n).map(|_| rng.trunc_normal(std, a, b)).collect(),
        };
        Tensor::from_vec(values, shape, device)?.to_dtype(dtype)
    }

    fn validate(&self) -> Result<()> {
        let ok = match *self {
            Init::Const(c) => !c.is_nan(),
            Init::Uniform { lo, hi } => lo.is_finite() && hi.is_finite() && lo <= hi,
            Init::Normal { std } => std.is_finite() && std >= 0.0,
            // Rejection sampling terminates quickly only when 0 lies in [a, b].
            Init::TruncNormal { std, a, b } => std.is_finite() && std >= 0.0 && a <= 0.0 && 0.0 <= b && a < b,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::invalid("init", format!("invalid initialiser {self:?}")))
        }
    }
}
