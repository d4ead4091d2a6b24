//! The fused AdamW update (kernels/optim.cu).

use crate::driver::{args, Grid};
use crate::gpu::{float, suffix, CudaBackend};
use beit_engine::backend::Optim;
use beit_engine::{checks, AdamWStep, BackendStorage, DType, Result, View};

/// The step constants as the kernel reads them (`AdamW<T>` in optim.cu).
#[repr(C)]
#[derive(Clone, Copy)]
struct Consts<T> {
    decay: T,
    b1: T,
    b2: T,
    one_b1: T,
    one_b2: T,
    step_size: T,
    bc2_sqrt: T,
    eps: T,
    grad_scale: T,
}

impl<T: Copy> Consts<T> {
    /// The constants of `hp` computed in f64, then rounded by `to` (as the CPU backend does).
    fn new(hp: &AdamWStep, to: impl Fn(f64) -> T) -> Self {
        let t = hp.step as f64;
        Consts {
            decay: to(1.0 - hp.lr * hp.weight_decay),
            b1: to(hp.beta1),
            b2: to(hp.beta2),
            one_b1: to(1.0 - hp.beta1),
            one_b2: to(1.0 - hp.beta2),
            step_size: to(hp.lr / (1.0 - hp.beta1.powf(t))),
            bc2_sqrt: to((1.0 - hp.beta2.powf(t)).sqrt()),
            eps: to(hp.eps),
            grad_scale: to(hp.grad_scale),
        }
    }
}

impl Optim for CudaBackend {
    /// One AdamW step in place on `param`, `m`, `v`.
    fn adamw_step(&self, param: &mut dyn BackendStorage, grad: View, m: &mut dyn BackendStorage, v: &mut dyn BackendStorage, hp: &AdamWStep) -> Result<()> {
        const OP: &str = "adamw_step";
        checks::adamw_buffers(OP, param, grad, m, v, hp)?;
        let (dtype, len) = (param.dtype(), param.len());
        float(OP, dtype)?;
        let g = self.contiguous(OP, grad)?;
        let (p, m, v) = (self.storage_mut(OP, param)?.at(0), self.storage_mut(OP, m)?.at(0), self.storage_mut(OP, v)?.at(0));
        if len == 0 {
            return Ok(());
        }
        let n = len as i64;
        let name = format!("adamw_{}", suffix(dtype));
        // SAFETY: param, m, v and the gathered grad hold `len` elements of dtype.
        unsafe {
            if dtype == DType::F32 {
                let h = Consts::new(hp, |x| x as f32);
                self.driver.launch("optim", &name, Grid::elements(len), &args![n, h, p, g.ptr, m, v])
            } else {
                let h = Consts::new(hp, |x| x);
                self.driver.launch("optim", &name, Grid::elements(len), &args![n, h, p, g.ptr, m, v])
            }
        }
    }
}
