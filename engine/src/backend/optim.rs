//! Optimiser updates in place.

use super::{BackendStorage, View};
use crate::Result;

/// Hyper-parameters of one AdamW step (PyTorch semantics, decoupled weight decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε added to √v̂.
    pub eps: f64,
    /// Decoupled weight decay coefficient.
    pub weight_decay: f64,
    /// 1-based step count, for bias correction.
    pub step: u64,
    /// Factor each gradient is multiplied by first (in the parameter's dtype): a global
    /// gradient-norm clip's, applied without a scaled copy of the gradients; 1 for none.
    pub grad_scale: f64,
}

/// Optimiser steps.
pub trait Optim {
    /// One AdamW step in place on contiguous `param`, `m`, `v`.
    fn adamw_step(&self, param: &mut dyn BackendStorage, grad: View, m: &mut dyn BackendStorage, v: &mut dyn BackendStorage, hp: &AdamWStep) -> Result<()>;
}
