//! [`VarBuilder`]: creates parameters under dotted PyTorch/Hugging Face names.

use super::{Init, Param};
use crate::rng::Rng;
use crate::{DType, Device, Result, Tensor};
use std::sync::{Arc, Mutex};

/// Creates named parameters on one device with one dtype, drawing initial values from a
/// shared seeded [`Rng`] (so a model built twice from one seed is identical).
///
/// Each [`VarBuilder::pp`] pushes a name segment:
/// `vb.pp("encoder").pp("layer.0").param("weight", ..)` is named `encoder.layer.0.weight`.
///
/// Every parameter and buffer created is also recorded (in one list shared by the builders
/// derived from this one), so that a module's [`super::Module::params`] is what its
/// constructor created ([`VarBuilder::mark`], [`VarBuilder::created_since`]), not a list
/// written by hand that a new field could be missing from.
#[derive(Clone, Debug)]
pub struct VarBuilder {
    prefix: String,
    device: Device,
    dtype: DType,
    weight_dtype: DType,
    packed: bool,
    rng: Arc<Mutex<Rng>>,
    created: Arc<Mutex<Vec<Param>>>,
}

impl VarBuilder {
    /// A builder at the root of the name tree.
    pub fn new(device: &Device, dtype: DType, seed: u64) -> Self {
        let rng = Arc::new(Mutex::new(Rng::new(seed)));
        VarBuilder { prefix: String::new(), device: device.clone(), dtype, weight_dtype: dtype, packed: false, rng, created: Arc::default() }
    }

    /// Where the record of created parameters stands: give it to
    /// [`VarBuilder::created_since`] after building a module.
    pub fn mark(&self) -> usize {
        self.created.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The parameters and buffers created through this builder, or any sharing its record,
    /// since `mark`, in creation order.
    pub fn created_since(&self, mark: usize) -> Vec<Param> {
        self.created.lock().unwrap_or_else(|e| e.into_inner())[mark..].to_vec()
    }

    fn record(&self, p: Param) -> Param {
        self.created.lock().unwrap_or_else(|e| e.into_inner()).push(p.clone());
        p
    }

    /// The same builder, creating the weights of [`super::Linear`] and [`super::Conv2d`]
    /// layers in `dtype` (bf16 for bf16 inference: a checkpoint loaded into them is
    /// converted once).
    pub fn with_weight_dtype(self, dtype: DType) -> Self {
        VarBuilder { weight_dtype: dtype, ..self }
    }

    /// The same builder, keeping the values loaded into [`super::Linear`] weights pre-packed
    /// for inference when `on` ([`Param::packed`]).
    pub fn with_packed_weights(self, on: bool) -> Self {
        VarBuilder { packed: on, ..self }
    }

    /// A builder for the sub-module `segment` (which may itself contain dots, e.g. `layer.3`).
    pub fn pp(&self, segment: impl std::fmt::Display) -> Self {
        VarBuilder { prefix: self.name(&segment.to_string()), ..self.clone() }
    }

    /// The full name of `leaf` under this builder's prefix.
    pub fn name(&self, leaf: &str) -> String {
        match (self.prefix.is_empty(), leaf.is_empty()) {
            (true, _) => leaf.to_string(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{leaf}", self.prefix),
        }
    }

    /// The current prefix (empty at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The device parameters are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype of float parameters.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dtype of Linear and Conv2d weights (that of the other parameters unless
    /// [`VarBuilder::with_weight_dtype`] set it).
    pub fn weight_dtype(&self) -> DType {
        self.weight_dtype
    }

    /// A trainable parameter `leaf` of `shape`, filled by `init`.
    pub fn param(&self, leaf: &str, shape: &[usize], init: Init) -> Result<Param> {
        self.param_in(leaf, shape, init, self.dtype)
    }

    /// [`VarBuilder::param`] in `dtype`.
    pub fn param_in(&self, leaf: &str, shape: &[usize], init: Init, dtype: DType) -> Result<Param> {
        Ok(self.record(Param::new(self.name(leaf), self.init(shape, init, dtype)?)?))
    }

    fn init(&self, shape: &[usize], init: Init, dtype: DType) -> Result<Tensor> {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        init.tensor(shape, dtype, &self.device, &mut rng)
    }

    /// The weight `leaf` of a [`super::Linear`] layer: [`VarBuilder::param_in`] in the
    /// weight dtype, whose loaded values are pre-packed when
    /// [`VarBuilder::with_packed_weights`] is on.
    pub fn linear_weight(&self, leaf: &str, shape: &[usize], init: Init) -> Result<Param> {
        let t = self.init(shape, init, self.weight_dtype)?;
        let p = if self.packed { Param::packed(self.name(leaf), t)? } else { Param::new(self.name(leaf), t)? };
        Ok(self.record(p))
    }

    /// A non-trainable buffer `leaf` holding `value` (moved to this builder's device).
    pub fn buffer(&self, leaf: &str, value: &Tensor) -> Result<Param> {
        Ok(self.record(Param::buffer(self.name(leaf), value.to_device(&self.device)?)))
    }
}
