//! Per-step value schedules (learning rate, weight decay).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A value per optimiser step, e.g. the learning rate. Serialises as
/// `{"kind": "warmup_cosine", "base": 1e-3, ...}` for configs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The same value at every step.
    Constant {
        /// The value.
        value: f64,
    },
    /// BEiT's `cosine_scheduler`: `warmup_steps` values evenly spaced from `warmup_start`
    /// to `base` inclusive (NumPy `linspace`), then `final + ½(base − final)(1 + cos(π·i/n))`
    /// for `i = 0..n`, `n = total_steps − warmup_steps`; `final` from `total_steps` on.
    WarmupCosine {
        /// Peak value, reached at the end of the warmup.
        base: f64,
        /// Value at the end of the cosine (BEiT's `min_lr`).
        #[serde(rename = "final")]
        final_value: f64,
        /// First warmup value (BEiT's `warmup_start_lr` / `start_warmup_value`, often 0).
        #[serde(default)]
        warmup_start: f64,
        /// Number of warmup steps.
        warmup_steps: u64,
        /// Total number of steps (epochs × steps per epoch), warmup included.
        total_steps: u64,
    },
}

impl Schedule {
    /// Check that the schedule is well formed (finite values, warmup within the total).
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            Schedule::Constant { value } => value.is_finite(),
            Schedule::WarmupCosine { base, final_value, warmup_start, warmup_steps, total_steps } => {
                [base, final_value, warmup_start].iter().all(|v| v.is_finite()) && warmup_steps <= total_steps
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::invalid("schedule", format!("invalid schedule {self:?}")))
        }
    }

    /// The value at 0-based `step`.
    pub fn at(&self, step: u64) -> f64 {
        match *self {
            Schedule::Constant { value } => value,
            Schedule::WarmupCosine { base, final_value, warmup_start, warmup_steps, total_steps } => {
                if step < warmup_steps {
                    if warmup_steps == 1 {
                        return warmup_start;
                    }
                    let frac = step as f64 / (warmup_steps - 1) as f64;
                    return warmup_start + (base - warmup_start) * frac;
                }
                if step >= total_steps {
                    return final_value;
                }
                let (i, n) = ((step - warmup_steps) as f64, (total_steps - warmup_steps) as f64);
                final_value + 0.5 * (base - final_value) * (1.0 + (std::f64::consts::PI * i / n).cos())
            }
        }
    }
}
