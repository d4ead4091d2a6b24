//! AdamW (decoupled weight decay) with parameter groups, updating parameters in place.

use crate::io::StateDict;
use crate::nn::{exclusive_storage, Param};
use crate::{AdamWStep, Error, Gradients, Result, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// AdamW hyper-parameters shared by all groups; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// β1, the decay of the first-moment average.
    pub beta1: f64,
    /// β2, the decay of the second-moment average.
    pub beta2: f64,
    /// ε added to √v̂.
    pub eps: f64,
    /// Weight decay of groups that do not set their own.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    }
}

/// Parameters sharing a learning-rate scale and a weight decay (BEiT: no decay for biases,
/// norms and tokens; layer-wise lr decay as one group per depth).
#[derive(Clone, Debug)]
pub struct ParamGroup {
    /// The parameters (trainable, each in one group only).
    pub params: Vec<Param>,
    /// Multiplies the learning rate passed to [`AdamW::step`].
    pub lr_scale: f64,
    /// Weight decay; `None` takes [`AdamWConfig::weight_decay`].
    pub weight_decay: Option<f64>,
}

impl ParamGroup {
    /// A group with lr scale 1 and the default weight decay.
    pub fn new(params: Vec<Param>) -> Self {
        ParamGroup { params, lr_scale: 1.0, weight_decay: None }
    }

    /// The same with learning-rate scale `scale`.
    pub fn lr_scale(self, scale: f64) -> Self {
        ParamGroup { lr_scale: scale, ..self }
    }

    /// The same with weight decay `wd`.
    pub fn weight_decay(self, wd: f64) -> Self {
        ParamGroup { weight_decay: Some(wd), ..self }
    }
}

/// Moment estimates of one parameter.
#[derive(Debug)]
struct State {
    m: Tensor,
    v: Tensor,
    step: u64,
}

/// AdamW as PyTorch's `torch.optim.AdamW`: `p ← p·(1 − lr·wd)`, then the Adam update
/// with bias correction. Moments live on the parameter's device, one step count per
/// parameter (a parameter without a gradient is skipped and its count stays).
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    groups: Vec<ParamGroup>,
    state: HashMap<String, State>,
}

fn non_negative(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

fn param_error(p: &Param, msg: String) -> Error {
    Error::Param { name: p.name().to_string(), msg }
}

impl AdamW {
    /// An optimiser over `groups`; errors name a buffer, a parameter listed twice, or a
    /// bad hyper-parameter.
    pub fn new(groups: Vec<ParamGroup>, config: AdamWConfig) -> Result<Self> {
        let c = config;
        let betas_ok = (0.0..1.0).contains(&c.beta1) && (0.0..1.0).contains(&c.beta2);
        if !(betas_ok && non_negative(c.eps) && non_negative(c.weight_decay)) {
            return Err(Error::invalid("AdamW", format!("invalid hyper-parameters {config:?}")));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, g) in groups.iter().enumerate() {
            if !(non_negative(g.lr_scale) && g.weight_decay.is_none_or(non_negative)) {
                let msg = format!("group {i}: lr_scale {} / weight decay {:?} invalid", g.lr_scale, g.weight_decay);
                return Err(Error::invalid("AdamW", msg));
            }
            for p in &g.params {
                if !p.is_trainable() {
                    return Err(param_error(p, "is a buffer and cannot be optimised".into()));
                }
                if !seen.insert(p.name().to_string()) {
                    return Err(param_error(p, "is listed twice in the optimiser's groups".into()));
                }
            }
        }
        Ok(AdamW { config, groups, state: HashMap::new() })
    }

    /// The shared hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// The parameter groups.
    pub fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }

    /// One step with base learning rate `lr` (scaled per group), for every parameter that
    /// has a gradient in `grads`. All gradients are checked (shape, dtype, device) before
    /// any parameter changes. Gradients are not checked for NaN here: call
    /// [`super::clip_grad_norm`] (or [`super::grad_norm`]) first, which refuses a
    /// non-finite norm.
    pub fn step(&mut self, grads: &Gradients, lr: f64) -> Result<()> {
        self.step_scaled(grads, lr, 1.0)
    }

    /// [`AdamW::step`] on the gradients multiplied by `grad_scale`, inside the update: a
    /// global norm clip ([`super::clip_factor`] of [`super::grad_norm`]) without writing
    /// scaled gradients. The same values as scaling them first with
    /// [`Tensor::mul_scalar`].
    pub fn step_scaled(&mut self, grads: &Gradients, lr: f64, grad_scale: f64) -> Result<()> {
        if !non_negative(lr) {
            return Err(Error::invalid("AdamW", format!("learning rate {lr} is not finite and non-negative")));
        }
        if !non_negative(grad_scale) {
            return Err(Error::invalid("AdamW", format!("gradient scale {grad_scale} is not finite and non-negative")));
        }
        let _guard = crate::no_grad();
        let mut work = Vec::new();
        for group in &self.groups {
            let wd = group.weight_decay.unwrap_or(self.config.weight_decay);
            for p in &group.params {
                let t = p.tensor();
                let Some(g) = grads.get(&t) else { continue };
                let msg = if g.shape() != t.shape() {
                    format!("gradient of shape {:?}, expected {:?}", g.shape(), t.shape())
                } else if g.dtype() != t.dtype() {
                    format!("gradient of dtype {}, expected {}", g.dtype(), t.dtype())
                } else if !g.device().same(t.device()) {
                    format!("gradient on device {}, expected {}", g.device(), t.device())
                } else {
                    work.push((p.clone(), g.contiguous()?, lr * group.lr_scale, wd));
                    continue;
                };
                return Err(param_error(p, msg));
            }
        }
        let c = self.config;
        for (p, g, lr, weight_decay) in work {
            let device = g.device().clone();
            let st = match self.state.entry(p.name().to_string()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let zeros = || Tensor::zeros(g.shape(), g.dtype(), &device);
                    e.insert(State { m: zeros()?, v: zeros()?, step: 0 })
                }
            };
            let hp = AdamWStep { lr, beta1: c.beta1, beta2: c.beta2, eps: c.eps, weight_decay, step: st.step + 1, grad_scale };
            let (m, v) = (exclusive_storage(&mut st.m, false)?, exclusive_storage(&mut st.v, false)?);
            p.update(|param| device.backend().adamw_step(param, g.view(), m, v, &hp))?;
            st.step = hp.step;
        }
        Ok(())
    }

    /// The moments and step counts, named `optim.{param}.exp_avg`, `.exp_avg_sq` and
    /// `.step` (an i64 scalar), for saving with a checkpoint. The tensors share buffers
    /// with the optimiser; a later step copies rather than changing them.
    pub fn state_dict(&self) -> Result<StateDict> {
        let mut sd = StateDict::new();
        for p in self.groups.iter().flat_map(|g| &g.params) {
            let Some(st) = self.state.get(p.name()) else { continue };
            let key = |field: &str| format!("optim.{}.{field}", p.name());
            sd.insert(key("exp_avg"), st.m.clone());
            sd.insert(key("exp_avg_sq"), st.v.clone());
            sd.insert(key("step"), Tensor::from_vec(vec![st.step as i64], &[], st.m.device())?);
        }
        Ok(sd)
    }

    /// Restore the state saved by [`AdamW::state_dict`] (other entries of `sd` not starting
    /// with `optim.` are ignored). Parameters without saved state start afresh. Nothing
    /// changes unless every entry is valid; errors name the entry.
    pub fn load_state_dict(&mut self, sd: &StateDict) -> Result<()> {
        let params: HashMap<&str, &Param> = self.groups.iter().flat_map(|g| &g.params).map(|p| (p.name(), p)).collect();
        let bad = |msg: String| Error::Format { file: sd.source().to_string(), msg };
        for name in sd.names() {
            let Some(rest) = name.strip_prefix("optim.") else { continue };
            let known = rest
                .rsplit_once('.')
                .filter(|(p, f)| params.contains_key(p) && matches!(*f, "exp_avg" | "exp_avg_sq" | "step"));
            if known.is_none() {
                return Err(bad(format!("`{name}` is not the optimiser state of a parameter in its groups")));
            }
        }
        let mut state = HashMap::new();
        for (&pname, p) in &params {
            let key = |field: &str| format!("optim.{pname}.{field}");
            if !sd.contains(&key("exp_avg")) && !sd.contains(&key("exp_avg_sq")) && !sd.contains(&key("step")) {
                continue;
            }
            let moment = |field: &str| -> Result<Tensor> {
                let name = key(field);
                let t = sd.get(&name)?;
                if t.shape() != p.shape() {
                    let (file, got) = (sd.source().to_string(), t.shape().to_vec());
                    return Err(Error::TensorShape { file, name, got, expected: p.shape() });
                }
                if !t.dtype().is_float() {
                    return Err(bad(format!("`{name}` has dtype {}, expected a float dtype", t.dtype())));
                }
                t.to_dtype(p.dtype())?.to_device(&p.device())
            };
            let (m, v) = (moment("exp_avg")?, moment("exp_avg_sq")?);
            let step_t = sd.get(&key("step"))?;
            let step = step_t.to_scalar()?;
            if !(step >= 1.0 && step.fract() == 0.0 && step < 2f64.powi(53)) {
                return Err(bad(format!("`{}` = {step} is not a positive step count", key("step"))));
            }
            state.insert(pname.to_string(), State { m, v, step: step as u64 });
        }
        self.state = state;
        Ok(())
    }
}
