//! [`Dropout`] and [`DropPath`]: seeded, identity at evaluation.

use crate::{Error, Result, Tensor};

fn check_p(p: f64, op: &'static str) -> Result<f64> {
    if (0.0..1.0).contains(&p) {
        Ok(p)
    } else {
        Err(Error::invalid(op, format!("drop probability {p} not in [0, 1)")))
    }
}

/// Element-wise dropout with probability `p` (kept values scaled by `1/(1−p)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    p: f64,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1)`.
    pub fn new(p: f64) -> Result<Self> {
        Ok(Dropout { p: check_p(p, "Dropout")? })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Drop elements of `x` when `train` (the mask is a function of `seed`); identity otherwise.
    pub fn forward(&self, x: &Tensor, train: bool, seed: u64) -> Result<Tensor> {
        if train && self.p > 0.0 {
            x.dropout(self.p, seed)
        } else {
            Ok(x.clone())
        }
    }
}

/// Stochastic depth: drops a residual branch for whole samples (dim 0) with probability `p`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropPath {
    p: f64,
}

impl DropPath {
    /// Drop-path with probability `p` in `[0, 1)`.
    pub fn new(p: f64) -> Result<Self> {
        Ok(DropPath { p: check_p(p, "DropPath")? })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Drop samples of `x` when `train` (the mask is a function of `seed`, `x`'s samples
    /// those from `first` of a larger batch: [`Tensor::drop_path_at`]); identity otherwise.
    pub fn forward(&self, x: &Tensor, train: bool, seed: u64, first: usize) -> Result<Tensor> {
        if train && self.p > 0.0 {
            x.drop_path_at(self.p, seed, first)
        } else {
            Ok(x.clone())
        }
    }
}
