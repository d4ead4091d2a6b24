//! AdamW with parameter groups, learning-rate schedules and gradient clipping.

mod adamw;
mod clip;
mod schedule;

pub use adamw::{AdamW, AdamWConfig, ParamGroup};
pub use clip::{clip_factor, clip_grad_norm, grad_norm};
pub use schedule::Schedule;
